"""Decoding bombs (no ROS needed): every compressed format the node decodes is sized
from its own header and refused above the pixel budget before any decoding; every other
payload is refused from its magic bytes, whatever the message's ``format`` label says; peak
memory for a refused message stays within a few times its size (measured in a fresh process).

The node-side counterpart (over DDS, counted on /diagnostics): test_reliability_node.py
``test_compressed_bombs_and_unaccepted_formats_are_refused_over_dds``.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage

from sam2_ros.ros import conversions as cv
from helpers.payloads import bombs, small_images, unaccepted  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------------------------
# payloads: real encodings of small images, and bombs (small messages claiming huge images)


@pytest.mark.parametrize('name', list(small_images()))
def test_accepted_formats_are_sized_from_their_header_and_decoded(name):
    data = small_images()[name]
    kind, w, h = cv.compressed_size(data)
    assert (w, h) == (30, 20) and kind in cv.ACCEPTED_COMPRESSED
    for label in ('jpeg', 'png', '', 'rgb8; tiff compressed'):  # the label does not matter
        out = cv.compressed_to_rgb(CompressedImage(format=label, data=data), max_pixels=600)
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    with pytest.raises(cv.ImageTooLarge, match=f'compressed {kind} image \\(from its header\\) is 30x20'):
        cv.compressed_to_rgb(CompressedImage(format='jpeg', data=data), max_pixels=599)


@pytest.mark.parametrize('name', list(bombs()))
def test_bombs_are_refused_from_their_header(name):
    data, w, h = bombs()[name]
    assert len(data) < 1 << 20
    kind = cv.compressed_size(data)[0]
    with pytest.raises(cv.ImageTooLarge, match=f'compressed {kind} image \\(from its header\\) is {w}x{h} '
                                               r'= [\d.]+ MP, more than max_image_pixels = 8294400'):
        cv.compressed_to_rgb(CompressedImage(format='png', data=data), max_pixels=cv.DEFAULT_MAX_PIXELS)


@pytest.mark.parametrize('name', list(unaccepted()))
def test_other_formats_are_refused_from_their_bytes_whatever_the_label(name):
    data, what = unaccepted()[name]
    for label in ('jpeg', 'png', name):
        with pytest.raises(cv.UnsupportedFormat) as info:
            cv.compressed_to_rgb(CompressedImage(format=label, data=data), max_pixels=None)
        text = str(info.value)
        assert f'compressed image data is {what}' in text
        assert f'({len(data)} bytes): not accepted; accepted are JPEG, PNG, WebP, BMP and PNM' in text


def test_broken_headers_of_accepted_formats_are_refused_with_the_reason():
    cases = [
        (b'RIFF\x00\x00\x00\x00WEBPVP8 ' + bytes(20), 'VP8 chunk without its start code'),
        (b'RIFF\x00\x00\x00\x00WEBPXXXX' + bytes(20), "first chunk is b'XXXX'"),
        (b'RIFF\x00\x00\x00\x00WEBP', 'shorter than its header'),
        (b'BM' + bytes(12) + struct.pack('<I', 33) + bytes(20), 'DIB header of 33 bytes'),
        (b'P6\n# only a comment', 'no width and height'),
        (b'\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x01\x00\x03', 'height 0 in its frame header'),
    ]
    for data, pattern in cases:
        with pytest.raises(cv.ConversionError, match=pattern):
            cv.compressed_to_rgb(CompressedImage(format='jpeg', data=data))


# --------------------------------------------------------------------------------------------
# peak memory (VmHWM, reset before measuring), in fresh processes

_PROBE = r'''
import importlib.util, json, sys
import numpy as np, cv2
from sensor_msgs.msg import CompressedImage
# the module alone, from its file: the package's __init__ imports torch, whose import peak
# would hide what is measured here
spec = importlib.util.spec_from_file_location('conversions', 'sam2_ros/ros/conversions.py')
cv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cv)
payloads = [open(p, 'rb').read() for p in sys.argv[2:]]
msgs = [CompressedImage(format='jpeg', data=d) for d in payloads]
cv.compressed_to_rgb(CompressedImage(format='png', data=cv2.imencode('.png', np.zeros((8, 8), np.uint8))[1].tobytes()))
def peak():  # VmHWM, the peak resident set size, in bytes
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
with open('/proc/self/clear_refs', 'w') as f:  # reset the peak to the current size
    f.write('5')
before = peak()
refused = []
for m in msgs:
    if sys.argv[1] == 'node':
        try:
            cv.compressed_to_rgb(m, max_pixels=cv.DEFAULT_MAX_PIXELS)
        except cv.ImageTooLarge as e:
            refused.append(str(e))
    else:  # what decoding without the header check would cost
        cv2.imdecode(np.frombuffer(m.data, np.uint8), cv2.IMREAD_COLOR)
print(json.dumps({'growth': peak() - before, 'refused': refused, 'module': cv.__file__}))
'''


def _peak_growth(tmp_path, mode, payloads):
    files = []
    for j, data in enumerate(payloads):
        files.append(tmp_path / f'p{j}.bin')
        files[-1].write_bytes(data)
    out = subprocess.run([sys.executable, '-c', _PROBE, mode, *map(str, files)], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory_for_refused_bombs_stays_within_a_few_times_their_size(tmp_path):
    payloads = [data for data, _, _ in bombs().values()]
    total = sum(len(d) for d in payloads)
    result = _peak_growth(tmp_path, 'node', payloads)
    assert result['module'].startswith(ROOT)  # this worktree's code ran
    assert len(result['refused']) == len(payloads)
    assert result['growth'] <= 4 * total + (8 << 20), (result['growth'], total)
    # and they are real bombs: OpenCV alone takes well over 100 MB for the PNG one (70 KB)
    control = _peak_growth(tmp_path, 'decode', [bombs()['png'][0]])
    assert control['growth'] > 100 << 20, control

"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Input images become H x W x 3 uint8 RGB arrays, the tracker's frame format:

* ``rgb8`` (and ``8UC3``) is a zero-copy view of the message buffer (rows may carry padding:
  the view then has the row stride ``step``); ``rgba8`` (``8UC4``) is a zero-copy view of its
  first three channels;
* ``bgr8``, ``bgra8``, ``mono8``, ``mono16``, ``rgb16``, ``bgr16``, ``rgba16``, ``bgra16``,
  ``yuv422`` / ``uyvy`` / ``yuv422_yuy2`` / ``yuyv`` and every ``bayer_*8`` / ``bayer_*16`` are
  converted with one OpenCV call (16-bit values are scaled to 8 bits by their high byte, as
  cv_bridge does);
* anything else raises :class:`ConversionError` saying what is supported.

Every input is checked before it is used, and refused with :class:`ConversionError` (the text
says what was wrong and what is accepted): an unknown encoding; a zero width or height; a
``step`` smaller than a row; ``data`` whose length is not ``step x height`` (as cv_bridge
refuses it: a wrong width, height or encoding would otherwise be read as garbage); more pixels
than ``max_pixels`` (the node's ``max_image_pixels``), checked from the header fields before
anything is allocated (:class:`ImageTooLarge`). Compressed payloads are recognized from their
bytes, never from the message's ``format`` label: JPEG, PNG, WebP, BMP and PNM are sized from
their own headers and checked against the budget before decoding; any other payload (TIFF,
GIF, AVIF, ... or unknown) is refused before OpenCV sees it (:class:`UnsupportedFormat`), and
so is one that does not decode. Row padding (``step`` larger than a row) is accepted and skipped.

Outputs (label images, masks, overlays) are written straight into the message's buffer.
No rclpy import here: the functions work on any object with the message's fields, so they are
unit-tested without ROS and usable from tools.
"""
from __future__ import annotations

import array
import sys
from typing import Optional, Tuple

import cv2
import numpy as np

__all__ = [
    'ConversionError', 'SUPPORTED_ENCODINGS', 'image_to_rgb', 'compressed_to_rgb', 'image_to_labels',
    'numpy_to_image', 'rgb_to_bgr8_image', 'label_to_image', 'mask_to_image', 'image_to_numpy',
    'DEFAULT_MAX_PIXELS', 'compressed_size', 'check_pixels', 'ImageTooLarge', 'UnsupportedFormat',
    'ACCEPTED_COMPRESSED',
]

DEFAULT_MAX_PIXELS = 3840 * 2160  # 4K UHD, 8.3 MP: the node's default max_image_pixels

_LITTLE = sys.byteorder == 'little'


class ConversionError(ValueError):
    """A message that cannot be converted; the text says why and what is accepted."""


# encoding -> (channels, bytes per channel, OpenCV code to RGB or None for a direct view)
_BAYER = {
    # ROS names the 2x2 pattern from the top-left pixel; OpenCV from the second row's second
    # and third pixels, hence the apparent swap (as in cv_bridge).
    'bayer_rggb': cv2.COLOR_BayerBG2RGB,
    'bayer_bggr': cv2.COLOR_BayerRG2RGB,
    'bayer_gbrg': cv2.COLOR_BayerGR2RGB,
    'bayer_grbg': cv2.COLOR_BayerGB2RGB,
}
_ENCODINGS = {
    'rgb8': (3, 1, None), '8UC3': (3, 1, None),
    'rgba8': (4, 1, None), '8UC4': (4, 1, None),
    'bgr8': (3, 1, cv2.COLOR_BGR2RGB),
    'bgra8': (4, 1, cv2.COLOR_BGRA2RGB),
    'mono8': (1, 1, cv2.COLOR_GRAY2RGB), '8UC1': (1, 1, cv2.COLOR_GRAY2RGB),
    'mono16': (1, 2, cv2.COLOR_GRAY2RGB), '16UC1': (1, 2, cv2.COLOR_GRAY2RGB),
    'rgb16': (3, 2, None), 'bgr16': (3, 2, cv2.COLOR_BGR2RGB),
    'rgba16': (4, 2, cv2.COLOR_RGBA2RGB), 'bgra16': (4, 2, cv2.COLOR_BGRA2RGB),
    # packed 4:2:2, 2 bytes a pixel: ROS `yuv422` is UYVY; `yuv422_yuy2` is YUYV
    'yuv422': (2, 1, cv2.COLOR_YUV2RGB_UYVY), 'uyvy': (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    'yuv422_yuy2': (2, 1, cv2.COLOR_YUV2RGB_YUY2), 'yuyv': (2, 1, cv2.COLOR_YUV2RGB_YUY2),
}
for _name, _code in _BAYER.items():
    _ENCODINGS[_name + '8'] = (1, 1, _code)
    _ENCODINGS[_name + '16'] = (1, 2, _code)

SUPPORTED_ENCODINGS = tuple(sorted(_ENCODINGS))


def check_pixels(width: int, height: int, max_pixels: Optional[int], what: str = 'image') -> None:
    """Refuse a ``width`` x ``height`` image above the pixel budget (None: no budget)."""
    if max_pixels is not None and int(width) * int(height) > int(max_pixels):
        raise ImageTooLarge(
            f'{what} is {width}x{height} = {int(width) * int(height) / 1e6:.1f} MP, more than '
            f'max_image_pixels = {int(max_pixels)} ({int(max_pixels) / 1e6:.1f} MP); send smaller images '
            'or raise max_image_pixels')


def _pixels(msg, channels: int, depth: int, what: str = 'image',
            max_pixels: Optional[int] = None) -> np.ndarray:
    """(H, W, C) view of the message buffer (uint8 or native-order uint16), padding skipped."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ConversionError(f'{what} is empty ({w}x{h}): width and height must be > 0')
    check_pixels(w, h, max_pixels, what)  # before touching the data
    row = w * channels * depth
    if step < row:
        raise ConversionError(f'{what} {msg.encoding!r} {w}x{h}: step {step} is smaller than a row '
                              f'({w} px x {channels * depth} bytes = {row})')
    buf = np.frombuffer(msg.data, np.uint8)  # zero-copy on the message's array.array / bytes
    if buf.size != step * h:
        raise ConversionError(f'{what} {msg.encoding!r} {w}x{h} (step {step}) needs {step * h} bytes '
                              f'of data, got {buf.size}: data must be step x height bytes (is the '
                              'width, height, step or encoding wrong?)')
    px = buf.reshape(h, step)[:, :row]
    if depth == 2:
        big = bool(getattr(msg, 'is_bigendian', 0))
        if step % 2:  # rows not 2-byte aligned: one copy to reinterpret
            px = np.ascontiguousarray(px)
        px = px.view('>u2' if big else '<u2')
        if big == _LITTLE:  # not the native order
            px = px.astype(np.uint16)
    return px.reshape(h, w, channels)


def _to8(px: np.ndarray) -> np.ndarray:
    """16 -> 8 bits by the high byte (cv_bridge's scaling)."""
    return (px >> 8).astype(np.uint8)


def image_to_rgb(msg, max_pixels: Optional[int] = None) -> np.ndarray:
    """sensor_msgs/Image -> H x W x 3 uint8 RGB (a view of ``msg.data`` for rgb8/rgba8).

    ``max_pixels``: refuse images with more pixels (checked before any allocation)."""
    enc = msg.encoding
    spec = _ENCODINGS.get(enc)
    if spec is None:
        raise UnsupportedFormat(f'unsupported image encoding {enc!r}; '
                              f'supported: {", ".join(SUPPORTED_ENCODINGS)}')
    channels, depth, code = spec
    if enc.startswith(('yuv422', 'uyvy', 'yuyv')) and int(msg.width) % 2:
        raise ConversionError(f'{enc} needs an even width, got {msg.width}')
    px = _pixels(msg, channels, depth, max_pixels=max_pixels)
    if depth == 2:
        px = _to8(px)
    if code is None:
        return px[..., :3]
    if channels == 1:
        px = px[..., 0]
    elif enc.startswith(('yuv422', 'uyvy', 'yuyv')):
        px = np.ascontiguousarray(px)
    return cv2.cvtColor(px, code)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}

# What compressed payloads are decoded: each of these is sized from its own header before any
# decoding. The ``format`` field of the message is a label anyone can set: never trusted.
ACCEPTED_COMPRESSED = ('jpeg', 'png', 'webp', 'bmp', 'pnm')
_ACCEPTED_TEXT = 'JPEG, PNG, WebP, BMP and PNM (P1 to P6)'
# Formats OpenCV could decode but that are refused: their size cannot be read safely from a
# fixed header (TIFF: IFDs anywhere in the file, several pages; GIF: frames larger than the
# screen; AVIF / JPEG 2000: boxes to walk) or they are not camera formats (HDR, PFM, PAM,
# Sun raster, EXR). Named in the refusal, so that the sender knows what it sent.
_REFUSED_MAGIC = (
    (b'II*\x00', 'TIFF'), (b'MM\x00*', 'TIFF'), (b'II+\x00', 'BigTIFF'), (b'MM\x00+', 'BigTIFF'),
    (b'GIF87a', 'GIF'), (b'GIF89a', 'GIF'), (b'#?RADIANCE', 'Radiance HDR'), (b'#?RGBE', 'Radiance HDR'),
    (b'\x59\xa6\x6a\x95', 'Sun raster'), (b'\x76\x2f\x31\x01', 'OpenEXR'), (b'P7', 'PAM'),
    (b'PF', 'PFM'), (b'Pf', 'PFM'), (b'\xff\x4f\xff\x51', 'JPEG 2000 codestream'),
    (b'\x00\x00\x00\x0cjP  ', 'JPEG 2000'), (b'\xff\x0a', 'JPEG XL'),
    (b'\x00\x00\x00\x0cJXL ', 'JPEG XL'),
)


class ImageTooLarge(ConversionError):
    """An image with more pixels than the budget (``max_image_pixels``)."""


class UnsupportedFormat(ConversionError):
    """An encoding or compressed format the node does not accept."""


def _u16be(b: bytes, i: int) -> int:
    return (b[i] << 8) | b[i + 1]


def _u16le(b: bytes, i: int) -> int:
    return b[i] | (b[i + 1] << 8)


def _u32le(b: bytes, i: int) -> int:
    return int.from_bytes(b[i:i + 4], 'little')


def _describe(head: bytes) -> str:
    """What a payload looks like, for a refusal: the format named from its magic bytes, else
    its first bytes in hex."""
    if head[4:8] == b'ftyp':
        return f'{head[8:12].decode("latin-1")!r} ISO media file (AVIF / HEIF / MP4)'
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            return name
    return 'unknown format (first bytes ' + (head[:8].hex(' ') or 'none') + ')'


def _jpeg_size(buf: memoryview) -> Tuple[int, int]:
    """(width, height) from the first frame header (SOFn) of a JPEG, walking the segments."""
    n = len(buf)
    i = 2
    while i + 4 <= n:
        if buf[i] != 0xFF:
            raise ConversionError(f'broken JPEG: no marker at byte {i}')
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        length = (buf[i + 2] << 8) | buf[i + 3]
        if marker in _JPEG_SOF:
            if i + 9 > n:
                break
            h = (buf[i + 5] << 8) | buf[i + 6]
            w = (buf[i + 7] << 8) | buf[i + 8]
            if h == 0:  # the height comes later, in a DNL segment: cannot be sized up front
                raise UnsupportedFormat('JPEG with height 0 in its frame header (height given later '
                                        'by a DNL marker) cannot be sized before decoding: refused')
            return w, h
        if length < 2:
            raise ConversionError(f'broken JPEG: segment length {length} at byte {i}')
        i += 2 + length
    raise ConversionError('broken JPEG: no frame header (SOF) found; truncated or not a JPEG')


def _webp_size(head: bytes) -> Tuple[int, int]:
    """(width, height) of a WebP from its first chunk: VP8 (lossy), VP8L (lossless) or VP8X
    (extended: the canvas, which bounds every frame)."""
    if len(head) < 30:
        raise ConversionError('broken WebP: shorter than its header (30 bytes)')
    chunk = head[12:16]
    if chunk == b'VP8 ':
        if head[23:26] != b'\x9d\x01\x2a':
            raise ConversionError('broken WebP: VP8 chunk without its start code')
        return _u16le(head, 26) & 0x3FFF, _u16le(head, 28) & 0x3FFF
    if chunk == b'VP8L':
        if head[20] != 0x2F:
            raise ConversionError('broken WebP: VP8L chunk without its signature')
        bits = _u32le(head, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b'VP8X':
        return (int.from_bytes(head[24:27], 'little') + 1, int.from_bytes(head[27:30], 'little') + 1)
    raise ConversionError(f'broken WebP: first chunk is {chunk!r}, not VP8, VP8L or VP8X')


def _bmp_size(head: bytes) -> Tuple[int, int]:
    """(width, height) of a BMP from its DIB header (OS/2 core or Windows info headers)."""
    if len(head) < 26:
        raise ConversionError('broken BMP: shorter than its header')
    dib = _u32le(head, 14)
    if dib == 12:  # BITMAPCOREHEADER: 16-bit sizes
        return _u16le(head, 18), _u16le(head, 20)
    if dib in (40, 52, 56, 64, 108, 124):  # BITMAPINFOHEADER and its extensions
        w = int.from_bytes(head[18:22], 'little', signed=True)
        h = int.from_bytes(head[22:26], 'little', signed=True)
        return w, abs(h)  # a negative height means rows top-down
    raise ConversionError(f'broken BMP: DIB header of {dib} bytes (12, 40, 52, 56, 64, 108 or 124 expected)')


def _pnm_size(head: bytes) -> Tuple[int, int]:
    """(width, height) of a PBM / PGM / PPM (P1 to P6): the first two numbers after the magic,
    comments (``#`` to the end of the line) skipped."""
    numbers = []
    i, n = 2, len(head)
    while len(numbers) < 2:
        while i < n and head[i] in b' \t\r\n\x0b\x0c':
            i += 1
        if i < n and head[i] == 0x23:  # '#': a comment
            while i < n and head[i] not in b'\r\n':
                i += 1
            continue
        j = i
        while j < n and 0x30 <= head[j] <= 0x39 and j - i < 10:
            j += 1
        if j == i or j >= n:
            raise ConversionError('broken PNM: no width and height in its first '
                                  f'{len(head)} bytes')
        numbers.append(int(head[i:j]))
        i = j
    return numbers[0], numbers[1]


def compressed_size(data) -> Tuple[str, int, int]:
    """(format, width, height) read from the header of a compressed image, without decoding.

    The format is recognized from the bytes (magic numbers), never from a label. Accepted:
    ``ACCEPTED_COMPRESSED`` (JPEG, PNG, WebP, BMP, PNM P1 to P6). Raises
    :class:`UnsupportedFormat` for any other payload (saying what it looks like and what is
    accepted) and :class:`ConversionError` for a broken header of an accepted format.
    """
    buf = memoryview(data)  # items are Python ints (bytes, or a uint8 array)
    if buf.format != 'B' or buf.ndim != 1:
        buf = buf.cast('B')
    head = bytes(buf[:4096])  # every accepted header is in the first bytes (PNM: comments aside)
    if head.startswith(b'\x89PNG\r\n\x1a\n'):
        if len(head) < 24 or head[12:16] != b'IHDR':
            raise ConversionError('broken PNG: no IHDR header chunk')
        kind, w, h = 'png', int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
    elif head.startswith(b'\xff\xd8'):  # SOI
        kind, (w, h) = 'jpeg', _jpeg_size(buf)
    elif head.startswith(b'RIFF') and head[8:12] == b'WEBP':
        kind, (w, h) = 'webp', _webp_size(head)
    elif head.startswith(b'BM'):
        kind, (w, h) = 'bmp', _bmp_size(head)
    elif len(head) > 2 and head[0] == 0x50 and 0x31 <= head[1] <= 0x36 and head[2] in b' \t\r\n#':
        kind, (w, h) = 'pnm', _pnm_size(head)
    else:
        raise UnsupportedFormat(
            f'compressed image data is {_describe(head)} ({len(buf)} bytes): not accepted; accepted are '
            f'{_ACCEPTED_TEXT}, recognized from their bytes whatever the format field says')
    return kind, w, h


def compressed_to_rgb(msg, max_pixels: Optional[int] = None) -> np.ndarray:
    """sensor_msgs/CompressedImage -> H x W x 3 uint8 RGB.

    The payload's format is recognized from its bytes (the ``format`` field is only checked for
    ``compressedDepth``, which cannot be tracked); only the formats of ``ACCEPTED_COMPRESSED``
    are decoded, each after its size has been read from its header and checked against
    ``max_pixels`` (:class:`ImageTooLarge`), so that a small message can never make the node
    allocate a large image. Anything else is refused (:class:`UnsupportedFormat`) before
    OpenCV sees it."""
    fmt = str(getattr(msg, 'format', '')).lower()
    if 'compresseddepth' in fmt:
        raise UnsupportedFormat(f'compressed depth images ({msg.format!r}) cannot be tracked; '
                                'send a color or mono image')
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        raise ConversionError('compressed image has no data')
    kind, w, h = compressed_size(data)
    if w <= 0 or h <= 0:
        raise ConversionError(f'compressed {kind} image is empty ({w}x{h} in its header)')
    check_pixels(w, h, max_pixels, f'compressed {kind} image (from its header)')
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConversionError(f'OpenCV could not decode the compressed {kind} image ({w}x{h} in its '
                              f'header, {data.size} bytes): corrupt or truncated')
    if bgr.shape[0] * bgr.shape[1] != w * h:  # never expected: the decoder reads the same header
        raise ConversionError(f'compressed {kind} image decoded to {bgr.shape[1]}x{bgr.shape[0]}, '
                              f'its header says {w}x{h}: refused')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_to_labels(msg, max_pixels: Optional[int] = None) -> np.ndarray:
    """A mono8 / mono16 (8UC1 / 16UC1) label image -> H x W uint16 (a view where possible)."""
    enc = msg.encoding
    if enc in ('mono8', '8UC1'):
        return _pixels(msg, 1, 1, 'label image', max_pixels)[..., 0].astype(np.uint16)
    if enc in ('mono16', '16UC1'):
        return _pixels(msg, 1, 2, 'label image', max_pixels)[..., 0]
    raise ConversionError(f'a label image must be mono8 or mono16 (pixel = object id), got {enc!r}')


def image_to_numpy(msg) -> np.ndarray:
    """Any supported Image as its raw H x W x C array (no color conversion; for tests and tools)."""
    spec = _ENCODINGS.get(msg.encoding)
    if spec is None:
        raise ConversionError(f'unsupported image encoding {msg.encoding!r}')
    return _pixels(msg, spec[0], spec[1])


# ---------------------------------------------------------------------------------------------
# outputs

def _new_image(header, height: int, width: int, encoding: str, channels: int, depth: int,
               msg_type=None, reuse=None):
    """An Image message and a writable (H, W, C) numpy view of its buffer.

    ``reuse``: a message made here before; when its size and encoding match, it and its buffer
    are used again (rclpy serializes in ``publish()``, so a published message may be refilled;
    this saves allocating and faulting in a fresh buffer every frame).
    """
    height, width = int(height), int(width)
    step = width * channels * depth
    if (reuse is not None and reuse.height == height and reuse.width == width
            and reuse.encoding == encoding and len(reuse.data) == step * height):
        msg = reuse
    else:
        if msg_type is None:
            from sensor_msgs.msg import Image as msg_type  # noqa: N813
        msg = msg_type()
        msg.height, msg.width, msg.encoding = height, width, encoding
        msg.is_bigendian = 0 if _LITTLE else 1
        msg.step = step
        msg.data = array.array('B', bytes(step * height))
    if header is not None:
        msg.header = header
    view = np.frombuffer(msg.data, np.uint8)
    if depth == 2:
        view = view.view(np.uint16)
    return msg, view.reshape(int(height), int(width), channels)


def numpy_to_image(array_: np.ndarray, encoding: str, header=None, step: Optional[int] = None,
                   bigendian: Optional[bool] = None, msg_type=None):
    """H x W (x C) array -> Image of ``encoding`` as is (no color conversion).

    ``step`` larger than a row adds padding; ``bigendian`` (16-bit encodings) picks the byte
    order. Used by tests, tools and clients.
    """
    spec = _ENCODINGS.get(encoding)
    if spec is None:
        raise ConversionError(f'unsupported image encoding {encoding!r}')
    channels, depth, _ = spec
    a = np.asarray(array_)
    if a.ndim == 2:
        a = a[..., None]
    h, w = a.shape[:2]
    if a.shape[2] != channels:
        raise ConversionError(f'{encoding} has {channels} channel(s), the array has shape {a.shape}')
    a = a.astype(np.uint16 if depth == 2 else np.uint8, copy=False)
    row = w * channels * depth
    step = row if step is None else int(step)
    if step < row:
        raise ConversionError(f'step {step} < row size {row}')
    big = (not _LITTLE) if bigendian is None else bool(bigendian)
    if depth == 2:
        a = a.astype('>u2' if big else '<u2')
    buf = np.zeros((h, step), np.uint8)
    buf[:, :row] = a.reshape(h, -1).view(np.uint8)
    if msg_type is None:
        from sensor_msgs.msg import Image as msg_type  # noqa: N813
    msg = msg_type()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding, msg.step = h, w, encoding, step
    msg.is_bigendian = 1 if big else 0
    msg.data = array.array('B', buf.tobytes())
    return msg


def label_to_image(labels: np.ndarray, header=None, msg_type=None, reuse=None):
    """H x W uint16 label image -> mono16 Image (one copy, into the message)."""
    h, w = labels.shape
    msg, view = _new_image(header, h, w, 'mono16', 1, 2, msg_type, reuse)
    view[..., 0] = labels
    return msg


def mask_to_image(mask: np.ndarray, header=None, msg_type=None, reuse=None):
    """H x W bool mask -> mono8 Image, 255 inside the mask, 0 outside."""
    h, w = mask.shape
    msg, view = _new_image(header, h, w, 'mono8', 1, 1, msg_type, reuse)
    np.multiply(mask, 255, out=view[..., 0], casting='unsafe')
    return msg


def rgb_to_bgr8_image(rgb: np.ndarray, header=None, msg_type=None, reuse=None):
    """H x W x 3 uint8 RGB -> bgr8 Image (converted straight into the message's buffer)."""
    h, w = rgb.shape[:2]
    msg, view = _new_image(header, h, w, 'bgr8', 3, 1, msg_type, reuse)
    cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR, dst=view)
    return msg


def frame_size(msg) -> Tuple[int, int]:
    """(height, width) of an Image message."""
    return int(msg.height), int(msg.width)

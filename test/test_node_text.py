"""Text prompts on the node over DDS: ``~/text_prompt`` (std_msgs/String), the ``text_prompt`` and
``detector_*`` parameters (sam2_ros.ros.text_inputs).

One node process (tiny random SAM 2 at 128 px) with a tiny random Grounding DINO saved to a
directory (test/helpers/text_models.py), passed as ``detector_model``; a second one with
``transformers`` blocked, for the refusal. Where the detector's boxes fall is known: every frame
sent is the same image, and ``detector_box_threshold`` is chosen (helpers.text_models.threshold_for)
so that exactly ``COUNT`` objects start. ``mask_threshold`` 32 keeps the random model's masks empty,
so each detector object's box stays the box it was prompted with (whether a detection overlaps a
tracked object is then known), and the object states are driven through their parameters (both
thresholds 0.0: always seen; 1.0: always missed, lost after two frames). The detector runs on its
own thread: its result is picked up on a later frame, so each check sends frames until it holds.
"""
import os
import time

import pytest

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('transformers')

from std_msgs.msg import String  # noqa: E402

from helpers.ros import Client, NodeProcess, checkpoint, frames, fresh_status, next_k, ros_env  # noqa: E402,F401

NS = '/text'
COUNT = 3
MAX_OBJECTS = 5
INSTALL = "install them with: pip install 'sam2_ros[text]'"


class TextClient(Client):
    def __init__(self, ns, name):
        super().__init__(ns, name=name)
        self.text_pub = self.node.create_publisher(String, f'{self.tracker_ns}/text_prompt', 10)

    def text(self, data):
        """Publish a text prompt (a str, or raw serialized bytes as they are)."""
        self.text_pub.publish(String(data=data) if isinstance(data, str) else data)
        time.sleep(0.2)  # the text and the frames travel on different topics

    def frames_until(self, frame, cond, limit=40, what=''):
        """Send ``frame`` (new stamps) one at a time until ``cond(diagnostics)`` holds."""
        st = None
        for _ in range(limit):
            self.frame_and_wait(frame, next_k(), timeout=30)
            st = fresh_status(self)
            if cond(st):
                return st
        raise AssertionError(f'{what}: not after {limit} frames; diagnostics: {st}')


def make_client(ns, name, proc):
    c = TextClient(ns, name)
    c.wait_ready(proc=proc)
    assert c.wait_for(lambda: c.text_pub.get_subscription_count() > 0, 30)
    return c


@pytest.fixture(scope='module')
def frame(frames):  # noqa: F811
    return frames[0]


@pytest.fixture(scope='module')
def detector(tmp_path_factory, frame):
    """(detector directory, box threshold)."""
    from helpers.text_models import make_grounding_dino, threshold_for
    from sam2_ros.model.text_detector import TextDetector

    path = make_grounding_dino(tmp_path_factory.mktemp('gdino'), seed=1)
    threshold, _, gap = threshold_for(TextDetector.from_pretrained(str(path), device='cpu'), frame, 'cup', COUNT)
    assert gap > 0.05
    return str(path), threshold


@pytest.fixture(scope='module')
def node(tmp_path_factory, checkpoint, detector):  # noqa: F811
    path, threshold = detector
    proc = NodeProcess(tmp_path_factory.mktemp('text'), checkpoint, '-r', f'__ns:={NS}',
                       f'detector_model:={path}', f'detector_box_threshold:={threshold!r}', 'detector_every_n:=0',
                       'detector_device:=cpu', 'mask_threshold:=32.0', f'max_objects:={MAX_OBJECTS}',
                       'state_present_threshold:=0.0', 'state_absent_threshold:=0.0', name='text')
    yield proc
    assert proc.stop() == 0, proc.stderr()


@pytest.fixture(scope='module')
def client(node):
    c = make_client(NS, 'text_client', node)
    yield c
    c.close()


def cdr_string(data: bytes) -> bytes:
    """A serialized std_msgs/String holding ``data`` as it is (rclpy's String takes str only):
    CDR little-endian header, length with the NUL, the bytes, the NUL."""
    return b'\x00\x01\x00\x00' + (len(data) + 1).to_bytes(4, 'little') + data + b'\x00'


def labels_of(st):
    return {int(k[len('object_'):-len('_label')]): v for k, v in st.items()
            if k.startswith('object_') and k.endswith('_label')}


def ids_of(st):
    return sorted(int(k[len('object_'):]) for k in st if k.startswith('object_') and k[len('object_'):].isdigit())


def params(c, **values):
    results = c.set_params(**values)
    assert all(r.successful for r in results), [r.reason for r in results]


def test_a_text_prompt_starts_labelled_objects_and_a_second_detection_adds_nothing(client, node, frame):
    c = client
    assert c.reset().success
    c.text('Cup')  # lower-cased: the label is "cup"
    st = c.frames_until(frame, lambda s: s.get('detector_objects_started') == str(COUNT), what='objects started')
    assert ids_of(st) == [1, 2, 3] and labels_of(st) == {1: 'cup', 2: 'cup', 3: 'cup'}, st
    assert st['text_prompt'] == 'cup.' and st['detector'] == 'ready' and st['detector_runs_text'] == '1'
    assert float(st['detector_latency_ms_p50']) > 0 and st['detector_results_applied'] == '1'
    assert "text prompt 'cup.': detecting cup" in node.stderr()
    assert 'new objects: 1 (cup), 2 (cup), 3 (cup)' in node.stderr()
    # every frame: the same objects are found again and match the tracked ones
    params(c, detector_every_n=1)
    st = c.frames_until(frame, lambda s: int(s['detector_results_applied']) >= 3, what='more runs')
    assert ids_of(st) == [1, 2, 3] and st['detector_objects_started'] == str(COUNT), st
    assert st['detector_objects_reacquired'] == '0' and int(st['detector_runs_every_n']) >= 2
    params(c, detector_every_n=0)


def test_lost_objects_are_reacquired_under_their_ids(client, node, frame):
    c = client
    st = fresh_status(c)
    assert ids_of(st) == [1, 2, 3], st
    mark = len(node.stderr())
    # every frame misses every object: occluded after one frame, lost after two; the loss runs the
    # detector, which finds them where their last boxes are
    params(c, state_present_threshold=1.0, state_absent_threshold=1.0, state_occluded_frames=1, state_lost_frames=2)
    st = c.frames_until(frame, lambda s: s.get('detector_objects_reacquired') == str(COUNT), what='re-acquired')
    assert ids_of(st) == [1, 2, 3] and labels_of(st) == {1: 'cup', 2: 'cup', 3: 'cup'}, st
    assert st['detector_runs_lost'] == '1' and st['detector_objects_started'] == str(COUNT)
    assert 're-acquired: 1 (cup), 2 (cup), 3 (cup)' in node.stderr()[mark:]
    params(c, state_present_threshold=0.0, state_absent_threshold=0.0, state_occluded_frames=2, state_lost_frames=30)


def test_max_objects_is_respected(client, node, frame):
    c = client
    params(c, max_objects=2, detector_every_n=1)
    assert c.reset().success  # the text stays: detected again on the next frame
    st = c.frames_until(frame, lambda s: s.get('detector_runs_reset') == '1' and ids_of(s) == [1, 2],
                        what='two objects after the reset')
    st = c.frames_until(frame, lambda s: int(s['detector_results_applied']) >= 3, what='more runs')
    assert ids_of(st) == [1, 2] and labels_of(st) == {1: 'cup', 2: 'cup'}, st
    params(c, max_objects=MAX_OBJECTS, detector_every_n=0)


def test_malformed_text_is_refused_with_its_reason_and_tracking_goes_on(client, node, frame):
    c = client
    before = fresh_status(c)
    cases = [('person . . cup', 'phrase 2 of the text prompt'),
             ('x' * 10_000, 'has 10000 characters, at most 2000'),
             (cdr_string(b'cup \xff\xfe!'), 'not valid UTF-8 (byte 4')]
    for n, (text, reason) in enumerate(cases, 1):
        mark = len(node.stderr())
        c.text(text)
        c.frame_and_wait(frame, next_k(), timeout=30)  # still tracking
        assert node.wait_log(reason, 10), node.stderr()[mark:]
        assert '~/text_prompt: prompt skipped' in node.stderr()[mark:]
        st = fresh_status(c)
        assert int(st['prompt_errors']) == int(before['prompt_errors']) + n and reason in st['last_error'], st
        assert st['text_prompt'] == 'cup.'  # the text in force stays
    (r,) = c.set_params(text_prompt='. cup')
    assert not r.successful and 'phrase 1 of the text prompt' in r.reason
    (r,) = c.set_params(detector_image_size=32)
    assert not r.successful and 'detector_image_size must be 0' in r.reason
    (r,) = c.set_params(detector_model='other')
    assert not r.successful and 'read-only once the node is configured' in r.reason
    c.text('')  # stops detecting (a run in progress is forgotten); the objects stay
    st = c.frames_until(frame, lambda s: s['text_prompt'] == '', what='text cleared')
    assert ids_of(st) and "text prompt cleared" in node.stderr()
    params(c, detector_every_n=1)
    for _ in range(3):
        after = c.frames_until(frame, lambda s: True)
    assert ids_of(after) == ids_of(st) and after['detector_results_applied'] == st['detector_results_applied']
    assert 'Traceback' not in node.stderr()


BLOCKER = '''import sys
sys.modules['transformers'] = None  # as if it were not installed (import fails, find_spec finds nothing)
'''


def test_without_transformers_a_text_prompt_is_refused_with_the_install_command(tmp_path_factory, checkpoint,  # noqa: F811
                                                                                  frame):
    d = tmp_path_factory.mktemp('no_transformers')
    (d / 'sitecustomize.py').write_text(BLOCKER)
    saved = os.environ.get('PYTHONPATH', '')
    os.environ['PYTHONPATH'] = os.pathsep.join([str(d)] + ([saved] if saved else []))
    try:
        proc = NodeProcess(d, checkpoint, '-r', '__ns:=/text_blocked', 'text_prompt:=person', name='blocked')
    finally:
        os.environ['PYTHONPATH'] = saved
    c = make_client('/text_blocked', 'text_blocked_client', proc)
    try:
        assert proc.wait_log(INSTALL, 30), proc.stderr()  # the parameter's text, at start-up
        c.first_masks(frame)  # it tracks
        mark = len(proc.stderr())
        c.text('cup')
        assert proc.wait_log('~/text_prompt: prompt skipped: text prompts need the optional dependencies', 10)
        assert INSTALL in proc.stderr()[mark:]
        (r,) = c.set_params(text_prompt='cup')
        assert not r.successful and INSTALL in r.reason
        st = fresh_status(c)
        assert int(st['prompt_errors']) >= 2 and 'detector' not in st
        c.frame_and_wait(frame, next_k(), timeout=30)
    finally:
        c.close()
        assert proc.stop() == 0, proc.stderr()

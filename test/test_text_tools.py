"""Text prompts outside the node's own tests: prompts files (``{frame: 0, text: "red cup"}``,
``label``), sam2_evaluate and the demo with ``--detector``, play_clip's messages, the node's
parameter checks and its ``~/text_prompt`` decoding (sam2_ros.ros.text_inputs), without DDS."""
import json

import pytest

from sam2_ros.tools.prompts_file import PromptsFileError, parse_prompts

TEXT_ENTRY = {'frame': 1, 'text': 'Red cup . person'}


def test_prompts_file_text_and_label_entries():
    specs = parse_prompts({'prompts': [
        {'frame': 0, 'object_id': 1, 'box': [0, 0, 5, 5], 'label': 'mug'},
        TEXT_ENTRY,
        {'stamp': '3.5', 'text': ''},  # stops detecting
        {'frame': 2, 'text': None},
    ]})
    assert specs[0].label == 'mug' and specs[0].to_prompt((10, 10)).label == 'mug'
    assert specs[1].object_id is None and specs[1].frame == 1 and specs[1].text == 'Red cup . person'
    prompt = specs[1].to_prompt((10, 10))
    assert prompt.text == 'Red cup . person' and prompt.obj_id is None
    assert specs[2].stamp == (3, 500000000) and specs[2].text == '' and specs[3].text == ''


@pytest.mark.parametrize('entry, message', [
    ({'frame': 0, 'object_id': 2, 'text': 'cup'}, "takes frame or stamp and text only, not ['object_id']"),
    ({'frame': 0, 'text': 'cup', 'box': [0, 0, 1, 1]}, "not ['box']"),
    ({'text': 'cup'}, 'give exactly one of frame and stamp'),
    ({'frame': 0, 'text': 'cup . . person'}, 'phrase 2 of the text prompt'),
    ({'frame': 0, 'text': 'x' * 10_000}, '10000 characters'),
    ({'frame': 0, 'text': 5}, 'text must be a string'),
    ({'frame': 0, 'object_id': 1, 'points': [[1, 1]], 'label': ''}, 'label must be a non-empty string'),
    ({'frame': 0, 'object_id': 1, 'points': [[1, 1]], 'colour': 'red'}, 'label; or text'),
])
def test_prompts_file_refuses_bad_text_entries(entry, message):
    with pytest.raises(PromptsFileError, match=message.replace('[', r'\[').replace(']', r'\]')):
        parse_prompts({'prompts': [entry]})


def test_play_clip_sends_text_on_the_text_topic_and_labels_as_the_markers_ns():
    pytest.importorskip('rclpy')
    from sam2_ros.tools.play_clip import prompt_messages

    specs = parse_prompts({'prompts': [TEXT_ENTRY, {'frame': 0, 'object_id': 3, 'box': [1, 1, 4, 4], 'label': 'mug'}]})
    ((kind, msg),) = prompt_messages(specs[0], None, (10, 10, 3))
    assert kind == 'text' and msg.data == 'Red cup . person'
    ((kind, msg),) = prompt_messages(specs[1], prompt_stamp(), (10, 10, 3))
    assert kind == 'marker' and msg.ns == 'mug' and msg.id == 3


def prompt_stamp():
    from builtin_interfaces.msg import Time

    return Time(sec=1, nanosec=0)


# --- the node's checks (no DDS) -------------------------------------------------------------------

def test_node_parameters_check_the_text_and_the_detector_settings():
    pytest.importorskip('rclpy')
    from sam2_ros.ros import params

    v = params.validate
    assert v('text_prompt', 'person . red cup') is None and v('text_prompt', '') is None
    assert 'phrase 2 of the text prompt' in v('text_prompt', 'a . . b')
    assert 'control character' in v('text_prompt', 'cup\x07')
    assert v('detector_image_size', 0) is None and v('detector_image_size', 480) is None
    assert 'must be 0' in v('detector_image_size', 32) and 'in [0, 2048]' in v('detector_image_size', 4096)
    assert 'detector_device must be auto, cpu' in v('detector_device', 'gpu')
    assert 'detector_dtype must be one of' in v('detector_dtype', 'int8')
    assert 'in [0, 100000]' in v('detector_every_n', -1)
    assert 'detector_box_threshold must be in [0.0, 1.0]' in v('detector_box_threshold', 1.5)
    r = params.change_refusal
    assert 'read-only once the node is configured' in r('detector_model', 'x', 'active')
    assert r('detector_every_n', 5, 'active') is None and r('text_prompt', 'cup', 'active') is None


def test_text_prompt_messages_are_read_from_their_bytes():
    pytest.importorskip('rclpy')
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    from sam2_ros.model.text_query import TextPromptError
    from sam2_ros.ros.text_inputs import missing_dependency, string_payload

    for text in ('', 'person . red cup', 'tasse à café'):
        assert string_payload(serialize_message(String(data=text))) == text.encode()
    big_endian = b'\x00\x00\x00\x00' + (4).to_bytes(4, 'big') + b'cup\x00'
    assert string_payload(big_endian) == b'cup'
    with pytest.raises(TextPromptError, match='truncated'):
        string_payload(b'\x00\x01\x00\x00\x09\x00\x00\x00cup\x00')
    with pytest.raises(TextPromptError, match='not a std_msgs/String'):
        string_payload(b'\x00\x01')
    assert missing_dependency() is None  # transformers and pillow are installed here


# --- the tools that run the tracker in-process --------------------------------------------------

@pytest.fixture(scope='module')
def detector_dir(tmp_path_factory):
    pytest.importorskip('transformers')
    from helpers.text_models import make_grounding_dino

    return make_grounding_dino(tmp_path_factory.mktemp('gdino'), seed=1)


@pytest.fixture(scope='module')
def sam_checkpoint(tmp_path_factory):
    import torch

    from sam2_ros.model.build import build_random_model

    path = tmp_path_factory.mktemp('ckpt') / 'sam2.1_hiera_tiny_random.pt'
    torch.save({'model': build_random_model('tiny', 128, 'cpu').state_dict()}, path)
    return str(path)


def write_bag(path, frames):
    from sam2_ros.tools import bagio

    start, dt = 1_700_000_000_000_000_000, 40_000_000
    with bagio.BagWriter(path, storage='sqlite3') as w:
        for i, f in enumerate(frames):
            ns = start + i * dt
            w.write('/cam', bagio.image_message(f, 'rgb8', bagio.Header(ns // 10**9, ns % 10**9, 'camera')), ns)


def test_evaluate_runs_text_prompts_through_its_detector(tmp_path, detector_dir, sam_checkpoint, capsys):
    from helpers.oracle import sample_frames
    from sam2_ros.tools import bagio, evaluate

    write_bag(tmp_path / 'in', sample_frames(3, 160, 96))
    (tmp_path / 'p.yaml').write_text('prompts:\n  - {frame: 1, text: "cup"}\n'
                                     '  - {frame: 0, object_id: 9, box: [10, 10, 60, 50], label: mug}\n')
    common = ['--bag', tmp_path / 'in', '--image-topic', '/cam', '--prompts', tmp_path / 'p.yaml', '--checkpoint',
              sam_checkpoint, '--image-size', '128', '--quiet', '--device', 'cpu', '--max-objects', '4']
    run = lambda *extra: evaluate.main([str(a) for a in common + list(extra)])  # noqa: E731
    assert run('--out', tmp_path / 'x') == 2
    assert 'the prompts hold text prompts: give --detector' in capsys.readouterr().err
    assert run('--out', tmp_path / 'y', '--detector', tmp_path / 'nowhere') == 2
    assert 'detector: detector directory' in capsys.readouterr().err
    assert run('--out', tmp_path / 'o', '--detector', detector_dir, '--detector-box-threshold', '0.0',
               '--overlay') == 0
    report = json.loads((tmp_path / 'o' / 'report.json').read_text())
    det = report['detector']
    assert det['model'] == str(detector_dir) and det['runs_text'] == 1 and det['objects_started'] == 3
    labels = [m.image for m in bagio.iter_labels(tmp_path / 'o' / 'bag', evaluate.MASK_TOPIC)]
    assert len(labels) == 3 and list(report['objects']) == ['9']  # the detector's objects are not evaluated


def test_demo_labels_the_detectors_objects(tmp_path, detector_dir, sam_checkpoint, capsys):
    from sam2_ros.tools import demo

    (tmp_path / 'p.yaml').write_text('prompts:\n  - {frame: 0, text: "rabbit"}\n')
    args = ['--checkpoint', sam_checkpoint, '--image-size', '128', '--device', 'cpu', '--max-frames', '2',
            '--prompts', str(tmp_path / 'p.yaml'), '--out', str(tmp_path / 'out')]
    assert demo.main(args) == 2
    assert 'give --detector' in capsys.readouterr().err
    assert demo.main(args + ['--detector', str(detector_dir), '--detector-box-threshold', '0.0']) == 0
    printed = capsys.readouterr().out
    assert 'objects 1 rabbit: ' in printed and '2 rabbit: ' in printed
    assert (tmp_path / 'out' / 'frame_00000.png').is_file()

"""Tests of the quick-start demo's parts that need no model: prompts files, video reading,
outputs, and the checkpoint / random-weights decision (with a fake tracker)."""
import itertools
import sys

import cv2
import numpy as np
import pytest

from sam2_ros.tools import demo
from sam2_ros.tools.prompts_file import PromptsFileError, load_prompts, parse_prompts

SAMPLE_VIDEO = demo.bundled_sample('bunny.mp4')
SAMPLE_PROMPTS = demo.bundled_sample('prompts.yaml')


# --- bundled sample -------------------------------------------------------------------------

def test_bundled_sample_exists_and_is_small():
    assert SAMPLE_VIDEO.is_file() and SAMPLE_PROMPTS.is_file()
    assert SAMPLE_VIDEO.stat().st_size < 2_000_000


def test_read_frames_bundled_sample_is_rgb():
    frames = list(demo.read_frames(SAMPLE_VIDEO))
    assert len(frames) == 48
    assert all(f.shape == (360, 640, 3) and f.dtype == np.uint8 for f in frames)
    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    np.testing.assert_array_equal(frames[0], bgr[:, :, ::-1])
    assert demo.video_fps(SAMPLE_VIDEO) == pytest.approx(25.0)


def test_read_frames_max_frames_and_image_folder(tmp_path):
    assert len(list(demo.read_frames(SAMPLE_VIDEO, max_frames=5))) == 5
    assert list(demo.read_frames(SAMPLE_VIDEO, max_frames=0)) == []
    images = [np.full((8, 10, 3), k * 40, np.uint8) for k in range(3)]
    for k, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f'{k:03d}.png'), image)
    frames = list(demo.read_frames(tmp_path))
    assert len(frames) == 3 and frames[2].shape == (8, 10, 3) and frames[2][0, 0, 0] == 80


def test_read_frames_errors(tmp_path):
    with pytest.raises(demo.DemoError):
        list(demo.read_frames(tmp_path / 'missing.mp4'))
    with pytest.raises(demo.DemoError):
        list(demo.read_frames(tmp_path))  # a folder without images
    bad = tmp_path / 'bad.mp4'
    bad.write_bytes(b'not a video')
    with pytest.raises(demo.DemoError):
        list(demo.read_frames(bad))


# --- prompts files --------------------------------------------------------------------------

def test_bundled_prompts():
    specs = load_prompts(SAMPLE_PROMPTS)
    assert len(specs) == 1
    spec = specs[0]
    assert spec.frame == 0 and spec.object_id == 1
    assert spec.points.shape == (1, 2) and spec.labels.tolist() == [1]
    x, y = spec.points[0]
    assert 0 <= x < 640 and 0 <= y < 360


def test_parse_prompts_all_kinds(tmp_path):
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 3:6] = 255
    cv2.imwrite(str(tmp_path / 'm.png'), mask)
    specs = parse_prompts({'prompts': [
        {'frame': 0, 'object_id': 1, 'points': [[1, 2], [3, 4]], 'labels': [1, 0]},
        {'frame': 0, 'object_id': 2, 'box': [0, 0, 5, 5]},
        {'frame': 3, 'object_id': 3, 'mask': 'm.png'},
        {'frame': 4, 'object_id': 4, 'points': [5, 6]},          # one point, default label
        {'stamp': '12.5', 'object_id': 5, 'points': [[1, 1]]},
    ]}, tmp_path)
    assert specs[0].labels.tolist() == [1, 0]
    assert specs[1].box.tolist() == [0, 0, 5, 5]
    np.testing.assert_array_equal(specs[2].load_mask(), mask > 0)
    assert specs[3].points.tolist() == [[5, 6]] and specs[3].labels.tolist() == [1]
    assert specs[4].stamp == (12, 500000000) and specs[4].frame is None
    grouped = demo.prompts_by_frame(specs, fps=2.0)
    assert sorted(grouped) == [0, 3, 4, 25]


@pytest.mark.parametrize('entry', [
    {'frame': 0, 'points': [[1, 2]]},                                  # no object_id
    {'frame': 0, 'object_id': 0, 'points': [[1, 2]]},                  # id 0 is background
    {'frame': 0, 'object_id': 'a', 'points': [[1, 2]]},
    {'object_id': 1, 'points': [[1, 2]]},                              # no frame
    {'frame': 0, 'stamp': 1, 'object_id': 1, 'points': [[1, 2]]},      # both
    {'frame': -1, 'object_id': 1, 'points': [[1, 2]]},
    {'frame': 0, 'object_id': 1},                                      # no prompt
    {'frame': 0, 'object_id': 1, 'points': [[1, 2]], 'labels': [1, 0]},
    {'frame': 0, 'object_id': 1, 'points': [[1, 2]], 'labels': [2]},
    {'frame': 0, 'object_id': 1, 'points': [[1, 2, 3]]},
    {'frame': 0, 'object_id': 1, 'box': [0, 0, 5]},
    {'frame': 0, 'object_id': 1, 'box': [5, 0, 1, 5]},                 # x1 < x0
    {'frame': 0, 'object_id': 1, 'points': [[1, 2]], 'colour': 'red'},  # unknown key
])
def test_parse_prompts_rejects(entry):
    with pytest.raises(PromptsFileError):
        parse_prompts({'prompts': [entry]})


def test_load_prompts_errors(tmp_path):
    with pytest.raises(PromptsFileError):
        load_prompts(tmp_path / 'missing.yaml')
    (tmp_path / 'bad.yaml').write_text('prompts: [')
    with pytest.raises(PromptsFileError):
        load_prompts(tmp_path / 'bad.yaml')
    (tmp_path / 'empty.yaml').write_text('')
    with pytest.raises(PromptsFileError):
        load_prompts(tmp_path / 'empty.yaml')


# --- running the real tracker ----------------------------------------------------------------
# An official-format checkpoint with random weights (no download here) at 256 px: the whole
# path from the video file to the written overlays runs for real.


@pytest.fixture
def checkpoint(official_checkpoint):
    return str(official_checkpoint('tiny', 256, seed=0))


def _count_frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_demo_writes_outputs(tmp_path, checkpoint, capsys):
    out = tmp_path / 'out'
    assert demo.main(['--checkpoint', checkpoint, '--image-size', '256', '--device', 'cpu',
                      '--max-frames', '10', '--out', str(out)]) == 0
    assert _count_frames(out / 'overlay.mp4') == 10
    assert sorted(p.name for p in out.glob('frame_*.png')) == ['frame_00000.png',
                                                              'frame_00008.png']
    sheet = cv2.imread(str(out / 'overlay_sheet.png'))
    assert sheet is not None and sheet.shape[1] == 2 * 320
    # the tracked object is drawn: the overlay is not the plain frame
    image = cv2.cvtColor(cv2.imread(str(out / 'frame_00008.png')), cv2.COLOR_BGR2RGB)
    original = list(itertools.islice(demo.read_frames(SAMPLE_VIDEO), 9))[-1]
    assert np.abs(image.astype(int) - original).sum(-1).max() > 60
    printed = capsys.readouterr().out
    assert 'ms per frame' in printed and str(out / 'overlay.mp4') in printed


def test_demo_offline_without_random_weights_fails_with_advice(tmp_path, hub_offline, capsys):
    assert demo.main(['--max-frames', '2', '--out', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert 'cannot get sam2.1_hiera_tiny.pt' in err and '--random-weights' in err and '--checkpoint' in err


def test_demo_offline_with_random_weights_stamps_frames(tmp_path, hub_offline, capsys):
    assert demo.main(['--max-frames', '2', '--out', str(tmp_path), '--random-weights',
                      '--image-size', '128', '--device', 'cpu']) == 0
    assert 'RANDOM WEIGHTS' in capsys.readouterr().err
    image = cv2.imread(str(tmp_path / 'frame_00000.png'))
    original = cv2.cvtColor(next(demo.read_frames(SAMPLE_VIDEO)), cv2.COLOR_RGB2BGR)
    assert image[:12].mean() < 0.6 * original[:12].mean()  # the darkened banner


def test_demo_explicit_checkpoint_never_falls_back(tmp_path, hub_offline, capsys):
    assert demo.main(['--checkpoint', str(tmp_path / 'x.pt'), '--random-weights',
                      '--max-frames', '1', '--out', str(tmp_path)]) == 2
    assert 'not found' in capsys.readouterr().err


def test_demo_bad_inputs(tmp_path, checkpoint):
    assert demo.main(['--video', str(tmp_path / 'nope.mp4'), '--out', str(tmp_path)]) == 2
    (tmp_path / 'p.yaml').write_text('prompts: [{frame: 0, object_id: 1, points: [[9999, 5]]}]')
    assert demo.main(['--prompts', str(tmp_path / 'p.yaml'), '--max-frames', '1',
                      '--checkpoint', checkpoint, '--image-size', '256', '--out', str(tmp_path)]) == 2
    assert demo.main(['--image-size', '500', '--out', str(tmp_path)]) == 2


def test_demo_help_runs():
    with pytest.raises(SystemExit) as exit_info:
        demo.main(['--help'])
    assert exit_info.value.code == 0


def test_demo_random_weights_runs_a_few_frames_by_default(tmp_path, hub_offline):
    assert demo.main(['--out', str(tmp_path), '--random-weights', '--image-size', '128',
                      '--device', 'cpu']) == 0
    assert _count_frames(tmp_path / 'overlay.mp4') == demo.RANDOM_WEIGHTS_FRAMES


# --- scripts/demo.sh: what the user sees before and around the node ----------------------------
# SAM2_ROS_SKIP_SETUP: the suite's own venv, as it is (setup.sh would reinstall the package).

ROOT = SAMPLE_VIDEO.parents[2]


def _demo_sh(*args, cwd=None, timeout=120):
    import os
    import pathlib
    import subprocess

    env = dict(os.environ, SAM2_ROS_SKIP_SETUP='1',
               SAM2_ROS_VENV=str(pathlib.Path(sys.executable).parents[1]),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    return subprocess.run(['bash', str(ROOT / 'scripts' / 'demo.sh'), *args], cwd=cwd or ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_demo_sh_help_is_a_usage_not_the_script():
    r = _demo_sh('--help')
    assert r.returncode == 0
    assert r.stdout.startswith('Usage: bash scripts/demo.sh') and 'set -euo' not in r.stdout
    for option in ('--checkpoint', '--model', '--image-size', '--device', '--max-frames', '--out',
                   '--api'):
        assert option in r.stdout


def test_setup_sh_help_is_a_usage_not_the_script():
    import subprocess

    r = subprocess.run(['bash', str(ROOT / 'scripts' / 'setup.sh'), '--help'], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith('Usage: bash scripts/setup.sh')
    assert 'set -euo' not in r.stdout and not any(line.startswith('#') for line in r.stdout.splitlines())


@pytest.mark.parametrize('args, says', [
    (['--model', 'huge'], 'use tiny, small, base_plus, large or edgetam'),
    (['--model', 'edgetam', '--image-size', '320'], 'a multiple of 256'),
    (['--image-size', '100'], 'multiple of 32'),
    (['--device', 'gpu'], 'auto, cpu, cuda or cuda:N'),
    (['--max-frames', '0'], 'positive'),
    (['--frames', '3'], "unknown option '--frames'"),
])
def test_demo_sh_refuses_bad_options_up_front(args, says):
    r = _demo_sh(*args)
    assert r.returncode == 2 and says in r.stderr and 'Traceback' not in r.stderr
    assert 'download' not in r.stderr and '[demo] starting' not in r.stdout


def test_demo_sh_stops_when_the_node_exits_and_shows_why(tmp_path):
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'garbage')
    # relative paths are the caller's: run from tmp_path
    r = _demo_sh('--checkpoint', 'bad.pt', '--out', 'out', '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'exited' in r.stderr and 'not a PyTorch checkpoint' in r.stderr
    assert 'within 180 s' not in r.stderr
    assert (tmp_path / 'out' / 'node.log').is_file()

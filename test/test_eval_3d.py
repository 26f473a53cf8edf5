"""sam2_evaluate with a depth topic and camera_info (sam2_ros.tools.eval_3d): a bag of a synthetic
RGB-D scene (test/helpers/rgbd_scene.py: a box moving across the view), mask prompts on every
frame (a prompted frame's mask is the prompt, whatever the weights), and the objects' 3-D tracks
out: the CSV against the truth, the report's entry, the plot; frames without depth, with the
nearest depth and with depth the 3-D step refuses, counted with the reason."""
import csv
import json

import cv2
import numpy as np
import pytest
import yaml

from helpers.rgbd_scene import Box, rotation_y, scene, to_16uc1
from helpers.ros import checkpoint  # noqa: F401 (a fixture: a tiny random checkpoint)
from sam2_ros.tools import bagio, evaluate
from sam2_ros.tracking.objects3d import Intrinsics

W, H = 160, 96
K = Intrinsics(fx=140.0, fy=140.0, cx=79.5, cy=47.5, width=W, height=H)
START, DT = 1_700_000_000_000_000_000, 100_000_000
FRAMES = 7
MISSING, LATE, BAD = 3, 4, 5  # frames without depth, with depth 10 ms late, with 8-bit "depth"


def header(ns, frame_id):
    return bagio.Header(ns // 10**9, ns % 10**9, frame_id)


def camera_info_message(ns):
    store = bagio.typestore()
    T = store.types
    roi = T['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T[bagio.CAMERA_INFO](
        header=bagio._header_msg(store, header(ns, 'color')), height=H, width=W, distortion_model='plumb_bob',
        d=np.zeros(5), k=K.matrix.reshape(-1), r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=0,
        binning_y=0, roi=roi)


@pytest.fixture(scope='module')
def rgbd_bag(tmp_path_factory):
    """The bag, the prompts file and the truth (centroid per frame)."""
    root = tmp_path_factory.mktemp('rgbd_bag')
    truths, prompts = [], []
    with bagio.BagWriter(root / 'bag') as w:
        for i in range(FRAMES):
            sc = scene([Box([-0.12 + 0.04 * i, 0.0, 1.2], [0.3, 0.2, 0.15], rotation_y(20))], wall_z=2.0, k=K, seed=i)
            rgb = np.full((H, W, 3), 90, np.uint8)
            rgb[sc.colour_ids == 1] = (200, 60, 60)
            t = START + i * DT
            w.write('/color/camera_info', camera_info_message(t), t)
            w.write('/color/image_raw', bagio.image_message(rgb, 'rgb8', header(t, 'color')), t)
            if i == BAD:
                w.write('/depth', bagio.image_message(np.zeros((H, W), np.uint8), 'mono8', header(t, 'depth')), t)
            elif i != MISSING:
                td = t + (10_000_000 if i == LATE else 0)
                w.write('/depth', bagio.image_message(to_16uc1(sc.depth), '16UC1', header(td, 'depth')), td)
            cv2.imwrite(str(root / f'mask{i}.png'), (sc.colour_ids == 1).astype(np.uint8) * 255)
            prompts.append({'frame': i, 'object_id': 4, 'mask': f'mask{i}.png'})
            truths.append(sc.truths[0][0])
    (root / 'prompts.yaml').write_text(yaml.safe_dump({'prompts': prompts}))
    return root, truths


def run(args):
    return evaluate.main([str(a) for a in args] + ['--quiet', '--device', 'cpu', '--model', 'tiny',
                                                   '--image-size', '128'])


def test_tracks_in_3d_from_a_bag(tmp_path, rgbd_bag, checkpoint):
    root, truths = rgbd_bag
    out = tmp_path / 'out'
    assert run(['--bag', root / 'bag', '--image-topic', '/color/image_raw', '--prompts', root / 'prompts.yaml',
                '--checkpoint', checkpoint, '--out', out, '--depth-topic', '/depth',
                '--camera-info-topic', '/color/camera_info']) == 0
    rows = list(csv.DictReader(open(out / 'tracks_3d.csv')))
    assert [int(r['frame']) for r in rows] == list(range(FRAMES)) and {r['object_id'] for r in rows} == {'4'}
    for r in rows:
        i = int(r['frame'])
        if i in (MISSING, BAD):
            assert r['x'] == '' and r['reason'], r
            continue
        got = np.array([float(r['x']), float(r['y']), float(r['z'])])
        assert np.abs(got - truths[i]).max() < 0.01, (i, got, truths[i])
        assert float(r['depth_delay_ms']) == (10.0 if i == LATE else 0.0) and int(r['points']) >= 30
    assert 'no depth image within 0.02 s' in rows[MISSING]['reason']
    assert "depth encoding 'mono8' is not accepted" in rows[BAD]['reason']
    report = json.loads((out / 'report.json').read_text())['objects_3d']
    assert (report['frames'], report['paired_exact'], report['paired_nearest'], report['unpaired'],
            report['refused'], report['frames_3d']) == (FRAMES, FRAMES - 2, 1, 1, 1, FRAMES - 2)
    track = report['objects']['4']
    assert track['frames_with_3d'] == FRAMES - 2 and track['frames_visible_without_3d'] == 2
    assert track['first_centroid_m'][0] < -0.09 and track['last_centroid_m'][0] > 0.09  # moved 24 cm along x
    assert report['errors'][0]['frames'] == 1
    md = (out / 'report.md').read_text()
    assert '## Objects in 3-D' in md and '![Objects in 3-D](tracks_3d.png)' in md
    plot = cv2.imread(str(out / 'tracks_3d.png'))
    assert plot is not None and plot.shape[0] > 3 * 300  # three panels: x, y, z


def test_bad_3d_arguments_exit_2(tmp_path, rgbd_bag, capsys):
    root, _ = rgbd_bag
    base = ['--bag', root / 'bag', '--image-topic', '/color/image_raw', '--prompts', root / 'prompts.yaml',
            '--out', tmp_path / 'o']
    assert run(base + ['--depth-topic', '/depth']) == 2
    assert 'need both --depth-topic' in capsys.readouterr().err
    assert run(base + ['--depth-topic', '/nope', '--camera-info-topic', '/color/camera_info']) == 2
    assert "no topic '/nope' in the bag" in capsys.readouterr().err
    assert run(base + ['--depth-topic', '/color/camera_info', '--camera-info-topic', '/color/camera_info']) == 2
    assert 'the depth topic must be sensor_msgs/msg/Image' in capsys.readouterr().err

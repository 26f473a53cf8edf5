"""The node's 3-D step without DDS (sam2_ros.ros.objects3d_step.Objects3DStep): pairing, the
reasons for no 3-D (counted, logged), the camera_info decoded once, live settings, the
diagnostics. Real message classes; the node over DDS: test_node_depth.py."""

import numpy as np
import pytest
from builtin_interfaces.msg import Time

from helpers.rgbd_msgs import camera_info, camera_info_of, depth_msg
from helpers.rgbd_scene import Box, Sphere, masks_of, scene, to_16uc1
from sam2_ros.ros import params
from sam2_ros.ros.objects3d_step import Objects3DStep
from sam2_ros.tracking.objects3d import Intrinsics

K = Intrinsics(fx=300.0, fy=300.0, cx=159.5, cy=119.5, width=320, height=240)
DEFAULTS = {s.name: s.default for s in params.SPECS}


def stamp(ns):
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


@pytest.fixture(scope="module")
def rgbd():
    sc = scene([Box([-0.15, 0.0, 1.5], [0.2, 0.15, 0.1]), Sphere([0.15, 0.0, 1.4], 0.08)], wall_z=2.5, k=K, seed=1)
    return sc, masks_of(sc.colour_ids, 2), to_16uc1(sc.depth)


class Log:
    def __init__(self):
        self.lines = []

    def __call__(self, level, key, text):
        self.lines.append((level, text))

    def text(self):
        return "\n".join(t for _, t in self.lines)


def make(**p):
    log = Log()
    return Objects3DStep({**DEFAULTS, **p}, log), log


def run(step, masks, t, states=None, ids=(1, 2)):
    asked = []

    def masks_of_(indices):
        asked.append(list(indices))
        return masks[indices]
    out = step.run(t, list(ids), masks_of_, [0.9] * len(ids), {1: "box"}, states or {}, with_points=False)
    return out, asked


def test_paired_frames_measure_each_visible_object(rgbd):
    sc, masks, depth = rgbd
    step, log = make()
    step.on_camera_info(camera_info_of(K))
    step.on_depth(depth_msg(depth, stamp=stamp(1000), frame_id="depth_optical"))
    step.pin(1000)
    (header, objects), asked = run(step, masks, 1000, states={2: "occluded"})
    assert header.frame_id == "depth_optical" and asked == [[0]]  # the occluded object's mask is not made
    assert [o.obj_id for o in objects] == [1] and objects[0].label == "box" and objects[0].score == 0.9
    assert np.abs(objects[0].centroid - sc.truths[0][0]).max() < 0.01
    d = step.diagnostics()
    assert (d["depth_received"], d["depth_paired_exact"], d["frames_3d"], d["objects_3d"], d["errors_3d"]) == (1, 1, 1, 1, 0)
    assert d["objects_3d_p50_ms"] > 0 and not log.lines


def test_frames_without_depth_say_why(rgbd):
    sc, masks, depth = rgbd
    step, log = make()
    assert run(step, masks, 1000)[0] is None
    assert "no depth image has come on `depth` yet" in log.text()
    step.on_depth(depth_msg(depth, stamp=stamp(2000)))
    assert run(step, masks, 2000)[0] is None
    assert "no camera_info has come on `camera_info` yet" in log.text()
    step.on_camera_info(camera_info_of(K))
    assert run(step, masks, 2000 + 30_000_000)[0] is None  # 30 ms: beyond depth_max_delay (20 ms)
    assert "the nearest is -30.0 ms away" in log.lines[-1][1] and "depth_max_delay = 0.02 s" in log.lines[-1][1]
    d = step.diagnostics()
    assert (d["depth_unpaired"], d["depth_without_camera_info"], d["frames_without_3d"], d["errors_3d"]) == (2, 1, 3, 0)
    step.configure({**DEFAULTS, "depth_max_delay": 0.05}, {"depth_max_delay": 0.05})  # live
    assert run(step, masks, 2000 + 30_000_000)[0] is not None
    assert step.diagnostics()["depth_last_delay_ms"] == -30.0


def test_refused_input_is_counted_with_the_reason(rgbd):
    sc, masks, depth = rgbd
    step, log = make()
    zero = camera_info_of(K)
    zero.k = [0.0] * 9
    cases = [
        (depth_msg(depth.astype(np.float32), "32FC1"), camera_info(K.matrix.reshape(-1), 640, 480),
         "the intrinsics are for 640x480 images, the colour image is 320x240"),
        (depth_msg(depth[:100, :150]), camera_info_of(K), "the depth image is 150x100, the colour image 320x240"),
        (depth_msg(depth), zero, "K is all zeros"),
    ]
    for n, (dmsg, info, words) in enumerate(cases, start=1):
        dmsg.header.stamp = stamp(n)
        step.on_depth(dmsg)
        step.on_camera_info(info)
        assert run(step, masks, n)[0] is None
        d = step.diagnostics()
        assert d["errors_3d"] == n and words in d["last_error_3d"] and words in log.lines[-1][1]
    bad = depth_msg(depth)
    bad.encoding = "mono16"
    bad.header.stamp = stamp(9)
    step.on_depth(bad)
    step.on_camera_info(camera_info_of(K))
    assert run(step, masks, 9)[0] is None and "'mono16' is not accepted" in step.diagnostics()["last_error_3d"]


def test_the_camera_info_is_decoded_once_per_message(rgbd, monkeypatch):
    sc, masks, depth = rgbd
    from sam2_ros.ros import objects3d_step

    calls = []
    real = objects3d_step.camera_info_to_intrinsics
    monkeypatch.setattr(objects3d_step, "camera_info_to_intrinsics", lambda m: calls.append(m) or real(m))
    step, _ = make()
    info = camera_info_of(K)
    step.on_camera_info(info)
    for t in (1, 2, 3):
        step.on_depth(depth_msg(depth, stamp=stamp(t)))
        assert run(step, masks, t)[0] is not None
    assert calls == [info]
    step.on_camera_info(camera_info_of(K))  # a new message: decoded again
    assert run(step, masks, 3)[0] is not None and len(calls) == 2


def test_depth_without_valid_pixels_and_live_settings(rgbd):
    sc, masks, depth = rgbd
    step, log = make()
    step.on_camera_info(camera_info_of(K))
    step.on_depth(depth_msg(np.full(depth.shape, np.nan, np.float32), "32FC1", stamp=stamp(1)))
    (_, objects), _ = run(step, masks, 1)
    assert not any(o.has_3d for o in objects) and step.diagnostics()["objects_without_3d"] == 2
    assert "fewer than depth_min_points = 30" in log.text() and step.diagnostics()["errors_3d"] == 0
    step.on_depth(depth_msg(depth, stamp=stamp(2)))
    big = {**DEFAULTS, "depth_min_points": 100000}
    step.configure(big, {"depth_min_points": 100000})  # live: no object has that many
    (_, objects), _ = run(step, masks, 2)
    assert not any(o.has_3d for o in objects)


def test_masks_from_logits_as_the_node_thresholds_them():
    import torch

    from sam2_ros.ros.objects3d_step import masks_from_logits

    logits = torch.randn(3, 8, 10)
    want = (logits > 0.25).numpy()
    assert (masks_from_logits(logits, [2, 0], 0.25, (8, 10)) == want[[2, 0]]).all()
    assert masks_from_logits(logits, [], 0.25, (8, 10)).shape == (0, 8, 10)
    half = logits.to(torch.bfloat16)  # numpy cannot view it: compared by torch
    assert (masks_from_logits(half, [1], 0.25, (8, 10)) == (half[1:2] > 0.25).numpy()).all()

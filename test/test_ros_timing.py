"""Time in the node, over DDS: prompts by stamp (the prompt buffer), use_sim_time, jumps back
in time and reordered frames.

One node process (``use_sim_time:=true``, ``prompt_buffer:=4``) serves every check; this
process is the client and the simulated clock: it publishes ``/clock`` and frames stamped in
simulated time (seconds 100 on, far from the system clock's). Random weights: the masks of
tracked frames mean nothing, but a mask prompt applied to the frame it comes with is that mask
exactly, which the checks use to tell "applied to this frame" from "applied to a past frame".
"""
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

from builtin_interfaces.msg import Time  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from sam2_ros.ros import conversions  # noqa: E402
from helpers.ros import (H, W, Client, NodeProcess, checkpoint, frames, rect, ros_env, to_ns)  # noqa: E402,F401

NS = '/simtime'
BUFFER = 4


def sim(k, offset_ns=0):
    """Simulated stamp of frame k: 100 s + k / 10 s."""
    ns = 100 * 10 ** 9 + k * 100_000_000 + offset_ns
    return Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)


class SimClient(Client):
    def __init__(self):
        super().__init__(NS, name='sim_client')
        self.clock_pub = self.node.create_publisher(Clock, '/clock', 10)
        self.now_ns = 0

    def clock(self, stamp):
        """Set /clock (also backwards)."""
        self.now_ns = to_ns(stamp)
        self.clock_pub.publish(Clock(clock=stamp))

    def sim_frame(self, rgb, stamp, wait=True, timeout=15.0, clock=True):
        """Advance /clock to 50 ms after ``stamp`` (``clock``: also backwards; else never
        backwards: a reordered frame), then publish the frame stamped ``stamp``."""
        ns = to_ns(stamp) + 50_000_000
        if clock or ns > self.now_ns:
            self.clock(Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9))
        time.sleep(0.05)
        msg = conversions.numpy_to_image(rgb, 'rgb8')
        msg.header.stamp = stamp
        msg.header.frame_id = 'sim_cam'
        key = to_ns(stamp)
        self.masks.pop(key, None)
        self.image_pub.publish(msg)
        if wait:
            assert self.wait_for(lambda: key in self.masks, timeout), f'no masks for the frame stamped {key}'
            return self.masks[key][0]
        return None

    def stamped_mask(self, obj_id, mask, stamp):
        labels = np.zeros((H, W), np.uint16)
        labels[mask] = obj_id
        msg = conversions.numpy_to_image(labels, 'mono16')
        if stamp is not None:
            msg.header.stamp = stamp
        self.mask_pub.publish(msg)
        time.sleep(0.15)

    def status(self):
        with self.lock:
            for arr in reversed(self.diagnostics):
                for s in arr.status:
                    if 'sam2_tracker' in s.name:
                        return arr.header.stamp, {kv.key: kv.value for kv in s.values}
        return None, None


@pytest.fixture(scope='module')
def node(tmp_path_factory, checkpoint):  # noqa: F811
    proc = NodeProcess(tmp_path_factory.mktemp('simnode'), checkpoint, '-r', f'__ns:={NS}', 'use_sim_time:=true',
                       f'prompt_buffer:={BUFFER}', 'publish_object_masks:=true', name='simnode')
    yield proc
    assert proc.stop() == 0, proc.stderr()


@pytest.fixture(scope='module')
def client(node):
    c = SimClient()
    c.clock(sim(0))
    c.wait_ready(proc=node)
    for obj_id in range(1, 6):
        c.watch_object(obj_id)
    yield c
    c.close()


def labels_of(msg):
    return conversions.image_to_labels(msg)


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_prompts_by_stamp_in_sim_time(client, node, frames):  # noqa: F811
    c = client
    mark = len(node.stderr())
    a, b, d = rect(5, 40, 5, 60), rect(50, 90, 90, 150), rect(10, 45, 100, 150)
    # a mask prompt stamped with the frame it comes with is that frame's mask, exactly
    c.stamped_mask(1, a, sim(0))
    out = c.sim_frame(frames[0], sim(0))
    assert to_ns(out.header.stamp) == to_ns(sim(0)) and out.header.frame_id == 'sim_cam'  # input header kept
    assert iou(labels_of(out) == 1, a) > 0.9
    for k in (1, 2, 3):
        c.sim_frame(frames[k], sim(k))
    # stamped with frame 1, tracked already and still buffered: applied to frame 1
    c.stamped_mask(2, b, sim(1))
    out = c.sim_frame(frames[4], sim(4))
    assert c.wait_for(lambda: 'applied to the frame stamped 100.100000000, 2 frame(s) before' in node.stderr()[mark:], 5), \
        node.stderr()[mark:]
    assert c.wait_for(lambda: to_ns(sim(4)) in c.objects[2], 5)  # object 2 is tracked on frame 4
    assert iou(labels_of(out) == 2, b) < 0.9  # tracked there from memory (random weights), not prompted there
    c.sim_frame(frames[5], sim(5))
    # stamped with frame 0, out of the buffer (frames 2 to 5): applied to the next frame, said so
    c.stamped_mask(3, d, sim(0))
    out = c.sim_frame(frames[6], sim(6))
    assert c.wait_for(lambda: 'older than the last 4 tracked frames (prompt_buffer)' in node.stderr()[mark:], 5)
    assert iou(labels_of(out) == 3, d) > 0.9  # prompted on frame 6 itself
    # a zero stamp: the latest frame received (frame 6, tracked and buffered)
    e = rect(60, 90, 10, 50)
    c.stamped_mask(4, e, None)
    out = c.sim_frame(frames[7], sim(7))
    assert c.wait_for(lambda: to_ns(sim(7)) in c.objects[4], 5)
    assert iou(labels_of(out) == 4, e) < 0.9  # prompted on frame 6, tracked on frame 7
    # (the log line is rate-limited: the diagnostics count it)
    assert c.wait_for(lambda: c.status()[1] is not None and c.status()[1]['prompts_on_past_frames'] == '2', 5)
    # diagnostics in sim time: stamped with /clock; latency on the steady clock; stamp age in sim time
    stamp, values = c.status()
    assert 99 <= stamp.sec <= 102, stamp  # /clock's time, not the system's
    assert values['clock'] == 'sim (/clock)'
    assert 0 < float(values['latency_p50_ms']) < 30000
    assert 0 <= float(values['stamp_age_p50_ms']) < 1000, values  # node's sim clock - stamp (~50 ms)
    assert 'Traceback' not in node.stderr()


def test_out_of_order_frames_are_dropped_and_jumps_back_reset(client, node, frames):  # noqa: F811
    c = client
    mark = len(node.stderr())
    c.stamped_mask(1, rect(5, 40, 5, 60), sim(20))
    c.sim_frame(frames[8], sim(20))
    c.sim_frame(frames[9], sim(21))
    # 50 ms older than the last tracked frame: a small reordering, dropped and counted
    late = sim(21, offset_ns=-50_000_000)
    c.sim_frame(frames[10], late, wait=False, clock=False)
    out = c.sim_frame(frames[11], sim(22))
    assert to_ns(late) not in c.masks
    assert c.wait_for(lambda: to_ns(sim(22)) in c.objects[1], 5)  # object 1 still tracked
    assert c.wait_for(lambda: 'older than the last tracked frame' in node.stderr()[mark:], 5)
    assert 'dropped (frames are tracked in time order' in node.stderr()[mark:]
    assert c.wait_for(lambda: c.status()[1] is not None and c.status()[1]['frames_out_of_order'] == '1', 5)
    # a bag replayed in a loop: /clock and the stamps go back by 2.2 s: reset, with a warning
    out = c.sim_frame(frames[12], sim(0))
    assert c.wait_for(lambda: 'time jumped back from 102.200000000 to 100.000000000' in node.stderr()[mark:], 5)
    assert 'tracker reset' in node.stderr()[mark:]
    assert not labels_of(out).any()  # the objects of the old timeline are gone
    # tracking goes on in the new timeline: a prompt by stamp works again
    c.stamped_mask(5, rect(30, 70, 30, 90), sim(1))
    out = c.sim_frame(frames[13], sim(1))
    assert (labels_of(out) == 5).any()
    c.sim_frame(frames[14], sim(2))
    # /clock going back (less than time_jump_threshold) makes the next step back a jump too
    c.clock(sim(1))
    assert c.wait_for(lambda: '/clock went back' in node.stderr()[mark:], 5)
    out = c.sim_frame(frames[15], sim(2, offset_ns=-10_000_000))
    assert not labels_of(out).any()
    assert c.wait_for(lambda: c.status()[1] is not None and c.status()[1]['time_jumps'] == '2', 5)
    assert 'Traceback' not in node.stderr()

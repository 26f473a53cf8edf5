"""The node's object outputs over DDS: ~/track_everything, object states (diagnostics, ~/detections), polygons,
~/prompt_boxes (where vision_msgs is installed).

One node process serves every check (random weights, 128 px, segment-everything thresholds at
0 and no NMS, so that the random model finds more masks than there are free object slots).
The states are driven through their parameters: with both thresholds at 1.0 every frame misses
every object (scores are below 1), with both at 0.0 every frame sees it, which makes the states
deterministic whatever the random masks are.
"""
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

from geometry_msgs.msg import PolygonStamped  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from sam2_ros.ros import conversions  # noqa: E402
from helpers.ros import (H, W, RELIABLE, Client, NodeProcess, checkpoint, frames, fresh_status, make_stamp,  # noqa: E402,F401
                           next_k, rect, ros_env, to_ns)

NS = '/objects'
MAX_OBJECTS = 6


class ObjectsClient(Client):
    def __init__(self):
        super().__init__(NS, name='objects_client')
        self.everything = self.node.create_client(Trigger, f'{self.tracker_ns}/track_everything')
        self.polygons = {}

    def watch_polygon(self, obj_id):
        self.polygons.setdefault(obj_id, {})

        def cb(msg):
            with self.lock:
                self.polygons[obj_id][to_ns(msg.header.stamp)] = msg
        return self.node.create_subscription(PolygonStamped, f'{self.tracker_ns}/object_{obj_id}/polygon', cb, RELIABLE)


@pytest.fixture(scope='module')
def node(tmp_path_factory, checkpoint):  # noqa: F811
    proc = NodeProcess(tmp_path_factory.mktemp('objects'), checkpoint, '-r', f'__ns:={NS}', 'publish_polygons:=true',
                       f'max_objects:={MAX_OBJECTS}', 'everything_points_per_side:=6', 'everything_pred_iou_thresh:=0.0',
                       'everything_stability_score_thresh:=0.0', 'everything_box_nms_thresh:=1.0',
                       'polygon_tolerance:=0.0', name='objects')
    yield proc
    assert proc.stop() == 0, proc.stderr()


@pytest.fixture(scope='module')
def client(node):
    c = ObjectsClient()
    c.wait_ready(proc=node)
    yield c
    c.close()


def states(c, **values):
    assert all(r.successful for r in c.set_params(**values)), values


def test_polygons_and_object_states(client, node, frames):  # noqa: F811
    c = client
    assert c.reset().success
    k = next_k(6)
    sub = c.watch_polygon(3)
    a = rect(20, 60, 30, 100)  # rows 20..59, columns 30..99
    labels = np.zeros((H, W), np.uint16)
    labels[a] = 3
    c.mask_prompt(labels, k=k)
    c.frame_and_wait(frames[0], k, frame_id='cam8')
    assert c.wait_for(lambda: to_ns(make_stamp(k)) in c.polygons[3], 10), 'no polygon'
    poly = c.polygons[3][to_ns(make_stamp(k))]
    assert poly.header.frame_id == 'cam8' and to_ns(poly.header.stamp) == to_ns(make_stamp(k))
    xy = np.array([[p.x, p.y] for p in poly.polygon.points])
    # the prompt's frame: the mask is the rectangle (up to the resize to 128 px and back)
    assert abs(xy[:, 0].min() - 30) <= 2 and abs(xy[:, 0].max() - 99) <= 2, xy
    assert abs(xy[:, 1].min() - 20) <= 2 and abs(xy[:, 1].max() - 59) <= 2, xy
    # states: visible after the prompt, with its score
    st = fresh_status(c)
    assert st['objects_visible'] == '1' and st['object_3'].startswith('visible (1.00'), st
    # every frame misses it (thresholds 1.0): occluded after 1 frame, lost after 2; the id stays
    states(c, state_present_threshold=1.0, state_absent_threshold=1.0, state_occluded_frames=1, state_lost_frames=2)
    c.frame_and_wait(frames[1], k + 1)
    assert fresh_status(c)['object_3'].startswith('occluded')
    c.frame_and_wait(frames[2], k + 2)
    st = fresh_status(c)
    assert st['object_3'].startswith('lost') and st['objects_lost'] == '1' and st['objects_visible'] == '0'
    out = c.frame_and_wait(frames[3], k + 3)
    assert out is not None and fresh_status(c)['object_3'].startswith('lost')
    # seen again (thresholds 0.0): visible, same id
    states(c, state_present_threshold=0.0, state_absent_threshold=0.0)
    c.frame_and_wait(frames[4], k + 4)
    assert fresh_status(c)['object_3'].startswith('visible')
    states(c, state_present_threshold=0.6, state_absent_threshold=0.4, state_occluded_frames=2, state_lost_frames=30)
    # publish_polygons off: the topic goes away
    assert c.set_params(publish_polygons=False)[0].successful
    c.frame_and_wait(frames[5], k + 5)
    assert c.wait_for(lambda: c.count_publishers(f'{c.tracker_ns}/object_3/polygon') == 0, 10)
    assert c.set_params(publish_polygons=True)[0].successful
    c.node.destroy_subscription(sub)
    (r,) = c.set_params(state_lost_frames=0)
    assert not r.successful and 'state_lost_frames' in r.reason
    (r,) = c.set_params(reseed='sometimes')
    assert not r.successful and 'every_n_frames' in r.reason


def test_track_everything_starts_objects_largest_first_up_to_max_objects(client, node, frames):  # noqa: F811
    c = client
    assert c.reset().success
    k = next_k(4)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 40, 10, 50)] = 1
    c.mask_prompt(labels, k=k)
    c.frame_and_wait(frames[20], k)
    mark = len(node.stderr())
    res = c.call(c.everything, Trigger.Request(), timeout=60)
    # answered at once: the work is queued for the worker, its result logged
    assert res.success and res.message.startswith('queued: segmenting everything on the latest tracked frame'), \
        res.message
    text = f'track_everything: started {MAX_OBJECTS - 1} object(s) on the latest frame: ids 2 to {MAX_OBJECTS}'
    assert node.wait_log(text, 60), node.stderr()[mark:]  # more masks than free slots: the largest fill them
    out = c.frame_and_wait(frames[21], k + 1)
    assert int(fresh_status(c)['objects']) == MAX_OBJECTS
    assert conversions.image_to_labels(out).max() <= MAX_OBJECTS
    res = c.call(c.everything, Trigger.Request(), timeout=60)
    assert not res.success and f'max_objects ({MAX_OBJECTS})' in res.message
    assert 'Traceback' not in node.stderr()


def test_prompt_boxes_reseed_where_vision_msgs_is_installed(client, node, frames):  # noqa: F811
    vision = pytest.importorskip('vision_msgs.msg')
    c = client
    assert c.reset().success
    assert all(r.successful for r in c.set_params(reseed='on_loss', reseed_new_objects=True))
    pub = c.node.create_publisher(vision.Detection2DArray, f'{c.tracker_ns}/prompt_boxes', 10)
    k = next_k(3)
    c.frame_and_wait(frames[30], k)
    arr = vision.Detection2DArray()
    arr.header.stamp = make_stamp(k)
    det = vision.Detection2D()
    center = det.bbox.center
    (center.position if hasattr(center, 'position') else center).x = 60.0
    (center.position if hasattr(center, 'position') else center).y = 40.0
    det.bbox.size_x, det.bbox.size_y = 40.0, 30.0
    arr.detections.append(det)
    pub.publish(arr)
    time.sleep(0.3)
    c.frame_and_wait(frames[31], k + 1)
    assert c.wait_for(lambda: int(fresh_status(c)['objects']) == 1, 10)
    assert all(r.successful for r in c.set_params(reseed='none', reseed_new_objects=False))

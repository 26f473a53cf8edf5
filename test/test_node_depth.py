"""Objects in 3-D from the node, end to end over DDS: the node as a process (``python -m sam2_ros``,
a tiny random model at 128 px, ``depth: true``), this process its client. The client sends the
colour image, the registered depth image and the camera_info of a synthetic RGB-D scene
(test/helpers/rgbd_scene.py: a turned box before a wall, with depth noise, flying pixels and
holes) and a mask prompt for the box (a prompted frame's mask is the prompt, whatever the weights:
frames whose 3-D is checked are prompted), and checks what comes back on ``~/markers`` and ``~/points``: frame, stamp, ids,
where the box is. Then the pairing by stamp (the same, the nearest within depth_max_delay,
none), each kind of bad input (the masks keep coming, the reason is counted in the
diagnostics), and a reset deleting the markers. The 3-D step's own accuracy: test_objects3d.py;
its counters without DDS: test_objects3d_step.py.
"""
import signal

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from helpers.rgbd_msgs import camera_info, camera_info_of, depth_msg  # noqa: E402
from helpers.rgbd_scene import Box, rotation_y, scene, to_16uc1  # noqa: E402
from helpers.ros import (RELIABLE, Client, H, NodeProcess, W, checkpoint, fresh_status, make_stamp,  # noqa: E402,F401
                         next_k, raw_image, ros_env, status, to_ns)
from sam2_ros.ros import objects3d_msgs as om  # noqa: E402
from sam2_ros.tracking.objects3d import Intrinsics  # noqa: E402

K = Intrinsics(fx=140.0, fy=140.0, cx=79.5, cy=47.5, width=W, height=H)
COLOUR_FRAME, DEPTH_FRAME = 'camera_color_optical_frame', 'camera_depth_optical_frame'
MAX_POINTS = 200


@pytest.fixture(scope='module')
def rgbd():
    """The scene (a box turned 30 degrees, 1.2 m away, before a wall at 2 m), its colour image,
    16UC1 depth and the box's label image (the mask prompt)."""
    sc = scene([Box([0.02, 0.01, 1.2], [0.3, 0.2, 0.15], rotation_y(30))], wall_z=2.0, k=K, seed=3)
    rgb = np.full((H, W, 3), 90, np.uint8)
    rgb[sc.colour_ids == 1] = (200, 60, 60)
    labels = (sc.colour_ids == 1).astype(np.uint16)
    return sc, rgb, to_16uc1(sc.depth), labels


@pytest.fixture(scope='module')
def node(tmp_path_factory, checkpoint):  # noqa: F811
    # objects stay visible whatever the random weights' scores: 3-D is measured on visible objects
    proc = NodeProcess(tmp_path_factory.mktemp('depth'), checkpoint, 'depth:=true', 'publish_points:=true',
                       f'max_points_per_object:={MAX_POINTS}', 'image_qos:=reliable', 'state_present_threshold:=0.0',
                       'state_absent_threshold:=0.0', name='depth_node')
    yield proc
    code = proc.stop(signal.SIGINT)
    assert code == 0, proc.stderr()
    assert 'Traceback' not in proc.stderr(), proc.stderr()


class RGBDClient(Client):
    """The client, with depth and camera_info out and the 3-D outputs in."""

    def __init__(self):
        super().__init__(name='sam2_depth_client')
        n = self.node
        self.depth_pub = n.create_publisher(Image, '/depth', RELIABLE)
        self.info_pub = n.create_publisher(CameraInfo, '/camera_info', RELIABLE)
        self.arrays = []  # every MarkerArray, in order
        self.clouds = {}  # stamp ns -> PointCloud2
        self.markers_sub = n.create_subscription(MarkerArray, '/sam2_tracker/markers', self._on_markers, RELIABLE)
        self.points_sub = n.create_subscription(PointCloud2, '/sam2_tracker/points', self._on_points, RELIABLE)

    def _on_markers(self, msg):
        with self.lock:
            self.arrays.append(msg)

    def _on_points(self, msg):
        with self.lock:
            self.clouds[to_ns(msg.header.stamp)] = msg

    def send(self, rgb, depth, k, depth_delay_ms=0, info=None, encoding='16UC1', labels=None):
        """camera_info (``info``, else the scene's), the depth image stamped ``depth_delay_ms``
        from frame ``k``'s stamp, a mask prompt (``labels``) and the colour frame; returns the
        frame's masks message."""
        self.info_pub.publish(info if info is not None else camera_info_of(K))
        stamp_ns = to_ns(make_stamp(k)) + int(depth_delay_ms * 1e6)
        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        if isinstance(depth, Image):
            msg = depth
            msg.header.stamp, msg.header.frame_id = stamp, DEPTH_FRAME
        else:
            msg = depth_msg(depth, encoding, stamp=stamp, frame_id=DEPTH_FRAME)
        self.depth_pub.publish(msg)
        if labels is not None:
            self.mask_prompt(labels, k=k)
        return self.frame_and_wait(rgb, k, frame_id=COLOUR_FRAME, timeout=30)

    def markers_of(self, k, timeout=5.0):
        """The MarkerArray stamped as frame ``k`` (None if none comes within ``timeout`` s)."""
        key = to_ns(make_stamp(k))

        def find():
            with self.lock:
                return next((a for a in self.arrays if a.markers and to_ns(a.markers[0].header.stamp) == key), None)
        self.wait_for(lambda: find() is not None, timeout)
        return find()


@pytest.fixture(scope='module')
def client(node):
    c = RGBDClient()
    c.wait_ready(proc=node)
    # the node computes 3-D only while watched: wait until it sees our subscriptions
    assert c.wait_for(lambda: c.depth_pub.get_subscription_count() > 0 and c.info_pub.get_subscription_count() > 0
                      and c.markers_sub.get_publisher_count() > 0 and c.points_sub.get_publisher_count() > 0, 30)
    yield c
    c.close()


def _counter(c, name, timeout=5.0, above=None):
    """Diagnostic value ``name`` once it is above ``above`` (None: the next diagnostics')."""
    if above is None:
        return fresh_status(c)[name]
    c.wait_for(lambda: (status(c) or {}).get(name) is not None and float(status(c)[name]) > above, timeout)
    return status(c)[name]


def test_image_depth_and_camera_info_in_markers_and_points_out(client, rgbd):
    c = client
    sc, rgb, depth, labels = rgbd
    k = next_k()
    c.send(rgb, depth, k, labels=labels)
    array = c.markers_of(k)
    assert array is not None, 'no markers for the prompted frame'
    by_kind = {(m.ns, m.type): m for m in array.markers}
    cube, text = by_kind[(om.NS, Marker.CUBE)], by_kind[(om.NS_LABELS, Marker.TEXT_VIEW_FACING)]
    for m in (cube, text):  # the depth image's frame, the colour image's stamp, id = the object's
        assert m.header.frame_id == DEPTH_FRAME and to_ns(m.header.stamp) == to_ns(make_stamp(k))
        assert m.id == 1 and m.action == Marker.ADD
    centroid, extent = sc.truths[0]
    centre = np.array([cube.pose.position.x, cube.pose.position.y, cube.pose.position.z])
    assert np.abs(centre - sc.centres[0]).max() < 0.02, (centre, sc.centres[0])
    assert np.abs(np.array([cube.scale.x, cube.scale.y, cube.scale.z]) - extent).max() < 0.03
    assert 'object 1' in text.text
    assert c.wait_for(lambda: to_ns(make_stamp(k)) in c.clouds, 5)
    cloud = c.clouds[to_ns(make_stamp(k))]
    assert cloud.header.frame_id == DEPTH_FRAME
    points, ids = om.point_cloud_to_arrays(cloud)
    assert 30 <= len(points) <= MAX_POINTS and set(ids.tolist()) == {1}
    assert np.abs(np.median(points, axis=0) - centroid).max() < 0.01, (np.median(points, axis=0), centroid)


def test_depth_pairs_by_the_same_stamp_the_nearest_within_the_bound_or_none(client, rgbd):
    c = client
    sc, rgb, depth, labels = rgbd
    k = next_k(3)
    c.send(rgb, depth, k, labels=labels)
    assert c.markers_of(k) is not None
    exact, nearest, unpaired = (int(_counter(c, n)) for n in ('depth_paired_exact', 'depth_paired_nearest',
                                                             'depth_unpaired'))
    assert exact >= 1
    c.send(rgb, depth, k + 1, depth_delay_ms=-8, labels=labels)  # 8 ms early: within depth_max_delay (20 ms)
    assert c.markers_of(k + 1) is not None  # stamped as the colour image
    assert int(_counter(c, 'depth_paired_nearest', above=nearest)) == nearest + 1
    assert abs(float(status(c)['depth_last_delay_ms']) + 8.0) < 1e-3
    masks = c.send(rgb, depth, k + 2, depth_delay_ms=-50)  # beyond it: the masks all the same, no 3-D
    assert to_ns(masks.header.stamp) == to_ns(make_stamp(k + 2))
    assert int(_counter(c, 'depth_unpaired', above=unpaired)) == unpaired + 1
    assert c.markers_of(k + 2, timeout=1.0) is None
    assert int(status(c)['frames_without_3d']) >= 1


def _bad_inputs(depth):
    """(what, depth (array or Image), camera_info or None for the scene's, the reason's words)."""
    zero_k = camera_info_of(K)
    zero_k.k = [0.0] * 9
    mono8 = raw_image((depth // 20).astype(np.uint8), 'mono8')
    return [
        ('an encoding other than 16UC1 / 32FC1', mono8, None, "depth encoding 'mono8' is not accepted"),
        ('a depth size that is no integer scale of the colour size', depth[:60, :100], None,
         'the depth image is 100x60, the colour image 160x96'),
        ('a zero K', depth, zero_k, 'all zeros'),
        ('a camera_info of another size', depth, camera_info(K.matrix.reshape(-1), 2 * W, 2 * H),
         'the intrinsics are for 320x192 images, the colour image is 160x96'),
    ]


def test_bad_input_is_counted_with_its_reason_and_the_masks_keep_coming(client, rgbd, node):
    c = client
    sc, rgb, depth, labels = rgbd
    k = next_k(8)
    c.send(rgb, depth, k, labels=labels)
    assert c.markers_of(k) is not None
    for j, (what, bad_depth, info, words) in enumerate(_bad_inputs(depth), start=1):
        errors = int(_counter(c, 'errors_3d'))
        masks = c.send(rgb, bad_depth, k + j, info=info)
        assert to_ns(masks.header.stamp) == to_ns(make_stamp(k + j)), what
        assert int(_counter(c, 'errors_3d', above=errors)) == errors + 1, what
        assert words in status(c)['last_error_3d'], (what, status(c)['last_error_3d'])
    # depth without a valid pixel (32FC1 NaN, inf and 0): no 3-D for the object, counted, no error
    errors, without = int(_counter(c, 'errors_3d')), int(_counter(c, 'objects_without_3d'))
    holes = np.full((H, W), np.nan, np.float32)
    holes[::2, ::2], holes[1::2, ::2] = np.inf, 0.0
    c.send(rgb, holes, k + 5, encoding='32FC1', labels=labels)
    assert int(_counter(c, 'objects_without_3d', above=without)) == without + 1
    assert int(status(c)['errors_3d']) == errors
    c.send(rgb, depth.astype(np.float32) / 1000.0, k + 6, encoding='32FC1', labels=labels)  # good again: 3-D again
    assert c.markers_of(k + 6) is not None
    log = node.stderr()  # each reason logged (rate-limited) too
    assert all(words in log for _, _, _, words in _bad_inputs(depth)), log
    assert 'object 1: no 3-D on this frame: 0 valid depth pixels in the mask, fewer than depth_min_points = 30' in log, log


def test_a_reset_deletes_the_markers(client, rgbd):
    c = client
    sc, rgb, depth, labels = rgbd
    k = next_k()
    c.send(rgb, depth, k, labels=labels)
    assert c.markers_of(k) is not None
    with c.lock:
        seen = len(c.arrays)
    assert c.reset().success

    def deleted():
        with c.lock:
            return [m for a in c.arrays[seen:] for m in a.markers if m.action == Marker.DELETE]
    assert c.wait_for(lambda: len(deleted()) == 2, 5)
    assert {(m.ns, m.id) for m in deleted()} == {(om.NS, 1), (om.NS_LABELS, 1)}

"""What a /diagnostics message is stamped with before time is known (use_sim_time, no /clock
yet): nothing is published rather than a stamp of 0. Real rclpy clocks, a real /clock over DDS."""
import os
import random
import threading

import pytest

rclpy = pytest.importorskip('rclpy')

from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from sam2_ros.ros.diagnostics import diagnostics_stamp  # noqa: E402


@pytest.fixture
def context():
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    ctx = rclpy.Context()
    # a domain of its own: no other test's /clock reaches this node
    rclpy.init(context=ctx, domain_id=random.randint(110, 200))
    yield ctx
    rclpy.try_shutdown(context=ctx)


def test_no_stamp_under_sim_time_before_the_first_clock_then_the_clock(context):
    node = rclpy.create_node('diag_stamp_sim', context=context,
                             parameter_overrides=[Parameter('use_sim_time', value=True)])
    source = rclpy.create_node('diag_stamp_clock', context=context)
    try:
        assert node.get_clock().now().nanoseconds == 0  # sim time, nothing on /clock yet
        assert diagnostics_stamp(node.get_clock()) is None
        pub = source.create_publisher(Clock, '/clock', 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(source)
        got = threading.Event()
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = 1234, 500
        # the node's clock follows /clock once it arrives; publish until it does
        while not got.is_set():
            pub.publish(msg)
            executor.spin_once(timeout_sec=0.1)
            if node.get_clock().now().nanoseconds:
                got.set()
        stamp = diagnostics_stamp(node.get_clock())
        assert (stamp.sec, stamp.nanosec) == (1234, 500)
    finally:
        node.destroy_node()
        source.destroy_node()


def test_system_clock_always_stamps(context):
    node = rclpy.create_node('diag_stamp_system', context=context)
    try:
        stamp = diagnostics_stamp(node.get_clock())
        assert stamp is not None and stamp.sec > 1_600_000_000
    finally:
        node.destroy_node()

"""``tracker_node`` and ``python -m sam2_ros``: run the tracker node until SIGINT or SIGTERM,
then stop cleanly; with ``--cameras A B ...``, one node per camera in this process, sharing one
model and one worker (:mod:`sam2_ros.ros.multi`). Exit statuses and signal rules:
:mod:`sam2_ros.ros.process`."""
from __future__ import annotations

import sys
from typing import List, Optional

from sam2_ros.ros import multi, process
from sam2_ros.ros.usage import print_usage, wants_help


def main(args: Optional[List[str]] = None) -> int:
    """Entry point of ``tracker_node`` and ``python -m sam2_ros`` (see the module docstring).
    ``args``: the command line after the program name (``sys.argv[1:]`` when None)."""
    argv = sys.argv[1:] if args is None else list(args)
    if wants_help(argv):  # before rclpy: help must not start a node or a download
        print_usage()
        return process.EXIT_OK
    try:
        cameras, rest = multi.split_cameras(argv)
    except multi.CameraArgumentError as error:
        process.say(str(error))
        return process.EXIT_BAD_PARAMETERS
    if cameras is not None:  # several cameras, one model: one node per camera in this process
        return multi.main(cameras, rest)
    return _single(argv)


def _single(argv: List[str]) -> int:
    """One camera: one node in this process. ``argv``: the command line after the program name."""
    from rclpy.executors import SingleThreadedExecutor

    from sam2_ros.ros.node import TrackerNode
    from sam2_ros.ros.params import ParameterError

    stop, first_at, ignored = process.install_signal_handlers()
    try:
        process.init_rclpy([sys.argv[0], *argv])
    except process.BadRosArguments as error:
        process.say(str(error))
        return process.EXIT_BAD_PARAMETERS
    node = None
    code = process.EXIT_OK
    try:
        try:
            node = TrackerNode()
        except ParameterError as error:
            process.say(str(error))
            return process.EXIT_BAD_PARAMETERS
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if not process.autostart(node, stop):
            return process.EXIT_CONFIGURE_FAILED
        process.spin(executor, stop)
        if stop.is_set():
            node.get_logger().info('signal received: shutting down')
    finally:
        nodes = [node] if node is not None else []
        process.close_nodes(nodes, all(n.stop_worker(timeout=10.0) for n in nodes), code, first_at, ignored)
    return code


if __name__ == '__main__':
    sys.exit(main())

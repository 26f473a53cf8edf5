"""Several cameras, one model: ``python -m sam2_ros --cameras front left [--ros-args ...]``.

One process runs one ordinary :class:`~sam2_ros.ros.node.TrackerNode` per camera: camera
``front``'s node is ``sam2_tracker`` in namespace ``front`` (under the process's namespace,
``-r __ns:=/robot``, if any): it subscribes ``front/image`` and publishes
``/front/sam2_tracker/masks``, ``/front/sam2_tracker/overlay``, ..., takes prompts on
``/front/sam2_tracker/prompt`` and serves ``/front/sam2_tracker/reset``, with its own
parameters (a parameters file may set ``/front/sam2_tracker`` apart), lifecycle, diagnostics
and prompt handling. All of them share one loaded model and one worker that tracks the frames
of every camera in rounds, one frame per camera per round (:mod:`sam2_ros.ros.shared_worker`:
on a GPU one thread, batching the round's frames; on a CPU two stages, encoding one frame while
tracking the one before). The parameters that build the model
(:data:`sam2_ros.ros.shared_model.SHARED_PARAMETERS`) must be the same on every camera: set
differently on one, the process refuses to start (status 2) and says which.

Exit statuses as :mod:`sam2_ros.ros.process` says: 0 clean stop, 1 a camera could not configure
or activate with ``autostart``, 2 bad parameters or cameras, 128 + N on an insisting signal.
"""
from __future__ import annotations

import re
import sys
from typing import List, Optional, Sequence, Tuple

CAMERA_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')  # one ROS name token, as a namespace
_NS_RULE = re.compile(r'^(?:[A-Za-z0-9_/]+:)?__ns:=(.*)$')


class CameraArgumentError(ValueError):
    """A ``--cameras`` command line the process cannot start with; the text says why."""


def split_cameras(argv: Sequence[str]) -> Tuple[Optional[List[str]], List[str]]:
    """``--cameras A B ...`` (before ``--ros-args``) out of ``argv``: (camera names or None when
    absent, the other arguments). Names are checked: one ROS name token each, no repeats."""
    argv = list(argv)
    end = argv.index('--ros-args') if '--ros-args' in argv else len(argv)
    if '--cameras' not in argv[:end]:
        return None, argv
    at = argv.index('--cameras')
    k = at + 1
    names: List[str] = []
    while k < end and not argv[k].startswith('-'):
        names += [n for n in argv[k].split(',') if n]  # `front,left` as the launch argument writes it
        k += 1
    if not names:
        raise CameraArgumentError('--cameras needs at least one camera name, e.g. --cameras front left')
    check_camera_names(names)
    return names, argv[:at] + argv[k:]


def check_camera_names(names: Sequence[str]) -> None:
    """Each name one ROS name token (it is the camera's namespace), none twice; else
    :class:`CameraArgumentError` saying which."""
    for name in names:
        if not CAMERA_NAME.match(name):
            raise CameraArgumentError(f'camera name {name!r} is not usable as a ROS namespace: a letter, then '
                                      'letters, digits or underscores')
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CameraArgumentError(f'camera {", ".join(repeated)} given twice: each camera needs a namespace of its own')


def camera_ros_args(argv: Sequence[str], cameras: Sequence[str]) -> Tuple[str, List[str]]:
    """The ROS arguments for the cameras' nodes: returns (the process's namespace or '', the
    arguments to give rclpy).

    * The process's namespace remap (``-r __ns:=/robot``, as ros2 launch passes it) is taken
      out: applied to every node it would put all the cameras in one namespace; the cameras'
      namespaces go under it instead.
    * A remap of a camera's topic written relative, ``-r front/image:=/cams/front``, is made
      absolute (``/robot/front/image``): rcl expands a relative rule in each node's namespace
      (``/front/front/image``), where it would never match.
    * A node-name remap (``__node:=``) would give every camera one name: refused."""
    argv = list(argv)
    if '--ros-args' not in argv:
        return '', argv
    start = argv.index('--ros-args')
    out, namespace, k = argv[:start + 1], '', start + 1
    while k < len(argv):
        arg = argv[k]
        if arg in ('-r', '--remap') and k + 1 < len(argv):
            rule = argv[k + 1]
            match = _NS_RULE.match(rule)
            if match:
                namespace = match.group(1).rstrip('/')
                k += 2
                continue
            if re.match(r'^(?:[A-Za-z0-9_/]+:)?__node:=', rule):
                raise CameraArgumentError(f'remap {rule!r}: with --cameras every camera\'s node is named '
                                          'sam2_tracker in its own namespace; a node-name remap would give '
                                          'them all one name')
            head = rule.split(':=', 1)[0]
            if '/' in head and not head.startswith(('/', '~')) and head.split('/', 1)[0] in cameras:
                rule = f'__PROCESS_NS__/{rule}'  # made absolute below, once the namespace is known
            out += [arg, rule]
            k += 2
            continue
        out.append(arg)
        k += 1
    base = f'/{namespace.strip("/")}' if namespace.strip('/') else ''
    return namespace, [a.replace('__PROCESS_NS__', base, 1) if a.startswith('__PROCESS_NS__/') else a for a in out]


def camera_namespace(process_ns: str, camera: str) -> str:
    """The namespace of ``camera``'s node: ``/<process ns>/<camera>``."""
    base = process_ns.strip('/')
    return f'/{base}/{camera}' if base else f'/{camera}'


def main(cameras: Sequence[str], args: Optional[List[str]] = None) -> int:
    """Run one tracker node per camera in this process, sharing one model and one worker,
    until SIGINT or SIGTERM (see the module docstring). ``args``: the command line after the
    program name, ``--cameras`` taken out."""
    from rclpy.executors import SingleThreadedExecutor

    from sam2_ros.ros import params, process
    from sam2_ros.ros.node import TrackerNode
    from sam2_ros.ros.shared_model import shared_refusal
    from sam2_ros.ros.shared_worker import SharedCameras

    argv = list(sys.argv[1:] if args is None else args)
    try:
        process_ns, argv = camera_ros_args(argv, cameras)
    except CameraArgumentError as error:
        process.say(str(error))
        return process.EXIT_BAD_PARAMETERS
    stop, first_at, ignored = process.install_signal_handlers()
    try:
        process.init_rclpy([sys.argv[0]] + argv)
    except process.BadRosArguments as error:
        process.say(str(error))
        return process.EXIT_BAD_PARAMETERS
    shared = SharedCameras(log_error=process.say)
    nodes: List[TrackerNode] = []
    code = process.EXIT_OK
    try:
        try:
            for camera in cameras:
                nodes.append(TrackerNode(shared=shared, namespace=camera_namespace(process_ns, camera)))
        except params.ParameterError as error:
            process.say(f'camera {cameras[len(nodes)]}: {error}')
            return process.EXIT_BAD_PARAMETERS
        refusal = shared_refusal({node.get_fully_qualified_name(): node.p for node in nodes})
        if refusal is not None:
            process.say(refusal)
            return process.EXIT_BAD_PARAMETERS
        executor = SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        nodes[0].get_logger().info(f'{len(nodes)} camera(s) in one process, one model and one worker: '
                                   + ', '.join(n.get_fully_qualified_name() for n in nodes))
        for node in nodes:
            if not process.autostart(node, stop):
                return process.EXIT_CONFIGURE_FAILED
        if shared.worker.stages is not None:  # decided when the first camera activated
            nodes[0].get_logger().info(
                f'shared worker: {shared.worker.stages} stage(s)' + (' (encoding the next round while the current one '
                                                                      'is tracked)' if shared.worker.stages == 2 else ''))
        process.spin(executor, stop)
        if stop.is_set():
            nodes[0].get_logger().info(f'signal received: shutting down {len(nodes)} camera(s)')
    finally:
        finished = all([node.stop_worker(timeout=10.0) for node in nodes]) and shared.worker.stop(10.0)
        process.close_nodes(nodes, finished, code, first_at, ignored)
    return code

"""The decisions of ``launch/tracker.launch.py``, as plain functions (no launch, no rclpy), so
that they are tested without ``launch`` installed.

* Which nodes and names: the single node ``sam2_tracker``, or one per camera of ``cameras``
  (:func:`camera_names`), each ``sam2_tracker`` in namespace ``<namespace>/<camera>``.
* The launch arguments win over the parameters file, for every node: rcl lets a section of the
  file named after a node (``/front/sam2_tracker:``) beat the wildcard ``/**`` that launch_ros
  writes a dict of parameters under, so the arguments go in a file of their own, one section per
  node's fully qualified name, given after ``params_file`` (:func:`parameter_overrides`).
* Input topics (:func:`input_remaps`): ``image`` for the single node, ``<camera>_image`` per
  camera; with depth (the ``depth`` argument, or ``depth: true`` in the parameters file, also per
  camera) ``depth_image`` and ``camera_info`` for the single node, ``<camera>_depth_image`` and
  ``<camera>_camera_info`` per camera (empty: not remapped, the node's ``depth`` and
  ``camera_info``, or ``<camera>/depth`` and ``<camera>/camera_info``). A relative topic resolves
  in the node's namespace (with ``namespace:=robot1`` the default ``camera/image_raw`` is
  ``/robot1/camera/image_raw``, as each camera's ``<camera>/image`` is ``/robot1/<camera>/image``);
  an absolute one stays as it is. An argument of that form naming no camera is refused (a
  misspelt camera would otherwise be ignored without a word), as are the single node's
  ``depth_image`` and ``camera_info`` given with ``cameras``.
* ``params_file`` must exist (launch_ros only warns, and the node would run on defaults).
* The node's exit status: :func:`exit_reason` says why the launch must fail (1: could not
  configure or activate; 2: invalid parameters), and the launch file raises it so that
  ``ros2 launch`` exits 1 with the reason.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from sam2_ros.ros.multi import CameraArgumentError, check_camera_names
from sam2_ros.ros.process import EXIT_BAD_PARAMETERS, EXIT_CONFIGURE_FAILED, NODE_NAME

# The launch arguments that set node parameters, and each one's type. A bool argument left empty
# is not set (the parameters file decides: `depth` may be on for one camera only).
PARAMETER_ARGUMENTS = {'model': str, 'checkpoint': str, 'encoder_backend': str, 'use_sim_time': bool, 'depth': bool,
                       'memory_selection': str}
# Arguments whose empty value (their default) leaves the parameter to params_file.
FROM_PARAMS_FILE_WHEN_EMPTY = ('memory_selection',)
# A camera's input topics and the launch arguments that remap them: the single node's, and each
# camera's with the camera's name and '_' before it.
INPUT_ARGUMENTS = (('image', 'image'), ('depth', 'depth_image'), ('camera_info', 'camera_info'))
EXIT_REASONS = {
    EXIT_CONFIGURE_FAILED: 'the tracker node could not configure or activate (model or checkpoint: see its log above)',
    EXIT_BAD_PARAMETERS: 'the tracker node was given invalid parameters (see its log above)',
}


class LaunchArgumentError(ValueError):
    """A launch argument the launch cannot run with; the text says which and why."""


def camera_names(text: str) -> List[str]:
    """``cameras:=front,left`` -> ['front', 'left'] ([] for the single node); each name one ROS
    name token, none twice."""
    names = [c.strip() for c in text.split(',') if c.strip()]
    try:
        check_camera_names(names)
    except CameraArgumentError as error:
        raise LaunchArgumentError(f'cameras: {error}') from None
    return names


def node_names(cameras: Sequence[str], namespace: str) -> List[str]:
    """Fully qualified names of the launched nodes."""
    base = '/' + namespace.strip('/') if namespace.strip('/') else ''
    if not cameras:
        return [f'{base}/{NODE_NAME}']
    return [f'{base}/{camera}/{NODE_NAME}' for camera in cameras]


def parameter_overrides(configurations: Mapping[str, str], cameras: Sequence[str], namespace: str) -> Dict:
    """The launch arguments' parameters as a parameters file: ``{node fqn: {'ros__parameters':
    {...}}}`` for every launched node, given after ``params_file`` so that they win over it
    (see the module docstring). Values are typed: ``use_sim_time`` must be true or false; an
    empty ``memory_selection`` (its default) leaves it to ``params_file``."""
    values = {}
    for name, kind in PARAMETER_ARGUMENTS.items():
        text = configurations.get(name)
        if text is None or (not text and name in FROM_PARAMS_FILE_WHEN_EMPTY):
            continue
        if kind is bool:
            if not text.strip() and name != 'use_sim_time':
                continue
            if text.strip().lower() not in ('true', 'false'):
                raise LaunchArgumentError(f'{name}:={text!r}: use true or false')
            values[name] = text.strip().lower() == 'true'
        else:
            values[name] = text
    return {fqn: {'ros__parameters': dict(values)} for fqn in node_names(cameras, namespace)}


def input_remaps(configurations: Mapping[str, str], cameras: Sequence[str]) -> List[Tuple[str, str]]:
    """``(topic, argument's topic)`` remaps of the input topics from the launch arguments (see
    the module docstring): the single node's ``image`` always, its ``depth`` and ``camera_info``
    when given; each camera's ``<camera>/image``, ``<camera>/depth``, ``<camera>/camera_info``
    when given. Arguments of no camera are refused, naming the cameras there are."""
    own = {argument for _, argument in INPUT_ARGUMENTS}
    known = {f'{camera}_{argument}': (f'{camera}/{topic}', argument) for camera in cameras
             for topic, argument in INPUT_ARGUMENTS}
    suffixes = tuple('_' + argument for _, argument in INPUT_ARGUMENTS)
    stray = sorted(k for k in configurations if k.endswith(suffixes) and k not in known and k not in own)
    if stray:
        have = (', '.join(sorted(known)) if known else 'none: cameras is empty, the single node takes image:=TOPIC, '
                'depth_image:=TOPIC and camera_info:=TOPIC')
        raise LaunchArgumentError(f'launch argument {", ".join(stray)} names no camera of cameras:='
                                  f'{",".join(cameras)} (camera input arguments: {have})')
    remaps = []
    if not cameras:
        for topic, argument in INPUT_ARGUMENTS:
            value = configurations.get(argument, '')
            if value or topic == 'image':
                check_topic(argument, value)
                remaps.append((topic, value))
        return remaps
    single = sorted(a for a in own - {'image'} - set(known) if configurations.get(a))
    if single:
        raise LaunchArgumentError(f'launch argument {", ".join(single)} is the single node\'s; with cameras:='
                                  f'{",".join(cameras)} give each camera\'s: <camera>_depth_image, <camera>_camera_info')
    for name, (topic, argument) in known.items():
        value = configurations.get(name)
        if value:
            check_topic(name, value)
            remaps.append((topic, value))
    return remaps


def check_topic(argument: str, topic: str) -> None:
    """Refuse a topic name ROS cannot use, naming the argument."""
    if not valid_topic(topic):
        raise LaunchArgumentError(f'{argument}:={topic!r} is not a ROS topic name (letters, digits, _ and /, '
                                  'e.g. /camera/image_raw)')


def check_params_file(path: str) -> None:
    """Refuse a ``params_file`` that is not a readable file (launch_ros would only warn)."""
    if not path:
        raise LaunchArgumentError('params_file is empty: give a parameters YAML (config/tracker.yaml lists them all)')
    if not os.path.isfile(path):
        raise LaunchArgumentError(f'params_file {path} does not exist (config/tracker.yaml lists every parameter)')
    if not os.access(path, os.R_OK):
        raise LaunchArgumentError(f'params_file {path} cannot be read')


def exit_reason(returncode: Optional[int]) -> Optional[str]:
    """Why the launch must fail when the node exited with ``returncode``; None for a clean stop
    (0) or one ordered by launch itself (None; a signal's negative status; 128 + N, the node's
    answer to a signal repeated while it stopped)."""
    if not returncode or returncode < 0 or returncode >= 128:
        return None
    reason = EXIT_REASONS.get(returncode, f'the tracker node exited with status {returncode}')
    return f'{reason} [exit status {returncode}]'


def valid_topic(topic: str) -> bool:
    """Whether ``topic`` is a usable ROS topic name (relative, absolute or ~-private)."""
    return bool(re.match(r'^[~/]?[A-Za-z_][A-Za-z0-9_/]*$', topic)) and '//' not in topic and not topic.endswith('/')

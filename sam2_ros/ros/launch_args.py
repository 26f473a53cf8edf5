"""The decisions of ``launch/tracker.launch.py``, as plain functions (no launch, no rclpy), so
that they are tested without ``launch`` installed.

* Which nodes and names: the single node ``sam2_tracker``, or one per camera of ``cameras``
  (:func:`camera_names`), each ``sam2_tracker`` in namespace ``<namespace>/<camera>``.
* The launch arguments win over the parameters file, for every node: rcl lets a section of the
  file named after a node (``/front/sam2_tracker:``) beat the wildcard ``/**`` that launch_ros
  writes a dict of parameters under, so the arguments go in a file of their own, one section per
  node's fully qualified name, given after ``params_file`` (:func:`parameter_overrides`).
* Image topics: ``image`` for the single node, ``<camera>_image`` per camera
  (:func:`camera_image_remaps`); a relative topic resolves in the node's namespace (with
  ``namespace:=robot1`` the default ``camera/image_raw`` is ``/robot1/camera/image_raw``, as each
  camera's ``<camera>/image`` is ``/robot1/<camera>/image``); an absolute one stays as it is.
  An ``<x>_image`` argument naming no camera is refused (a misspelt camera would otherwise be
  ignored without a word).
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

# The launch arguments that set node parameters, and each one's type.
PARAMETER_ARGUMENTS = {'model': str, 'checkpoint': str, 'encoder_backend': str, 'use_sim_time': bool,
                       'memory_selection': str}
# Arguments whose empty value (their default) leaves the parameter to params_file.
FROM_PARAMS_FILE_WHEN_EMPTY = ('memory_selection',)
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
            if text.strip().lower() not in ('true', 'false'):
                raise LaunchArgumentError(f'{name}:={text!r}: use true or false')
            values[name] = text.strip().lower() == 'true'
        else:
            values[name] = text
    return {fqn: {'ros__parameters': dict(values)} for fqn in node_names(cameras, namespace)}


def camera_image_remaps(configurations: Mapping[str, str], cameras: Sequence[str]) -> List[Tuple[str, str]]:
    """``(<camera>/image, topic)`` remaps from the ``<camera>_image`` arguments; an ``_image``
    argument of no camera is refused, naming the cameras there are."""
    known = {f'{camera}_image' for camera in cameras}
    stray = sorted(k for k in configurations if k.endswith('_image') and k not in known)
    if stray:
        have = ', '.join(sorted(known)) if known else 'none: cameras is empty, the single node takes image:=TOPIC'
        raise LaunchArgumentError(f'launch argument {", ".join(stray)} names no camera of cameras:='
                                  f'{",".join(cameras)} (camera image arguments: {have})')
    remaps = []
    for camera in cameras:
        topic = configurations.get(f'{camera}_image')
        if topic:
            check_topic(f'{camera}_image', topic)
            remaps.append((f'{camera}/image', topic))
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

"""Launch the SAM 2 tracker node, or one process tracking several cameras with one model.

Examples:
  ros2 launch sam2_ros tracker.launch.py image:=/camera/image_raw model:=tiny
  ros2 launch sam2_ros tracker.launch.py cameras:=front,left \
      front_image:=/head/camera/image_raw left_image:=/wrist/camera/image_raw
  ros2 launch sam2_ros tracker.launch.py image:=/camera/color/image_raw depth:=true \
      depth_image:=/camera/aligned_depth_to_color/image_raw camera_info:=/camera/color/camera_info

With ``cameras``, camera ``front``'s node is ``sam2_tracker`` in namespace ``front`` (under
``namespace``, if set): it subscribes ``front/image`` (``front_image:=TOPIC`` remaps it) and
publishes ``/front/sam2_tracker/masks`` etc.; all cameras share one model and one worker
(``python -m sam2_ros --cameras``). Per-camera parameters: config/tracker.yaml.

The launch arguments win over ``params_file`` for every node, also over a section of the file
named after one camera's node. A relative ``image`` (the default ``camera/image_raw``) resolves in
``namespace``, as each camera's image does. Objects in 3-D (``depth:=true``, or ``depth: true``
in ``params_file``, also for one camera only): ``depth_image`` and ``camera_info`` remap the
single node's depth and camera_info topics, ``<camera>_depth_image`` and ``<camera>_camera_info``
a camera's. When the node stops by itself with an error status
(1: it could not configure or activate, e.g. an unknown model or a missing checkpoint; 2: invalid
parameters; the reason is in its log), the launch fails with that reason (``ros2 launch`` exits
1) instead of going on without a tracker. The decisions are plain functions of
``sam2_ros.ros.launch_args``, tested without launch.
"""
import os
import tempfile

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch_ros.actions import Node

from sam2_ros.ros.launch_args import (camera_names, check_params_file, exit_reason, input_remaps,
                                      parameter_overrides)


def _on_node_exit(event, context):
    """Fail the launch, with the reason, when the node exits with an error status (raising
    here makes ``ros2 launch`` exit 1; a shutdown event would end it with 0); a clean stop or
    one ordered by launch itself leaves launch to carry on as usual."""
    reason = exit_reason(event.returncode)
    if reason is None:
        return None
    raise RuntimeError(f'sam2_tracker: {reason}')


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory('sam2_ros'), 'config', 'tracker.yaml')
    arguments = [
        DeclareLaunchArgument(
            'model', default_value='tiny',
            description='model: SAM 2 size tiny, small, base_plus or large, or edgetam (EdgeTAM, several times '
                        'faster on CPUs and small GPUs; image_size a multiple of 256)'),
        DeclareLaunchArgument(
            'checkpoint', default_value='',
            description="Meta's .pt file, a folder, or a Hugging Face Hub id (facebook/sam2.1-hiera-tiny, "
                        "facebook/EdgeTAM); empty: the official checkpoint of `model` (SAM 2.1, or edgetam.pt), "
                        'downloaded once into the Hub cache'),
        DeclareLaunchArgument(
            'image', default_value='camera/image_raw',
            description='Camera image topic (sensor_msgs/Image) of the single node; a relative topic '
                        'resolves in `namespace`'),
        DeclareLaunchArgument(
            'depth', default_value='',
            description='Objects in 3-D from an aligned depth image: true or false (every node); empty: as '
                        'params_file says (per camera there)'),
        DeclareLaunchArgument(
            'depth_image', default_value='',
            description='Depth image topic (sensor_msgs/Image 16UC1 mm or 32FC1 m, registered to `image`) of the '
                        'single node; empty: its own `depth`'),
        DeclareLaunchArgument(
            'camera_info', default_value='',
            description="The colour camera's camera_info topic (sensor_msgs/CameraInfo) of the single node; empty: "
                        'its own `camera_info`'),
        DeclareLaunchArgument(
            'params_file', default_value=default_params,
            description='YAML file with the node parameters (must exist); the other arguments win over it'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the node (of every camera\'s node, with cameras)'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false',
            description='Use the /clock topic (e.g. when replaying a rosbag): true or false'),
        DeclareLaunchArgument(
            'encoder_backend', default_value='torch',
            description='Image-encoder backend: torch, onnxruntime or tensorrt'),
        DeclareLaunchArgument(
            'memory_selection', default_value='',
            description="Which memories each object keeps: sam2 (SAM 2's) or samurai (SAMURAI's "
                        'motion-aware memory; needs prompt_buffer 0); empty: as params_file says'),
        DeclareLaunchArgument(
            'cameras', default_value='',
            description='Comma-separated camera names (e.g. front,left): one process, one model, '
                        'one sam2_tracker node per camera in namespace <camera>; <camera>_image:=TOPIC '
                        'remaps that camera\'s image (default <camera>/image), <camera>_depth_image:=TOPIC '
                        'and <camera>_camera_info:=TOPIC its depth inputs; such an argument of no camera is '
                        'refused; empty: the single node'),
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_tracker_actions)])


def _tracker_actions(context):
    """The node (and its exit handler), once the launch arguments are known: ``cameras`` decides
    between the single node and the one process of several cameras."""
    configs = context.launch_configurations
    cameras = camera_names(configs.get('cameras', ''))
    namespace = configs.get('namespace', '')
    params_file = configs.get('params_file', '')
    check_params_file(params_file)
    # The launch arguments' parameters, per node, in a file given after params_file: they win.
    overrides = parameter_overrides(configs, cameras, namespace)
    fd, overrides_file = tempfile.mkstemp(prefix='sam2_tracker_launch_', suffix='.yaml')
    with os.fdopen(fd, 'w') as stream:
        yaml.safe_dump(overrides, stream)
    common = dict(package='sam2_ros', executable='tracker_node', namespace=namespace, output='screen',
                  emulate_tty=True, parameters=[params_file, overrides_file])
    remappings = input_remaps(configs, cameras)  # refuses stray <x>_image, ... arguments
    if not cameras:
        node = Node(name='sam2_tracker', remappings=remappings, **common)
    else:
        # No `name`: each camera's node is named sam2_tracker in its own namespace by the process
        # (a node-name remap would give them all one name). `<camera>/image` remaps are made
        # absolute under the launch namespace by the process (sam2_ros.ros.multi).
        node = Node(arguments=['--cameras'] + cameras, remappings=remappings, **common)
    # A failed configure must not leave the launch running without a tracker: fail it with the reason.
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_on_node_exit))]

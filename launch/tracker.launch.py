"""Launch the SAM 2 tracker node, or one process tracking several cameras with one model.

Examples:
  ros2 launch sam2_ros tracker.launch.py image:=/camera/image_raw model:=tiny
  ros2 launch sam2_ros tracker.launch.py cameras:=front,left \
      front_image:=/head/camera/image_raw left_image:=/wrist/camera/image_raw

With ``cameras``, camera ``front``'s node is ``sam2_tracker`` in namespace ``front`` (under
``namespace``, if set): it subscribes ``front/image`` (``front_image:=TOPIC`` remaps it) and
publishes ``/front/sam2_tracker/masks`` etc.; all cameras share one model and one worker
(``python -m sam2_ros --cameras``). Per-camera parameters: config/tracker.yaml.

When the node stops by itself with an error status (1: it could not configure or activate,
e.g. an unknown model or a missing checkpoint; 2: invalid parameters; the reason is in its
log), the whole launch is shut down with that reason, instead of going on without a tracker.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


# The node's exit statuses (sam2_ros.ros.node.main); kept here as literals so that this file
# imports nothing of the package.
EXIT_REASONS = {
    1: 'the tracker node could not configure or activate (model or checkpoint: see its log above)',
    2: 'the tracker node was given invalid parameters (see its log above)',
}


def _on_node_exit(event, context):
    """Shut the launch down, with the reason, when the node exits with an error status; a clean
    stop (status 0) or one ordered by launch itself leaves launch to carry on as usual."""
    code = event.returncode
    if code == 0 or code is None:
        return None
    reason = EXIT_REASONS.get(code, f'the tracker node exited with status {code}')
    reason = f'{reason} [exit status {code}]'
    return [LogInfo(msg=f'sam2_tracker: {reason}; shutting the launch down'),
            EmitEvent(event=Shutdown(reason=reason))]


def generate_launch_description():
    default_params = os.path.join(
        get_package_share_directory('sam2_ros'), 'config', 'tracker.yaml')

    arguments = [
        DeclareLaunchArgument(
            'model', default_value='tiny',
            description='SAM 2 model size: tiny, small, base_plus or large'),
        DeclareLaunchArgument(
            'checkpoint', default_value='',
            description="Path to Meta's official SAM 2 / 2.1 checkpoint (.pt); "
                        'empty: download the official SAM 2.1 checkpoint of `model` once'),
        DeclareLaunchArgument(
            'image', default_value='/camera/image_raw',
            description='Camera image topic (sensor_msgs/Image) to track objects in'),
        DeclareLaunchArgument(
            'params_file', default_value=default_params,
            description='YAML file with the node parameters'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the node'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false',
            description='Use the /clock topic (e.g. when replaying a rosbag)'),
        DeclareLaunchArgument(
            'encoder_backend', default_value='torch',
            description='Image-encoder backend: torch, onnxruntime or tensorrt'),
        DeclareLaunchArgument(
            'cameras', default_value='',
            description='Comma-separated camera names (e.g. front,left): one process, one model, '
                        'one sam2_tracker node per camera in namespace <camera>; <camera>_image:=TOPIC '
                        'remaps that camera\'s image; empty: the single node'),
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_tracker_actions)])


def _tracker_actions(context):
    """The node (and its exit handler), once the launch arguments are known: ``cameras`` decides
    between the single node and the one process of several cameras."""
    cameras = [c.strip() for c in context.launch_configurations.get('cameras', '').split(',') if c.strip()]
    # The launch arguments below take precedence over the same keys in params_file.
    common = dict(
        package='sam2_ros',
        executable='tracker_node',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'model': LaunchConfiguration('model'),
                'checkpoint': ParameterValue(LaunchConfiguration('checkpoint'), value_type=str),
                'encoder_backend': LaunchConfiguration('encoder_backend'),
                'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                               value_type=bool),
            },
        ],
    )
    if not cameras:
        node = Node(name='sam2_tracker', remappings=[('image', LaunchConfiguration('image'))], **common)
    else:
        # No `name`: each camera's node is named sam2_tracker in its own namespace by the process
        # (a node-name remap would give them all one name). `<camera>/image` remaps are made
        # absolute under the launch namespace by the process (sam2_ros.ros.multi).
        remaps = [(f'{cam}/image', context.launch_configurations[f'{cam}_image'])
                  for cam in cameras if context.launch_configurations.get(f'{cam}_image')]
        node = Node(arguments=['--cameras'] + cameras, remappings=remaps, **common)

    # A failed configure must not leave the launch running without a tracker: shut it down with
    # the reason (the documented way for launch to act on a process's exit status).
    on_failure = RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_on_node_exit))
    return [node, on_failure]

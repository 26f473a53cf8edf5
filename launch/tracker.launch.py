"""Launch the SAM 2 tracker node.

Example:
  ros2 launch sam2_ros tracker.launch.py image:=/camera/image_raw model:=tiny
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


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
    ]

    # The launch arguments below take precedence over the same keys in params_file.
    node = Node(
        package='sam2_ros',
        executable='tracker_node',
        name='sam2_tracker',
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
        remappings=[('image', LaunchConfiguration('image'))],
    )

    return LaunchDescription(arguments + [node])

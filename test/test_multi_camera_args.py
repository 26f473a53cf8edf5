"""Several cameras in one process: the command line and the shared-parameter rule,
without ROS (the process itself: test_multi_camera_node.py)."""
import pytest

from sam2_ros.ros.multi import CameraArgumentError, camera_namespace, camera_ros_args, split_cameras
from sam2_ros.ros.shared_model import SHARED_PARAMETERS, shared_refusal


def test_cameras_are_split_from_the_command_line():
    assert split_cameras(['--ros-args', '-p', 'model:=tiny']) == (None, ['--ros-args', '-p', 'model:=tiny'])
    assert split_cameras(['--cameras', 'front', 'left', '--ros-args', '-p', 'a:=1']) == \
        (['front', 'left'], ['--ros-args', '-p', 'a:=1'])
    assert split_cameras(['--cameras', 'front,left', 'right'])[0] == ['front', 'left', 'right']  # as launch writes it
    # after --ros-args it is a ROS argument, not ours
    assert split_cameras(['--ros-args', '--cameras', 'x'])[0] is None


@pytest.mark.parametrize('argv, reason', [
    (['--cameras'], 'at least one camera'),
    (['--cameras', '--ros-args'], 'at least one camera'),
    (['--cameras', 'front', 'front'], 'given twice'),
    (['--cameras', 'front-left'], 'not usable as a ROS namespace'),
    (['--cameras', '1st'], 'not usable as a ROS namespace'),
])
def test_bad_camera_lists_are_refused_with_the_reason(argv, reason):
    with pytest.raises(CameraArgumentError, match=reason):
        split_cameras(argv)


def test_namespace_and_camera_remaps():
    ns, args = camera_ros_args(['--ros-args', '-r', '__ns:=/robot', '-p', 'a:=1', '-r', 'front/image:=/head/raw',
                                '-r', 'image:=/all', '--remap', 'left/image:=/wrist/raw'], ['front', 'left'])
    assert ns == '/robot'
    # the process namespace is the cameras' parent, not every node's own; relative camera remaps
    # become absolute (rcl would expand them in each node's namespace, where they never match)
    assert args == ['--ros-args', '-p', 'a:=1', '-r', '/robot/front/image:=/head/raw', '-r', 'image:=/all',
                    '--remap', '/robot/left/image:=/wrist/raw']
    assert camera_ros_args(['--ros-args', '-r', 'front/image:=/x'], ['front'])[1] == ['--ros-args', '-r', '/front/image:=/x']
    assert camera_namespace('/robot', 'front') == '/robot/front' and camera_namespace('', 'front') == '/front'
    # a camera's depth and camera_info are remapped as its image is
    assert camera_ros_args(['--ros-args', '-r', '__ns:=/robot', '-r', 'left/depth:=/wrist/depth/raw', '-r',
                            'left/camera_info:=/wrist/color/camera_info'], ['front', 'left'])[1] == [
        '--ros-args', '-r', '/robot/left/depth:=/wrist/depth/raw', '-r', '/robot/left/camera_info:=/wrist/color/camera_info']
    with pytest.raises(CameraArgumentError, match='one name'):
        camera_ros_args(['--ros-args', '-r', '__node:=x'], ['front'])


def test_shared_parameters_must_agree():
    same = {name: 'v' for name in SHARED_PARAMETERS}
    assert shared_refusal({'/front/sam2_tracker': dict(same, max_objects=4), '/left/sam2_tracker': dict(same, max_objects=16)}) is None
    reason = shared_refusal({'/front/sam2_tracker': same, '/left/sam2_tracker': dict(same, image_size=512)})
    assert "parameter 'image_size' differs between cameras" in reason
    assert '/left/sam2_tracker' in reason and '/front/sam2_tracker' in reason

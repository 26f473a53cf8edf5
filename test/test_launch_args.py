"""The launch file's decisions (``sam2_ros.ros.launch_args``), without ``launch``: the launch
arguments win over the parameters file for every node, also over a section of one camera's node;
image topics resolve the same way for the single node and for cameras; stray or bad arguments,
a missing parameters file and a failed node are refused with the reason. The rules are then
checked against rcl itself: a real multi-camera process reads the file the launch writes."""
import os
import random
import subprocess
import sys
import time

import pytest
import yaml

from sam2_ros.ros import launch_args as L
from sam2_ros.ros.process import EXIT_BAD_PARAMETERS, EXIT_CONFIGURE_FAILED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = {'model': 'tiny', 'checkpoint': '/models/good.pt', 'encoder_backend': 'torch', 'use_sim_time': 'true',
        'image': 'camera/image_raw', 'params_file': 'x.yaml', 'namespace': '', 'cameras': ''}


def test_camera_names():
    assert L.camera_names('') == [] and L.camera_names(' front , left,') == ['front', 'left']
    with pytest.raises(L.LaunchArgumentError, match='given twice'):
        L.camera_names('front,front')
    with pytest.raises(L.LaunchArgumentError, match='not usable as a ROS namespace'):
        L.camera_names('front,2nd')


def test_overrides_name_every_node_so_they_beat_its_own_section():
    assert L.node_names([], '') == ['/sam2_tracker']
    assert L.node_names([], '/robot1/') == ['/robot1/sam2_tracker']
    assert L.node_names(['front', 'left'], 'robot1') == ['/robot1/front/sam2_tracker', '/robot1/left/sam2_tracker']
    out = L.parameter_overrides(ARGS, ['front', 'left'], 'robot1')
    assert set(out) == {'/robot1/front/sam2_tracker', '/robot1/left/sam2_tracker'}
    params = out['/robot1/front/sam2_tracker']['ros__parameters']
    assert params == {'model': 'tiny', 'checkpoint': '/models/good.pt', 'encoder_backend': 'torch', 'use_sim_time': True}
    assert L.parameter_overrides(dict(ARGS, use_sim_time='False'), [], '')['/sam2_tracker']['ros__parameters'][
        'use_sim_time'] is False
    with pytest.raises(L.LaunchArgumentError, match="use_sim_time:='yes': use true or false"):
        L.parameter_overrides(dict(ARGS, use_sim_time='yes'), [], '')
    # memory_selection: empty (the default) leaves it to params_file, a value wins over it
    assert 'memory_selection' not in L.parameter_overrides(dict(ARGS, memory_selection=''), [], '')['/sam2_tracker'][
        'ros__parameters']
    assert L.parameter_overrides(dict(ARGS, memory_selection='samurai'), [], '')['/sam2_tracker']['ros__parameters'][
        'memory_selection'] == 'samurai'


def test_camera_images_remap_and_stray_ones_are_refused():
    configs = dict(ARGS, cameras='front,left', front_image='/head/image_raw')
    assert L.input_remaps(configs, ['front', 'left']) == [('front/image', '/head/image_raw')]
    with pytest.raises(L.LaunchArgumentError, match=r'fornt_image names no camera of cameras:=front,left'):
        L.input_remaps(dict(configs, fornt_image='/x'), ['front', 'left'])
    with pytest.raises(L.LaunchArgumentError, match='the single node takes image:=TOPIC'):
        L.input_remaps(dict(ARGS, front_image='/x'), [])
    with pytest.raises(L.LaunchArgumentError, match="front_image:='/head//image' is not a ROS topic name"):
        L.input_remaps(dict(configs, front_image='/head//image'), ['front', 'left'])


def test_depth_inputs_remap_as_the_image_does():
    single = dict(ARGS, depth_image='/camera/aligned_depth_to_color/image_raw', camera_info='')
    assert L.input_remaps(single, []) == [('image', 'camera/image_raw'),
                                          ('depth', '/camera/aligned_depth_to_color/image_raw')]
    cams = dict(ARGS, depth_image='', camera_info='', left_depth_image='/wrist/depth',
                left_camera_info='wrist/color/camera_info')
    assert L.input_remaps(cams, ['front', 'left']) == [('left/depth', '/wrist/depth'),
                                                       ('left/camera_info', 'wrist/color/camera_info')]
    with pytest.raises(L.LaunchArgumentError, match='rigth_camera_info names no camera'):
        L.input_remaps(dict(cams, rigth_camera_info='/x'), ['front', 'left'])
    with pytest.raises(L.LaunchArgumentError, match="depth_image is the single node's; with cameras"):
        L.input_remaps(dict(cams, depth_image='/d'), ['front', 'left'])
    with pytest.raises(L.LaunchArgumentError, match="camera_info:='/a b' is not a ROS topic name"):
        L.input_remaps(dict(single, camera_info='/a b'), [])
    # depth: a parameter for every node when given; empty: the parameters file decides (per camera)
    assert L.parameter_overrides(dict(ARGS, depth='true'), [], '')['/sam2_tracker']['ros__parameters']['depth'] is True
    assert 'depth' not in L.parameter_overrides(dict(ARGS, depth=''), ['front'], '')['/front/sam2_tracker'][
        'ros__parameters']
    with pytest.raises(L.LaunchArgumentError, match="depth:='on': use true or false"):
        L.parameter_overrides(dict(ARGS, depth='on'), [], '')


def test_topic_names_are_checked():
    L.check_topic('image', 'camera/image_raw')  # relative: resolves in the namespace
    with pytest.raises(L.LaunchArgumentError, match='image'):
        L.check_topic('image', 'camera image')


def test_params_file_must_exist(tmp_path):
    f = tmp_path / 'p.yaml'
    f.write_text('/**:\n  ros__parameters: {}\n')
    L.check_params_file(str(f))
    with pytest.raises(L.LaunchArgumentError, match='does not exist'):
        L.check_params_file(str(tmp_path / 'nope.yaml'))
    with pytest.raises(L.LaunchArgumentError, match='params_file is empty'):
        L.check_params_file('')


def test_exit_reason():
    assert L.exit_reason(0) is None and L.exit_reason(None) is None
    assert L.exit_reason(-2) is None and L.exit_reason(130) is None  # stops ordered by launch's signals
    assert 'could not configure' in L.exit_reason(EXIT_CONFIGURE_FAILED) and '[exit status 1]' in L.exit_reason(1)
    assert 'invalid parameters' in L.exit_reason(EXIT_BAD_PARAMETERS)
    assert L.exit_reason(3) == 'the tracker node exited with status 3 [exit status 3]'


def _process(tmp_path, *args):
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(101, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0')
    err = open(tmp_path / 'node.err', 'wb')
    return subprocess.Popen([sys.executable, '-m', 'sam2_ros', *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=err), tmp_path / 'node.err'


def test_launch_overrides_beat_a_cameras_own_section_in_rcl(tmp_path):
    """What ros2 launch runs for cameras:=front,left checkpoint:=good.pt over a parameters file
    whose /front/sam2_tracker section sets another checkpoint: rcl gives every camera the
    launch's value (before, the process refused: 'checkpoint differs between cameras')."""
    pytest.importorskip('rclpy')
    user = tmp_path / 'user.yaml'
    user.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'autostart': False}},
                                    '/front/sam2_tracker': {'ros__parameters': {'checkpoint': '/elsewhere/x.pt',
                                                                                 'use_sim_time': False}}}))
    overrides = tmp_path / 'launch.yaml'
    overrides.write_text(yaml.safe_dump(L.parameter_overrides(ARGS, ['front', 'left'], '')))
    proc, err = _process(tmp_path, '--cameras', 'front', 'left', '--ros-args', '--params-file', str(user),
                         '--params-file', str(overrides))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and 'camera(s) in one process' not in err.read_text():
            time.sleep(0.1)
        assert proc.poll() is None, err.read_text()  # not refused (status 2) for a checkpoint that differs
        proc.send_signal(2)
        assert proc.wait(30) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_parameters_file_that_does_not_parse_is_a_bad_parameter(tmp_path):
    """rcl refuses the file in rclpy.init: status 2 and one line saying what is wrong where, no
    traceback (before: an uncaught RCLError, status 1, read by the launch as a model failure)."""
    pytest.importorskip('rclpy')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('/**:\n  ros__parameters:\n    checkpoint: [1, "a"]\n')
    for cameras in ([], ['--cameras', 'front', 'left']):
        proc, err = _process(tmp_path, *cameras, '--ros-args', '--params-file', str(bad))
        assert proc.wait(60) == EXIT_BAD_PARAMETERS, err.read_text()
        text = err.read_text()
        assert 'Traceback' not in text and 'RCLError' not in text
        line = next(l for l in text.splitlines() if l.startswith('[sam2_tracker]'))
        assert f'the parameters file {bad} does not parse: Sequence should be of same type' in line
        assert 'line_num 3' in line and '/project/src' not in line

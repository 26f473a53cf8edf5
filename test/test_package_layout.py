"""The ament_python skeleton: package.xml, setup.py, launch and config files agree."""
import ast
import pathlib
import re
import xml.etree.ElementTree as ET

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Parameters the node documents in DESIGN.md / README.md (config/tracker.yaml sets them all).
DESIGN_PARAMETERS = {
    'model', 'checkpoint', 'device', 'dtype', 'image_size', 'encoder_backend', 'encoder_engine',
    'max_objects', 'num_maskmem', 'max_cond_frames', 'mask_threshold', 'frame_policy',
    'image_qos', 'qos_depth', 'publish_overlay', 'publish_object_masks',
}


def test_package_xml():
    root = ET.parse(ROOT / 'package.xml').getroot()  # also: well-formed XML
    assert root.tag == 'package' and root.get('format') == '3'
    assert root.findtext('name') == 'sam2_ros'
    assert root.findtext('license') == 'Apache-2.0'
    assert root.findtext('export/build_type') == 'ament_python'
    exec_depends = {e.text for e in root.findall('exec_depend')}
    assert {'rclpy', 'sensor_msgs', 'python3-numpy', 'python3-torch'} <= exec_depends
    setup_py = (ROOT / 'setup.py').read_text()
    assert re.search(r"version='%s'" % re.escape(root.findtext('version')), setup_py)


def test_setup_py_entry_points_and_data_files():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str)}
    assert 'tracker_node = sam2_ros.ros.node:main' in strings
    assert 'sam2_demo = sam2_ros.tools.demo:main' in strings
    assert (ROOT / 'resource' / 'sam2_ros').is_file()
    assert list((ROOT / 'launch').glob('*.launch.py'))
    assert list((ROOT / 'config').glob('*.yaml'))
    assert (ROOT / 'data' / 'sample' / 'bunny.mp4').is_file()


def test_launch_file_parses_and_declares_arguments():
    source = (ROOT / 'launch' / 'tracker.launch.py').read_text()
    tree = ast.parse(source)
    assert any(isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description'
               for n in tree.body)
    for argument in ('model', 'checkpoint', 'image', 'params_file', 'namespace',
                     'use_sim_time', 'encoder_backend'):
        assert f"'{argument}'" in source
    assert "executable='tracker_node'" in source and "name='sam2_tracker'" in source
    # issue 14: a node that cannot configure shuts the launch down with the reason
    assert 'OnProcessExit(target_action=node, on_exit=_on_node_exit)' in source
    assert 'EmitEvent(event=Shutdown(reason=reason))' in source
    from sam2_ros.ros import node

    reasons = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == 'EXIT_REASONS')
    codes = {k.value for k in reasons.value.keys}
    assert codes == {node.EXIT_CONFIGURE_FAILED, node.EXIT_BAD_PARAMETERS}


def test_config_sets_every_design_parameter():
    config = yaml.safe_load((ROOT / 'config' / 'tracker.yaml').read_text())
    params = config['/**']['ros__parameters']
    assert DESIGN_PARAMETERS <= set(params)
    assert params['encoder_backend'] in ('torch', 'onnxruntime', 'tensorrt')
    assert params['frame_policy'] in ('latest', 'all')


def test_node_entry_point_exists():
    from sam2_ros.ros import node

    assert callable(node.main)

"""The ament_python skeleton: package.xml, setup.py, launch and config files agree."""
import ast
import pathlib
import re
import xml.etree.ElementTree as ET

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Parameters the node documents in README.md (config/tracker.yaml sets them all).
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
    assert 'tracker_node = sam2_ros.ros.entry:main' in strings
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
    # a node that cannot configure fails the launch with the reason (ros2 launch exits 1): the
    # exit handler raises what sam2_ros.ros.launch_args.exit_reason says (test_launch_args.py)
    assert 'OnProcessExit(target_action=node, on_exit=_on_node_exit)' in source
    handler = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == '_on_node_exit')
    assert any(isinstance(n, ast.Raise) for n in ast.walk(handler)) and 'exit_reason(event.returncode)' in source
    assert 'Shutdown' not in source  # a Shutdown event would end ros2 launch with status 0


def test_config_sets_every_design_parameter():
    config = yaml.safe_load((ROOT / 'config' / 'tracker.yaml').read_text())
    params = config['/**']['ros__parameters']
    assert DESIGN_PARAMETERS <= set(params)
    assert params['encoder_backend'] in ('torch', 'onnxruntime', 'tensorrt')
    assert params['frame_policy'] in ('latest', 'all')


def test_node_entry_point_exists():
    from sam2_ros.ros import entry

    assert callable(entry.main)


def _python_m_sam2_ros(*args, cwd):
    import os
    import subprocess
    import sys

    # the venv's interpreter, without the suite's sys.path: what a user's shell runs
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    return subprocess.run([sys.executable, '-m', 'sam2_ros', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_python_m_sam2_ros_help_prints_usage_and_starts_nothing():
    for args in (['--help'], ['-h']):
        r = _python_m_sam2_ros(*args, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith('usage: python -m sam2_ros')
        assert '--ros-args' in r.stdout and '--params-file' in r.stdout
        assert 'tracker.yaml' in r.stdout and 'README.md' in r.stdout
        assert 'download' not in r.stderr and '[sam2_tracker]' not in r.stderr


def test_python_m_sam2_ros_from_the_folder_holding_the_clone_says_what_to_do(tmp_path):
    # a clone named sam2_ros, run from its parent folder: the folder shadows the package
    (tmp_path / 'sam2_ros').symlink_to(ROOT, target_is_directory=True)
    r = _python_m_sam2_ros('--ros-args', '-p', 'device:=cpu', cwd=tmp_path)
    assert r.returncode == 2
    assert 'instead of the package' in r.stderr and 'cd ' in r.stderr
    assert 'Traceback' not in r.stderr and 'ImportError' not in r.stderr


def test_no_reference_to_documents_the_repository_lacks():
    # every reference to a markdown document that a user meets must open in the clone
    texts = [p for p in ROOT.rglob('*') if p.is_file() and p.suffix in {'.py', '.md', '.yaml', '.sh', '.txt'}
             and not any(part.startswith('.') or part in {'build', 'install', 'log', 'outputs'}
                         for part in p.relative_to(ROOT).parts)]
    documents = {p.name for p in texts if p.suffix == '.md'}
    for path in texts:
        text = path.read_text(errors='replace')
        for name in set(re.findall(r'\b([A-Za-z_][\w/.-]*\.md)\b', text)):
            if '/' in name:  # a path: from the root or from the file's folder
                found = (ROOT / name).is_file() or (path.parent / name).is_file()
            else:  # a bare name (a layout listing): somewhere in the repository
                found = name in documents
            assert found, f'{path.relative_to(ROOT)} refers to {name}, which the repository lacks'


def test_readme_documents_every_key_of_the_prompts_file():
    readme = (ROOT / 'README.md').read_text()
    section = readme.split('### Prompts files', 1)[1].split('\n## ', 1)[0]
    for key in ('object_id', 'frame', 'stamp', 'points', 'labels', 'box', 'mask'):
        assert f'`{key}`' in section and f'{key}:' in section, key

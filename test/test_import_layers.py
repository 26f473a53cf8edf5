"""The package's layout: imports run one way.

Every ``import`` of a ``sam2_ros`` module is read from the source (lazy ones inside functions
too, and the names the package root imports lazily), and checked:

* no cycle: no module imports one of its importers, directly or through others;
* layers: a folder imports only its own modules and those of the folders below it
  (``LOWER``); the model, the frame step, the backends, tracking and single images never import
  rclpy or the ROS messages;
* the package root holds ``__init__.py``, ``__main__.py`` and the two modules everyone uses.

The checker itself is tested on a small tree that breaks each rule.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = 'sam2_ros'
ROOT_MODULES = {'__init__.py', '__main__.py', 'version.py', 'visualization.py'}
COMMON = {'sam2_ros.version', 'sam2_ros.visualization'}  # imported from anywhere, import nothing of ours
# What each part may import besides itself and COMMON ('api': the package root, whose names
# Tracker, Prompt, ... are the public API), lowest first.
LOWER = {
    'model': set(),
    'step': {'model'},
    'backends': {'model', 'step'},
    'tracking': {'model', 'step', 'backends'},
    'image': {'model'},
    'api': {'tracking', 'image'},
    'ros': {'model', 'step', 'backends', 'tracking', 'image', 'api'},
    'tools': {'model', 'step', 'backends', 'tracking', 'image', 'api', 'ros'},
    '__main__': {'ros'},
}
NO_ROS = ('model', 'step', 'backends', 'tracking', 'image')
ROS_MODULES = ('rclpy', 'sensor_msgs', 'std_msgs', 'std_srvs', 'geometry_msgs', 'visualization_msgs',
               'diagnostic_msgs', 'vision_msgs', 'builtin_interfaces', 'rosgraph_msgs', 'lifecycle_msgs')


def modules_of(package_dir: pathlib.Path) -> dict:
    """{module name: path} of a package folder."""
    out = {}
    for path in package_dir.rglob('*.py'):
        parts = list(path.relative_to(package_dir.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        out['.'.join(parts)] = path
    return out


def imports_of(name: str, path: pathlib.Path, modules: dict) -> tuple:
    """(our modules ``name`` imports, other top-level packages it imports), lazy imports too."""
    ours, others = set(), set()
    is_pkg = path.name == '__init__.py'
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split('.') if is_pkg else name.split('.')[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ''
            targets = [module] + [f'{module}.{a.name}' for a in node.names]
        for target in targets:
            if target.split('.')[0] != PACKAGE:
                others.add(target.split('.')[0])
                continue
            while target and target not in modules:  # `from pkg import name`: the module, or pkg
                target = target.rpartition('.')[0]
            if target and target != name:
                ours.add(target)
    if name == PACKAGE:  # the root's lazily imported public names: {name: '.module'}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == '_LAZY':
                ours |= {PACKAGE + v.value for v in node.value.values}
    return ours, others


def part_of(name: str) -> str:
    parts = name.split('.')
    if name == PACKAGE:
        return 'api'
    if name in COMMON:
        return 'common'
    return parts[1]


def cycles(graph: dict) -> list:
    """Every strongly connected group of two modules or more (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def problems(package_dir: pathlib.Path) -> list:
    """What breaks the rules in ``package_dir`` (see the module docstring), as sentences."""
    modules = modules_of(package_dir)
    graph, found = {}, []
    for name, path in sorted(modules.items()):
        ours, others = imports_of(name, path, modules)
        graph[name] = ours
        part = part_of(name)
        if part in NO_ROS and others & set(ROS_MODULES):
            found.append(f'{name} imports {", ".join(sorted(others & set(ROS_MODULES)))} (ROS): only ros/ may')
        for target in sorted(ours):
            other = part_of(target)
            if other in (part, 'common') or (name == PACKAGE and other in LOWER['api']):
                continue
            if part == 'common' or part not in LOWER or other not in LOWER[part]:
                found.append(f'{name} ({part}) imports {target} ({other}): a lower layer imports a higher one '
                             'or a sibling')
    for group in cycles(graph):
        found.append(f'import cycle: {" <-> ".join(group)}')
    extra = sorted(p.name for p in package_dir.iterdir() if p.is_file() and p.suffix == '.py')
    found += [f'{PACKAGE}/{n} at the package root: put it in the folder of its job' for n in extra
              if n not in ROOT_MODULES]
    return found


def test_the_package_follows_its_layers():
    assert problems(ROOT / PACKAGE) == []


def test_every_folder_is_a_known_layer_with_a_docstring():
    for folder in (ROOT / PACKAGE).iterdir():
        if folder.is_dir() and (folder / '__init__.py').is_file():
            assert folder.name in LOWER, f'{folder.name}/ is in no layer of this test: add it to LOWER'
            doc = ast.get_docstring(ast.parse((folder / '__init__.py').read_text()))
            assert doc and len(doc) > 80, f'{folder.name}/__init__.py needs a paragraph saying what it holds'


def test_no_module_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / PACKAGE).rglob('*.py')
            if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def _write(root: pathlib.Path, files: dict) -> pathlib.Path:
    for rel, text in files.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / PACKAGE


@pytest.mark.parametrize('files, expected', [
    ({'step/a.py': 'def f():\n    from sam2_ros.step import b\n', 'step/b.py': 'from . import a\n'},
     'import cycle: sam2_ros.step.a <-> sam2_ros.step.b'),  # a lazy import is an import too
    ({'model/a.py': 'from ..tracking import t\n', 'tracking/t.py': ''}, 'a lower layer imports a higher one'),
    ({'image/p.py': 'import sam2_ros.tracking.t\n', 'tracking/t.py': ''}, 'or a sibling'),
    ({'tracking/t.py': 'from sam2_ros import Tracker\n'}, 'import cycle: sam2_ros <-> sam2_ros.tracking.t'),
    ({'tracking/t.py': 'import rclpy\n'}, 'imports rclpy (ROS): only ros/ may'),
    ({'helpers.py': ''}, 'sam2_ros/helpers.py at the package root'),
])
def test_the_checker_catches_each_rule(tmp_path, files, expected):
    base = {'__init__.py': "_LAZY = {'Tracker': '.tracking.t'}\n", 'version.py': '', 'model/__init__.py': '',
            'step/__init__.py': '', 'tracking/__init__.py': '', 'tracking/t.py': '', 'image/__init__.py': ''}
    found = problems(_write(tmp_path, {**base, **files}))
    assert any(expected in f for f in found), found
    assert problems(_write(tmp_path / 'clean', base)) == []

"""Runs only by mistake: ``python -m sam2_ros`` from the folder that holds this repository.

When the clone is itself named ``sam2_ros`` and Python starts in its parent folder, ``sam2_ros``
is this folder (a namespace package: it has no ``__init__.py``), not the package inside it, and
``python -m sam2_ros`` runs this file. Nothing would work from here, so say what to do.
"""
import pathlib
import sys

_here = pathlib.Path(__file__).resolve().parent
sys.stderr.write(
    f"sam2_ros: 'python -m sam2_ros' found the repository folder {_here} instead of the package\n"
    f'  inside it ({_here / "sam2_ros"}): Python looks in the current folder\n'
    f'  ({pathlib.Path.cwd()}) first, and a folder named sam2_ros there shadows the package.\n'
    f'  Run it from any other folder, e.g.:\n'
    f'    cd {_here} && python -m sam2_ros --ros-args ...\n'
    f'  (where sam2_ros is installed, as by scripts/setup.sh, any folder but {pathlib.Path.cwd()}\n'
    f'  works; ros2 run sam2_ros tracker_node works from anywhere).\n')
sys.exit(2)

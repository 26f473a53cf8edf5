"""``python -m sam2_ros --help`` / ``tracker_node --help``: usage text, printed without starting
the node (no rclpy, no model, no download)."""
from __future__ import annotations

import pathlib
import sys
from typing import Sequence

__all__ = ['USAGE', 'wants_help', 'params_file', 'print_usage']


def params_file() -> str:
    """Path of config/tracker.yaml: in this checkout, else where the package installs it."""
    here = pathlib.Path(__file__).resolve().parents[2] / 'config' / 'tracker.yaml'
    if here.is_file():
        return str(here)
    return str(pathlib.Path(sys.prefix) / 'share' / 'sam2_ros' / 'config' / 'tracker.yaml')


USAGE = """\
usage: python -m sam2_ros [--help] [--cameras NAME [NAME ...]] [--ros-args ARGS...]
       ros2 run sam2_ros tracker_node [--cameras NAME [NAME ...]] [--ros-args ARGS...]

Starts the sam2_tracker node (a lifecycle node that configures and activates itself, loading
the model). It runs until SIGINT / SIGTERM. Without a `checkpoint` parameter it downloads
Meta's official SAM 2.1 checkpoint of `model` once into the Hugging Face Hub cache
(`checkpoint` may also be a Hub id such as facebook/sam2.1-hiera-tiny, a folder or a .pt file).

--cameras front left: one process, one model, one worker for several cameras: camera front's
node is sam2_tracker in namespace front (topics front/image, /front/sam2_tracker/masks, ...;
remap a camera's image with -r front/image:=/head/image_raw, its depth inputs with
-r front/depth:=... -r front/camera_info:=...); their frames are batched.
Per-camera parameters: a /front/sam2_tracker section in the parameters file (see it).

ROS arguments (after --ros-args):
  -r image:=/camera/image_raw        the camera topic to track (remap `image`)
  -p depth:=true                     objects in 3-D (~/markers, ~/objects_3d, ~/points) from a
  -r depth:=/camera/depth_registered depth image registered to `image` (16UC1 mm, 32FC1 m) and
  -r camera_info:=/camera/camera_info  the colour camera's camera_info
  -p NAME:=VALUE                     one parameter, e.g. -p model:=tiny -p device:=cpu
                                     -p checkpoint:=/path/sam2.1_hiera_tiny.pt -p image_size:=512
  --params-file FILE                 parameters from a YAML file (every parameter, its default
                                     and meaning: {params})
  -r __ns:=/NS                       run in namespace /NS (topics /NS/image, /NS/sam2_tracker/...)

Topics: in `image`, `~/prompt` (ImageMarker), `~/prompt_mask`, `~/click`, with depth `depth` and
`camera_info`; out `~/masks`, `~/overlay`, `~/detections`, with depth `~/markers`, `~/objects_3d`,
`~/points`, and `/diagnostics`; service `~/reset`. Parameters, topics and
examples (ros2 topic pub for clicks, boxes, masks): README.md, "The tracker node".

example:
  python -m sam2_ros --ros-args -r image:=/camera/image_raw -p model:=tiny -p device:=cpu
"""


def wants_help(argv: Sequence[str]) -> bool:
    """True when the command line asks for help (-h / --help before any --ros-args)."""
    for arg in argv:
        if arg == '--ros-args':
            return False
        if arg in ('-h', '--help'):
            return True
    return False


def print_usage() -> None:
    print(USAGE.format(params=params_file()), end='')

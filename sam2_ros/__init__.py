"""sam2_ros: real-time object tracking in camera streams with SAM 2, in plain PyTorch.

Public API (see README.md)::

    from sam2_ros import Tracker, Prompt
    tracker = Tracker.from_pretrained(checkpoint, model="tiny", image_size=1024, device="auto")
    result = tracker.track(frame, prompts=[Prompt(obj_id=1, points=[[320, 240]], labels=[1])])

The names are imported lazily, so that ``import sam2_ros.visualization`` (or the ROS glue's
message conversions) does not pay for importing torch and the model.
"""
import importlib

from .version import __version__

# public name -> module (relative to this package) that defines it
_LAZY = {
    'Tracker': '.tracking.tracker',
    'Prompt': '.tracking.types',
    'TrackResult': '.tracking.types',
    'PromptError': '.tracking.types',
    'FrameNotBuffered': '.tracking.types',
    'ImagePredictor': '.image.predictor',
    'AutomaticMaskGenerator': '.image.automatic',
}

__all__ = ['__version__', *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

"""One SAM 2 for several cameras: the model, its image-encoder backend and the
settings they were built with, loaded once per process and handed to every camera's tracker.

Each camera keeps a :class:`~sam2_ros.tracking.tracker.Tracker` of its own (objects, memory bank,
prompt buffer are per stream); what they share is the module's weights, its encoder backend
(ONNX Runtime session, TensorRT engine) and the memory these take. The parameters that decide
how the model is built (:data:`SHARED_PARAMETERS`) must therefore be the same on every camera:
:func:`shared_refusal` says why when they are not. No rclpy here.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Mapping, Optional, Tuple


# Parameters that decide the one model of the process: the same on every camera.
SHARED_PARAMETERS: Tuple[str, ...] = ('model', 'checkpoint', 'device', 'dtype', 'fuse', 'image_size', 'compile',
                                      'encoder_backend', 'encoder_engine', 'step_backend', 'step_engine')


def shared_refusal(values: Mapping[str, Mapping[str, Any]]) -> Optional[str]:
    """``values``: camera name -> its parameters. The reason the cameras cannot share one
    model (a shared parameter set differently on some camera), or None."""
    cameras = list(values)
    if not cameras:
        return None
    for name in SHARED_PARAMETERS:
        seen: Dict[str, list] = {}
        for camera in cameras:
            seen.setdefault(repr(values[camera].get(name)), []).append(camera)
        if len(seen) > 1:
            sets = '; '.join(f"{', '.join(cams)}: {value}" for value, cams in seen.items())
            return (f'parameter {name!r} differs between cameras ({sets}): the cameras of one process share '
                    f'one model, so {", ".join(SHARED_PARAMETERS)} must be the same on all of them; set it '
                    'for every camera (e.g. under /** in the parameters file), or run a separate process '
                    'for the camera that needs another value')
    return None


class SharedModel:
    """The process's one model, loaded by the first camera that configures (thread-safe) and
    then handed to every camera whose shared parameters match."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: Optional[Dict[str, Any]] = None
        self._loaded: Optional[Tuple[Any, Any, str]] = None  # model, encoder, backend name
        self.warm = False

    @property
    def settings(self) -> Optional[Dict[str, Any]]:
        """The shared parameters the model was loaded with (None before it is)."""
        return dict(self._settings) if self._settings is not None else None

    def get(self, p: Mapping[str, Any], warn: Callable[[str], None] = print) -> Tuple[Any, Any, str, bool]:
        """(model, encoder, encoder backend, already warm) for a camera with parameters ``p``;
        loads and warms the model on the first call. ValueError (with the reason) when ``p``
        asks for another model than the one loaded (e.g. a camera cleaned up and configured
        again with another ``model``)."""
        wanted = {k: p[k] for k in SHARED_PARAMETERS}
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load(wanted, warn)
                self._settings = wanted
                warm, self.warm = False, True  # this camera's configure warms it up
            else:
                refusal = shared_refusal({'the model loaded': self._settings, 'this camera': wanted})
                if refusal is not None:
                    raise ValueError(refusal)
                warm = True
            model, encoder, backend = self._loaded
        return model, encoder, backend, warm

    @staticmethod
    def _load(p: Mapping[str, Any], warn: Callable[[str], None]) -> Tuple[Any, Any, str]:
        from sam2_ros.backends import make_encoder_or_fallback
        from sam2_ros.model.build import build_model, resolve_device

        model = build_model(p['checkpoint'] or None, model=p['model'], image_size=p['image_size'],
                            device=resolve_device(p['device']), fuse=p['fuse'])
        encoder, backend = make_encoder_or_fallback(p['encoder_backend'], model, p['encoder_engine'] or None, warn=warn)
        return model, encoder, backend


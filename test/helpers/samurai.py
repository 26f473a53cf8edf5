"""Test-side client of SAMURAI's released predictor (``test/oracles/samurai_oracle.py``).

SAMURAI's package (PyPI ``absolutely-not-samurai==1.0.0``) is also called ``sam2``, so it runs
in its own venv (``.venv-samurai``, made by ``scripts/setup.sh --test``) as a subprocess:

::

    from helpers.samurai import run_jobs, track_job, stretch_iou_head
    ckpt = stretch_iou_head(official_checkpoint("tiny", 256, seed=5), tmp / "ckpt.pt", 20.0, (0, 7.6, -5.7, 10.8))
    (run,) = run_jobs([track_job(ckpt, frames, 256, box=[x0, y0, x1, y1])])
    run["frames"][t]["logits"]      # (H, W) output logits on frame t
    run["heads"]                    # one record per decode: candidates, ious, chosen, filter state
    run["memory"]                   # per frame: the memories and pointers it attended to

The ``samurai_scene`` session fixture (conftest) runs the shared scene below once per session.
See the oracle script's docstring for every job and record. ``SAMURAI_PYTHON`` overrides the
interpreter (default: ``<repo>/.venv-samurai/bin/python``).
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "test" / "oracles" / "samurai_oracle.py"
IOU_HEAD = "sam_mask_decoder.iou_prediction_head.layers.2"


def samurai_python() -> pathlib.Path:
    """The SAMURAI oracle venv's interpreter; a clear error if it is missing."""
    py = pathlib.Path(os.environ.get("SAMURAI_PYTHON", ROOT / ".venv-samurai" / "bin" / "python"))
    if not py.exists():
        raise RuntimeError(f"SAMURAI oracle venv not found ({py}): run `bash scripts/setup.sh --test`, "
                           "which creates .venv-samurai with absolutely-not-samurai==1.0.0")
    return py


def run_jobs(jobs: Sequence[dict], timeout: float = 1800, threads: Optional[int] = None) -> List[dict]:
    """Run oracle jobs in one subprocess; returns their results in order.

    ``threads``: torch's CPU threads there, by default this process's: the numbers depend on
    it (the memories are stored in bfloat16, where a reduction's order can flip a rounding),
    and ours are computed here. With ``SAMURAI_ORACLE_CACHE=DIR`` set, results are kept in
    DIR, keyed by the jobs, the thread count, the oracle script and the venv's setup stamp."""
    threads = int(threads or torch.get_num_threads())
    payload = {"jobs": list(jobs), "threads": threads}
    cache = os.environ.get("SAMURAI_ORACLE_CACHE")
    key = None
    if cache:
        h = hashlib.sha256()
        buf = io.BytesIO()
        files = [job["checkpoint"] for job in payload["jobs"] if "checkpoint" in job]
        torch.save({**payload, "jobs": [{k: v for k, v in job.items() if k != "checkpoint"} for job in payload["jobs"]]}, buf)
        h.update(buf.getvalue())
        for f in files:  # the checkpoints' contents, not their (temporary) paths
            h.update(pathlib.Path(f).read_bytes())
        h.update(SCRIPT.read_bytes())
        stamp = samurai_python().parent.parent / ".samurai-setup"
        h.update(stamp.read_bytes() if stamp.exists() else b"")
        key = pathlib.Path(cache) / f"{h.hexdigest()[:32]}.pt"
        if key.exists():
            return torch.load(key, weights_only=False)["results"]
    with tempfile.TemporaryDirectory(prefix="samurai_oracle_") as d:
        src, dst = pathlib.Path(d) / "jobs.pt", pathlib.Path(d) / "results.pt"
        torch.save(payload, src)
        env = dict(os.environ, PYTHONPATH="")  # nothing of this process's packages (our sam2_ros, Meta's sam2)
        proc = subprocess.run([str(samurai_python()), str(SCRIPT), str(src), str(dst)], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=d)
        if proc.returncode != 0:
            raise RuntimeError(f"SAMURAI oracle failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        if key is not None:
            key.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dst, key)
        return torch.load(dst, weights_only=False)["results"]


def track_job(checkpoint, frames: Sequence[np.ndarray], image_size: int, box=None, points=None, labels=None,
              overrides: Sequence[str] = ()) -> dict:
    """A ``track`` job: one object prompted on frame 0 (a box, or points with labels), tracked
    over ``frames`` (H x W x 3 uint8) by SAMURAI's predictor (its tiny SAM 2.1 config,
    ``configs/samurai/sam2.1_hiera_t.yaml``) at ``image_size``; ``overrides``: extra hydra
    overrides (e.g. ``"++model.samurai_mode=false"``)."""
    return {"kind": "track", "checkpoint": str(checkpoint), "image_size": int(image_size),
            "frames": torch.from_numpy(np.stack(frames)), "overrides": list(overrides),
            "prompt": {"box": box, "points": points, "labels": labels}}


def stretch_iou_head(src, dst, gain: float, shift=0.0) -> pathlib.Path:
    """A copy of an official-format checkpoint whose IoU head predicts spread-out IoUs.

    With random weights the predicted IoUs are nearly constant, so SAMURAI's thresholds would
    pass or fail on every frame alike. The head's last layer
    (``sam_mask_decoder.iou_prediction_head.layers.2``, before the sigmoid) is scaled by
    ``gain`` and its bias (one per mask token: the single mask, then the 3 candidates) shifted
    by ``shift`` (a number or 4 numbers): each IoU logit z becomes ``gain * z + shift``.
    Every other tensor is unchanged; the file keeps the official format."""
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    sd = ckpt["model"]
    sd[f"{IOU_HEAD}.weight"] = sd[f"{IOU_HEAD}.weight"] * gain
    sd[f"{IOU_HEAD}.bias"] = sd[f"{IOU_HEAD}.bias"] * gain + torch.as_tensor(shift, dtype=torch.float32)
    dst = pathlib.Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return dst


def moving_scene(n: int, height: int = 180, width: int = 320, seed: int = 0) -> List[np.ndarray]:
    """``n`` frames (H x W x 3 uint8) of a textured orange ellipse moving right and down at
    (3, 1.2) px per frame over a fixed blocky background."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(60, 120, (-(-height // 4), -(-width // 4), 3)).astype(np.float32)
    bg = np.kron(bg, np.ones((4, 4, 1), np.float32))[:height, :width]
    yy, xx = np.mgrid[:height, :width]
    texture = (np.sin(xx / 3.0) * np.cos(yy / 4.0) * 25).astype(np.float32)
    frames = []
    for t in range(n):
        cx, cy = 90 + 3.0 * t, 70 + 1.2 * t
        inside = ((xx - cx) / 28) ** 2 + ((yy - cy) / 22) ** 2 <= 1
        f = bg.copy()
        f[inside] = np.array([230, 180, 60], np.float32) + texture[inside, None]
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


# The scene the SAMURAI tests share (``samurai_scene`` fixture): tiny at 256 px, seed-5
# weights with the IoU head stretched so that the candidates' predicted IoUs straddle 0.3 and
# 0.5 and change order from frame to frame, the moving ellipse, a box on frame 0. SAMURAI's
# filter starts on frame 1, is stable from frame 16 and then picks other candidates than the
# highest predicted IoU; frames fail the memory test early and in the stable phase, and frame
# 3 stays in memory until frame 23 (see test_samurai_oracle.py).
SCENE_SEED, SCENE_SIZE, SCENE_FRAMES = 5, 256, 48
SCENE_GAIN, SCENE_SHIFT = 20.0, (0.0, 7.6, -5.7, 10.8)
SCENE_BOX = [60, 46, 120, 94]
# A second object of the same scene, for the several-object tests: one click on the background
# (its filter starts on the prompt frame), tracked alone by SAMURAI over the first frames.
SECOND_POINT, SECOND_FRAMES = [[240.0, 40.0]], 24



class NoHostSync(TorchFunctionMode):
    """Fails on anything that reads a tensor's value on the host (what the static step's
    SAMURAI parts must never do)."""

    FORBIDDEN = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero",
                 "argwhere", "unique", "masked_select"}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.FORBIDDEN:
            raise AssertionError(f"host synchronisation: {name}")
        return func(*args, **(kwargs or {}))

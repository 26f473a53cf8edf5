"""Test side of the EdgeTAM oracle: asks EdgeTAM's released code (in its own venv and process,
``test/oracles/edgetam_oracle.py``) for an official-format checkpoint and reference outputs.

    req = standard_request(frames)                 # the inputs, all at 1024 px
    ans = run_edgetam_oracle(req, workdir)         # {"encoder": ..., "image": ..., ...}
    build_model(req["checkpoint"], "edgetam", 1024, "cpu")   # ours, on the same weights

The request (a dict, ``torch.save``-d for the oracle):

* ``image_size`` (int), ``seed`` (int), ``checkpoint`` (str: where the oracle writes
  ``{"model": state_dict}``), ``frames`` (N, S, S, 3) uint8 RGB;
* ``encoder_frame``: the frame whose encoder features are returned;
* ``image_prompts``: [{name, points (K, 2) | None, labels (K,) | None, box (4,) | None,
  mask_from: name of an earlier prompt whose best low-res logits are the mask input | None,
  multimask}] on frame 0 (``SAM2ImagePredictor.predict(return_logits=True)``);
* ``memory``: [{name, frame, high_res_mask (S, S) logits, object_score, binarize}]
  (``SAM2Base._encode_new_memory``: memory encoder, then the spatial perceiver);
* ``memory_attention``: [{name, frame, memory (1, M, C_mem), memory_pos (1, M, C_mem),
  num_spatial_mem, num_ptr_tokens}];
* ``video``: [{name, points/labels | box | mask (S, S) bool}]: each object ALONE in its own
  inference state (EdgeTAM's release fails with two: its issue #15), prompted on frame 0 and
  propagated over every frame.

The answer (a dict):

* ``encoder``: fpn_s4 (1, 256, S/4, S/4), fpn_s8, fpn_s16, pos_s16 (1, 256, S/16, S/16);
* ``image[name]``: masks (M, S, S) logits, ious (M,), low_res_logits (M, S/4, S/4); and
  ``image["_features"]``: image_embed (with no_mem_embed), high_res_s4, high_res_s8;
* ``memory[name]``: encoder_features / encoder_pos (1, C_mem, h, w) before the perceiver,
  features / pos (1, 512, C_mem) after it;
* ``memory_attention[name]``: (1, 256, h, w);
* ``video[name]``: per frame t: low_res_logits (N, 1, S/4, S/4), object_score_logits (N,),
  obj_ptr (N, 256), memory (N, 512, C_mem) (bfloat16 values), memory_pos (512, C_mem);
  the frame-t mask logits at S x S are ``F.interpolate(low_res_logits[t:t+1], (S, S),
  mode="bilinear", align_corners=False)`` (what the predictor returns for S x S frames);
* ``timings``: seconds per part.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
HARNESS = ROOT / "test" / "oracles" / "edgetam_oracle.py"
PYTHON_ENV = "SAM2_ROS_EDGETAM_PYTHON"


def oracle_python() -> pathlib.Path:
    """The EdgeTAM oracle venv's interpreter: ``$SAM2_ROS_EDGETAM_PYTHON``, else
    ``<repo>/.venv-edgetam/bin/python`` (made by ``scripts/setup.sh --test``)."""
    explicit = os.environ.get(PYTHON_ENV, "").strip()
    return pathlib.Path(explicit) if explicit else ROOT / ".venv-edgetam" / "bin" / "python"


def run_edgetam_oracle(request: Dict[str, Any], workdir: pathlib.Path, timeout: float = 1800) -> Dict[str, Any]:
    """Run the oracle on ``request`` in its own process; returns its answer."""
    python = oracle_python()
    if not python.is_file():
        raise RuntimeError(f"the EdgeTAM oracle venv is missing ({python}): run `bash scripts/setup.sh --test`, "
                           f"or point {PYTHON_ENV} at a Python with edgetam-dimos==1.0.1 and timm==1.0.15")
    workdir.mkdir(parents=True, exist_ok=True)
    req_path, ans_path = workdir / "edgetam_request.pt", workdir / "edgetam_answer.pt"
    torch.save(request, req_path)
    env = dict(os.environ, PYTHONPATH="", EDGETAM_ORACLE_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run([str(python), str(HARNESS), str(req_path), str(ans_path)], env=env, cwd=str(workdir),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the EdgeTAM oracle failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return torch.load(ans_path, weights_only=False)


def _smooth_logits(s: int, cx: float, cy: float, r: float) -> torch.Tensor:
    """(S, S) logits: positive inside a wobbly disc, both signs, values around +-10."""
    y, x = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    d = ((x - cx) ** 2 + (y - cy) ** 2).sqrt() / r
    return 10.0 * (1.0 - d) + 2.0 * torch.sin(x / 37.0) * torch.cos(y / 23.0)


def standard_request(frames: Sequence[np.ndarray], checkpoint: pathlib.Path, image_size: int = 1024,
                     seed: int = 0) -> Dict[str, Any]:
    """The inputs every EdgeTAM parity test shares (frames: S x S x 3 uint8, S = image_size)."""
    s = image_size
    if any(f.shape != (s, s, 3) for f in frames):
        raise ValueError(f"frames must be {s} x {s} x 3 (the model's input size: no resizing on either side)")
    f = s / 1024  # prompts are laid out for 1024 px
    gen = torch.Generator().manual_seed(seed + 11)
    t = 512  # memory tokens per frame
    disc = _smooth_logits(s, 0.55 * s, 0.4 * s, 0.2 * s)
    memory_attention: List[dict] = []
    for name, n_spatial, n_ptr in (("two_frames_ptrs", 2, 16), ("one_frame", 1, 0)):
        m = n_spatial * t + n_ptr
        memory_attention.append({
            "name": name, "frame": 1, "num_spatial_mem": n_spatial, "num_ptr_tokens": n_ptr,
            "memory": torch.randn(1, m, 64, generator=gen), "memory_pos": torch.randn(1, m, 64, generator=gen),
        })
    return {
        "image_size": s, "seed": seed, "checkpoint": str(checkpoint),
        "frames": torch.from_numpy(np.stack(frames)),
        "encoder_frame": 0,
        "image_prompts": [
            {"name": "point", "points": [[520 * f, 380 * f]], "labels": [1], "multimask": True},
            {"name": "two_points", "points": [[520 * f, 380 * f], [200 * f, 150 * f]], "labels": [1, 0],
             "multimask": False},
            {"name": "box", "box": [300 * f, 200 * f, 760 * f, 640 * f], "multimask": False},
            {"name": "box_multi", "box": [300 * f, 200 * f, 760 * f, 640 * f], "multimask": True},
            {"name": "mask_refine", "points": [[520 * f, 380 * f], [200 * f, 150 * f]], "labels": [1, 0],
             "mask_from": "point", "multimask": False},
        ],
        "memory": [
            {"name": "soft", "frame": 0, "high_res_mask": disc, "object_score": 1.0, "binarize": False},
            {"name": "binary", "frame": 1, "high_res_mask": disc, "object_score": 1.0, "binarize": True},
        ],
        "memory_attention": memory_attention,
        "video": [
            {"name": "points", "points": [[520 * f, 380 * f]], "labels": [1]},
            {"name": "box", "box": [300 * f, 200 * f, 760 * f, 640 * f]},
            {"name": "mask", "mask": (disc > 0).numpy()},
        ],
    }


def square_frames(n: int, image_size: int = 1024) -> List[np.ndarray]:
    """``n`` consecutive Big Buck Bunny frames resized to image_size x image_size."""
    from .oracle import sample_frames  # Meta's oracle module: frames only

    return sample_frames(n, image_size, image_size)


def alive_edgetam_checkpoint(path: pathlib.Path, seed: int = 0, memory_gain: float = 4.0) -> pathlib.Path:
    """An official-format ``edgetam.pt`` with alive random weights made by OUR model, in this
    process (no oracle): the recipe the oracle's checkpoints get (``perturb_state_``, then the
    trunk's BatchNorm statistics measured and perturbed), and the memory attention's
    cross-attention output scaled by ``memory_gain``: with the recipe alone, tracked masks of
    different objects on one frame differ by ~1 % (the frame's own features dominate), with
    x4 they follow each object's memory, so a slot or memory mixed up shows. For tests that
    compare our own paths with each other at small sizes, cheaply; the weights fit every
    image size."""
    from sam2_ros.model.config import edgetam_config
    from sam2_ros.model.edgetam import EdgeTAM

    from .oracle import calibrate_batchnorm_, perturb_state_

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        model = EdgeTAM(edgetam_config(1024))
        perturb_state_(model, seed=seed)
        calibrate_batchnorm_(model.image_encoder.trunk, seed)
        for layer in model.memory_attention.layers:
            layer.cross_attn_image.out_proj.weight.mul_(memory_gain)
    torch.save({"model": model.state_dict()}, path)
    return path

class EdgeTAMReference:
    """One session's EdgeTAM oracle runs, each made on first use and kept:

    * :meth:`model_level`: the checkpoint (written by the oracle) and the encoder, image
      predictor, memory and memory-attention answers;
    * :meth:`video`: the video predictor's per-object answers on ``video_request`` (10 frames at
      512 px; a second oracle process that loads the same checkpoint instead of building it again),
      or with ``image_size=1024`` on the model-level frames at 1024 px (a third, slower run).

    ``request`` holds the model-level inputs (1024 px), ``video_request`` the video's at 512 px,
    ``video_requests`` both video requests by image size,
    ``checkpoint`` the official-format file, ``timings`` the
    oracle's seconds per part and ``wall`` the seconds each run took, subprocess included.
    """

    def __init__(self, workdir: pathlib.Path, num_frames: int = 10, image_size: int = 1024,
                 video_frames: int = 10, video_size: int = 512) -> None:
        self.workdir = workdir
        self.checkpoint = workdir / "edgetam_random_seed0.pt"
        self.request = standard_request(square_frames(num_frames, image_size), self.checkpoint, image_size)
        # The video run is the costly one (each object alone, every frame): at 512 px (position
        # tables rebuilt on both sides; the checkpoint is the same file) it takes ~1 min, not ~6.
        video = standard_request(square_frames(video_frames, video_size), self.checkpoint, video_size)
        keys = ("image_size", "seed", "checkpoint", "frames", "video")
        self.video_request = {k: video[k] for k in keys}
        self.video_requests = {video_size: self.video_request, image_size: {k: self.request[k] for k in keys}}
        self.timings: Dict[str, float] = {}
        self.wall: Dict[str, float] = {}
        self._answers: Dict[str, Dict[str, Any]] = {}

    def _run(self, kind: str, request: Dict[str, Any]) -> Dict[str, Any]:
        import time

        if kind not in self._answers:
            start = time.perf_counter()
            answer = run_edgetam_oracle(request, self.workdir / kind)
            self.wall[kind] = time.perf_counter() - start
            self.timings.update({f"{kind}.{k}": v for k, v in answer.pop("timings").items()})
            self._answers[kind] = answer
        return self._answers[kind]

    def model_level(self) -> Dict[str, Any]:
        return self._run("model", {k: v for k, v in self.request.items() if k != "video"})

    def video(self, image_size: Optional[int] = None) -> Dict[str, Any]:
        """The release's video predictor on ``video_requests[image_size]`` (its frames and
        prompts; None: ``video_request``'s size)."""
        size = self.video_request["image_size"] if image_size is None else image_size
        self.model_level()  # the checkpoint
        return self._run(f"video{size}", {**self.video_requests[size], "reuse_checkpoint": True})["video"]

"""What several benchmarks share: the bundled sample clip as frames and official-format
checkpoints with random, "alive" weights. Benchmarks import it as ``common`` (their folder is on
``sys.path`` when they run as scripts)."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(ROOT / "test")):  # sam2_ros from this checkout; the test helpers (oracle)
    if _path not in sys.path:
        sys.path.insert(0, _path)


def clip_frames(n: int, width: int, height: int, start: int = 0) -> list:
    """``n`` RGB frames of the bundled sample clip (data/sample/bunny.mp4) from frame ``start``,
    looped, resized."""
    import cv2

    cap = cv2.VideoCapture(str(ROOT / "data" / "sample" / "bunny.mp4"))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (width, height), interpolation=cv2.INTER_AREA))
    cap.release()
    if not frames:
        raise RuntimeError("could not decode data/sample/bunny.mp4 (OpenCV without a video backend?)")
    return [frames[(start + i) % len(frames)] for i in range(n)]


def checkpoint(model: str, folder: Path) -> Path:
    """An official-format checkpoint with random, "alive" weights (``oracle.perturb_state_``:
    present objects, masks that depend on memory; every parameter perturbed). Ours and Meta's
    loaders take the same file (the same keys, strictly); it needs no ``sam2`` package.
    ``model="edgetam"``: EdgeTAM's layout (its BatchNorm statistics measured too)."""
    from helpers.oracle import perturb_state_
    from sam2_ros.model.config import sam2_config
    from sam2_ros.model.sam2 import SAM2

    if model == "edgetam":
        from helpers.edgetam_oracle_client import alive_edgetam_checkpoint

        path = folder / "edgetam_random.pt"
        return path if path.exists() else alive_edgetam_checkpoint(path, seed=0)
    path = folder / f"sam2.1_hiera_{model}_random.pt"
    if not path.exists():
        torch.manual_seed(0)
        net = SAM2(sam2_config(model, 1024, "2.1"))
        with torch.no_grad():
            perturb_state_(net, seed=0)
        torch.save({"model": net.state_dict()}, path)
    return path

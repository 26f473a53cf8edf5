"""SAMURAI's released predictor (PyPI ``absolutely-not-samurai==1.0.0``) run as a reference.

This script runs INSIDE the SAMURAI oracle venv (``.venv-samurai``, made by
``scripts/setup.sh --test``), never in the test process: SAMURAI's package is also called
``sam2``, like Meta's. The test side (``test/helpers/samurai.py``) saves
``{"jobs": [...], "threads": N}`` with ``torch.save``, runs ``<venv>/bin/python
samurai_oracle.py JOBS.pt RESULTS.pt`` and reads ``{"results": [...], "info": ...}`` back.
It only *calls* SAMURAI's code and records what it does.

Jobs (dicts; ``kind`` says which):

``track`` (``checkpoint``, ``image_size``, ``frames`` (N, H, W, 3) uint8, ``prompt`` with
``box`` or ``points`` + ``labels``, ``overrides``)
    One object tracked with SAMURAI's video predictor (SAM 2's earlier, offline predictor,
    config ``configs/samurai/sam2.1_hiera_t.yaml``): prompted on frame 0, then
    ``propagate_in_video``. The result holds

    * ``settings``: SAMURAI's settings as the model has them;
    * ``frames[t]``: ``cond``, ``logits`` (H, W) output logits at the frame's resolution,
      ``low_res`` (S/4, S/4), ``object_score`` (logit), and on tracked frames ``best_iou``
      (predicted IoU of the kept mask) and ``kf_score`` (None before the filter is stable):
      what SAMURAI's memory test reads;
    * ``heads``: one record per decode (``_forward_sam_heads``): ``frame``, ``multimask``,
      ``candidates`` (1, M, S/4, S/4) low-res logits after the no-object blanking, ``ious``
      (1, M), ``object_score``, ``chosen`` (indices of the candidates equal to the kept
      mask), ``best_iou``, ``kf_score``, ``kf_before`` / ``kf_after`` (``started``,
      ``stable_frames``, ``mean`` (8,), ``cov`` (8, 8), float64);
    * ``kalman``: every filter call in order (``op``, ``frame``, inputs, outputs);
    * ``memory``: per decode with memory, ``frame``, ``memory`` [(t_pos, frame, is_cond)] in
      the order attended (t_pos 0: conditioning frames; R..1: newest..oldest), ``missing``
      (t_pos whose entry had no output), ``pointers`` [(offset, frame)], ``valid_indices``
      (SAMURAI's V).
``kalman``
    SAMURAI's ``KalmanFilter`` replayed on given operation sequences.
``select``
    SAMURAI's candidate selection (``SAM2Base._forward_sam_heads``, its own code) on given
    decoder answers: the mask decoder is replaced by a stub that returns them.
``memory``
    SAMURAI's memory selection (``_prepare_memory_conditioned_features``, its own code) on
    given per-frame scores: which frames a frame attends to.
``time``
    A ``track`` job timed, with nothing recorded: ``ms`` per frame (the prompt on frame 0,
    then each frame ``propagate_in_video`` yields, its image encoding included) and the
    frame-0 logits (so the caller can check it ran what it compares against).

Numerics: SAMURAI's attention wraps ``scaled_dot_product_attention`` in
``torch.backends.cuda.sdp_kernel(enable_flash=False, enable_math=True, ...)`` on machines
without CUDA, which on the CPU turns off the flash kernel that Meta's ``sam2`` 1.1.0 (which
sets no kernel) gets. ``ALLOW_ALL_KERNELS = True`` (SAMURAI's own fallback switch) makes it
call the kernel with no context, as Meta's 1.1.0 and ``sam2_ros`` do: the same math on both
sides. The memory encoder's hole filling needs sam2's CUDA extension, not built here, and is
skipped (as in Meta's oracle). Frames are preprocessed with ``oracle.preprocess_frame``.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Dict, List, Optional

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "helpers"))  # test/helpers: the shared oracle module

warnings.filterwarnings("ignore", message=r"(?s).*Skipping the post-processing step.*")
warnings.filterwarnings("ignore", category=FutureWarning)  # torch.backends.cuda.sdp_kernel

import oracle  # noqa: E402  (torchvision shim, frame preprocessing; imports SAMURAI's sam2 here)
import sam2  # noqa: E402
import sam2.modeling.sam.transformer as _transformer  # noqa: E402
import sam2.sam2_video_predictor as _vp  # noqa: E402
from sam2.build_sam import build_sam2_video_predictor  # noqa: E402
from sam2.modeling.sam2_base import SAM2Base  # noqa: E402
from sam2.utils.kalman_filter import KalmanFilter  # noqa: E402

_transformer.ALLOW_ALL_KERNELS = True

CONFIG = "configs/samurai/sam2.1_hiera_t.yaml"
SETTINGS = ("samurai_mode", "stable_frames_threshold", "stable_ious_threshold", "min_obj_score_logits",
            "kf_score_weight", "memory_bank_iou_threshold", "memory_bank_obj_score_threshold",
            "memory_bank_kf_score_threshold", "num_maskmem", "max_obj_ptrs_in_encoder", "max_cond_frames_in_attn")


def _quiet_build(**kwargs):
    devnull = open(os.devnull, "w")
    stdout, sys.stdout = sys.stdout, devnull  # SAM2Base prints "SAMURAI mode: ..." in colour
    try:
        return build_sam2_video_predictor(CONFIG, device="cpu", **kwargs)
    finally:
        sys.stdout = stdout
        devnull.close()


def _settings(model) -> Dict[str, Any]:
    return {k: getattr(model, k) for k in SETTINGS}


def _np(x) -> np.ndarray:
    return np.array(x, dtype=np.float64)


# ------------------------------------------------------------------------------ recorders
class KalmanRecorder:
    """Wraps the model's ``KalmanFilter`` methods to log every call with inputs and outputs."""

    def __init__(self, kf: KalmanFilter, frame_of=lambda: None):
        self.calls: List[dict] = []
        self.frame_of = frame_of
        for name in ("initiate", "predict", "update", "compute_iou"):
            setattr(kf, name, self._wrap(name, getattr(kf, name)))

    def _wrap(self, name, fn):
        def call(*args):
            out = fn(*args)
            rec = {"op": name, "frame": self.frame_of()}
            if name == "initiate":
                rec.update(measurement=_np(args[0]), mean=_np(out[0]), cov=_np(out[1]))
            elif name == "predict":
                rec.update(mean_in=_np(args[0]), cov_in=_np(args[1]), mean=_np(out[0]), cov=_np(out[1]))
            elif name == "update":
                rec.update(mean_in=_np(args[0]), cov_in=_np(args[1]), measurement=_np(args[2]),
                           mean=_np(out[0]), cov=_np(out[1]))
            else:
                rec.update(mean_in=_np(args[0]), boxes=_np(args[1]), ious=_np(out))
            self.calls.append(rec)
            return out

        return call


class MemoryTracer:
    """Reads, as ``_prepare_memory_conditioned_features`` returns, which outputs it put in
    ``t_pos_and_prevs`` (spatial memories) and ``pos_and_ptrs`` (object pointers), and maps
    them to frame indices by identity. Observes only (``sys.settrace``)."""

    def __init__(self):
        self.code = SAM2Base._prepare_memory_conditioned_features.__code__
        self.records: List[dict] = []

    def __enter__(self):
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)

    def _global(self, frame, event, arg):
        return self._local if frame.f_code is self.code else None

    def _local(self, frame, event, arg):
        if event == "return":
            self._record(frame.f_locals)
        return self._local

    def _record(self, loc) -> None:
        if loc.get("is_init_cond_frame") or "t_pos_and_prevs" not in loc:
            self.records.append({"frame": int(loc["frame_idx"]), "init_cond": True})
            return
        out_dict = loc["output_dict"]
        where = {}
        for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
            for f, out in out_dict[kind].items():
                where[id(out)] = (int(f), kind == "cond_frame_outputs")
        memory = [(int(t_pos), *where[id(out)]) for t_pos, out in loc["t_pos_and_prevs"] if out is not None]
        missing = [int(t_pos) for t_pos, out in loc["t_pos_and_prevs"] if out is None]
        ptr_where = {id(out["obj_ptr"]): where[id(out)][0] for out in
                     list(out_dict["cond_frame_outputs"].values()) + list(out_dict["non_cond_frame_outputs"].values())}
        pointers = [(int(d), ptr_where[id(p)]) for d, p in loc.get("pos_and_ptrs", [])]
        valid = loc.get("valid_indices")
        self.records.append({
            "frame": int(loc["frame_idx"]), "init_cond": False,
            "memory": memory,  # [(t_pos, frame, is_cond)] in the order attended
            "missing": missing,  # t_pos whose entry was None (skipped)
            "pointers": pointers,  # [(temporal offset, frame)]
            "valid_indices": None if valid is None else [int(v) for v in valid],
        })


class HeadRecorder:
    """Wraps ``_forward_sam_heads`` to log the decoder's candidates and SAMURAI's choice."""

    def __init__(self, model):
        self.model = model
        self.records: List[dict] = []
        self.frame: Optional[int] = None
        fn = model._forward_sam_heads

        def heads(*args, **kwargs):
            before = self._kf_state()
            out = fn(*args, **kwargs)
            low_multi, _, ious, low, _, _, obj_score, best_iou, kf_iou = out
            chosen = [i for i in range(low_multi.shape[1]) if torch.equal(low_multi[:, i : i + 1], low)]
            self.records.append({
                "frame": self.frame,
                "multimask": bool(kwargs.get("multimask_output", False)),
                "mask_input": kwargs.get("mask_inputs") is not None,
                "candidates": low_multi.detach().float().clone(),  # (1, M, S/4, S/4) after the no-object blanking
                "ious": ious.detach().float().clone(),  # (1, M)
                "object_score": float(obj_score.reshape(-1)[0]),
                "chosen": chosen,  # indices of the candidates equal to the chosen mask
                "best_iou": float(torch.as_tensor(best_iou).reshape(-1)[0]),
                "kf_score": None if kf_iou is None else float(torch.as_tensor(kf_iou).reshape(-1)[0]),
                "kf_before": before,
                "kf_after": self._kf_state(),
            })
            return out

        model._forward_sam_heads = heads

    def _kf_state(self) -> dict:
        m = self.model
        return {
            "started": m.kf_mean is not None,
            "stable_frames": int(m.stable_frames),
            "mean": None if m.kf_mean is None else _np(m.kf_mean),
            "cov": None if m.kf_covariance is None else _np(m.kf_covariance),
        }


# ------------------------------------------------------------------------------ jobs
def _predictor_and_state(job: dict):
    """SAMURAI's predictor for a track/time job, and its inference state over the job's frames."""
    image_size = int(job["image_size"])
    frames = job["frames"].numpy() if isinstance(job["frames"], torch.Tensor) else np.asarray(job["frames"])
    overrides = [f"++model.image_size={image_size}"] + list(job.get("overrides", []))
    predictor = _quiet_build(ckpt_path=job["checkpoint"], hydra_overrides_extra=overrides)
    images = [oracle.preprocess_frame(f, image_size) for f in frames]
    h, w = frames.shape[1:3]
    orig = _vp.load_video_frames
    _vp.load_video_frames = lambda **kwargs: (images, h, w)
    try:
        state = predictor.init_state(video_path="<frames>")
    finally:
        _vp.load_video_frames = orig
    return predictor, state, frames


def _prompt_args(prompt: dict) -> dict:
    args = {}
    if prompt.get("box") is not None:
        args["box"] = torch.as_tensor(np.asarray(prompt["box"], dtype=np.float32))
    if prompt.get("points") is not None:
        args["points"] = torch.as_tensor(np.asarray(prompt["points"], dtype=np.float32))
        args["labels"] = torch.as_tensor(np.asarray(prompt["labels"], dtype=np.int32))
    return args


def run_track(job: dict) -> dict:
    """Track one object: SAMURAI's own protocol (prompt on frame 0, then propagate)."""
    predictor, state, frames = _predictor_and_state(job)
    heads = HeadRecorder(predictor)
    kalman = KalmanRecorder(predictor.kf, lambda: heads.frame)
    outputs: Dict[int, torch.Tensor] = {}
    with torch.inference_mode(), MemoryTracer() as tracer:
        heads.frame = 0
        _, _, video_res = predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, **_prompt_args(job["prompt"]))
        outputs[0] = video_res[0, 0].float().clone()
        _run_frames = predictor._run_single_frame_inference

        def run_frame(*a, **k):
            heads.frame = int(k["frame_idx"])
            return _run_frames(*a, **k)

        predictor._run_single_frame_inference = run_frame
        for f, _, video_res in predictor.propagate_in_video(state):
            outputs[int(f)] = video_res[0, 0].float().clone()
    out_dict = state["output_dict"]
    frames_out = []
    for t in range(len(frames)):
        cond = t in out_dict["cond_frame_outputs"]
        out = out_dict["cond_frame_outputs" if cond else "non_cond_frame_outputs"][t]
        rec = {"frame": t, "cond": cond, "logits": outputs[t], "low_res": out["pred_masks"][0, 0].float().clone(),
               "object_score": float(out["object_score_logits"].reshape(-1)[0])}
        if not cond:
            rec["best_iou"] = float(out["best_iou_score"].reshape(-1)[0])
            rec["kf_score"] = None if out["kf_score"] is None else float(out["kf_score"].reshape(-1)[0])
        frames_out.append(rec)
    return {"settings": _settings(predictor), "frames": frames_out, "heads": heads.records,
            "kalman": kalman.calls, "memory": tracer.records}


def run_time(job: dict) -> dict:
    """A track job timed frame by frame, nothing recorded (see the module docstring)."""
    import time

    predictor, state, frames = _predictor_and_state(job)
    ms = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        _, _, video_res = predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, **_prompt_args(job["prompt"]))
        first = video_res[0, 0].float().clone()
        ms.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        for _f, _, _res in predictor.propagate_in_video(state):
            t1 = time.perf_counter()
            ms.append((t1 - t0) * 1e3)
            t0 = t1
    # propagate_in_video yields frame 0 first: its memory encoding (the preflight), no decode
    return {"ms": [ms[0] + ms[1]] + ms[2:], "first_logits": first}


def run_kalman(job: dict) -> dict:
    """SAMURAI's KalmanFilter on sequences of ("initiate", z) / ("predict",) / ("update", z) /
    ("iou", boxes) operations; returns the state (or IoUs) after each."""
    kf = KalmanFilter()
    results = []
    for seq in job["sequences"]:
        mean = cov = None
        states = []
        for op in seq:
            if op[0] == "initiate":
                mean, cov = kf.initiate(kf.xyxy_to_xyah(list(op[1])) if op[2] else list(op[1]))
            elif op[0] == "predict":
                mean, cov = kf.predict(mean, cov)
            elif op[0] == "update":
                mean, cov = kf.update(mean, cov, kf.xyxy_to_xyah(list(op[1])) if op[2] else list(op[1]))
            elif op[0] == "iou":
                states.append({"ious": _np(kf.compute_iou(mean[:4], [list(b) for b in op[1]]))})
                continue
            states.append({"mean": _np(mean), "cov": _np(cov)})
        results.append(states)
    return {"results": results}


def _model_without_weights(image_size: int, overrides=()):
    """SAMURAI's model with its random initialisation (the stub jobs need no weights)."""
    return _quiet_build(ckpt_path=None, hydra_overrides_extra=[f"++model.image_size={image_size}", *overrides])


def run_select(job: dict) -> dict:
    """SAMURAI's candidate selection on given decoder answers: ``sequences``, each a list of
    steps (low_res_multimasks (1, 3, S/4, S/4), ious (1, 3), object-score logit), each run
    from a fresh filter. The mask decoder and prompt encoder are stubs returning them;
    everything after the decoder in ``_forward_sam_heads`` is SAMURAI's."""
    s = int(job["image_size"])
    model = _model_without_weights(s, job.get("overrides", ()))
    c, h = model.hidden_dim, s // 16
    results = []
    for seq in job["sequences"]:
        model.kf_mean = model.kf_covariance = None
        model.stable_frames = 0
        heads = HeadRecorder(model)
        kalman = KalmanRecorder(model.kf, lambda: heads.frame)
        feed = iter(seq)

        def prompt_encoder(points, boxes, masks):
            return torch.zeros(1, 1, c), torch.zeros(1, c, h, h)

        def decoder(**kwargs):
            low, ious, score = next(feed)
            return low.float(), ious.float(), torch.zeros(1, 4, c), score.reshape(1, 1).float()

        model.sam_prompt_encoder.forward = prompt_encoder
        model.sam_prompt_encoder.get_dense_pe = lambda: torch.zeros(1, c, h, h)
        model.sam_mask_decoder.forward = decoder
        with torch.inference_mode():
            for t in range(len(seq)):
                heads.frame = t
                model._forward_sam_heads(backbone_features=torch.zeros(1, c, h, h), multimask_output=True)
        results.append({"heads": heads.records, "kalman": kalman.calls})
        model._forward_sam_heads = SAM2Base._forward_sam_heads.__get__(model)
        model.kf = KalmanFilter()
    return {"results": results, "settings": _settings(model)}


def run_memory(job: dict) -> dict:
    """SAMURAI's memory selection for frame T, given each past frame's scores.

    ``patterns``: lists of (best_iou, object_score, kf_score or None) for frames 1..T-1 (frame
    0 is the conditioning frame); the memory attention is a stub (its inputs are not needed:
    the selection is read from the function's locals)."""
    s = int(job["image_size"])
    model = _model_without_weights(s, job.get("overrides", ()))
    c, h, cm = model.hidden_dim, s // 16, model.mem_dim
    model.memory_attention.forward = lambda curr, **kwargs: torch.zeros_like(curr[0] if isinstance(curr, list) else curr)
    results = []

    def entry(iou, score, kf):
        return {"maskmem_features": torch.zeros(1, cm, h, h), "maskmem_pos_enc": [torch.zeros(1, cm, h, h)],
                "obj_ptr": torch.zeros(1, c), "object_score_logits": torch.tensor([[float(score)]]),
                "best_iou_score": torch.tensor([float(iou)]), "kf_score": None if kf is None else torch.tensor([float(kf)]),
                "pred_masks": torch.zeros(1, 1, 4 * h, 4 * h)}

    for pattern in job["patterns"]:
        out = {"cond_frame_outputs": {0: entry(1.0, 10.0, None)}, "non_cond_frame_outputs": {}}
        for f, (iou, score, kf) in enumerate(pattern, start=1):
            out["non_cond_frame_outputs"][f] = entry(iou, score, kf)
        t = len(pattern) + 1
        with torch.inference_mode(), MemoryTracer() as tracer:
            model._prepare_memory_conditioned_features(
                frame_idx=t, is_init_cond_frame=False, current_vision_feats=[torch.zeros(h * h, 1, c)],
                current_vision_pos_embeds=[torch.zeros(h * h, 1, c)], feat_sizes=[(h, h)], output_dict=out,
                num_frames=t + 1)
        results.append(tracer.records[-1])
    return {"results": results, "settings": _settings(model)}


JOBS = {"track": run_track, "time": run_time, "kalman": run_kalman, "select": run_select, "memory": run_memory}


def main(argv: List[str]) -> int:
    if len(argv) != 3:
        print("usage: samurai_oracle.py JOBS.pt RESULTS.pt", file=sys.stderr)
        return 2
    torch.set_grad_enabled(False)
    payload = torch.load(argv[1], weights_only=False)
    torch.set_num_threads(int(payload["threads"]))
    results = [JOBS[job["kind"]](job) for job in payload["jobs"]]
    info = {"torch": torch.__version__, "sam2": os.path.dirname(sam2.__file__), "threads": torch.get_num_threads()}
    torch.save({"results": results, "info": info}, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

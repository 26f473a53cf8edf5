"""Export the static frame step (``sam2_ros.step.frame_step``) whole to ONNX, for a given capacity.

One graph: image features, the bank (:class:`~sam2_ros.step.bank.BankState`) and the frame's
:class:`~sam2_ros.step.frame_step.PromptBatch` in; the new bank, every slot's low-res logits and
object-score logits out. Unprompted frames pass an all-``TRACKED`` prompt batch (the prompt
decoder then runs on padding: the price of one graph for every frame). The encoder stays its
own graph (``--part encoder``): the step takes its outputs, so ``encoder + step`` is the whole
per-frame path. Bank memories travel as float32 holding bfloat16 values (numpy has no
bfloat16); the graph rounds what it writes to bfloat16 first, as the torch step stores it.

Inputs (S = capacity, h = S_img / 16, N = max points): feat, pos (1, 256, h, h), high_res_0,
high_res_1, then the bank fields (``mem`` float32) and the prompt fields, named as the
dataclasses name them; outputs: ``next_<field>`` for each bank field, ``step_low_res`` (S, 1, 4h, 4h)
and ``step_score_logits`` (S, 1).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import fields
from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from ..step.bank import BankLayout, BankState, MemoryBank
from ..step.frame_step import PromptBatch, StepTables, build_prompt_batch, frame_step
from ..model.sam2 import SAM2, ImageFeatures
from .metadata import weights_fingerprint

FEATURES = ("feat", "pos", "high_res_0", "high_res_1")
INPUTS = FEATURES + BankState._fields + PromptBatch._fields
OUTPUTS = tuple(f"next_{n}" for n in BankState._fields) + ("step_low_res", "step_score_logits")


def layout_facts(layout: BankLayout, max_points: int) -> Dict[str, str]:
    """What a step file must say to fit a tracker (its static shapes, and the memory selection
    its graph computes: SAMURAI's with its settings, or SAM 2's)."""
    facts = {"capacity": str(layout.slots), "cond_frames": str(layout.cond), "recent_frames": str(layout.recent),
             "max_prompt_points": str(max_points), "memory_selection": "sam2" if layout.samurai is None else "samurai"}
    if layout.samurai is not None:
        cfg = layout.samurai
        facts["samurai_settings"] = ", ".join(f"{f.name}={getattr(cfg, f.name)}" for f in fields(cfg) if f.init)
    return facts


class StepGraph(nn.Module):
    """:func:`frame_step` with flat tensor inputs and outputs."""

    def __init__(self, model: SAM2, layout: BankLayout) -> None:
        super().__init__()
        self.model, self.layout = model, layout
        self.tables = StepTables(model, layout)

    def forward(self, *inputs: Tensor) -> Tuple[Tensor, ...]:
        nf, nb = len(FEATURES), len(BankState._fields)
        feat, pos, h0, h1 = inputs[:nf]
        state = BankState(*inputs[nf : nf + nb])
        prompts = PromptBatch(*inputs[nf + nb :])
        new, low, score = frame_step(self.model, self.layout, self.tables, state, ImageFeatures(feat, pos, [h0, h1]), prompts)
        return (*new._replace(mem=new.mem.float()), low, score)


def example_inputs(model: SAM2, layout: BankLayout, max_points: int) -> Dict[str, Tensor]:
    """Inputs of the exported shapes (the first slot holds a new object, so no branch is dead)."""
    cfg = model.cfg
    with torch.no_grad():
        f = model.encode_image(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
    bank = MemoryBank(layout, "cpu", mem_dtype=torch.float32)
    bank.clear_slot_(0, active=True)
    batch = build_prompt_batch(layout.slots, max_points, cfg.image_size, torch.device("cpu"),
                               {0: (1, [[10.0, 10.0]], [1], None, True, True)})
    return dict(zip(INPUTS, (f.feat, f.pos, *f.high_res, *bank.state(), *batch)))


def export_step(model: SAM2, layout: BankLayout, output: str, max_points: int = 16, opset: int = 18,
                checkpoint_sha256: str = "", quiet: bool = False) -> Dict[str, str]:
    """Write the frame step for ``layout`` to ``output`` (dynamo exporter, float32); returns the
    metadata written into the file."""
    import onnx

    from ..version import __version__

    model = model.eval().cpu()
    inputs = example_inputs(model, layout, max_points)
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(StepGraph(model, layout), tuple(inputs.values()), output, input_names=list(inputs),
                          output_names=list(OUTPUTS), opset_version=opset, dynamo=True, external_data=False, verbose=False)
    proto = onnx.load(output)
    meta = {"producer": "sam2_ros", "sam2_ros_version": __version__, "torch_version": torch.__version__,
            "part": "step", "model": model.cfg.name, "sam2_version": model.cfg.version,
            "image_size": str(model.cfg.image_size), "opset": str(opset), "precision": "fp32",
            "checkpoint_sha256": checkpoint_sha256 or "random-weights", "weights_fingerprint": weights_fingerprint(model, "step"),
            **layout_facts(layout, max_points)}
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, output)
    onnx.checker.check_model(output)
    if not quiet:
        print(f"[export] step ({layout.slots} slots) written to {output} in {time.perf_counter() - t0:.1f} s", flush=True)
    return meta


def tracked_batch(slots: int, max_points: int, image_size: int, device) -> PromptBatch:
    """The prompt batch of an unprompted frame (every slot ``TRACKED``)."""
    return build_prompt_batch(slots, max_points, image_size, torch.device(device), {})

"""Our EdgeTAM equals EdgeTAM's release on the same official-format checkpoint (random weights,
every parameter and BatchNorm statistic perturbed), at 1024 px on real frames.

The release runs in its own venv and process (``edgetam_oracle`` fixture, once per session):
image-encoder features, the image predictor's answers (a click with three candidates, two
clicks, a box with one and three candidates, a mask-input refinement), the memory encoder
followed by the spatial perceiver, and the memory attention whose cross-attention rotates only
the perceiver's 2-D latents. Max relative error (max |ours - theirs| / max |theirs|) <= 1e-4.
"""

import numpy as np
import pytest
import torch

from sam2_ros.image.predictor import ImagePredictor
from sam2_ros.model.build import build_model
from sam2_ros.model.preprocess import to_model_input
from sam2_ros.model.sam2 import SAM2

TOL = 1e-4


def rel(a, b):
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    assert a.shape == b.shape, (a.shape, b.shape)
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.fixture(scope="module")
def reference(edgetam_oracle):
    return edgetam_oracle.request, edgetam_oracle.model_level()


@pytest.fixture(scope="module")
def model(reference, edgetam_oracle):
    return build_model(str(edgetam_oracle.checkpoint), "edgetam", 1024, "cpu")


@pytest.fixture(scope="module")
def frames(reference):
    return reference[0]["frames"].numpy()


@pytest.fixture(scope="module")
def features(model, frames):
    """Our encoder's output on frames 0 and 1."""
    with torch.inference_mode():
        return [model.encode_image(to_model_input([frames[i]], 1024, "cpu")) for i in (0, 1)]


def test_image_encoder_matches(model, reference, frames, features):
    _, ans = reference
    with torch.inference_mode():
        (s4, s8, s16), pos = model.image_encoder(to_model_input([frames[0]], 1024, "cpu"))
    enc = ans["encoder"]
    for mine, theirs in ((s4, enc["fpn_s4"]), (s8, enc["fpn_s8"]), (s16, enc["fpn_s16"]), (pos, enc["pos_s16"])):
        assert rel(mine, theirs) <= TOL
    official = ans["image"]["_features"]
    feats = features[0]
    assert rel(model.image_embedding(feats), official["image_embed"]) <= TOL
    assert rel(feats.high_res[0], official["high_res_s4"]) <= TOL
    assert rel(feats.high_res[1], official["high_res_s8"]) <= TOL


def test_fused_trunk_matches(reference, edgetam_oracle, frames):
    """BatchNorms and token-mixer branches folded into single convs: the same features."""
    fused = build_model(str(edgetam_oracle.checkpoint), "edgetam", 1024, "cpu", fuse=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with torch.inference_mode():
        (s4, s8, s16), _ = fused.image_encoder(to_model_input([frames[0]], 1024, "cpu"))
    enc = reference[1]["encoder"]
    for mine, theirs in ((s4, enc["fpn_s4"]), (s8, enc["fpn_s8"]), (s16, enc["fpn_s16"])):
        assert rel(mine, theirs) <= TOL


def _prompt_names(request):
    return [p["name"] for p in request["image_prompts"]]


@pytest.fixture(scope="module")
def predictor(model):
    return ImagePredictor(model, cache_size=2)


@pytest.mark.parametrize("name", ["point", "two_points", "box", "box_multi", "mask_refine"])
def test_image_predictor_matches(predictor, reference, frames, name):
    req, ans = reference
    prompts = {p["name"]: p for p in req["image_prompts"]}
    p = prompts[name]
    mask_input = None
    if p.get("mask_from"):
        first = prompts[p["mask_from"]]
        prev = predictor.segment(frames[0], points=first.get("points"), labels=first.get("labels"),
                                 box=first.get("box"), multimask=first["multimask"])
        mask_input = prev.low_res_logits[int(prev.scores.argmax())][None]
    res = predictor.segment(frames[0], points=p.get("points"), labels=p.get("labels"), box=p.get("box"),
                            mask_input=mask_input, multimask=p["multimask"])
    theirs = ans["image"][name]
    assert rel(res.logits, theirs["masks"]) <= TOL
    assert rel(res.scores, theirs["ious"]) <= TOL
    assert rel(res.low_res_logits, theirs["low_res_logits"]) <= TOL
    assert np.array_equal(np.asarray(res.logits) > 0, theirs["masks"].numpy() > 0)


def test_memory_encoder_and_perceiver_match(model, reference, features):
    """SAM 2's memory encoder, then the spatial perceiver: 64 x 64 tokens -> 512 per frame."""
    req, ans = reference
    for job in req["memory"]:
        feats = features[job["frame"]]
        mask = job["high_res_mask"][None, None]
        score = torch.tensor([[job["object_score"]]])
        with torch.inference_mode():
            raw, raw_pos = SAM2.encode_memory(model, feats.feat, mask, score, job["binarize"])  # (1, C_mem, h, w)
            tokens, pos = model.encode_memory(feats.feat, mask, score, job["binarize"])  # (1, 512, C_mem)
        theirs = ans["memory"][job["name"]]
        assert rel(raw, theirs["encoder_features"]) <= TOL and rel(raw_pos, theirs["encoder_pos"]) <= TOL
        assert tokens.shape == (1, model.memory_tokens_per_frame, model.cfg.mem_dim) == (1, 512, 64)
        assert rel(tokens, theirs["features"]) <= TOL
        assert rel(pos, theirs["pos"]) <= TOL
        assert torch.equal(pos[0], model.memory_positions())
        assert torch.equal(model.memory_as_tokens(tokens), tokens)


def test_perceiver_rows_are_independent(model, reference, features):
    """Objects encoded together get what each gets alone (the release cannot batch them)."""
    req, _ = reference
    masks = torch.stack([job["high_res_mask"][None] for job in req["memory"]])  # (2, 1, S, S)
    scores = torch.ones(2, 1)
    with torch.inference_mode():
        both, _ = model.encode_memory(features[0].feat, masks, scores, False)
        alone = [model.encode_memory(features[0].feat, masks[i : i + 1], scores[:1], False)[0] for i in range(2)]
    assert torch.equal(both, torch.cat(alone))


def test_memory_attention_matches(model, reference, features):
    """Frame features attend to memory frames of 512 tokens (+ object-pointer tokens)."""
    req, ans = reference
    for job in req["memory_attention"]:
        with torch.inference_mode():
            out = model.condition_on_memory(features[job["frame"]], job["memory"], job["memory_pos"],
                                            job["num_ptr_tokens"])
        assert rel(out, ans["memory_attention"][job["name"]]) <= TOL


def test_memory_attention_rope_mask_matches(model, reference, features):
    """The static step's form: which keys are rotated given per row (``memory_rope``), the
    memory padded with masked-out tokens; the same result."""
    req, ans = reference
    job = req["memory_attention"][0]
    n_rope = job["num_spatial_mem"] * model.memory_tokens_per_frame
    m = job["memory"].shape[1]
    pad = 7
    memory = torch.cat((job["memory"], torch.randn(1, pad, 64)), 1)
    memory_pos = torch.cat((job["memory_pos"], torch.randn(1, pad, 64)), 1)
    valid = torch.arange(m + pad) < m
    rope = torch.arange(m + pad) < n_rope
    with torch.inference_mode():
        out = model.condition_on_memory(features[job["frame"]], memory, memory_pos, 0, valid[None], rope[None])
    assert rel(out, ans["memory_attention"][job["name"]]) <= TOL

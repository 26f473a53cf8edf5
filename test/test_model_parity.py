"""Our SAM 2 equals Meta's on the same official-format checkpoint (random, perturbed weights).

Image-encoder features and the decoder's answers (logits, IoU scores, object scores) for
points, a box, box + point, mask-input refinement and multimask, against
``SAM2ImagePredictor.predict(return_logits=True)``; and every video-model building block
against the corresponding ``SAM2Base`` method, on real frames.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam2_ros.image.predictor import ImagePredictor
from sam2_ros.model.build import build_model
from sam2_ros.model.preprocess import to_model_input

CASES = [("tiny", 256, "2.1"), ("small", 320, "2.1"), ("tiny", 288, "2.0")]


def rel(a, b):
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}-v{c[2]}")
def pair(request, official_checkpoint):
    from helpers.oracle import official_image_predictor

    size, image_size, version = request.param
    ckpt = official_checkpoint(size, image_size, seed=1, version=version)
    theirs = official_image_predictor(ckpt, size, image_size, version=version)
    ours = ImagePredictor(build_model(str(ckpt), size, image_size, "cpu"), cache_size=4)
    assert ours.model.cfg.version == version  # detected from the checkpoint's keys
    return ours, theirs


@pytest.fixture(scope="module")
def image(bunny_frames):
    return bunny_frames(1, 320, 180, start=40)[0]


def test_image_encoder_matches(pair, image):
    ours, theirs = pair
    theirs.set_image(image)
    emb = ours.embed(image)
    assert rel(emb.features.feat, theirs._features["image_embed"]) < 1e-4
    for mine, official in zip(emb.features.high_res, theirs._features["high_res_feats"]):
        assert rel(mine, official) < 1e-4


PROMPTS = {
    "point": dict(points=[[150, 100]], labels=[1]),
    "two_points": dict(points=[[150, 100], [40, 30]], labels=[1, 0]),
    "box": dict(box=[60, 40, 220, 160]),
    "box_point": dict(box=[60, 40, 220, 160], points=[[100, 90]], labels=[0]),
}


@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_decoder_matches(pair, image, prompt, multimask):
    ours, theirs = pair
    theirs.set_image(image)
    kw = PROMPTS[prompt]
    official = theirs.predict(
        point_coords=np.array(kw["points"]) if "points" in kw else None,
        point_labels=np.array(kw["labels"]) if "labels" in kw else None,
        box=np.array(kw["box"]) if "box" in kw else None,
        multimask_output=multimask,
        return_logits=True,
    )
    res = ours.segment(image, multimask=multimask, **kw)
    logits, scores, low = official
    assert res.logits.shape == logits.shape
    assert rel(res.logits, logits) < 1e-4
    assert rel(res.scores, scores) < 1e-4
    assert rel(res.low_res_logits, low) < 1e-4
    assert (res.logits > 0).numpy().tolist() == (logits > 0).tolist()


def test_mask_input_refinement_matches(pair, image):
    ours, theirs = pair
    theirs.set_image(image)
    _, s1, low1 = theirs.predict(point_coords=np.array([[150, 100]]), point_labels=np.array([1]), return_logits=True)
    logits, scores, _ = theirs.predict(
        point_coords=np.array([[150, 100], [40, 30]]), point_labels=np.array([1, 0]),
        mask_input=low1[np.argmax(s1)][None], multimask_output=False, return_logits=True,
    )
    first = ours.segment(image, points=[[150, 100]], labels=[1])
    best = first.low_res_logits[int(first.scores.argmax())][None]
    res = ours.segment(image, points=[[150, 100], [40, 30]], labels=[1, 0], mask_input=best, multimask=False)
    assert rel(res.logits, logits) < 1e-4 and rel(res.scores, scores) < 1e-4


def test_object_scores_and_video_blocks_match(pair, image):
    """Object-score head, object pointer, mask-as-output, memory encoder and memory
    attention against SAM2Base's own methods."""
    ours, theirs = pair
    model, off = ours.model, theirs.model
    s = model.cfg.image_size
    with torch.inference_mode():
        x = to_model_input([image], s, "cpu")
        feats = model.encode_image(x)
        bo = off.forward_image(x)
        _, vf, vp, fs = off._prepare_backbone_features(bo)
        hr = [f.permute(1, 2, 0).view(1, -1, *z) for f, z in zip(vf[:-1], fs[:-1])]
        pix = vf[-1].permute(1, 2, 0).view(1, -1, *fs[-1])
        pts = {"point_coords": torch.tensor([[[100.0, 80.0]]]), "point_labels": torch.tensor([[1]], dtype=torch.int32)}
        o = off._forward_sam_heads(pix, pts, None, hr, True)
        m = model.predict_masks(feats.feat, feats.high_res, pts["point_coords"], pts["point_labels"], None, True)
        assert rel(m.low_res_multimasks, o[0]) < 1e-4 and rel(m.high_res_masks, o[4]) < 1e-4
        assert rel(m.obj_ptr, o[5]) < 1e-4 and rel(m.object_score_logits, o[6]) < 1e-4
        mask = F.interpolate(torch.from_numpy(image[None, None, :, :, 0] > 100).float(), size=(s, s)) > 0.5
        o = off._use_mask_as_output(pix, hr, mask)
        m = model.mask_as_output(feats, mask)
        assert rel(m.low_res_masks, o[3]) < 1e-4 and rel(m.obj_ptr, o[5]) < 1e-4
        hm = o[4] * 0.3
        for score in (1.0, -1.0):  # present, and absent (no-object embedding)
            sc = torch.tensor([[score]])
            mf, mp = off._encode_new_memory(vf, fs, hm, sc, False)
            mine, pos = model.encode_memory(feats.feat, hm, sc)
            assert rel(mine, mf) < 1e-4 and rel(pos, mp[0]) < 1e-4
        hw = fs[-1][0] * fs[-1][1]
        mem = torch.randn(2 * hw + 8, 1, model.cfg.mem_dim, generator=torch.Generator().manual_seed(0))
        mem_pos = torch.randn_like(mem)
        oa = off.memory_attention(curr=vf[-1:], curr_pos=vp[-1:], memory=mem, memory_pos=mem_pos, num_obj_ptr_tokens=8)
        ma = model.condition_on_memory(feats, mem.transpose(0, 1), mem_pos.transpose(0, 1), 8)
        assert rel(ma, oa.permute(1, 2, 0).view_as(ma)) < 1e-4

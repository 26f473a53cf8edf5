"""EdgeTAM's model steps, composed as SAM 2's video model composes them, give the release's
video predictor's numbers: one object prompted on frame 0 (a click, a box, a mask), tracked
over 10 frames at 512 px, each object alone (the release cannot track two: its issue #15).

The loop below is a reference for the trackers (phase 2), not one of them: it shows what the
memory bank holds for EdgeTAM (512 tokens per memory frame, their constant positions plus
the frame's temporal encoding, object pointers split into 4 tokens with zero positions) and
that the per-frame methods are all a tracker needs.
"""

import pytest
import torch
import torch.nn.functional as F

from sam2_ros.model.build import build_model
from sam2_ros.model.preprocess import to_model_input

TOL = 1e-4


def rel(a, b):
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def track_one_object(model, encoded, prompt):
    """Frame 0 prompted (a conditioning frame), then every frame tracked from memory;
    ``encoded``: each frame's ``encode_image`` output.

    Returns per frame: low-res logits (1, 1, S/4, S/4), object-score logit, object pointer,
    memory (1, T, C_mem) in bfloat16."""
    cfg, s = model.cfg, model.cfg.image_size
    n = len(encoded)
    mems, ptrs, outs = {}, {}, []
    for t, feats in enumerate(encoded):
        if t == 0:
            if prompt.get("mask") is not None:
                pred = model.mask_as_output(feats, torch.as_tensor(prompt["mask"])[None, None].float())
            else:
                coords, labels = [], []
                if prompt.get("box") is not None:
                    coords += [prompt["box"][:2], prompt["box"][2:]]
                    labels += [2, 3]
                coords += list(prompt.get("points") or [])
                labels += list(prompt.get("labels") or [])
                pred = model.predict_masks(model.image_embedding(feats), feats.high_res,
                                           torch.tensor([coords], dtype=torch.float32),
                                           torch.tensor([labels], dtype=torch.int32),
                                           multimask=model.use_multimask(len(labels)))
            # A prompted frame is remembered from its low-res logits, binarized.
            high = F.interpolate(pred.low_res_masks, size=(s, s), mode="bilinear", align_corners=False)
            mem, _ = model.encode_memory(feats.feat, high, pred.object_score_logits, True)
        else:
            # Spatial memory: the conditioning frame (temporal slot 0), then the last
            # num_maskmem - 1 frames, oldest first; each frame is T = 512 tokens.
            spatial = [(0, 0)] + [(t - back, back) for back in range(cfg.num_maskmem - 1, 0, -1) if t - back >= 1]
            pos = model.memory_positions()  # (T, C_mem)
            memory = torch.cat([mems[f].float() for f, _ in spatial], 1)  # (1, n*T, C_mem)
            memory_pos = torch.cat([pos + model.memory_tpos(back)[0] for _, back in spatial])[None]
            # Pointers: the conditioning frame's, then the previous frames' newest first.
            max_ptrs = min(n, cfg.max_obj_ptrs)
            frames_back = [t] + [d for d in range(1, max_ptrs) if t - d >= 1]
            plist = [ptrs[0]] + [ptrs[t - d] for d in frames_back[1:]]
            tokens, tpos = model.pointer_tokens(torch.stack(plist, 1), torch.tensor([frames_back], dtype=torch.float32),
                                                max_ptrs)
            pix = model.condition_on_memory(feats, torch.cat((memory, tokens), 1), torch.cat((memory_pos, tpos), 1),
                                            tokens.shape[1])
            pred = model.predict_masks(pix, feats.high_res, multimask=model.use_multimask(0))
            mem, _ = model.encode_memory(feats.feat, pred.high_res_masks, pred.object_score_logits, False)
        mems[t] = mem.to(torch.bfloat16)  # (1, T, C_mem), kept in bfloat16 as upstream
        ptrs[t] = pred.obj_ptr  # (1, C)
        outs.append((pred.low_res_masks, pred.object_score_logits, pred.obj_ptr, mems[t]))
    return outs


@pytest.fixture(scope="module")
def video(edgetam_oracle):
    return edgetam_oracle.video_request, edgetam_oracle.video()


@pytest.fixture(scope="module")
def model(edgetam_oracle, video):
    return build_model(str(edgetam_oracle.checkpoint), "edgetam", video[0]["image_size"], "cpu")


@pytest.fixture(scope="module")
def encoded(model, video):
    """Each frame encoded once, for every object."""
    with torch.inference_mode():
        size = model.cfg.image_size
        return [model.encode_image(to_model_input([f], size, "cpu")) for f in video[0]["frames"].numpy()]


@pytest.mark.parametrize("name", ["points", "box", "mask"])
def test_tracking_one_object_matches_release(model, video, encoded, name):
    req, theirs = video
    obj = next(o for o in req["video"] if o["name"] == name)
    with torch.inference_mode():
        outs = track_one_object(model, encoded, obj)
    ref = theirs[name]
    assert len(outs) == ref["low_res_logits"].shape[0] >= 10
    for t, (low, score, ptr, mem) in enumerate(outs):
        assert rel(low, ref["low_res_logits"][t : t + 1]) <= TOL, t
        assert rel(score.flatten(), ref["object_score_logits"][t : t + 1]) <= TOL, t
        assert rel(ptr, ref["obj_ptr"][t : t + 1]) <= TOL, t
        # IoU of the masks, the product-level measure.
        a, b = low > 0, ref["low_res_logits"][t : t + 1] > 0
        assert (a & b).sum() / (a | b).sum().clamp_min(1) >= 0.999, t
    assert torch.equal(model.memory_positions(), ref["memory_pos"])
    # Alive: the object is present, its mask neither empty nor everything, and it moves.
    lows = torch.cat([o[0] for o in outs])
    assert (torch.cat([o[1] for o in outs]) > 0).all()
    assert 0.01 < (lows > 0).float().mean() < 0.99
    assert (lows[1:] > 0).ne(lows[:-1] > 0).any()

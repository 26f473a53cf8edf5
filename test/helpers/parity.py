"""What the parity tests share: a scenario of prompts over the clip's frames (points, a box, a
mask, a late object, corrections, a removal), running it through our tracker and through Meta's
predictor (:mod:`helpers.oracle`), and comparing the two: bit for bit (:func:`assert_same`) or
within float rounding (:func:`assert_close`)."""
import numpy as np
import torch

from sam2_ros import Prompt

FRAMES = 26  # > num_maskmem (7) + 16 pointers


def ellipse(h, w, cx, cy, rx, ry):
    yy, xx = np.mgrid[:h, :w]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def scenario(h, w):
    """frame -> list of actions: ("prompt", Prompt) or ("remove", obj_id)."""
    return {
        0: [("prompt", Prompt(1, points=[[0.45 * w, 0.55 * h]], labels=[1])),
            ("prompt", Prompt(2, box=[0.05 * w, 0.1 * h, 0.4 * w, 0.6 * h]))],
        3: [("prompt", Prompt(3, mask=ellipse(h, w, 0.7 * w, 0.4 * h, 0.12 * w, 0.2 * h)))],
        6: [("prompt", Prompt(1, points=[[0.5 * w, 0.5 * h]], labels=[1]))],  # correction, one click
        9: [("prompt", Prompt(4, points=[[0.2 * w, 0.8 * h], [0.3 * w, 0.3 * h]], labels=[1, 0]))],  # new, late
        12: [("prompt", Prompt(1, points=[[0.4 * w, 0.6 * h], [0.9 * w, 0.1 * h]], labels=[1, 0]))],  # two clicks
        14: [("remove", 2)],
        17: [("prompt", Prompt(3, mask=ellipse(h, w, 0.65 * w, 0.45 * h, 0.1 * w, 0.15 * h)))],  # mask on tracked object
        19: [("prompt", Prompt(4, box=[0.1 * w, 0.5 * h, 0.4 * w, 0.95 * h]))],  # box correction
    }


def run_ours(tracker, frames, plan):
    out = []
    for t, frame in enumerate(frames):
        prompts = []
        for kind, arg in plan.get(t, []):
            if kind == "remove":
                tracker.remove_object(arg)
            else:
                prompts.append(arg)
        res = tracker.track(frame, prompts)
        out.append({oid: (res.logits[i], float(res.scores[i])) for i, oid in enumerate(res.object_ids)})
    return out


def run_oracle(oracle, frames, plan):
    out = []
    live = set()
    for t in range(len(frames)):
        actions = plan.get(t, [])
        for kind, arg in actions:
            if kind == "remove":
                oracle.remove(arg)
                live.discard(arg)
        new = [p for k, p in actions if k == "prompt" and p.obj_id not in live]
        old = [p for k, p in actions if k == "prompt" and p.obj_id in live]
        for p in new:
            _oracle_prompt(oracle, t, p)
            live.add(p.obj_id)
        res = dict(oracle.track(t)) if live else {}
        for p in old:  # corrections come after the frame was tracked
            res.update(_oracle_prompt(oracle, t, p))
        scores = oracle.object_score_logits.get(t, {})
        out.append({oid: (res[oid], 1 / (1 + np.exp(-scores[oid]))) for oid in live})
    return out


def _oracle_prompt(oracle, t, p):
    if p.mask is not None:
        return oracle.add_mask(t, p.obj_id, p.mask)
    return oracle.add_prompt(t, p.obj_id, points=p.points, labels=p.labels, box=p.box)


def assert_same(ours, theirs):
    """Compare per frame and object; returns statistics of the comparison."""
    stats = {"pixels": 0, "tie_flips": 0, "max_err": 0.0}
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert sorted(a) == sorted(b), f"frame {t}: objects {sorted(a)} vs official {sorted(b)}"
        for oid in a:
            la, sa = a[oid]
            lb, sb = b[oid]
            lb = torch.as_tensor(lb)
            scale = lb.abs().max().clamp_min(1e-6)
            err = ((la - lb).abs().max() / scale).item()
            assert err < 1e-3, f"frame {t} object {oid}: logits differ by {err:.2e} (relative)"
            # Masks are identical except where the official logit is within float tolerance of
            # the threshold (a tie: either side is the official answer up to rounding).
            differ = (la > 0) != (lb > 0)
            ties = lb.abs() <= 1e-3 * scale
            assert not (differ & ~ties).any(), (
                f"frame {t} object {oid}: {int((differ & ~ties).sum())} mask pixels differ away from the threshold"
            )
            stats["pixels"] += differ.numel()
            stats["tie_flips"] += int(differ.sum())
            stats["max_err"] = max(stats["max_err"], err)
            assert abs(sa - sb) < 1e-4, f"frame {t} object {oid}: score {sa} vs official {sb}"
    return stats


# One scenario per model size; together they cover corrections kept as conditioning frames
# (small) and as plain memories (tiny).
CASES = {"tiny": (256, False), "small": (320, True)}


def assert_close(ours, theirs, max_err: float, min_iou: float = 0.999):
    """Within float rounding (not bit-identical): relative logit error and mask IoU per
    object-frame. Returns the worst of each."""
    worst = {"max_err": 0.0, "min_iou": 1.0}
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert sorted(a) == sorted(b), f"frame {t}: objects {sorted(a)} vs official {sorted(b)}"
        for oid in a:
            la, lb = a[oid][0], torch.as_tensor(b[oid][0])
            err = ((la - lb).abs().max() / lb.abs().max().clamp_min(1e-6)).item()
            ma, mb = la > 0, lb > 0
            union = int((ma | mb).sum())
            iou = int((ma & mb).sum()) / union if union else 1.0
            assert err <= max_err, f"frame {t} object {oid}: logits differ by {err:.2e} (relative)"
            assert iou >= min_iou, f"frame {t} object {oid}: mask IoU {iou:.5f}"
            assert abs(a[oid][1] - b[oid][1]) < 1e-3, f"frame {t} object {oid}: score {a[oid][1]} vs {b[oid][1]}"
            worst["max_err"], worst["min_iou"] = max(worst["max_err"], err), min(worst["min_iou"], iou)
    return worst


# The static step (padded prompts, masked bank slots, objects batched) adds and multiplies in
# another order than the official predictor, so its logits differ in the last float32 bits
# (about 1e-6 relative on the first frame). Two steps then make such differences larger, as
# they would between two machines running the official code: memories are stored in bfloat16,
# as upstream stores them (8 mantissa bits: a last-bit difference on a rounding boundary moves
# a memory value by 2**-8 of itself), and the memory of a clicked frame is encoded from its
# thresholded mask (a pixel whose logit is within rounding of 0 lands on the other side). The
# random test model's memory attention carries both into the frames after; the frame after a
# click on a tracked object is where the error jumps. Measured (static, 26 frames): on an Intel
# Xeon at most 1e-3 relative; on an AMD EPYC tiny 4.3e-4 (mean 7.5e-5, 0.01 % of pixels
# flipped), small 4.8e-3 (mean 6.0e-4, 0.08 %). A wrong memory slot, position or pointer moves
# whole masks: errors of order 1 and means far above these bounds.
STATIC_MAX_ERR = 2e-2
STATIC_MEAN_ERR = 3e-3
STATIC_MAX_FLIPS = 5e-3  # of a frame's pixels


def assert_static_close(ours, theirs, max_err: float = STATIC_MAX_ERR, mean_err: float = STATIC_MEAN_ERR,
                        max_flips: float = STATIC_MAX_FLIPS, first_frame_err: float = 1e-5):
    """The static step against the official predictor: within float rounding carried through
    bfloat16 memories and thresholded masks (see above). Per object-frame,
    the largest and the mean logit difference relative to the largest official logit, and the
    share of pixels on the other side of the threshold. The first frame, read before any
    memory exists, must agree to float32 rounding. Returns the worst of each."""
    worst = {"max_err": 0.0, "mean_err": 0.0, "flips": 0.0}
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert sorted(a) == sorted(b), f"frame {t}: objects {sorted(a)} vs official {sorted(b)}"
        for oid in a:
            la, lb = a[oid][0], torch.as_tensor(b[oid][0])
            diff = (la - lb).abs() / lb.abs().max().clamp_min(1e-6)
            err, mean = diff.max().item(), diff.mean().item()
            flips = ((la > 0) != (lb > 0)).float().mean().item()
            bound = first_frame_err if t == 0 else max_err
            assert err <= bound, f"frame {t} object {oid}: logits differ by {err:.2e} (relative; bound {bound:.0e})"
            assert mean <= mean_err, f"frame {t} object {oid}: mean logit difference {mean:.2e} (relative)"
            assert flips <= max_flips, f"frame {t} object {oid}: {flips:.2%} of mask pixels flipped"
            assert abs(a[oid][1] - b[oid][1]) < 1e-3, f"frame {t} object {oid}: score {a[oid][1]} vs {b[oid][1]}"
            worst = {"max_err": max(worst["max_err"], err), "mean_err": max(worst["mean_err"], mean),
                     "flips": max(worst["flips"], flips)}
    return worst

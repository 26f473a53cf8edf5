"""EdgeTAM through both tracking paths with objects coming and going, at 256 px (cheap; the
numbers against EdgeTAM's release at 1024 px are ``test_edgetam_tracker.py``).

Alive random weights in EdgeTAM's official layout, made in this process (``edgetam_checkpoint``):
objects added on later frames, corrected with clicks, a box and a mask, removed; each object
tracked together with others gets what it gets alone (exact path), the static frame step
(fixed bank of 512-token memory frames) gets what the exact path gets, several cameras in one
step get what each gets on its own, the state stays bounded on a long stream, and what EdgeTAM
cannot run is refused with the reason.
"""

import numpy as np
import pytest
import torch

from sam2_ros import AutomaticMaskGenerator, ImagePredictor, Prompt, Tracker
from sam2_ros.model.build import build_model
from sam2_ros.tracking.cameras import track_together
from helpers.parity import assert_close, ellipse, run_ours

FRAMES = 9


def _plan(h, w):
    """Objects added on frames 0, 2 and 5, corrected (click, box, mask), one removed."""
    return {
        0: [("prompt", Prompt(1, points=[[0.45 * w, 0.55 * h]], labels=[1])),
            ("prompt", Prompt(2, box=[0.05 * w, 0.1 * h, 0.4 * w, 0.6 * h]))],
        2: [("prompt", Prompt(3, mask=ellipse(h, w, 0.7 * w, 0.4 * h, 0.12 * w, 0.2 * h)))],
        3: [("prompt", Prompt(1, points=[[0.5 * w, 0.5 * h], [0.9 * w, 0.1 * h]], labels=[1, 0]))],
        4: [("remove", 2)],
        5: [("prompt", Prompt(4, points=[[0.2 * w, 0.8 * h]], labels=[1]))],
        6: [("prompt", Prompt(3, mask=ellipse(h, w, 0.65 * w, 0.45 * h, 0.1 * w, 0.15 * h)))],
        7: [("prompt", Prompt(4, box=[0.1 * w, 0.5 * h, 0.4 * w, 0.95 * h]))],
    }


def _alone(plan, oid):
    return {t: [(k, p) for k, p in acts if k == "prompt" and p.obj_id == oid] for t, acts in plan.items()}


@pytest.fixture(scope="module")
def model(edgetam_checkpoint):
    return build_model(str(edgetam_checkpoint()), "edgetam", 256, "cpu")


@pytest.fixture(scope="module")
def clip(bunny_frames):
    frames = bunny_frames(FRAMES, 320, 180)
    return frames, _plan(*frames[0].shape[:2])


@pytest.fixture(scope="module")
def exact(model, clip):
    """The exact path on the whole plan (the reference of the static step)."""
    frames, plan = clip
    return run_ours(Tracker(model, max_objects=4, max_cond_frames=2), frames, plan)


def test_exact_objects_together_equal_their_runs_alone(model, clip, exact):
    frames, plan = clip
    assert [sorted(f) for f in exact] == [[1, 2]] * 2 + [[1, 2, 3]] * 2 + [[1, 3]] + [[1, 3, 4]] * 4
    # Objects' tracked logits differ (each follows its own memory) by far more than the
    # tolerances below, so a slot or memory mixed up shows.
    a, b = exact[-1][1][0], exact[-1][3][0]
    assert (a - b).abs().max() > 0.01 * a.abs().max()
    for oid in (1, 4):  # the corrected one, and the late one
        alone = run_ours(Tracker(model, max_objects=4, max_cond_frames=2), frames, _alone(plan, oid))
        mine = [{k: v for k, v in f.items() if k == oid} for f in exact]
        worst = assert_close(mine, alone, max_err=1e-4)
        print(f"object {oid} together vs alone: max relative logit error {worst['max_err']:.1e}")


def test_static_step_equals_the_exact_path(model, clip, exact):
    """A fixed bank of 512-token memory frames, every slot (some empty at times) in one batch."""
    frames, plan = clip
    tracker = Tracker(model, max_objects=3, max_cond_frames=2, static=True)
    bank = tracker._step.bank
    assert tuple(bank.mem.shape) == (3, 2 + 6, 512, 64) and bank.mem.dtype == torch.bfloat16
    worst = assert_close(run_ours(tracker, frames, plan), exact, max_err=1e-3)
    print(f"static EdgeTAM vs exact: max relative logit error {worst['max_err']:.1e}, min IoU {worst['min_iou']:.5f}")


def test_samurai_memory_selection_runs_on_edgetam(model, clip):
    """SAMURAI's filter and memory test over EdgeTAM's 512-token memories: the static step
    equals the exact path (there is no reference for the pair: SAMURAI's release is SAM 2's)."""
    frames, plan = clip
    frames, plan = frames[:6], {t: acts for t, acts in plan.items() if t < 4}  # no prompt on a removed object
    exact = run_ours(Tracker(model, max_objects=3, max_cond_frames=2, memory_selection="samurai"), frames, plan)
    static = Tracker(model, max_objects=3, max_cond_frames=2, memory_selection="samurai", static=True)
    worst = assert_close(run_ours(static, frames, plan), exact, max_err=1e-3)
    print(f"SAMURAI on EdgeTAM, static vs exact: max relative logit error {worst['max_err']:.1e}")


def test_cameras_in_one_step_equal_their_own_steps(model, bunny_frames):
    """Two cameras' trackers on one model: their slots in one joint step (sam2_ros.step.joint)."""
    front, left = bunny_frames(3, 320, 180), bunny_frames(3, 320, 180, start=40)
    h, w = front[0].shape[:2]
    prompts = {0: [Prompt(1, points=[[0.4 * w, 0.5 * h]], labels=[1])],
               1: [Prompt(2, box=[0.5 * w, 0.2 * h, 0.9 * w, 0.8 * h])]}
    cams = [Tracker(model, max_objects=2, max_cond_frames=2, static=True) for _ in range(2)]
    together = [[], []]
    for t in range(3):
        feats = cams[0].encode([front[t], left[t]])
        results = track_together(cams, [front[t], left[t]], [prompts.get(t, [])] * 2, feats)
        for k, res in enumerate(results):
            together[k].append({oid: (res.logits[i], float(res.scores[i])) for i, oid in enumerate(res.object_ids)})
    plan = {t: [("prompt", p) for p in ps] for t, ps in prompts.items()}
    for k, clip_ in enumerate((front, left)):
        alone = run_ours(Tracker(model, max_objects=2, max_cond_frames=2, static=True), clip_, plan)
        assert_close(together[k], alone, max_err=1e-3)


def test_state_stays_bounded_on_a_long_stream(model, bunny_frames):
    """The exact path keeps a constant state once its windows are full (15 recent pointers,
    6 recent memory frames, 2 conditioning frames although prompted 3 times); the static
    bank is allocated once."""
    tracker = Tracker(model, max_objects=1, max_cond_frames=2)
    clip = bunny_frames(6, 320, 180)
    sizes = {}
    for t in range(22):
        prompts = [Prompt(1, points=[[100 + 10 * t, 90]], labels=[1])] if t in (0, 2, 4) else []
        tracker.track(clip[t % len(clip)], prompts)
        if t in (19, 21):
            sizes[t] = (tracker.state_bytes(), len(tracker.state_tensors()))
    assert sizes[19] == sizes[21]
    static = Tracker(model, max_objects=3, max_cond_frames=2, static=True)
    mem = 3 * (2 + 6) * 512 * 64 * 2  # slots x (conditioning + recent) x T tokens x C_mem, bfloat16
    assert mem < static.state_bytes() < 1.2 * mem


def test_what_edgetam_cannot_run_is_refused(edgetam_checkpoint):
    with pytest.raises(ValueError, match="EdgeTAM cannot run at image_size=320.*multiple of 256"):
        Tracker.from_pretrained(str(edgetam_checkpoint()), model="edgetam", image_size=320, device="cpu")


def test_image_predictor_and_automatic_masks_take_model_edgetam(edgetam_checkpoint, bunny_frames):
    frame = bunny_frames(1, 320, 180)[0]
    ckpt = str(edgetam_checkpoint())
    pred = ImagePredictor.from_pretrained(ckpt, model="edgetam", image_size=256, device="cpu")
    res = pred.segment(frame, points=[[160, 90]], labels=[1])
    assert type(pred.model).__name__ == "EdgeTAM" and res.logits.shape == (3, 180, 320)
    gen = AutomaticMaskGenerator.from_pretrained(ckpt, model="edgetam", image_size=256, device="cpu", points_per_side=4,
                                                 pred_iou_thresh=0.0, stability_score_thresh=0.0)
    masks = gen.generate(frame)
    assert masks and all(m["segmentation"].shape == (180, 320) and m["area"] > 0 for m in masks)
    assert np.isfinite([m["predicted_iou"] for m in masks]).all()

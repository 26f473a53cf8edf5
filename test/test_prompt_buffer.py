"""Prompts on past frames (the prompt buffer) give the numbers of Meta's SAM2VideoPredictor
when ``add_new_points_or_box`` / ``add_new_mask`` is called on an earlier, already tracked frame
and tracking then goes on; the buffer is bounded and ``prompt_buffer=0`` changes nothing.

The scenario: objects started on the current frame and on past frames; corrections on past
frames (points, two clicks, a box, a mask), twice on the same frame before tracking goes on, on
a frame that was just corrected on the current frame, on a conditioning frame; a second
starting frame for an object not tracked there; a removal; more conditioning frames than
``max_cond_frames`` so that the selection of conditioning frames is exercised around past ones.
"""

import numpy as np
import pytest
import torch

from sam2_ros import Prompt, Tracker
from sam2_ros.model.build import build_model
from sam2_ros.tracking.tracker import FrameNotBuffered
from helpers.parity import ellipse, assert_same

SIZE, IMAGE_SIZE, BUFFER, FRAMES = "tiny", 128, 4, 16
PARITY_SIZE = 256  # at 128 px float rounding (memories in bfloat16) grows faster: compare where upstream's tests run


def scenario(h, w):
    """Events in order: ("track", t, prompts), ("past", frame, prompts), ("remove", obj_id)."""
    return [
        ("track", 0, [Prompt(1, points=[[0.45 * w, 0.55 * h]], labels=[1]), Prompt(2, box=[0.05 * w, 0.1 * h, 0.4 * w, 0.6 * h])]),
        *[("track", t, []) for t in range(1, 5)],
        ("track", 5, [Prompt(3, mask=ellipse(h, w, 0.7 * w, 0.4 * h, 0.12 * w, 0.2 * h))]),
        ("track", 6, []), ("track", 7, []), ("track", 8, []),
        # at frame 8, with frames 5 to 8 buffered:
        ("past", 5, [Prompt(4, points=[[0.2 * w, 0.8 * h], [0.3 * w, 0.3 * h]], labels=[1, 0])]),  # new object on frame 5
        ("past", 6, [Prompt(1, points=[[0.5 * w, 0.5 * h]], labels=[1])]),  # correction on frame 6
        ("past", 7, [Prompt(2, mask=ellipse(h, w, 0.25 * w, 0.35 * h, 0.1 * w, 0.15 * h)),  # mask on a tracked object
                     Prompt(4, box=[0.1 * w, 0.5 * h, 0.4 * w, 0.95 * h])]),  # 4 not tracked on 7: starts there too
        ("past", 6, [Prompt(1, points=[[0.4 * w, 0.6 * h], [0.9 * w, 0.1 * h]], labels=[1, 0])]),  # again, before tracking
        ("track", 9, [Prompt(5, box=[0.55 * w, 0.2 * h, 0.9 * w, 0.7 * h])]),
        ("track", 10, []),
        ("past", 9, [Prompt(5, points=[[0.7 * w, 0.4 * h]], labels=[1])]),  # a correction on a conditioning frame
        ("past", 10, [Prompt(4, points=[[0.25 * w, 0.7 * h]], labels=[1]), Prompt(3, points=[[0.7 * w, 0.4 * h]], labels=[1])]),
        ("track", 11, [Prompt(1, points=[[0.45 * w, 0.5 * h]], labels=[1])]),  # a correction on the current frame,
        ("past", 11, [Prompt(1, points=[[0.5 * w, 0.55 * h], [0.1 * w, 0.1 * h]], labels=[1, 0])]),  # then again
        ("remove", 2),
        ("track", 12, []), ("track", 13, []),
        ("past", 10, [Prompt(3, box=[0.55 * w, 0.15 * h, 0.85 * w, 0.65 * h])]),  # the oldest buffered frame
        ("track", 14, []), ("track", 15, []),
    ]


def _ours(res):
    return {oid: (res.logits[i], float(res.scores[i])) for i, oid in enumerate(res.object_ids)}


def run_ours(tracker, frames, events):
    out = []
    for kind, arg, *rest in events:
        if kind == "remove":
            tracker.remove_object(arg)
        elif kind == "track":
            out.append(_ours(tracker.track(frames[arg], rest[0])))
        else:
            res = tracker.prompt_past(arg, rest[0])
            assert res.frame_index == arg
            out.append(_ours(res))
    return out


def _apply(oracle, frame, p):
    if p.mask is not None:
        oracle.add_mask(frame, p.obj_id, p.mask)
    else:
        oracle.add_prompt(frame, p.obj_id, points=p.points, labels=p.labels, box=p.box)


def run_oracle(oracle, events):
    out = []
    for kind, arg, *rest in events:
        if kind == "remove":
            oracle.remove(arg)
            continue
        if kind == "track":
            oracle.step(arg, rest[0])
        else:
            for p in rest[0]:
                _apply(oracle, arg, p)
        res = oracle._result(arg)
        scores = oracle.object_score_logits[arg]
        out.append({oid: (lg, 1 / (1 + np.exp(-scores[oid]))) for oid, lg in res.items()})
    return out


@pytest.mark.parametrize("corrections_as_cond", [True, False], ids=["corrections_as_cond", "corrections_not_cond"])
def test_prompts_on_past_frames_match_the_official_video_predictor(official_checkpoint, bunny_frames, corrections_as_cond):
    from helpers.oracle import OfficialStreamingOracle

    frames = bunny_frames(FRAMES, 320, 180)
    h, w = frames[0].shape[:2]
    ckpt = official_checkpoint(SIZE, PARITY_SIZE, seed=3)
    events = scenario(h, w)
    overrides = ["++model.max_cond_frames_in_attn=2"]
    if corrections_as_cond:
        overrides.append("++model.add_all_frames_to_correct_as_cond=true")
    oracle = OfficialStreamingOracle(ckpt, SIZE, PARITY_SIZE, frames, hydra_overrides_extra=overrides)
    theirs = run_oracle(oracle, events)
    tracker = Tracker(build_model(str(ckpt), SIZE, PARITY_SIZE, "cpu"), max_cond_frames=2,
                      corrections_as_cond=corrections_as_cond, prompt_buffer=BUFFER)
    ours = run_ours(tracker, frames, events)
    assert [len(f) for f in ours][-1] == 4  # objects 1, 3, 4, 5 at the end
    present = [oid for oid, (lg, _) in ours[-1].items() if (lg > 0).any()]
    assert present, "no object visible on the last frame: the random model is degenerate"
    stats = assert_same(ours, theirs)
    exact = all(torch.equal(a[o][0], torch.as_tensor(b[o][0])) for a, b in zip(ours, theirs) for o in a)
    print(f"prompt buffer parity ({'corrections as cond' if corrections_as_cond else 'corrections not cond'}): "
          f"{len(events)} events, max relative logit error {stats['max_err']:.1e}, "
          f"{stats['tie_flips']} of {stats['pixels']} mask pixels flipped, bit-identical: {exact}")
    assert stats["tie_flips"] <= 1e-4 * stats["pixels"]


@pytest.fixture(scope="module")
def model(official_checkpoint):
    return build_model(str(official_checkpoint(SIZE, IMAGE_SIZE, seed=2)), SIZE, IMAGE_SIZE, "cpu")


def test_prompt_buffer_zero_changes_nothing_and_refuses_past_prompts(model, bunny_frames):
    frames = bunny_frames(FRAMES, 160, 96)
    h, w = frames[0].shape[:2]
    events = [e for e in scenario(h, w) if e[0] != "past"]
    plain = run_ours(Tracker(model, max_cond_frames=2), frames, events)
    buffered = run_ours(Tracker(model, max_cond_frames=2, prompt_buffer=BUFFER), frames, events)
    for a, b in zip(plain, buffered):  # a buffer changes no bit of the streaming results
        assert a.keys() == b.keys() and all(torch.equal(a[k][0], b[k][0]) and a[k][1] == b[k][1] for k in a)
    tracker = Tracker(model)
    tracker.track(frames[0], [Prompt(1, points=[[w / 2, h / 2]], labels=[1])])
    assert tracker.buffered_frames == []
    with pytest.raises(FrameNotBuffered, match="prompt_buffer=0"):
        tracker.prompt_past(0, [Prompt(1, points=[[w / 3, h / 2]], labels=[1])])


def test_buffer_window_validation_and_live_resize(model, bunny_frames):
    frames = bunny_frames(10, 160, 96)
    h, w = frames[0].shape[:2]
    tracker = Tracker(model, prompt_buffer=3, max_objects=2)
    tracker.track(frames[0], [Prompt(1, points=[[w / 2, h / 2]], labels=[1])])
    for t in range(1, 6):
        tracker.track(frames[t])
    assert tracker.buffered_frames == [3, 4, 5]
    with pytest.raises(FrameNotBuffered, match="frames 3 to 5"):
        tracker.prompt_past(2, [Prompt(1, points=[[1, 1]], labels=[1])])
    before = tracker.state_bytes()
    from sam2_ros.tracking.tracker import PromptError

    with pytest.raises(PromptError, match="outside"):  # a bad prompt changes nothing
        tracker.prompt_past(4, [Prompt(2, points=[[1, 1]], labels=[1]), Prompt(1, points=[[999, 1]], labels=[1])])
    with pytest.raises(PromptError, match="max_objects is 2"):
        tracker.prompt_past(4, [Prompt(2, points=[[1, 1]], labels=[1]), Prompt(3, points=[[2, 2]], labels=[1])])
    assert tracker.state_bytes() == before and tracker.object_ids == [1]
    res = tracker.prompt_past(4, [Prompt(2, box=[5, 5, 60, 50])])
    assert res.frame_index == 4 and res.object_ids == [1, 2] and res.logits.shape == (2, h, w)
    assert tracker.track(frames[6]).object_ids == [1, 2]
    tracker.prompt_buffer = 1  # shrinks at once
    assert tracker.buffered_frames == [6]
    tracker.prompt_buffer = 0
    assert tracker.buffered_frames == []
    with pytest.raises(ValueError, match="prompt_buffer"):
        Tracker(model, prompt_buffer=-1)
    tracker.prompt_buffer = 2
    tracker.track(frames[7])
    tracker.track(frames[8])
    assert tracker.buffered_frames == [7, 8]
    tracker.reset()
    assert tracker.buffered_frames == [] and tracker.state_bytes() == 0


def test_state_is_constant_with_a_buffer_and_past_prompts(model, bunny_frames):
    """The buffer is bounded: after many frames with prompts on past frames the tracker holds
    exactly the bytes it held at the same point of the cycle earlier."""
    clip = bunny_frames(20, 160, 96)
    h, w = clip[0].shape[:2]
    tracker = Tracker(model, max_cond_frames=2, prompt_buffer=BUFFER)
    sizes = {}
    for t in range(121):
        prompts = [Prompt(1, points=[[w / 2, h / 2]], labels=[1]), Prompt(2, box=[5, 5, w / 2, h / 2])] if t == 0 else []
        tracker.track(clip[t % len(clip)], prompts)
        if t % 10 == 5:  # a correction and a new object on past frames, every 10 frames
            tracker.prompt_past(t - 2, [Prompt(1, points=[[w / 3, h / 2]], labels=[1])])
            tracker.prompt_past(t - 1, [Prompt(3 + t, points=[[w / 4, h / 3]], labels=[1])])
        if t % 10 == 8:
            tracker.remove_object(3 + t - 3)
        if t in (60, 120):
            sizes[t] = (tracker.state_bytes(), len(tracker.state_tensors()))
    assert sizes[60] == sizes[120] and sizes[60][0] > 0


def test_prompt_on_the_last_frame_equals_a_prompt_given_with_it(model, bunny_frames):
    """prompt_past on the frame just tracked is the correction track() makes with the frame:
    the same bits on that frame and after."""
    frames = bunny_frames(9, 160, 96)
    h, w = frames[0].shape[:2]
    start = [Prompt(1, points=[[w / 2, h / 2]], labels=[1]), Prompt(2, box=[5, 5, w / 2, h / 2])]
    fix = [Prompt(1, points=[[w / 3, h / 2], [w - 5, 5]], labels=[1, 0]), Prompt(2, mask=ellipse(h, w, w / 4, h / 3, w / 8, h / 6))]
    # One object at a time: prompt_past runs objects one by one (batched runs may round differently).
    a, b = (Tracker(model, prompt_buffer=2, batch_objects=False) for _ in range(2))
    for t in range(6):
        a.track(frames[t], start if t == 0 else [])
        b.track(frames[t], start if t == 0 else [])
    ra = a.track(frames[6], fix)
    b.track(frames[6])
    rb = b.prompt_past(6, fix)
    assert ra.object_ids == rb.object_ids == [1, 2] and torch.equal(ra.logits, rb.logits) and torch.equal(ra.scores, rb.scores)
    for t in (7, 8):
        ra, rb = a.track(frames[t]), b.track(frames[t])
        assert torch.equal(ra.logits, rb.logits) and torch.equal(ra.scores, rb.scores)


# --------------------------------------------------------------------------------------------
# the node's side, without ROS: which frame a stamped prompt goes to, and time along the stream

def _add(obj_id, stamp=0):
    from sam2_ros.ros import prompts

    return prompts.PromptOp('add', obj_id, Prompt(obj_id, points=[[1, 1]], labels=[1]), stamp_ns=stamp, source='test')


def test_prompt_queue_sends_stamped_prompts_to_buffered_frames():
    from sam2_ros.ros import prompts

    q = prompts.PromptQueue(3)
    for s in (10, 20, 30, 40):
        q.note_frame(s)
    buffered = {20: 5, 30: 6, 40: 7}  # stamps of the frames in the tracker's buffer -> frame index
    q.push(_add(1, 20))  # a buffered frame: that frame
    q.push(_add(2, 40))  # the last tracked frame, buffered: that frame too
    q.push(_add(3, 10))  # older than the buffer: the next frame, with a warning
    q.push(_add(4, 25))  # between buffered frames (dropped frame): the next frame, with a warning
    q.push(_add(5, 50))  # the frame about to be tracked: that one
    q.push(_add(6))  # zero stamp: the latest frame received (40): buffered
    q.push(_add(7, 60))  # ahead: waits
    b = q.take(50, buffered)
    assert {i: [o.obj_id for o in ops] for i, ops in b.past.items()} == {5: [1], 7: [2, 6]}
    assert [o.obj_id for o in b.adds] == [3, 4, 5]
    assert len(b.warnings) == 2 and 'older than the last 3 tracked frames (prompt_buffer)' in b.warnings[0]
    assert 'not the stamp of a tracked frame' in b.warnings[1]
    assert [o.obj_id for o in q.take(60, buffered).adds] == [7]
    # a zero-stamped prompt whose latest frame was dropped goes to the next frame, silently
    q.note_frame(70)
    q.push(_add(8))
    b = q.take(80, {60: 9})
    assert [o.obj_id for o in b.adds] == [8] and not b.warnings and not b.past
    # no frame received yet: a zero stamp is the next frame
    q2 = prompts.PromptQueue(3)
    q2.push(_add(9))
    assert [o.obj_id for o in q2.take(5, {}).adds] == [9]


def test_timeline_orders_frames_and_finds_jumps_back():
    from sam2_ros.ros.timeline import MAX_OUT_OF_ORDER, Timeline

    s = 10 ** 9
    tl = Timeline(jump_threshold_s=1.0)
    assert tl.check(100 * s) == 'ok'
    tl.tracked(100 * s, 0, [0])
    tl.tracked(101 * s, 1, [0, 1])
    assert tl.buffered() == {100 * s: 0, 101 * s: 1}
    assert tl.check(101 * s) == 'ok'  # the same stamp again: tracked
    assert tl.check(0) == 'ok'  # no stamp: never judged
    assert tl.check(101 * s - s // 2) == 'out_of_order'
    assert tl.check(99 * s) == 'jump'  # 2 s back
    tl.tracked(102 * s, 2, [1, 2])  # the buffer follows the tracker's
    assert tl.buffered() == {101 * s: 1, 102 * s: 2}
    tl.clock_jumped()  # /clock went back: any step back is a jump
    assert tl.check(102 * s - 1) == 'jump'
    tl.tracked(103 * s, 3, [3])  # a frame forward clears it
    assert tl.check(103 * s - 1) == 'out_of_order'
    # many frames in a row behind the last tracked one: time went back (a short bag looping)
    verdicts = [tl.check(103 * s - 10 + i) for i in range(MAX_OUT_OF_ORDER)]
    assert verdicts == ['out_of_order'] * (MAX_OUT_OF_ORDER - 2) + ['jump'] * 2  # counting the one above
    tl.forget_frames()
    assert tl.buffered() == {} and tl.last_stamp == 103 * s
    tl.reset()
    assert tl.last_stamp is None and tl.check(1) == 'ok'

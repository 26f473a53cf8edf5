"""SAMURAI's pure tensor parts (``sam2_ros.step.kalman``, ``sam2_ros.step.memory_selection``)
give SAMURAI's own numbers, batched over object slots, without host synchronisation.

The reference is SAMURAI's released code run in its own venv (``test/helpers/samurai.py``):
its Kalman filter on box sequences, its candidate selection (``_forward_sam_heads`` with a
stub decoder) and memory selection (``_prepare_memory_conditioned_features``) on synthetic
inputs, and its predictor on the shared scene (``samurai_scene``), replayed here decode by
decode.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import samurai as S
from helpers.samurai import NoHostSync
from sam2_ros.step import kalman
from sam2_ros.step import memory_selection as ms

CFG = ms.SamuraiConfig()
R = 6  # num_maskmem - 1 of SAM 2.1
SMALL = 64  # image size of the stub-decoder jobs (low-res masks 16 x 16)
NO_OBJ = -1024.0


def rel_per_component(ours, theirs):
    """max over components of max_t |a - b| / max_t |b| (time on dim 0): each state
    component relative to its own magnitude."""
    a, b = torch.as_tensor(np.asarray(ours), dtype=torch.float64), torch.as_tensor(np.asarray(theirs), dtype=torch.float64)
    scale = b.abs().amax(0)
    err = (a - b).abs().amax(0)
    return float(torch.where(scale > 0, err / scale.clamp_min(1e-300), err).max())


# ------------------------------------------------------------------------------ synthetic inputs
def kalman_sequences(n=5, steps=40, seed=0):
    """Aligned op kinds across sequences (so ours runs them as one batch), per-sequence boxes
    (xyxy pixel corners, with a zero-height box, a (0, 0, 0, 0) box and restarts)."""
    rng = np.random.default_rng(seed)
    kinds = ["initiate"] + list(rng.choice(["predict", "update", "iou"], size=steps, p=[0.35, 0.45, 0.2]))
    kinds[17] = "initiate"  # a restart
    pos = rng.uniform(40, 200, (n, 2))
    size = rng.uniform(20, 90, (n, 2))
    seqs = [[] for _ in range(n)]
    for k, kind in enumerate(kinds):
        if kind == "predict":
            for s in seqs:
                s.append(("predict",))
            continue
        pos += rng.normal(2.0, 3.0, (n, 2))
        size = np.clip(size + rng.normal(0, 2.0, (n, 2)), 5, 120)
        boxes = np.round(np.concatenate([pos, pos + size], 1))
        if k == 9:
            boxes[0, 3] = boxes[0, 1]  # zero height: SAMURAI's h = 1
        if k == 23:
            boxes[1] = 0  # an empty mask's box
        for i, s in enumerate(seqs):
            if kind == "iou":
                cands = np.stack([boxes[i], boxes[i] + rng.normal(0, 15, 4), np.zeros(4)])
                s.append(("iou", np.round(cands).tolist()))
            else:
                s.append((kind, boxes[i].tolist(), True))
    return seqs


def run_kalman_ours(seqs, dtype):
    """Replay aligned sequences as one batch; per sequence, per op: state or IoUs."""
    n = len(seqs)
    mean = cov = None
    out = [[] for _ in range(n)]
    for k in range(len(seqs[0])):
        kind = seqs[0][k][0]
        if kind == "iou":
            cands = torch.tensor([s[k][1] for s in seqs], dtype=dtype)
            ious = kalman.box_iou(kalman.xyah_to_box(mean[:, :4]), cands)
            for i in range(n):
                out[i].append({"ious": ious[i]})
            continue
        if kind == "predict":
            mean, cov = kalman.predict(mean, cov)
        else:
            z = kalman.box_to_xyah(torch.tensor([s[k][1] for s in seqs], dtype=dtype))
            mean, cov = kalman.initiate(z) if kind == "initiate" else kalman.update(mean, cov, z)
        for i in range(n):
            out[i].append({"mean": mean[i], "cov": cov[i]})
    return out


def select_sequences(n=4, steps=46, seed=1):
    """Per sequence and step: three moving blob candidates (16 x 16 low-res logits), predicted
    IoUs around the thresholds, object scores (a few at or below -1: blanked, empty boxes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16].astype(np.float32)
    seqs = []
    for _ in range(n):
        centre = rng.uniform(4, 12, (3, 2))
        vel = rng.normal(0, 0.3, (3, 2))
        seq = []
        for t in range(steps):
            centre = np.clip(centre + vel + rng.normal(0, 0.2, (3, 2)), 1, 15)
            radius = rng.uniform(1.0, 5.0, 3)
            low = radius[:, None, None] - np.hypot(xx - centre[:, 0, None, None], yy - centre[:, 1, None, None])
            if t % 11 == 7:
                low[rng.integers(3)] = -5.0  # an empty candidate
            ious = rng.uniform(0.22, 0.8, 3).astype(np.float32)
            score = float(rng.choice([1.5, 0.7, -0.5, -1.0, -3.0], p=[0.6, 0.2, 0.1, 0.05, 0.05]))
            seq.append((torch.from_numpy(low[None].astype(np.float32)), torch.from_numpy(ious[None]),
                        torch.tensor(score)))
        seqs.append(seq)
    return seqs


def upsample_blanked(low, score, size):
    """SAMURAI's decoder outputs before the choice: blank absent objects (score <= -1), then
    bilinear upsampling to the input size (what ``masks`` of :func:`ms.choose` are)."""
    low = torch.where((score > CFG.min_obj_score_logits).view(-1, 1, 1, 1), low, torch.full_like(low, NO_OBJ))
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def memory_patterns(seed=2):
    """(iou, object score, kf score or None) for frames 1..T-1, T from 2 to 40, with values
    exactly at the thresholds."""
    rng = np.random.default_rng(seed)
    pats = []
    for T in [2, 3, 4, 5, 7, 8, 9, 12, 16, 20, 25, 31, 40, 40, 40]:
        pat = []
        for f in range(1, T):
            iou = float(rng.choice([rng.uniform(0.3, 0.7), 0.5, float(np.nextafter(np.float32(0.5), np.float32(1)))],
                                   p=[0.8, 0.1, 0.1]))
            score = float(rng.choice([1.0, 0.0, -0.5, 2.0], p=[0.7, 0.1, 0.1, 0.1]))
            kf = None if f < 16 or rng.random() < 0.2 else float(rng.choice([0.0, 0.3, 0.9]))
            pat.append((iou, score, kf))
        pats.append(pat)
    pats.append([(0.9, 1.0, None)] * 30)  # everything qualifies
    pats.append([(0.1, 1.0, None)] * 30)  # nothing qualifies
    return pats


def threshold_patterns():
    """Predicted IoUs at float32(0.3) and around it, against a memory threshold of 0.3 (not a
    float32): SAMURAI compares ``.item()`` floats."""
    f = np.float32(0.3)
    vals = [float(f), float(np.nextafter(f, np.float32(0))), float(np.nextafter(f, np.float32(1))), 0.2, 0.6]
    return [[(vals[(i * 7 + T) % 5], 1.0, None) for i in range(T - 1)] for T in (9, 14, 22)]


@pytest.fixture(scope="module")
def theirs():
    seqs_k, seqs_s, pats, pats_t = kalman_sequences(), select_sequences(), memory_patterns(), threshold_patterns()
    jobs = [{"kind": "kalman", "sequences": seqs_k},
            {"kind": "select", "image_size": SMALL, "sequences": seqs_s},
            {"kind": "memory", "image_size": SMALL, "patterns": pats},
            {"kind": "memory", "image_size": SMALL, "patterns": pats_t,
             "overrides": ["++model.memory_bank_iou_threshold=0.3"]}]
    k, s, m, mt = S.run_jobs(jobs)
    return {"kalman": (seqs_k, k), "select": (seqs_s, s), "memory": (pats, m), "memory_thr": (pats_t, mt)}


# ------------------------------------------------------------------------------ the filter
def test_kalman_filter_matches_samurai(theirs):
    seqs, res = theirs["kalman"]
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        ours = run_kalman_ours(seqs, dtype)
        for i, (mine, ref) in enumerate(zip(ours, res["results"])):
            assert len(mine) == len(ref)
            states = [(m, r) for m, r in zip(mine, ref) if "mean" in r]
            means = rel_per_component([m["mean"].double().numpy() for m, _ in states], [r["mean"] for _, r in states])
            covs = rel_per_component([m["cov"].double().numpy() for m, _ in states], [r["cov"] for _, r in states])
            ious = rel_per_component(np.concatenate([m["ious"].double().numpy() for m, r in zip(mine, ref) if "ious" in r]),
                                     np.concatenate([r["ious"] for r in ref if "ious" in r]))
            assert max(means, covs, ious) <= tol, f"{dtype} sequence {i}: mean {means:.1e} cov {covs:.1e} iou {ious:.1e}"
            # The covariance couples each coordinate with its velocity only (see kalman.py).
            for m, r in states:
                assert torch.equal(m["cov"] == 0, torch.from_numpy(r["cov"] == 0))


def test_box_conversions_are_samurais():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 80.0], [3.0, 7.0, 3.0, 7.0], [0.0, 0.0, 0.0, 0.0], [5.0, 9.0, 25.0, 9.0]],
                         dtype=torch.float64)
    xyah = kalman.box_to_xyah(boxes)
    assert xyah.tolist() == [[30.0, 50.0, 40 / 60, 60.0], [3.0, 7.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [15.0, 9.0, 20.0, 1.0]]
    assert torch.allclose(kalman.xyah_to_box(xyah[:1]), boxes[:1])


# ------------------------------------------------------------------------------ the choice
def test_candidate_choice_matches_samurai(theirs):
    seqs, res = theirs["select"]
    assert res["settings"]["kf_score_weight"] == CFG.kf_score_weight
    n, steps = len(seqs), len(seqs[0])
    state = ms.new_motion_state(n)
    ours = []
    for t in range(steps):
        low = torch.cat([s[t][0] for s in seqs])
        ious = torch.cat([s[t][1] for s in seqs])
        score = torch.stack([s[t][2] for s in seqs])
        c = ms.choose(CFG, state, upsample_blanked(low, score, SMALL), ious, torch.ones(n, dtype=torch.bool))
        state = c.state
        ours.append(c)
    phases = set()
    for i in range(n):
        heads = res["results"][i]["heads"]
        means, ref_means, covs, ref_covs = [], [], [], []
        for t, (c, h) in enumerate(zip(ours, heads)):
            where = f"sequence {i} step {t}"
            assert int(c.index[i]) in h["chosen"], where
            assert float(c.iou[i]) == h["best_iou"], where
            assert int(c.state.stable[i]) == h["kf_after"]["stable_frames"], where
            assert bool(c.has_kf_score[i]) == (h["kf_score"] is not None), where
            if h["kf_score"] is not None:
                assert abs(float(c.kf_score[i]) - h["kf_score"]) <= 1e-5 * max(h["kf_score"], 1e-3), where
            means.append(c.state.mean[i].double().numpy())
            ref_means.append(h["kf_after"]["mean"])
            covs.append(c.state.cov[i].double().numpy())
            ref_covs.append(h["kf_after"]["cov"])
            b = h["kf_before"]["stable_frames"]
            phases.add("init" if b == 0 else "build" if b < CFG.stable_frames_threshold else "stable")
            if b >= CFG.stable_frames_threshold and h["kf_after"]["stable_frames"] == 0:
                phases.add("stable reset")
        assert rel_per_component(means, ref_means) <= 1e-5 and rel_per_component(covs, ref_covs) <= 1e-5
    assert phases == {"init", "build", "stable", "stable reset"}


def test_batched_equals_one_by_one(theirs):
    """Slots in every phase, one batch or one at a time: the same bits."""
    seqs, _ = theirs["select"]
    n = len(seqs)
    batch = ms.new_motion_state(n)
    alone = [ms.new_motion_state(1) for _ in range(n)]
    for t in range(len(seqs[0])):
        low = torch.cat([s[t][0] for s in seqs])
        ious = torch.cat([s[t][1] for s in seqs])
        score = torch.stack([s[t][2] for s in seqs])
        masks = upsample_blanked(low, score, SMALL)
        apply = torch.tensor([True, True, t % 5 != 2, True])  # a slot skipping decodes too
        c = ms.choose(CFG, batch, masks, ious, apply)
        for i in range(n):
            one = ms.choose(CFG, alone[i], masks[i : i + 1], ious[i : i + 1], apply[i : i + 1])
            for a, b in zip(c[:4], one[:4]):
                assert torch.equal(a[i : i + 1], b), f"slot {i} frame {t}"
            for a, b in zip(c.state, one.state):
                assert torch.equal(a[i : i + 1], b), f"slot {i} frame {t}"
            alone[i] = one.state
        batch = c.state


def test_mask_boxes_are_samurais_argwhere():
    g = torch.Generator().manual_seed(0)
    masks = torch.randn(3, 3, 40, 40, generator=g) - 2.0
    masks[0, 1] = -1.0  # empty
    masks[1, 2] = -1.0
    masks[1, 2, 7, 31] = 0.5  # one pixel
    masks[2, 0, :, :] = -1.0
    masks[2, 0, 0, 0] = 3.0  # one pixel at the origin: SAMURAI's (0, 0, 0, 0), scored as empty
    boxes = ms.mask_boxes(masks)
    for s in range(3):
        for m in range(3):
            nz = torch.argwhere(masks[s, m] > 0.0)
            want = [0, 0, 0, 0] if len(nz) == 0 else [nz[:, 1].min(), nz[:, 0].min(), nz[:, 1].max(), nz[:, 0].max()]
            assert boxes[s, m].tolist() == [float(v) for v in want]
    assert kalman.box_iou(torch.tensor([[0.0, 0.0, 10.0, 10.0]]).expand(3, 4), boxes)[2, 0] == 0


# ------------------------------------------------------------------------------ the memory
def ring_replay(pattern, cfg=CFG):
    """Our ring over frames 1..T-1 of a pattern (frame 0: the prompt); returns what frame T
    attends to: [(t_pos, frame)] oldest first."""
    ring = torch.full((1, R), -1, dtype=torch.int64)
    kept = torch.zeros(1, dtype=torch.int64)
    yes, no = torch.ones(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)
    for f, (iou, score, kf) in enumerate(pattern, start=1):
        ok = ms.admit(cfg, torch.tensor([iou]), torch.tensor([score]), torch.tensor([kf or 0.0]),
                      torch.tensor([kf is not None])) & torch.tensor([f >= 2])
        _, ring, kept = ms.ring_write(ring, kept, torch.tensor(f), yes, ok, no)
    return attended(ring)


def attended(ring):
    ranks = ms.ring_ranks(ring)[0]
    entries = sorted((int(fr), R - int(rk)) for fr, rk in zip(ring[0], ranks) if fr >= 0)
    return [(t_pos, fr) for fr, t_pos in entries]


def test_bounded_ring_attends_to_samurais_frames(theirs):
    for key, cfg in (("memory", CFG), ("memory_thr", ms.SamuraiConfig(memory_bank_iou_threshold=0.3))):
        pats, res = theirs[key]
        for pattern, rec in zip(pats, res["results"]):
            want = [(t_pos, f) for t_pos, f, cond in rec["memory"] if not cond]
            assert ring_replay(pattern, cfg) == want, f"T={len(pattern) + 1} ({key}): SAMURAI's V = {rec['valid_indices']}"
            assert [f for _, f, cond in rec["memory"] if cond] == [0]
            # Pointers are SAM 2's: the prompt's and the last 15 frames', qualified or not.
            T = len(pattern) + 1
            assert sorted(f for _, f in rec["pointers"]) == [0] + list(range(max(1, T - 15), T))
    # The thresholds compare as SAMURAI's floats: float32(0.3) > 0.3 there, not in float32.
    assert ms.admit(ms.SamuraiConfig(memory_bank_iou_threshold=0.3), torch.tensor([0.3]), torch.ones(1),
                    torch.zeros(1), torch.zeros(1, dtype=torch.bool)).all()


def test_ring_empties_a_conditioning_frames_place():
    ring = torch.tensor([[4, 5, 6, 7, 8, 9]])
    pos, ring2, kept = ms.ring_write(ring, torch.tensor([12]), torch.tensor(10), torch.tensor([True]),
                                     torch.tensor([True]), torch.tensor([True]))
    assert int(pos) == 0 and ring2.tolist() == [[-1, 5, 6, 7, 8, 9]] and int(kept) == 12
    # An inactive slot keeps everything.
    _, ring3, kept3 = ms.ring_write(ring, torch.tensor([12]), torch.tensor(10), torch.tensor([False]),
                                    torch.tensor([True]), torch.tensor([False]))
    assert torch.equal(ring3, ring) and int(kept3) == 12


# ------------------------------------------------------------------------------ the scene, replayed
def test_scene_replayed_decode_by_decode(samurai_scene):
    """Every decode of SAMURAI's predictor on the scene: our choice, filter and motion score
    from its candidates; our ring from its scores: the frames it attended to, with their
    temporal positions."""
    run, size = samurai_scene.run, samurai_scene.image_size
    state = ms.new_motion_state(1)
    means, ref_means, covs, ref_covs = [], [], [], []
    for h in run["heads"]:
        if not h["multimask"]:
            continue
        masks = F.interpolate(h["candidates"], size=(size, size), mode="bilinear", align_corners=False)
        c = ms.choose(CFG, state, masks, h["ious"], torch.ones(1, dtype=torch.bool))
        state = c.state
        where = f"frame {h['frame']}"
        assert [int(c.index)] == h["chosen"], where
        assert float(c.iou) == h["best_iou"] and int(state.stable) == h["kf_after"]["stable_frames"], where
        assert bool(c.has_kf_score) == (h["kf_score"] is not None), where
        if h["kf_score"] is not None:
            assert abs(float(c.kf_score) - h["kf_score"]) <= 1e-5 * h["kf_score"], where
        means.append(state.mean[0].double().numpy())
        ref_means.append(h["kf_after"]["mean"])
        covs.append(state.cov[0].double().numpy())
        ref_covs.append(h["kf_after"]["cov"])
    assert rel_per_component(means, ref_means) <= 1e-5 and rel_per_component(covs, ref_covs) <= 1e-5

    frames, memory = run["frames"], {m["frame"]: m for m in run["memory"]}
    ring = torch.full((1, R), -1, dtype=torch.int64)
    kept = torch.zeros(1, dtype=torch.int64)
    for t in range(1, len(frames)):
        want = [(t_pos, f) for t_pos, f, cond in memory[t]["memory"] if not cond]
        assert attended(ring) == want, f"frame {t}"
        fr = frames[t]
        ok = ms.admit(CFG, torch.tensor([fr["best_iou"]]), torch.tensor([fr["object_score"]]),
                      torch.tensor([fr["kf_score"] or 0.0]), torch.tensor([fr["kf_score"] is not None]))
        ok &= torch.tensor([t >= 2])
        _, ring, kept = ms.ring_write(ring, kept, torch.tensor(t), torch.tensor([True]), ok, torch.tensor([False]))


# ------------------------------------------------------------------------------ no host syncs
def one_frame(state, masks, ious, apply, score, ring, kept, t, cond):
    c = ms.choose(CFG, state, masks, ious, apply)
    ok = ms.admit(CFG, c.iou, score, c.kf_score, c.has_kf_score)
    pos, ring, kept = ms.ring_write(ring, kept, t, apply, ok, cond)
    return c, pos, ring, kept, ms.ring_ranks(ring)


def test_no_host_synchronisation(theirs):
    seqs, _ = theirs["select"]
    n = len(seqs)
    state = ms.new_motion_state(n)
    ring = torch.full((n, R), -1, dtype=torch.int64)
    kept = torch.zeros(n, dtype=torch.int64)
    compiled = torch.compile(one_frame, fullgraph=True, backend="aot_eager", dynamic=False)
    for t in range(20):
        low = torch.cat([s[t][0] for s in seqs])
        ious = torch.cat([s[t][1] for s in seqs])
        score = torch.stack([s[t][2] for s in seqs])
        args = (state, upsample_blanked(low, score, SMALL), ious, torch.ones(n, dtype=torch.bool), score,
                ring, kept, torch.tensor(t), torch.zeros(n, dtype=torch.bool))
        with NoHostSync():
            eager = one_frame(*args)
        graph = compiled(*args)  # one graph, no break (fullgraph): nothing data-dependent on the host
        for a, b in zip(torch.utils._pytree.tree_leaves(eager), torch.utils._pytree.tree_leaves(graph)):
            assert torch.equal(a, b)
        state, ring, kept = eager[0].state, eager[2], eager[3]


def test_restart_initiates_at_the_next_decode(theirs):
    """A prompt restarts a slot's filter: its next three-candidate decode initiates it from the
    highest predicted IoU, as SAMURAI's first decode; the other slots go on."""
    seqs, _ = theirs["select"]
    n = len(seqs)
    state = ms.new_motion_state(n)
    for t in range(20):
        low = torch.cat([s[t][0] for s in seqs])
        ious = torch.cat([s[t][1] for s in seqs])
        score = torch.stack([s[t][2] for s in seqs])
        masks = upsample_blanked(low, score, SMALL)
        if t == 18:
            before = state
            state = ms.restart(state, torch.tensor([False, True, False, False]))
            assert state.stable.tolist() == [before.stable[0], 0, before.stable[2], before.stable[3]]
        c = ms.choose(CFG, state, masks, ious, torch.ones(n, dtype=torch.bool))
        if t == 18:
            z = kalman.box_to_xyah(ms.mask_boxes(masks)[1, int(ious[1].argmax())][None])
            assert int(c.index[1]) == int(ious[1].argmax()) and int(c.state.stable[1]) == 1
            assert torch.equal(c.state.mean[1:2], kalman.initiate(z)[0])
        state = c.state

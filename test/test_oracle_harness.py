"""The test-only oracle harness (test/helpers/oracle.py) itself works.

These tests do not touch sam2_ros: they check that Meta's official package can be driven
as the reference (torchvision shim, random official checkpoints, image predictor at small
sizes, the one-frame-at-a-time video oracle) before other tests trust its numbers.
"""

import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import oracle as O

S = 256


@pytest.fixture(scope="module")
def ckpt(official_checkpoint):
    return official_checkpoint("tiny", S, seed=0)


@pytest.fixture(scope="module")
def frames(bunny_frames):
    return bunny_frames(5)


@pytest.fixture(scope="module")
def image_predictor(ckpt):
    cache = {}

    def get(image_size):
        if image_size not in cache:
            cache[image_size] = O.official_image_predictor(ckpt, "tiny", image_size)
        return cache[image_size]

    return get


# -- torchvision shim -------------------------------------------------------------------------


def test_shim_only_when_torchvision_missing():
    tv = sys.modules["torchvision"]
    if not getattr(tv, "__oracle_shim__", False):
        pytest.skip("a real torchvision is installed")
    assert O.install_torchvision_shim() is True  # idempotent
    from sam2.automatic_mask_generator import batched_nms, box_area  # noqa: F401
    from sam2.utils.transforms import Normalize, Resize, ToTensor  # noqa: F401


def test_shim_transforms():
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    x = sys.modules["torchvision.transforms"].ToTensor()(img)
    assert x.dtype == torch.float32 and x.shape == (3, 37, 53)
    assert torch.equal(x, torch.from_numpy(img).permute(2, 0, 1).float() / 255)
    resize = sys.modules["torchvision.transforms"].Resize((16, 24))
    want = F.interpolate(x[None], (16, 24), mode="bilinear", align_corners=False, antialias=True)[0]
    assert torch.equal(resize(x), want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(resize)  # sam2 scripts Resize + Normalize
    assert torch.equal(scripted(x), want)
    assert resize(want) is want  # already the target size: unchanged, as torchvision
    norm = sys.modules["torchvision.transforms"].Normalize(O.IMG_MEAN, O.IMG_STD)
    mean = torch.tensor(O.IMG_MEAN).view(3, 1, 1)
    std = torch.tensor(O.IMG_STD).view(3, 1, 1)
    assert torch.equal(norm(x), (x - mean) / std)


def _reference_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            x0 = max(boxes[i][0], boxes[j][0])
            y0 = max(boxes[i][1], boxes[j][1])
            x1 = min(boxes[i][2], boxes[j][2])
            y1 = min(boxes[i][3], boxes[j][3])
            inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
            a = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            b = (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1])
            if inter / (a + b - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def test_shim_nms_matches_greedy_reference():
    ops = sys.modules["torchvision.ops.boxes"]
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 100
    wh = torch.rand(200, 2, generator=g) * 40 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(200, generator=g)
    keep = ops.batched_nms(boxes, scores, torch.zeros(200), iou_threshold=0.5)
    assert keep.tolist() == _reference_nms(boxes.double().tolist(), scores.tolist(), 0.5)
    # categories never suppress each other
    idxs = torch.arange(200) % 3
    keep = set(ops.batched_nms(boxes, scores, idxs, 0.5).tolist())
    want = set()
    for c in range(3):
        sel = torch.where(idxs == c)[0]
        want |= {int(sel[k]) for k in _reference_nms(boxes[sel].double().tolist(), scores[sel].tolist(), 0.5)}
    assert keep == want
    b = boxes
    assert torch.equal(ops.box_area(b), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    assert ops.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0


# -- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_is_official_strict_and_perturbed(ckpt):
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert list(sd) == ["model"]
    sd = sd["model"]
    model = O.build_official_model("tiny", S, seed=0)
    default = {k: v.clone() for k, v in model.state_dict().items()}
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert list(sd) == list(default)
    for k, v in sd.items():
        assert v.dtype == torch.float32 and torch.isfinite(v).all(), k
        assert not torch.equal(v, default[k]), f"{k} was not perturbed"
    # LayerNorm weights stay near 1
    ln = sd["memory_attention.layers.0.norm1.weight"]
    assert (ln - 1).abs().max() < 0.15
    # same seed, any image size: the same weights
    other = O.build_official_model("tiny", 320, seed=0)
    O.perturb_state_(other, seed=0)
    assert all(torch.equal(v, sd[k]) for k, v in other.state_dict().items())


def test_perturbation_depends_on_seed():
    def perturbed(seed):
        m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
        with torch.no_grad():
            for p in m.parameters():
                p.fill_(0.5)
        O.perturb_state_(m, seed=seed)
        return m.state_dict()

    a, b, c = perturbed(0), perturbed(0), perturbed(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in a)
    assert (a["1.weight"] - 0.5).abs().max() < 0.15


def test_sam20_checkpoint_loads(tmp_path):
    from sam2.build_sam import build_sam2

    assert O.official_config_name("tiny", "2.0") == "configs/sam2/sam2_hiera_t.yaml"
    assert O.official_config_name("base_plus") == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    path = O.make_official_checkpoint("tiny", S, tmp_path / "sam2_hiera_tiny.pt", version="2.0")
    model = build_sam2(O.official_config_name("tiny", "2.0"), str(path), device="cpu",
                       hydra_overrides_extra=[f"++model.image_size={S}"])
    assert model.image_size == S and model.no_obj_embed_spatial is None


# -- preprocessing and frames ----------------------------------------------------------------


def test_sample_frames(frames):
    assert len(frames) == 5
    for f in frames:
        assert f.shape == (180, 320, 3) and f.dtype == np.uint8
    again = O.sample_frames(2, start=3)
    assert np.array_equal(again[0], frames[3]) and np.array_equal(again[1], frames[4])
    assert not np.array_equal(frames[0], frames[4])


def test_preprocess_frame_equals_official_image_transforms(image_predictor, frames):
    pred = image_predictor(S)
    x = O.preprocess_frame(frames[0], S)
    assert x.shape == (3, S, S) and x.dtype == torch.float32
    assert torch.equal(x, pred._transforms(frames[0]))


# -- image predictor -------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [256, 320])
def test_image_predictor_runs(image_predictor, frames, image_size):
    pred = image_predictor(image_size)
    assert pred._bb_feat_sizes == [(image_size // 4,) * 2, (image_size // 8,) * 2, (image_size // 16,) * 2]
    pred.set_image(frames[0])
    masks, ious, low = pred.predict(point_coords=np.array([[160, 90]]), point_labels=np.array([1]),
                                    multimask_output=True, return_logits=True)
    assert masks.shape == (3, 180, 320) and ious.shape == (3,) and low.shape == (3, image_size // 4, image_size // 4)
    assert np.isfinite(masks).all() and (masks > 0).any() and (masks < 0).any()
    masks, ious, low = pred.predict(point_coords=np.array([[100, 60]]), point_labels=np.array([0]),
                                    box=np.array([40, 20, 200, 150]), mask_input=low[:1],
                                    multimask_output=False, return_logits=True)
    assert masks.shape == (1, 180, 320) and np.isfinite(masks).all()
    assert (masks > 0).any() and (masks < 0).any()


# -- streaming video oracle ------------------------------------------------------------------


def _run_scenario(ckpt, frames, per_object_states):
    orc = O.OfficialStreamingOracle(ckpt, "tiny", S, frames, per_object_states=per_object_states)
    out = []
    out.append(orc.add_prompt(0, 1, points=[[160, 90]], labels=[1]))
    out.append(orc.track(0))
    out.append(orc.track(1))
    out.append(orc.add_prompt(2, 2, box=[20, 20, 120, 100]))  # new object after tracking started
    out.append(orc.track(2))
    out.append(orc.track(3))
    out.append(orc.add_prompt(3, 1, points=[[100, 60]], labels=[0]))  # correction of a tracked frame
    orc.remove(2)
    out.append(orc.track(4))
    return orc, out


@pytest.fixture(scope="module")
def shared_run(ckpt, frames):
    return _run_scenario(ckpt, frames, per_object_states=False)


def test_streaming_oracle(shared_run):
    orc, out = shared_run
    want_ids = [[1], [1], [1], [2], [1, 2], [1, 2], [1, 2], [1]]
    assert [list(r) for r in out] == want_ids
    for r in out:
        for logits in r.values():
            assert logits.shape == (180, 320) and logits.dtype == torch.float32
            assert torch.isfinite(logits).all()
            assert (logits > 0).any() and (logits < 0).any()
    assert torch.equal(out[0][1], out[1][1])  # a conditioning frame is not recomputed by tracking
    assert torch.equal(out[3][2], out[4][2])
    assert not torch.equal(out[5][1], out[6][1])  # the correction changed object 1 on frame 3
    assert torch.equal(out[5][2], out[6][2])  # ... and nothing else
    assert not torch.equal(out[4][1], out[4][2])  # objects have their own memories
    # the correction is stored as a non-conditioning output of frame 3 (upstream default)
    state = orc.state_for(1)
    idx = state["obj_id_to_idx"][1]
    assert 3 in state["output_dict_per_obj"][idx]["non_cond_frame_outputs"]
    assert 3 not in state["output_dict_per_obj"][idx]["cond_frame_outputs"]
    assert list(state["obj_ids"]) == [1] and orc.obj_ids == [1]
    # object scores: recorded per frame, alive (clearly positive) for this checkpoint
    for t in range(5):
        assert 1 in orc.object_score_logits[t]
        assert 0.2 < orc.object_score_logits[t][1] < 5.0
    assert set(orc.scores(4)) == {1}
    # an unbounded stream is modelled (upstream normalises pointer positions by min(num_frames, 16) - 1)
    assert state["num_frames"] == O.STREAMING_NUM_FRAMES


def test_streaming_oracle_per_object_states_identical(ckpt, frames, shared_run):
    _, shared = shared_run
    _, separate = _run_scenario(ckpt, frames, per_object_states=True)
    for a, b in zip(shared, separate):
        assert list(a) == list(b)
        for k in a:
            assert torch.equal(a[k], b[k])


def test_streaming_oracle_mask_prompt_and_step(ckpt, frames):
    orc = O.OfficialStreamingOracle(ckpt, "tiny", S, frames[:3])
    mask = np.zeros((180, 320), bool)
    mask[40:120, 100:220] = True
    r = orc.step(0, [{"obj_id": 7, "mask": mask}])
    # a mask prompt is the output itself: +-10 logits, bilinear from S/4 to the frame
    assert torch.equal(r[7] > 0, torch.as_tensor(mask)) or ((r[7] > 0) != torch.as_tensor(mask)).float().mean() < 0.02
    assert r[7].max() <= 10.0 + 1e-5 and r[7].min() >= -10.0 - 1e-5
    assert orc.object_score_logits[0][7] == pytest.approx(10.0)
    r = orc.step(1)
    assert list(r) == [7] and torch.isfinite(r[7]).all()
    r = orc.step(2, [{"obj_id": 7, "points": [[150, 80]], "labels": [1]}])  # correction via step
    assert list(r) == [7]
    orc.reset()
    assert orc.obj_ids == [] and orc.track(2) == {}

"""J, F and track-loss events on hand-made masks with known answers (sam2_ros.tools.metrics)."""
import numpy as np
import pytest

from sam2_ros.tools import metrics


def square(x0, y0, side=20, shape=(100, 100)):
    m = np.zeros(shape, bool)
    m[y0:y0 + side, x0:x0 + side] = True
    return m


def test_identical_masks_score_one():
    a = square(30, 30)
    assert metrics.jaccard(a, a) == 1.0
    assert metrics.f_measure(a, a) == 1.0


def test_empty_versus_empty_is_one_and_empty_versus_object_is_zero():
    empty = np.zeros((50, 60), bool)
    assert metrics.jaccard(empty, empty) == 1.0
    assert metrics.f_measure(empty, empty) == 1.0
    obj = square(10, 10, 10, (50, 60))
    assert metrics.jaccard(empty, obj) == 0.0
    assert metrics.f_measure_prf(empty, obj) == (0.0, 1.0, 0.0)  # nothing predicted: P=1, R=0
    assert metrics.f_measure_prf(obj, empty) == (0.0, 0.0, 1.0)


def test_disjoint_masks_score_zero():
    a, b = square(5, 5), square(70, 70)
    assert metrics.jaccard(a, b) == 0.0
    assert metrics.f_measure(a, b) == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10])
def test_shifted_square_jaccard(k):
    # side s shifted by k: intersection s (s - k), union s (s + k)
    assert metrics.jaccard(square(30 + k, 30), square(30, 30)) == pytest.approx((20 - k) / (20 + k), abs=1e-15)
    assert metrics.jaccard(square(30, 30 + k), square(30, 30)) == pytest.approx((20 - k) / (20 + k), abs=1e-15)


def test_boundary_is_a_one_pixel_ring_of_4s_pixels():
    b = metrics.boundary_map(square(30, 40))
    assert b.sum() == 80  # ring around rows 39..59, cols 29..49 (DAVIS seg2bmap convention)
    rows, cols = np.nonzero(b)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (39, 59, 29, 49)


def test_tolerance_is_ceil_of_0008_diagonal():
    assert metrics.boundary_radius((100, 100)) == 2  # ceil(1.131)
    assert metrics.boundary_radius((480, 854)) == 8  # ceil(7.84), DAVIS 480p
    assert metrics.boundary_radius((100, 100), 3) == 3


@pytest.mark.parametrize("k,expected", [
    (1, 1.0), (2, 1.0),  # within the 2 px tolerance of a 100 x 100 image: every boundary pixel matches
    (3, 44 / 80),        # beyond it: counted by hand (module test docstring), P = R = 44 / 80
    (5, 40 / 80),
])
def test_shifted_square_f_measure(k, expected):
    # Hand count for a side-20 square shifted right by k > 2: of the 80 predicted boundary
    # pixels, the shifted left side matches only its 3 + 3 pixels near the top / bottom sides
    # (6), the shifted right side none, each horizontal side its 20 - k + 2 pixels over or
    # within 2 px of the truth's. P = (6 + 2 (22 - k)) / 80, and R = P by symmetry.
    f, p, r = metrics.f_measure_prf(square(30 + k, 30), square(30, 30))
    assert p == pytest.approx(expected, abs=1e-12)
    assert r == pytest.approx(expected, abs=1e-12)
    assert f == pytest.approx(expected, abs=1e-12)


def test_f_measure_matches_brute_force_distances():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = np.zeros((40, 50), bool)
        b = np.zeros((40, 50), bool)
        for m in (a, b):
            y, x = rng.integers(5, 30, 2)
            m[y:y + rng.integers(3, 10), x:x + rng.integers(3, 15)] = True
        r = metrics.boundary_radius(a.shape)
        pa, pb = np.argwhere(metrics.boundary_map(a)), np.argwhere(metrics.boundary_map(b))
        d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
        prec = (d.min(1) <= r).mean()
        rec = (d.min(0) <= r).mean()
        f = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
        assert metrics.f_measure(a, b) == pytest.approx(f, abs=1e-12)


def test_track_loss_events():
    frames = list(range(12))
    ious = [0.9, 0.9, 0.0, 0.05, 0.0, 0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0]
    gt = [True] * 12
    pred = [True, True, False, True, False, False, False, True, True, True, True, True]
    ev = metrics.track_loss_events(3, frames, ious, gt, pred, min_frames=5, iou_th=0.1)
    assert [e.as_dict() for e in ev] == [
        {"object_id": 3, "start_frame": 2, "end_frame": 6, "frames": 5, "recovered": True}]
    # shorter runs are no event; frames without the object in the truth do not count
    gt2 = [True] * 8 + [False] * 4
    assert metrics.track_loss_events(3, frames, ious, gt2, pred, min_frames=4)[-1].end_frame == 6
    ev = metrics.track_loss_events(1, frames, ious, gt, pred, min_frames=4)
    assert [(e.start_frame, e.end_frame, e.recovered) for e in ev] == [(2, 6, True), (8, 11, False)]


def test_summarize():
    s = metrics.summarize([1.0, 1.0, 0.4, 0.2])
    assert s["mean"] == pytest.approx(0.65)
    assert s["recall"] == 0.5
    assert s["decay"] == pytest.approx(0.8)
    assert metrics.summarize([])["mean"] is None

"""Masks to polygons and back: round trips on real image regions, edge cases, errors."""

import cv2
import numpy as np
import pytest
import torch

from sam2_ros.image.polygons import largest_polygon, mask_to_polygons, polygons_to_mask


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def filled(mask):
    """The mask with its holes filled, found independently of the code under test: background
    pixels 4-connected to the image border stay background, all others are inside."""
    _, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return ~np.isin(labels, edge[edge > 0])


@pytest.fixture(scope="module")
def real_masks(bunny_frames):
    """Otsu-thresholded real frames: irregular regions of every size, with holes, touching the
    border; plus each large region alone."""
    masks = []
    for frame in bunny_frames(3, 640, 360, start=0) + bunny_frames(1, 640, 360, start=90):
        gray = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (5, 5), 0)
        _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        masks.append(binary.astype(bool))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        masks += [labels == i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= 2000]
    return masks


def test_round_trip_on_real_masks(real_masks):
    assert len(real_masks) >= 8
    assert any(not np.array_equal(filled(m), m) for m in real_masks)  # some have holes
    for mask in real_masks:
        exact = mask_to_polygons(mask, tolerance=0)
        assert np.array_equal(polygons_to_mask(exact, mask.shape), filled(mask))
        simple = mask_to_polygons(mask)  # tolerance 1 pixel
        assert len(simple) == len(exact)
        assert sum(map(len, simple)) < sum(map(len, exact)) / 3  # far fewer vertices
        assert iou(polygons_to_mask(simple, mask.shape), filled(mask)) >= 0.98
        assert all(p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 2 for p in simple)


def test_empty_and_tiny_masks():
    empty = np.zeros((30, 40), bool)
    assert mask_to_polygons(empty) == []
    assert largest_polygon(empty).shape == (0, 2)
    assert not polygons_to_mask([], (30, 40)).any()
    assert not polygons_to_mask(largest_polygon(empty), (30, 40)).any()
    dot = empty.copy()
    dot[7, 11] = True
    (poly,) = mask_to_polygons(dot)
    np.testing.assert_array_equal(poly, [[11, 7]])  # x, y of the pixel centre
    assert np.array_equal(polygons_to_mask([poly], dot.shape), dot)
    line = empty.copy()
    line[5, 3:20] = True
    assert np.array_equal(polygons_to_mask(mask_to_polygons(line), line.shape), line)
    assert len(mask_to_polygons(line)[0]) == 2
    assert mask_to_polygons(np.zeros((0, 5), bool)) == []


def test_mask_touching_the_border():
    full = np.ones((12, 17), bool)
    (poly,) = mask_to_polygons(full)
    assert {tuple(v) for v in poly.tolist()} == {(0, 0), (16, 0), (16, 11), (0, 11)}
    assert polygons_to_mask(poly, full.shape).all()
    corner = np.zeros((40, 40), bool)
    corner[:15, 25:] = True
    corner[:3, 20:25] = True
    assert np.array_equal(polygons_to_mask(mask_to_polygons(corner, tolerance=0), corner.shape), corner)
    (poly,) = mask_to_polygons(corner)  # the notch's corner is within 1 pixel of a diagonal
    assert len(poly) == 6 and iou(polygons_to_mask(poly, corner.shape), corner) > 0.98


def test_hole_is_filled():
    ring = np.zeros((40, 40), bool)
    ring[5:30, 8:35] = True
    ring[12:20, 15:25] = False
    island = ring.copy()
    island[15:17, 18:20] = True  # a region inside the hole is its own polygon
    polys = mask_to_polygons(island)
    assert len(polys) == 2 and len(polys[0]) == 4  # the ring's outer boundary: a rectangle
    assert np.array_equal(polygons_to_mask(polys, ring.shape), filled(ring))
    assert np.array_equal(polygons_to_mask(largest_polygon(ring), ring.shape), filled(ring))


def test_several_regions():
    mask = np.zeros((50, 60), bool)
    mask[2:12, 2:12] = True  # 100 px
    mask[20:45, 30:55] = True  # 625 px: the largest
    mask[40:43, 3:6] = True  # 9 px
    mask[12, 12] = True  # touches the first square diagonally: 8-connected to it
    polys = mask_to_polygons(mask, tolerance=0)
    assert [int(polygons_to_mask(p, mask.shape).sum()) for p in polys] == [625, 101, 9]
    assert np.array_equal(polygons_to_mask(polys, mask.shape), mask)
    assert len(mask_to_polygons(mask, min_area=10)) == 2
    assert len(mask_to_polygons(mask, min_area=1000)) == 0
    np.testing.assert_array_equal(largest_polygon(mask), mask_to_polygons(mask)[0])
    # Polygons that overlap are united, not cut by parity.
    square = np.array([[0, 0], [9, 0], [9, 9], [0, 9]], np.float32)
    assert polygons_to_mask([square, square + 5], (20, 20)).sum() == 100 + 100 - 25


def test_other_inputs():
    mask = np.zeros((20, 20), np.uint8)
    mask[4:9, 4:9] = 255
    expected = mask_to_polygons(mask > 0)
    for variant in (mask, torch.from_numpy(mask > 0), mask.astype(np.int32)):
        got = mask_to_polygons(variant)
        assert len(got) == 1 and np.array_equal(got[0], expected[0])
    assert polygons_to_mask([[[4.4, 4.4], [8.6, 4.4], [8.6, 8.6], [4.4, 8.6]]], (20, 20)).sum() == 36  # rounded to 4..9


@pytest.mark.parametrize("call, match", [
    (lambda: mask_to_polygons(np.zeros((4, 4, 1), bool)), "2-D"),
    (lambda: mask_to_polygons(np.zeros((4, 4), np.float32)), "threshold"),
    (lambda: mask_to_polygons(np.zeros((4, 4), bool), tolerance=-1), "tolerance"),
    (lambda: mask_to_polygons(np.zeros((4, 4), bool), tolerance=float("nan")), "tolerance"),
    (lambda: mask_to_polygons(np.zeros((4, 4), bool), min_area=-5), "min_area"),
    (lambda: polygons_to_mask([np.zeros((3, 3))], (4, 4)), r"\(K, 2\)"),
    (lambda: polygons_to_mask([[[0, 0], [np.nan, 1], [2, 2]]], (4, 4)), "NaN"),
    (lambda: polygons_to_mask([], (0, 4)), "hw"),
    (lambda: polygons_to_mask([], (4,)), "hw"),
    (lambda: polygons_to_mask([], (4.5, 4)), "hw"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()

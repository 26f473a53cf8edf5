"""Tests of sam2_ros.visualization (numpy/OpenCV only: no model, no ROS)."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sam2_ros.visualization import (color_for_id, contact_sheet, draw_prompts, label_image, overlay,
                                    stamp)


def _frame(h=120, w=160, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _box_mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# --- colors ---------------------------------------------------------------------------------

def test_color_is_stable_and_valid():
    for obj_id in range(0, 300):
        c = color_for_id(obj_id)
        assert c == color_for_id(obj_id)
        assert len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)


def test_first_ids_get_distinct_colors():
    colors = np.array([color_for_id(i) for i in range(1, 17)], float)
    dists = [np.abs(a - b).sum() for a, b in itertools.combinations(colors, 2)]
    assert min(dists) > 40


# --- overlay --------------------------------------------------------------------------------

def test_overlay_shape_dtype_and_input_untouched():
    frame = _frame()
    before = frame.copy()
    masks = np.stack([_box_mask(120, 160, 10, 60, 10, 70), _box_mask(120, 160, 50, 110, 80, 150)])
    out = overlay(frame, masks, [1, 2], scores=[0.9, 0.5], labels={1: 'cup'})
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert out is not frame
    np.testing.assert_array_equal(frame, before)


def test_overlay_leaves_background_and_tints_the_mask():
    frame = np.full((100, 100, 3), 100, np.uint8)
    mask = _box_mask(100, 100, 20, 80, 20, 80)
    out = overlay(frame, mask[None], [3], alpha=0.5)
    # away from the mask, its outline and its tag (centered above its top edge): untouched
    np.testing.assert_array_equal(out[85:], frame[85:])
    np.testing.assert_array_equal(out[:, :15], frame[:, :15])
    assert (out[:20] != frame[:20]).any()  # the tag
    # inside: blended with the id's color
    expected = np.round(0.5 * 100 + 0.5 * np.array(color_for_id(3))).astype(int)
    np.testing.assert_allclose(out[60, 30].astype(int), expected, atol=1)


def test_overlay_colors_follow_ids_not_order():
    frame = np.zeros((80, 80, 3), np.uint8)
    a = _box_mask(80, 80, 5, 35, 5, 35)
    b = _box_mask(80, 80, 45, 75, 45, 75)
    out1 = overlay(frame, np.stack([a, b]), [7, 9], alpha=1.0)
    out2 = overlay(frame, np.stack([b, a]), [9, 7], alpha=1.0)
    np.testing.assert_array_equal(out1, out2)
    assert tuple(out1[10, 10]) == color_for_id(7)
    assert tuple(out1[50, 50]) == color_for_id(9)


def test_overlay_later_mask_on_top():
    frame = np.zeros((60, 60, 3), np.uint8)
    a = _box_mask(60, 60, 0, 60, 0, 60)
    b = _box_mask(60, 60, 0, 60, 0, 60)
    out = overlay(frame, np.stack([a, b]), [1, 2], alpha=1.0)
    assert tuple(out[45, 30]) == color_for_id(2)


def test_overlay_empty_and_blank_masks():
    frame = _frame()
    np.testing.assert_array_equal(overlay(frame, np.zeros((0, 120, 160), bool), []), frame)
    np.testing.assert_array_equal(overlay(frame, np.zeros((0,), bool), []), frame)


def test_objects_without_a_mask_get_a_no_mask_tag_in_the_bottom_right_corner():
    # random weights give empty masks: the overlay must still show that objects are tracked
    frame = np.full((360, 640, 3), 90, np.uint8)
    out = overlay(frame, np.zeros((2, 360, 640), bool), [1, 2], scores=[0.03, 0.5])
    changed = np.abs(out.astype(int) - frame).sum(-1) > 0
    rows, cols = np.nonzero(changed)
    assert rows.size and rows.min() > 360 // 2 and cols.min() > 640 // 2  # bottom right only
    assert (out[changed] == color_for_id(1)).all(-1).any() and (out[changed] == color_for_id(2)).all(-1).any()
    # a visible object keeps its tag on its mask; only the empty one goes to the corner
    mask = np.zeros((2, 360, 640), bool)
    mask[0, 50:120, 60:200] = True
    out = overlay(frame, mask, [1, 2], scores=[0.9, 0.1])
    corner = np.abs(out[300:, 400:].astype(int) - frame[300:, 400:]).sum(-1) > 0
    assert (out[300:, 400:][corner] == color_for_id(2)).all(-1).any()
    assert not (out[300:, 400:][corner] == color_for_id(1)).all(-1).any()


def test_draw_prompts_marks_points_boxes_and_the_object_id():
    frame = np.full((120, 160, 3), 128, np.uint8)
    out = draw_prompts(frame, points=[[40, 30], [100, 60]], labels=[1, 0], obj_id=3)
    assert tuple(out[30, 40]) == (40, 220, 40) and tuple(out[60, 100]) == (230, 40, 40)
    assert (out == color_for_id(3)).all(-1).any()  # the "prompt 3" label
    assert (frame == 128).all()
    boxed = draw_prompts(frame, box=[20, 20, 90, 80])
    assert tuple(boxed[20, 55]) == (255, 255, 255) and tuple(boxed[50, 55]) == (128, 128, 128)


def test_overlay_rejects_bad_input():
    frame = _frame()
    with pytest.raises(ValueError):
        overlay(frame, np.zeros((1, 10, 10), bool), [1])
    with pytest.raises(ValueError):
        overlay(frame, np.zeros((2, 120, 160), bool), [1])
    with pytest.raises(ValueError):
        overlay(frame.astype(np.float32), np.zeros((1, 120, 160), bool), [1])


def test_overlay_accepts_torch_tensors():
    torch = pytest.importorskip('torch')
    frame = _frame()
    masks = torch.zeros(1, 120, 160, dtype=torch.bool)
    masks[0, 20:60, 20:60] = True
    out = overlay(frame, masks, [1], scores=torch.tensor([0.8]))
    np.testing.assert_array_equal(out, overlay(frame, masks.numpy(), [1], scores=[0.8]))


# --- label image ----------------------------------------------------------------------------

def test_label_image_overlap_goes_to_higher_logit():
    logits = np.full((2, 4, 4), -5.0, np.float32)
    logits[0, :, :3] = 2.0        # object 5 claims columns 0-2
    logits[1, :, 1:] = 1.0        # object 9 claims columns 1-3, weaker
    logits[1, 0, 2] = 3.0         # ... except one pixel where it is stronger
    lab = label_image(logits, [5, 9])
    assert lab.dtype == np.uint16 and lab.shape == (4, 4)
    expected = np.array([[5, 5, 9, 9]] + [[5, 5, 5, 9]] * 3, np.uint16)
    np.testing.assert_array_equal(lab, expected)


def test_label_image_threshold_and_single_object():
    logits = np.array([[[-1.0, 0.0, 0.5, 2.0]]], np.float32)
    np.testing.assert_array_equal(label_image(logits, [300]), [[0, 0, 300, 300]])
    np.testing.assert_array_equal(label_image(logits, [300], threshold=1.0), [[0, 0, 0, 300]])


def test_label_image_empty_gives_zeros():
    lab = label_image(np.zeros((0, 7, 9), np.float32), [])
    assert lab.shape == (7, 9) and lab.dtype == np.uint16 and not lab.any()
    lab = label_image(np.full((3, 7, 9), -1.0, np.float32), [1, 2, 3])
    assert lab.shape == (7, 9) and not lab.any()


def test_label_image_rejects_bad_ids():
    with pytest.raises(ValueError):
        label_image(np.zeros((1, 2, 2)), [0])
    with pytest.raises(ValueError):
        label_image(np.zeros((1, 2, 2)), [70000])
    with pytest.raises(ValueError):
        label_image(np.zeros((2, 2, 2)), [1])


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
                  elements=st.floats(-4, 4, width=32)))
def test_label_image_matches_reference(logits):
    ids = [10 * (k + 1) for k in range(logits.shape[0])]
    lab = label_image(logits, ids)
    n, h, w = logits.shape
    for y in range(h):
        for x in range(w):
            values = logits[:, y, x]
            k = int(np.argmax(values))
            assert lab[y, x] == (ids[k] if values[k] > 0 else 0)


def test_label_image_accepts_torch_tensors():
    torch = pytest.importorskip('torch')
    logits = torch.randn(3, 8, 8)
    np.testing.assert_array_equal(label_image(logits, [1, 2, 3]),
                                  label_image(logits.numpy(), [1, 2, 3]))


# --- stamp, contact sheet -------------------------------------------------------------------

def test_stamp_marks_the_top_only():
    frame = np.full((360, 640, 3), 200, np.uint8)
    out = stamp(frame, 'RANDOM WEIGHTS: masks are meaningless; pass --checkpoint')
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert (out[:20] != frame[:20]).any()
    np.testing.assert_array_equal(out[100:], frame[100:])
    assert (frame == 200).all()


def test_contact_sheet_layout():
    images = [_frame(90, 160, seed=k) for k in range(5)]
    sheet = contact_sheet(images, columns=3, tile_width=80, captions=['a', 'b'])
    assert sheet.shape == (2 * 45, 3 * 80, 3) and sheet.dtype == np.uint8
    with pytest.raises(ValueError):
        contact_sheet([])


def test_contact_sheet_banner_gets_a_strip_of_its_own():
    images = [np.full((360, 640, 3), 200, np.uint8) for _ in range(3)]
    plain = contact_sheet(images, columns=3)
    sheet = contact_sheet(images, columns=3, banner='RANDOM WEIGHTS: masks are meaningless')
    extra = sheet.shape[0] - plain.shape[0]
    assert 16 <= extra <= 60  # a strip sized for the sheet's width, not shrunk with a tile
    np.testing.assert_array_equal(sheet[extra:], plain)  # the tiles are not covered
    assert (sheet[:extra] != 0).any()  # the text

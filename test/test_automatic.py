"""AutomaticMaskGenerator equals Meta's SAM2AutomaticMaskGenerator (same official-format
checkpoint with random weights, real frames), plus its own pieces and its errors.

A random-weight model's masks are large and alike, so the settings here raise the mask cutoff
and lower the quality thresholds (still above 0, so that both filters run) to leave a handful
of distinct masks per image; a small grid keeps each run to a couple of seconds.
"""

import numpy as np
import pytest
import torch

from sam2_ros.image.automatic import AutomaticMaskGenerator, box_nms, crop_boxes, mask_boxes, mask_to_rle
from sam2_ros.model.build import build_model

IMAGE_SIZE = 128
SETTINGS = dict(points_per_side=8, pred_iou_thresh=0.4, stability_score_thresh=0.05, mask_threshold=4.0,
                box_nms_thresh=0.8)
# case -> (settings on top of SETTINGS, frame): each frame chosen so that the case's feature
# (masks from crops, cleaned regions, refined masks) shows up in the output.
CASES = {
    "grid": (dict(), 0),
    "crops": (dict(crop_n_layers=1, crop_n_points_downscale_factor=2), 0),
    "min_region": (dict(min_mask_region_area=30, multimask_output=False), 1),
    "m2m": (dict(points_per_side=4, use_m2m=True), 1),
}


@pytest.fixture(scope="module")
def checkpoint(official_checkpoint):
    return official_checkpoint("tiny", IMAGE_SIZE)


@pytest.fixture(scope="module")
def model(checkpoint):
    return build_model(str(checkpoint), "tiny", IMAGE_SIZE, "cpu")


@pytest.fixture(scope="module")
def frames(bunny_frames):
    return bunny_frames(1, 160, 96, start=40) + bunny_frames(1, 160, 96, start=100)


@pytest.mark.parametrize("case", list(CASES))
def test_same_masks_as_official(case, checkpoint, model, frames):
    from helpers.oracle import official_mask_generator

    settings, frame_index = CASES[case]
    kwargs, frame = {**SETTINGS, **settings}, frames[frame_index]
    theirs = official_mask_generator(checkpoint, "tiny", IMAGE_SIZE, **kwargs).generate(frame)
    ours = AutomaticMaskGenerator(model, **kwargs).generate(frame)
    assert len(ours) > 0 and len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert list(a) == list(b)  # same keys, same order
        assert a["segmentation"].shape == frame.shape[:2] and a["segmentation"].dtype == bool
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
        for key in ("area", "bbox", "point_coords", "crop_box"):
            assert a[key] == b[key] and type(a[key]) is type(b[key]), key
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-5)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=1e-5)
    if case == "crops":  # the crops did contribute
        assert {tuple(r["crop_box"]) for r in ours} != {(0.0, 0.0, 160.0, 96.0)}


def test_uncompressed_rle_is_coco_rle(model, frames):
    from sam2.utils.amg import mask_to_rle_pytorch, rle_to_mask

    binary = AutomaticMaskGenerator(model, **SETTINGS).generate(frames[0])
    rle = AutomaticMaskGenerator(model, output_mode="uncompressed_rle", **SETTINGS).generate(frames[0])
    assert len(rle) == len(binary) > 0
    for a, b in zip(rle, binary):
        assert a["segmentation"] == mask_to_rle_pytorch(torch.from_numpy(b["segmentation"])[None])[0]
        np.testing.assert_array_equal(rle_to_mask(a["segmentation"]), b["segmentation"])
        assert {k: v for k, v in a.items() if k != "segmentation"} == {k: v for k, v in b.items() if k != "segmentation"}
    assert mask_to_rle(np.ones((2, 3), bool)) == {"size": [2, 3], "counts": [0, 6]}


def test_explicit_point_grids(model, frames):
    from sam2_ros.image.automatic import point_grid

    settings = {k: v for k, v in SETTINGS.items() if k != "points_per_side"}
    by_side = AutomaticMaskGenerator(model, points_per_side=8, **settings).generate(frames[0])
    by_grid = AutomaticMaskGenerator(model, points_per_side=None, point_grids=[point_grid(8)], **settings).generate(frames[0])
    assert len(by_grid) == len(by_side) > 0
    for a, b in zip(by_grid, by_side):
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])


def test_pieces_match_official_helpers(model):
    from helpers.oracle import _shim_nms
    from sam2.utils.amg import batched_mask_to_box, build_all_layer_point_grids, generate_crop_boxes

    for hw, layers, overlap in [((180, 320), 1, 512 / 1500), ((333, 500), 2, 0.25), ((64, 64), 3, 0.0)]:
        boxes, layer_idx = generate_crop_boxes(hw, layers, overlap)
        assert crop_boxes(*hw, layers, overlap) == list(zip(boxes, layer_idx))
    for side, layers, factor in [(32, 0, 1), (12, 2, 2), (7, 1, 3)]:
        gen = AutomaticMaskGenerator(model, points_per_side=side, crop_n_layers=layers, crop_n_points_downscale_factor=factor)
        expected = build_all_layer_point_grids(side, layers, factor)
        assert len(gen.point_grids) == len(expected)
        for e, g in zip(expected, gen.point_grids):
            np.testing.assert_array_equal(e, g)
    rng = np.random.default_rng(0)
    masks = torch.from_numpy(rng.random((6, 20, 30)) > 0.97)
    masks[0] = False
    assert torch.equal(mask_boxes(masks), batched_mask_to_box(masks))
    # NMS: integer boxes with many overlaps and score ties; zero-area boxes included.
    boxes = torch.from_numpy(rng.integers(0, 40, (300, 4))).float()
    boxes[:, 2:] = boxes[:, :2] + torch.from_numpy(rng.integers(0, 25, (300, 2))).float()
    scores = torch.from_numpy(rng.integers(0, 5, 300)).float()
    for thresh in (0.0, 0.3, 0.7, 1.0):
        assert torch.equal(box_nms(boxes, scores, thresh), _shim_nms(boxes, scores, thresh))


def test_from_config_and_lazy_import(frames):
    import sam2_ros

    assert sam2_ros.AutomaticMaskGenerator is AutomaticMaskGenerator
    gen = AutomaticMaskGenerator.from_config("tiny", 128, "cpu", seed=3, points_per_side=4,
                                             pred_iou_thresh=0.0, stability_score_thresh=0.0)
    masks = gen.generate(frames[0][:90, :120])
    assert masks and all(m["segmentation"].shape == (90, 120) for m in masks)


@pytest.mark.parametrize("kwargs, match", [
    (dict(points_per_side=None), "exactly one of points_per_side"),
    (dict(point_grids=[np.full((4, 2), 0.5)]), "exactly one of points_per_side"),
    (dict(points_per_side=None, point_grids=[np.full((4, 2), 1.5)]), r"point_grids\[0\]"),
    (dict(points_per_side=None, point_grids=[np.full((4, 2), 0.5)], crop_n_layers=1), "one per layer"),
    (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2), "at least 1"),
    (dict(points_per_batch=0), "points_per_batch"),
    (dict(crop_n_layers=-1), "crop_n_layers"),
    (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio"),
    (dict(min_mask_region_area=-1), "min_mask_region_area"),
    (dict(output_mode="coco_rle"), "pycocotools"),
    (dict(output_mode="png"), "output_mode"),
])
def test_bad_settings(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutomaticMaskGenerator(model, **kwargs)


@pytest.mark.parametrize("image, match", [
    ([[0, 0, 0]], "numpy array"),
    (np.zeros((20, 30), np.uint8), "H x W x 3"),
    (np.zeros((20, 30, 4), np.uint8), "H x W x 3"),
    (np.zeros((20, 30, 3), np.float32), "uint8"),
    (np.zeros((0, 30, 3), np.uint8), "empty"),
])
def test_bad_images(model, image, match):
    with pytest.raises(ValueError, match=match):
        AutomaticMaskGenerator(model, points_per_side=2).generate(image)

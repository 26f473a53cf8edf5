"""Segment everything: SAM's automatic mask generation on one image (no memory, no rclpy).

A regular grid of single-click prompts is decoded in batches; the candidates are filtered by
the model's predicted IoU and by their stability (how little the mask changes when the logit
cutoff moves), de-duplicated by box NMS, and optionally repeated on overlapping zoomed-in crops.

Keyword names, defaults and the output records are those of Meta's
``SAM2AutomaticMaskGenerator`` (package ``sam2``), and for the same checkpoint and settings the
masks are the same (``test/test_automatic.py``). NMS is plain torch (no torchvision).
``min_mask_region_area`` means what it means in SAM 2 (not SAM 1): before upsampling, holes and
islands ("sprinkles") of at most that many *low-res* (S/4 x S/4) pixels are flipped in every
candidate's logits. Meta's generator does this only where its CUDA extension is built (it skips
it, with a warning, on every CPU install); here OpenCV does it everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..model.build import autocast, build_model, build_random_model, resolve_device
from ..model.postprocess import small_regions
from ..model.preprocess import check_image, frame_to_model_coords, to_frame_resolution
from ..model.sam2 import SAM2
from .predictor import ImageEmbedding, ImagePredictor

OUTPUT_MODES = ("binary_mask", "uncompressed_rle")
# A candidate whose box comes this close (pixels) to a crop's inner edge is cut by the crop:
# another crop (or the full image) sees that object whole.
CROP_EDGE_TOLERANCE = 20.0
# Rows of the pairwise IoU matrix computed at once in NMS (bounds memory to ~rows x N).
NMS_CHUNK = 1024
# Logits written into small holes (+) and islands (-) of the low-res masks: clearly on the
# other side of the 0 cutoff they are found with, as Meta's predictor does.
REGION_FLIP_LOGIT = 10.0
# Low-res logits handed back for refinement are clamped, as Meta's predictor does.
LOW_RES_CLAMP = 32.0

Box = List[int]  # x0, y0, x1, y1 pixels (x1, y1 exclusive for crops)


# ---------------------------------------------------------------------------- geometry
def point_grid(n_per_side: int) -> np.ndarray:
    """(n^2, 2) x, y in [0, 1]: cell centres of an n x n grid, row by row (x varies fastest)."""
    offset = 1.0 / (2 * n_per_side)
    side = np.linspace(offset, 1.0 - offset, n_per_side)  # float64, as Meta's grids
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def crop_boxes(height: int, width: int, n_layers: int, overlap_ratio: float) -> List[Tuple[Box, int]]:
    """The full image (layer 0), then for layer i a 2^i x 2^i grid of overlapping crops.

    Crops of layer i overlap by ``overlap_ratio * short_side * 2 / 2^i`` pixels (rounded down).
    Returns (box x0, y0, x1, y1, layer) pairs, crops ordered column by column.
    """
    out: List[Tuple[Box, int]] = [([0, 0, width, height], 0)]
    short = min(height, width)
    for layer in range(1, n_layers + 1):
        n = 2 ** layer
        overlap = int(overlap_ratio * short * (2 / n))
        crop_w = int(np.ceil((overlap * (n - 1) + width) / n))
        crop_h = int(np.ceil((overlap * (n - 1) + height) / n))
        for x0 in [int((crop_w - overlap) * i) for i in range(n)]:
            for y0 in [int((crop_h - overlap) * i) for i in range(n)]:
                out.append(([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)], layer))
    return out


def mask_boxes(masks: Tensor) -> Tensor:
    """(N, H, W) bool -> (N, 4) int64 x0, y0, x1, y1 with x1, y1 *inclusive* (the last pixel),
    as SAM reports them; an empty mask gets (0, 0, 0, 0)."""
    rows, cols = masks.any(2), masks.any(1)  # (N, H), (N, W)

    def span(hit: Tensor) -> Tuple[Tensor, Tensor]:
        idx = torch.arange(hit.shape[1], device=hit.device)
        return torch.where(hit, idx, hit.shape[1]).amin(1), torch.where(hit, idx, -1).amax(1)

    (x0, x1), (y0, y1) = span(cols), span(rows)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)  # (N, 4)
    return torch.where(rows.any(1, keepdim=True), boxes, 0)


def box_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression in plain torch (torchvision's semantics).

    Boxes (N, 4) x0, y0, x1, y1 are visited by descending score (ties: lower index first); a
    box is dropped when its IoU with a kept one is above ``iou_threshold``. Returns the kept
    indices, best first. The IoU test runs on the boxes' device in row chunks; only the
    sequential greedy pass runs on the host, over a boolean matrix.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = scores.sort(descending=True, stable=True).indices
    b = boxes[order].float()  # (N, 4)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # (N,)
    over = np.empty((n, n), dtype=bool)
    for start in range(0, n, NMS_CHUNK):
        rows = b[start:start + NMS_CHUNK]  # (R, 4)
        wh = (torch.minimum(rows[:, None, 2:], b[None, :, 2:]) - torch.maximum(rows[:, None, :2], b[None, :, :2])).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]  # (R, N)
        iou = inter / (area[start:start + NMS_CHUNK, None] + area[None, :] - inter)
        over[start:start + NMS_CHUNK] = (iou > iou_threshold).cpu().numpy()
    removed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if not removed[i]:
            keep.append(i)
            removed |= over[i]
    return order[torch.as_tensor(keep, device=order.device)]


def stability_score(logits: Tensor, mask_threshold: float, offset: float) -> Tensor:
    """(N, H, W) logits -> (N,) IoU of the mask at cutoff threshold+offset with the one at
    threshold-offset (the first lies inside the second, so this is a ratio of pixel counts)."""
    inner = (logits > mask_threshold + offset).flatten(1).sum(1, dtype=torch.int32)
    outer = (logits > mask_threshold - offset).flatten(1).sum(1, dtype=torch.int32)
    return inner / outer


def flip_small_regions(low_res: Tensor, max_area: int) -> Tensor:
    """Fill holes and remove islands of at most ``max_area`` pixels in (N, M, h, w) low-res
    logits, both found on the logits as given (cutoff 0, as Meta's predictor)."""
    fg = (low_res > 0).flatten(0, 1).cpu().numpy()  # (N*M, h, w)
    holes = torch.from_numpy(small_regions(~fg, max_area)).view_as(low_res).to(low_res.device)
    islands = torch.from_numpy(small_regions(fg, max_area)).view_as(low_res).to(low_res.device)
    low_res = torch.where(holes, REGION_FLIP_LOGIT, low_res)
    return torch.where(islands, -REGION_FLIP_LOGIT, low_res)


def mask_to_rle(mask: np.ndarray) -> Dict[str, Any]:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a 0-run."""
    flat = mask.T.ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + counts}


# ------------------------------------------------------------------------- candidates
@dataclass
class _Candidates:
    """Masks that survived so far, with their per-mask fields (all of length N)."""

    masks: List[np.ndarray]  # N x bit-packed (h, ceil(w/8)) uint8 at crop resolution (memory / 8)
    boxes: Tensor  # (N, 4) int64 x0, y0, x1, y1 (inclusive) in image pixels (crop pixels until uncropped)
    ious: Tensor  # (N,) predicted IoU
    stability: Tensor  # (N,)
    points: Tensor  # (N, 2) float32 x, y of the click that made the mask
    crops: Tensor  # (N, 4) int64 crop box x0, y0, x1, y1 the mask was made in

    def take(self, index: Tensor) -> "_Candidates":
        index = index.cpu()
        return _Candidates([self.masks[i] for i in index.tolist()],
                           *(getattr(self, f.name)[index] for f in fields(self)[1:]))

    @staticmethod
    def cat(parts: Sequence["_Candidates"]) -> "_Candidates":
        return _Candidates([m for p in parts for m in p.masks],
                           *(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(_Candidates)[1:]))

    def __len__(self) -> int:
        return len(self.masks)


class AutomaticMaskGenerator:
    """Masks for everything in an image, from a grid of point prompts.

    Args (as Meta's ``SAM2AutomaticMaskGenerator``):
        model: a loaded :class:`~sam2_ros.model.sam2.SAM2`.
        points_per_side: clicks along each side of the image (points_per_side^2 in all);
            None when ``point_grids`` gives them.
        points_per_batch: clicks decoded at once (more: faster, more memory; every batch holds
            points_per_batch x 3 full-resolution float logits).
        pred_iou_thresh: keep masks whose predicted IoU is above this (0 disables).
        stability_score_thresh: keep masks whose stability score is at least this (0 disables).
        stability_score_offset: how far the logit cutoff moves for the stability score.
        mask_threshold: logit cutoff of the masks.
        box_nms_thresh: box IoU above which a lower-scored mask of the same crop is a duplicate.
        crop_n_layers: extra layers of zoomed-in crops; layer i has 2^i x 2^i crops.
        crop_nms_thresh: box IoU above which masks of different crops are duplicates
            (masks of smaller crops win).
        crop_overlap_ratio: overlap of the first layer's crops, as a fraction of the short side.
        crop_n_points_downscale_factor: layer i gets points_per_side / factor^i clicks a side.
        point_grids: explicit (K, 2) x, y grids in [0, 1], one per layer (instead of points_per_side).
        min_mask_region_area: if > 0, fill holes and drop islands of at most this many low-res
            (S/4 x S/4) pixels in every candidate before upsampling (SAM 2's meaning).
        output_mode: ``binary_mask`` ((H, W) bool) or ``uncompressed_rle`` (COCO RLE dict).
        use_m2m: refine every candidate once more with its own low-res mask as a prompt.
        multimask_output: 3 candidates per click (else the model's single best).
        dtype: compute dtype (``auto``: bfloat16 on CUDA, float32 on CPU); not in Meta's API.
    """

    def __init__(
        self,
        model: SAM2,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        dtype: str = "auto",
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side (clicks per image side) and point_grids "
                             f"(explicit grids); got points_per_side={points_per_side!r} and "
                             f"point_grids={'None' if point_grids is None else 'a list'}")
        if crop_n_layers < 0 or int(crop_n_layers) != crop_n_layers:
            raise ValueError(f"crop_n_layers must be an integer >= 0, got {crop_n_layers!r}")
        if points_per_side is not None:
            if crop_n_points_downscale_factor < 1:
                raise ValueError(f"crop_n_points_downscale_factor must be >= 1, got {crop_n_points_downscale_factor!r}")
            sides = [int(points_per_side / crop_n_points_downscale_factor ** i) for i in range(crop_n_layers + 1)]
            if min(sides) < 1:
                raise ValueError(f"points_per_side={points_per_side!r} with crop_n_points_downscale_factor="
                                 f"{crop_n_points_downscale_factor} leaves {sides} points per side in the crop "
                                 "layers: every layer needs at least 1")
            point_grids = [point_grid(n) for n in sides]
        else:
            point_grids = [np.asarray(g, dtype=np.float64) for g in point_grids]
            if len(point_grids) < crop_n_layers + 1:
                raise ValueError(f"point_grids has {len(point_grids)} grids; crop_n_layers={crop_n_layers} "
                                 f"needs one per layer ({crop_n_layers + 1})")
            for i, g in enumerate(point_grids):
                if g.ndim != 2 or g.shape[1] != 2 or len(g) == 0 or not np.all((g >= 0) & (g <= 1)):
                    raise ValueError(f"point_grids[{i}] must be a non-empty (K, 2) array of x, y in [0, 1] "
                                     f"(fractions of the crop), got shape {g.shape}")
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch!r}")
        if not 0 <= crop_overlap_ratio < 1:
            raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {crop_overlap_ratio!r}")
        if min_mask_region_area < 0:
            raise ValueError(f"min_mask_region_area must be >= 0 pixels, got {min_mask_region_area!r}")
        if output_mode not in OUTPUT_MODES:
            hint = " (convert uncompressed_rle with pycocotools.mask.frPyObjects)" if output_mode == "coco_rle" else ""
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}{hint}")
        # No embedding cache: each crop is embedded once per call and would only evict the
        # user's own cached images.
        self.predictor = ImagePredictor(model, cache_size=0, dtype=dtype)
        self.point_grids = point_grids
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = int(crop_n_layers)
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output

    @classmethod
    def from_pretrained(cls, checkpoint: Optional[str] = None, model: str = "tiny", image_size: int = 1024,
                        device: str = "auto", **kwargs) -> "AutomaticMaskGenerator":
        """Load a checkpoint as :meth:`ImagePredictor.from_pretrained` does (a file, a Hub id, a
        folder, or ``None`` for the official one of ``model``). Keyword arguments go to
        :class:`AutomaticMaskGenerator`."""
        return cls(build_model(checkpoint, model=model, image_size=image_size, device=resolve_device(device),
                               image_only=True), **kwargs)

    @classmethod
    def from_config(cls, model: str = "tiny", image_size: int = 1024, device: str = "auto", seed: int = 0,
                    **kwargs) -> "AutomaticMaskGenerator":
        """A generator with random weights: the whole pipeline runs, the masks mean nothing."""
        return cls(build_random_model(model, image_size, resolve_device(device), seed=seed), **kwargs)

    # ---------------------------------------------------------------------- generate
    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> List[Dict[str, Any]]:
        """Masks for everything in an H x W x 3 uint8 RGB image.

        Returns one dict per mask (best first after the last de-duplication): ``segmentation``
        ((H, W) bool, or an RLE dict), ``area`` (pixels), ``bbox`` [x, y, w, h] (w, h: last
        minus first pixel, as SAM reports them), ``predicted_iou``, ``point_coords`` [[x, y]]
        (the click), ``stability_score``, ``crop_box`` [x, y, w, h] (the crop it came from).
        """
        if not isinstance(image, np.ndarray):
            raise ValueError(f"image must be an H x W x 3 uint8 RGB numpy array, got {type(image).__name__}")
        h, w = check_image(image)
        crops = crop_boxes(h, w, self.crop_n_layers, self.crop_overlap_ratio)
        found = _Candidates.cat([self._process_crop(image, box, layer, (h, w)) for box, layer in crops])
        if len(crops) > 1 and len(found):
            # Across crops, the mask from the smallest crop (the closest look) wins.
            crop_area = (found.crops[:, 2] - found.crops[:, 0]) * (found.crops[:, 3] - found.crops[:, 1])
            found = found.take(box_nms(found.boxes, 1 / crop_area, self.crop_nms_thresh))
        records = []
        for i, (packed, crop) in enumerate(zip(found.masks, found.crops.tolist())):
            mask = self._full_mask(packed, crop, (h, w))
            # Boxes as floats, as Meta's generator returns them.
            x0, y0, x1, y1 = found.boxes[i].float().tolist()
            cx0, cy0, cx1, cy1 = (float(v) for v in crop)
            records.append({
                "segmentation": mask if self.output_mode == "binary_mask" else mask_to_rle(mask),
                "area": int(mask.sum()),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "predicted_iou": found.ious[i].item(),
                "point_coords": [found.points[i].tolist()],
                "stability_score": found.stability[i].item(),
                "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
            })
        return records

    def _process_crop(self, image: np.ndarray, crop: Box, layer: int, image_hw: Tuple[int, int]) -> _Candidates:
        x0, y0, x1, y1 = crop
        emb = self.predictor.embed(image[y0:y1, x0:x1])
        ch, cw = emb.orig_hw
        # Grid in float64 scaled to the crop, then float32: the clicks Meta's generator sends.
        points = (self.point_grids[layer] * np.array([[cw, ch]])).astype(np.float32)  # (K, 2)
        found = _Candidates.cat([self._process_batch(emb, points[i:i + self.points_per_batch], crop, image_hw)
                                 for i in range(0, len(points), self.points_per_batch)])
        found = found.take(box_nms(found.boxes, found.ious, self.box_nms_thresh))
        offset = torch.tensor([x0, y0])
        found.boxes = found.boxes + offset.repeat(2)
        found.points = found.points + offset
        return found

    def _decode(self, emb: ImageEmbedding, clicks: Tensor, mask_input: Optional[Tensor], multimask: bool
                ) -> Tuple[Tensor, Tensor, Tensor]:
        """One positive click per prompt: clicks (B, 2) crop pixels [+ mask_input (B, 1, S/4, S/4)]
        -> logits (B, M, h, w) at the crop's resolution, ious (B, M), clamped low-res logits
        (B, M, S/4, S/4) (before any region flipping, as Meta's predictor returns them)."""
        model, dev = self.predictor.model, self.predictor.device
        feats = emb.features if emb.features.feat.device == dev else emb.features.to(dev)
        coords = frame_to_model_coords(clicks, emb.orig_hw, model.cfg.image_size)[:, None]  # (B, 1, 2)
        labels = torch.ones(coords.shape[:2], dtype=torch.int32, device=dev)  # (B, 1)
        with autocast(dev, self.predictor.dtype):
            low, ious, _, _ = model.decode(feats.feat, feats.high_res, coords, labels, mask_input, multimask)
        low = low.float()  # (B, M, S/4, S/4)
        flipped = flip_small_regions(low, self.min_mask_region_area) if self.min_mask_region_area > 0 else low
        return to_frame_resolution(flipped, emb.orig_hw), ious.float(), low.clamp(-LOW_RES_CLAMP, LOW_RES_CLAMP)

    def _process_batch(self, emb: ImageEmbedding, points: np.ndarray, crop: Box, image_hw: Tuple[int, int]) -> _Candidates:
        clicks = torch.from_numpy(points).to(self.predictor.device)  # (B, 2)
        logits, ious, low = self._decode(emb, clicks, None, self.multimask_output)
        m = logits.shape[1]
        logits, ious = logits.flatten(0, 1), ious.flatten()  # (B*M, h, w), (B*M,): click-major
        clicks = clicks.repeat_interleave(m, dim=0)  # (B*M, 2)
        if self.use_m2m:
            # Each candidate is decoded again from its click plus its own low-res mask, in
            # batches of points_per_batch (the memory bound the caller asked for).
            low = low.flatten(0, 1)[:, None]  # (B*M, 1, S/4, S/4)
            parts = [self._decode(emb, clicks[i:i + self.points_per_batch], low[i:i + self.points_per_batch], False)
                     for i in range(0, len(clicks), self.points_per_batch)]
            logits = torch.cat([p[0][:, 0] for p in parts])  # (B*M, h, w)
            ious = torch.cat([p[1][:, 0] for p in parts])  # (B*M,)
        if self.pred_iou_thresh > 0:
            keep = ious > self.pred_iou_thresh
            logits, ious, clicks = logits[keep], ious[keep], clicks[keep]
        stab = stability_score(logits, self.mask_threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0:
            keep = stab >= self.stability_score_thresh
            logits, ious, clicks, stab = logits[keep], ious[keep], clicks[keep], stab[keep]
        masks = logits > self.mask_threshold  # (N, h, w) bool
        boxes = mask_boxes(masks)  # (N, 4) in crop pixels
        # Drop masks cut by the crop's inner edges (edges shared with the image are fine).
        x0, y0 = crop[:2]
        placed = (boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)).float()
        edge = placed.new_tensor(crop)
        whole = placed.new_tensor([0, 0, image_hw[1], image_hw[0]])
        cut = ((placed - edge).abs() <= CROP_EDGE_TOLERANCE) & ((placed - whole).abs() > CROP_EDGE_TOLERANCE)
        keep = ~cut.any(1)  # (N,)
        n = int(keep.sum())
        return _Candidates(
            list(np.packbits(masks[keep].cpu().numpy(), axis=-1)), boxes[keep].cpu(), ious[keep].float().cpu(),
            stab[keep].float().cpu(), clicks[keep].cpu(), torch.tensor([crop] * n, dtype=torch.int64).reshape(n, 4),
        )

    @staticmethod
    def _full_mask(packed: np.ndarray, crop: Box, image_hw: Tuple[int, int]) -> np.ndarray:
        """A crop-resolution bit-packed mask -> (H, W) bool of the whole image."""
        x0, y0, x1, y1 = crop
        full = np.zeros(image_hw, dtype=bool)
        full[y0:y1, x0:x1] = np.unpackbits(packed, axis=-1, count=x1 - x0).astype(bool)
        return full

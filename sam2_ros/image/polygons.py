"""Masks as polygons and back: numpy and OpenCV only (no torch, no rclpy).

A polygon is a (K, 2) float32 array of x, y pixel coordinates, one vertex per row, closed
implicitly (the last vertex joins the first). Vertex (x, y) is the *centre* of pixel column x,
row y: the ring runs through the centres of the region's boundary pixels, and
:func:`polygons_to_mask` fills the ring's inside and the pixels on it, so an unsimplified ring
(``tolerance=0``) gives back its region exactly.

Holes are not represented: each 8-connected region of the mask gives one ring, its outer
boundary, so a round trip fills the holes (a region inside a hole is still its own ring). This
is what a geometry_msgs/PolygonStamped, which holds one ring, can carry; a mask topic carries
the rest.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import cv2
import numpy as np

from ..visualization import _to_numpy

__all__ = ["mask_to_polygons", "largest_polygon", "polygons_to_mask"]


def _check_mask(mask) -> np.ndarray:
    array = _to_numpy(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {array.shape}")
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"mask must be bool (or integer: nonzero = inside), got {array.dtype}; "
                         "threshold logits or probabilities first (e.g. logits > 0)")
    return array.astype(np.uint8) if array.dtype == bool else (array != 0).astype(np.uint8)


def _check_non_negative(value: float, name: str) -> float:
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _rings(mask, tolerance: float, min_area: float, limit: Union[int, None]) -> List[np.ndarray]:
    """Outer rings of the mask's 8-connected regions of at least ``min_area`` pixels, largest
    first (ties: the region whose first pixel comes first in raster order), at most ``limit``."""
    binary = _check_mask(mask)
    tolerance = _check_non_negative(tolerance, "tolerance")
    min_area = _check_non_negative(min_area, "min_area")
    if binary.size == 0:
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]  # (n - 1,) regions 1..n-1
    order = [int(i) + 1 for i in np.argsort(-areas, kind="stable") if areas[i] >= min_area][:limit]
    rings = []
    for label in order:
        x, y, w, h = stats[label, :4]
        # The region alone, in its box with a 1-pixel empty margin: findContours then sees
        # only this region, and a region touching the image border is traced like any other.
        region = np.pad((labels[y:y + h, x:x + w] == label).astype(np.uint8), 1)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=(int(x) - 1, int(y) - 1))
        ring = max(contours, key=len)  # one 8-connected region has one outer boundary
        if tolerance > 0:
            ring = cv2.approxPolyDP(ring, tolerance, True)
        rings.append(ring.reshape(-1, 2).astype(np.float32))
    return rings


def mask_to_polygons(mask, tolerance: float = 1.0, min_area: float = 0) -> List[np.ndarray]:
    """Outer boundaries of a (H, W) bool mask's regions as (K, 2) float32 x, y polygons.

    One polygon per 8-connected region of at least ``min_area`` pixels, largest region first;
    holes are filled (see the module's doc). Each ring is simplified with Douglas-Peucker
    (``cv2.approxPolyDP``): no pixel centre of the boundary lies farther than ``tolerance``
    pixels from the polygon; 0 keeps every boundary pixel. A one-pixel region is a one-vertex
    polygon, a one-pixel-wide line a two-vertex one. Torch tensors are accepted.
    """
    return _rings(mask, tolerance, min_area, None)


def largest_polygon(mask, tolerance: float = 1.0) -> np.ndarray:
    """The one ring for a geometry_msgs/PolygonStamped: the outer boundary of the mask's
    largest 8-connected region (by pixel count), as :func:`mask_to_polygons` gives it.

    Smaller regions are dropped rather than merged: a hull around separate pieces would claim
    pixels between them that are not the object, while the largest piece is the object's
    main body. Returns a (0, 2) array for an empty mask.
    """
    rings = _rings(mask, tolerance, 0, 1)
    return rings[0] if rings else np.zeros((0, 2), dtype=np.float32)


def polygons_to_mask(polygons: Union[np.ndarray, Sequence[np.ndarray]], hw: Tuple[int, int]) -> np.ndarray:
    """Fill polygons into an (H, W) bool mask: the union of their insides and boundaries.

    ``polygons``: a sequence of (K, 2) x, y arrays (vertices rounded to the nearest pixel
    centre), or one (K, 2) array; empty polygons are skipped. Parts outside the image are cut.
    """
    if len(hw) != 2 or any(int(v) != v or v < 1 for v in hw):
        raise ValueError(f"hw must be (height, width) in pixels, both >= 1, got {tuple(hw)!r}")
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        polygons = [polygons]
    canvas = np.zeros((int(hw[0]), int(hw[1])), dtype=np.uint8)
    for i, polygon in enumerate(polygons):
        points = np.asarray(polygon, dtype=np.float64)
        if points.size == 0:
            continue
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"polygon {i} must be a (K, 2) array of x, y pixels, got shape {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError(f"polygon {i} has NaN or infinite coordinates")
        # One polygon at a time: cv2.fillPoly fills several at once by parity, which would
        # cut out the overlap of two polygons instead of keeping it.
        cv2.fillPoly(canvas, [np.rint(points).astype(np.int32)], 1)
    return canvas.astype(bool)

"""Objects in 3-D from an aligned depth image: each tracked object's position, extent, oriented
box and points, in the camera's optical frame (numpy and OpenCV; no torch, no rclpy).

Inputs: the tracker's masks (N, H, W) bool at the colour image's size, the objects' ids (and
their scores, class labels and states, as the tracker and :mod:`~sam2_ros.tracking.object_state`
give them), a depth image registered to the colour image (uint16 millimetres, as ROS ``16UC1``,
or float32 / float64 metres, as ``32FC1``; at the colour image's size or at an integer scale of
it, e.g. half) and the colour camera's intrinsics (:class:`Intrinsics`, or its K matrix).

Per object (:class:`Object3D`), on the *working grid*: the depth image's pixels where the
depth is the colour image's size or coarser (the mask is brought down by a majority vote over
each block), the colour image's pixels where the depth is finer (the depth is sampled at their
centres):

1. depth: pixels without depth (0, NaN, inf, negative) are left out; float depth is read to the
   millimetre; a median filter (``median_ksize``) takes the sensor's noise down, and a pixel
   whose raw depth disagrees with its neighbourhood's median (by more than 1/64 of it + 1 cm:
   a flying pixel between an object and what is behind it, or an object's corner whose
   neighbourhood is mostly background) is left out;
2. the mask is eroded by ``erosion_px`` colour pixels (not at the image's edge), so that the
   flying pixels a depth camera returns at an object's edges, and the background a slightly
   large mask takes in, are not measured; then the ring the erosion took off is grown back,
   one pixel at a time, where the depth continues the surface (a step no larger than a
   surface seen at ``MAX_INCIDENCE_DEG`` makes): the object's own edges and oblique sides
   come back, the background across a depth edge does not. An object too thin for the
   erosion is measured on its whole mask;
3. too few valid pixels (``min_points``): no 3-D for the object this frame (``reason`` says so);
4. the valid pixels (a regular subsample of at most about ``STAT_POINTS`` for large objects)
   are back-projected through the intrinsics; the **centroid** is their per-axis median; the
   **axis-aligned box** spans the ``trim_percent`` to ``100 - trim_percent`` percentiles of
   each axis; the **oriented box** does the same along the points' principal axes (PCA; its
   first two axes' signs are fixed so that it does not flip between frames, but for a
   near-symmetric shape its axes are arbitrary).

All of it is measured on the *seen* surface: an object's back is never seen, so along z the box
spans the depth range of the visible surface (a box's front face: ~0; a sphere's cap: up to
where the sensor loses it at grazing angles). Lens distortion is ignored (K only): give
rectified images or a camera with negligible distortion.

Objects that the tracker reports ``occluded`` or ``lost`` get no 3-D (``reason`` is the state).
Bad input raises a :class:`Objects3DError` (a ValueError) saying what was wrong and what is
accepted; invalid depth pixels are not errors, they are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from sam2_ros.tracking.object_state import LOST, OCCLUDED, STATES, VISIBLE

__all__ = [
    "Objects3DError", "DepthFormatError", "DepthSizeError", "IntrinsicsError", "Intrinsics",
    "Object3D", "Objects3D", "objects_3d", "STAT_POINTS", "VISIBLE", "OCCLUDED", "LOST",
]

STAT_POINTS = 1024  # points an object's statistics are taken from at most (a regular subsample)
MEDIAN_KSIZES = (0, 3, 5)  # OpenCV's median filter takes 16-bit images up to 5 x 5
_MAX_MM = 65535  # float depth read to the millimetre: farther than 65.535 m is no depth
MAX_INCIDENCE_DEG = 76.0  # the most oblique surface the erosion's ring is grown back along
_MAX_STEP = math.tan(math.radians(MAX_INCIDENCE_DEG))  # its depth step per pixel, in pixel widths
_AGREE_SHIFT, _AGREE_MM = 6, 10  # raw and median depth agree within 1/64 of it + 10 mm
_K3 = np.ones((3, 3), np.uint8)  # a pixel's 8 neighbours


class Objects3DError(ValueError):
    """Input the 3-D step cannot use; the message says what was wrong and what is accepted."""


class DepthFormatError(Objects3DError):
    """A depth image of the wrong type, shape or encoding."""


class DepthSizeError(Objects3DError):
    """A depth image whose size is no integer scale of the colour image's."""


class IntrinsicsError(Objects3DError):
    """Missing, zero or invalid camera intrinsics, or intrinsics for another image size."""


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: ``u = fx X/Z + skew Y/Z + cx``, ``v = fy Y/Z + cy`` (pixels, the
    colour image's ``width`` x ``height``; x right, y down, z forward: ROS's optical frame)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    skew: float = 0.0

    @classmethod
    def from_matrix(cls, k, width: int, height: int, what: str = "K") -> "Intrinsics":
        """From a 3 x 3 camera matrix (or its 9 numbers, row by row, as CameraInfo.k) for images
        of ``width`` x ``height``; refuses a missing, zero or malformed K with the reason."""
        try:
            m = np.asarray(k, dtype=np.float64).reshape(3, 3)
        except (TypeError, ValueError):
            raise IntrinsicsError(f"{what} must be a 3 x 3 camera matrix (9 numbers, row by row), got "
                                  f"{np.shape(k) if not isinstance(k, str) else repr(k)}") from None
        if isinstance(width, bool) or isinstance(height, bool) or int(width) <= 0 or int(height) <= 0:
            raise IntrinsicsError(f"the intrinsics' image size must be > 0, got {width}x{height}: "
                                  "is the camera_info filled in (width, height)?")
        if not np.isfinite(m).all():
            raise IntrinsicsError(f"{what} has non-finite entries: {m.tolist()}")
        if not m.any():
            raise IntrinsicsError(f"{what} is all zeros: the camera is not calibrated, or this is not the "
                                  "colour camera's camera_info; 3-D needs fx, fy, cx, cy")
        fx, skew, cx, fy, cy = m[0, 0], m[0, 1], m[0, 2], m[1, 1], m[1, 2]
        if fx <= 0 or fy <= 0:
            raise IntrinsicsError(f"{what} has focal lengths fx = {fx:g}, fy = {fy:g}: both must be > 0")
        if m[1, 0] != 0 or m[2, 0] != 0 or m[2, 1] != 0 or m[2, 2] != 1:
            raise IntrinsicsError(f"{what} must be [[fx, skew, cx], [0, fy, cy], [0, 0, 1]], got {m.tolist()}")
        return cls(float(fx), float(fy), float(cx), float(cy), int(width), int(height), float(skew))

    @property
    def matrix(self) -> np.ndarray:
        """The 3 x 3 camera matrix K."""
        return np.array([[self.fx, self.skew, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def coarser(self, s: int) -> "Intrinsics":
        """The same camera on a grid ``s`` times coarser (pixel (j, i) covers the colour pixels
        ``[s j, s j + s)`` x ``[s i, s i + s)``; pixel centres at integers)."""
        if s == 1:
            return self
        return Intrinsics(self.fx / s, self.fy / s, (self.cx + 0.5) / s - 0.5, (self.cy + 0.5) / s - 0.5,
                          self.width // s, self.height // s, self.skew / s)

    def project(self, points: np.ndarray) -> np.ndarray:
        """(M, 3) points in the optical frame -> (M, 2) pixels u, v."""
        p = np.asarray(points, np.float64).reshape(-1, 3)
        x, y = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
        return np.stack([self.fx * x + self.skew * y + self.cx, self.fy * y + self.cy], axis=1)


@dataclass
class Object3D:
    """One object on one frame, in metres in the depth image's optical frame. Without 3-D
    (``reason`` set: occluded, lost, an empty mask, too few valid depth pixels) the geometry
    is None."""

    obj_id: int
    state: str = VISIBLE  # the tracker's: visible / occluded / lost
    label: Optional[str] = None  # class label, None when the object has none
    score: float = 1.0  # the tracker's object-presence score
    n_points: int = 0  # valid depth pixels the geometry was measured on (see the module doc)
    centroid: Optional[np.ndarray] = None  # (3,) per-axis median of the seen surface
    center: Optional[np.ndarray] = None  # (3,) centre of the axis-aligned box
    extent: Optional[np.ndarray] = None  # (3,) sides of the axis-aligned box
    obb_center: Optional[np.ndarray] = None  # (3,) centre of the oriented box
    obb_rotation: Optional[np.ndarray] = None  # (3, 3) columns: the box's axes (right-handed)
    obb_size: Optional[np.ndarray] = None  # (3,) sides along those axes
    points: Optional[np.ndarray] = None  # (M, 3) float32, when asked for
    reason: Optional[str] = None  # why there is no 3-D, else None

    @property
    def has_3d(self) -> bool:
        return self.centroid is not None

    @property
    def obb_quaternion(self) -> Optional[Tuple[float, float, float, float]]:
        """The oriented box's rotation as a unit quaternion (x, y, z, w)."""
        if self.obb_rotation is None:
            return None
        return _quaternion(self.obb_rotation)


def _quaternion(r: np.ndarray) -> Tuple[float, float, float, float]:
    """Rotation matrix -> (x, y, z, w), from the largest of the four diagonal combinations
    (stable for every rotation)."""
    t = np.trace(r)
    cands = (t, r[0, 0], r[1, 1], r[2, 2])
    i = int(np.argmax(cands))
    if i == 0:
        s = 2.0 * math.sqrt(1.0 + t)
        q = ((r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4)
    elif i == 1:
        s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = (s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s)
    elif i == 2:
        s = 2.0 * math.sqrt(1.0 - r[0, 0] + r[1, 1] - r[2, 2])
        q = ((r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s)
    else:
        s = 2.0 * math.sqrt(1.0 - r[0, 0] - r[1, 1] + r[2, 2])
        q = ((r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4, (r[1, 0] - r[0, 1]) / s)
    if q[3] < 0:  # one of the two equal quaternions: w >= 0
        q = tuple(-v for v in q)
    return tuple(float(v) for v in q)


class _Grid:
    """Where masks meet depth: the depth image's grid when it is as fine as the colour image or
    coarser by ``s`` ("down"), the colour image's grid when the depth is finer by ``s`` ("up")."""

    def __init__(self, colour_hw: Tuple[int, int], depth_hw: Tuple[int, int], k: Intrinsics) -> None:
        (h, w), (hd, wd) = colour_hw, depth_hw
        if (hd, wd) == (h, w):
            self.mode, self.s = "same", 1
        elif h % hd == 0 and w % wd == 0 and h // hd == w // wd:
            self.mode, self.s = "down", h // hd
        elif hd % h == 0 and wd % w == 0 and hd // h == wd // w:
            self.mode, self.s = "up", hd // h
        else:
            raise DepthSizeError(
                f"the depth image is {wd}x{hd}, the colour image {w}x{h}: depth must be registered to the "
                f"colour image, at its size or an integer scale of it (e.g. {w // 2}x{h // 2} or {w * 2}x{h * 2})")
        self.k = k.coarser(self.s) if self.mode == "down" else k
        self.shape = (hd, wd) if self.mode == "down" else (h, w)

    def erosion(self, erosion_px: int) -> int:
        """Colour pixels -> grid pixels (rounded up: never less than asked)."""
        return -(-erosion_px // self.s) if self.mode == "down" else erosion_px

    def crop(self, mask: np.ndarray, depth: np.ndarray, box: Tuple[int, int, int, int], margin: int):
        """The mask (uint8 0/1) and depth on the grid around a colour-pixel box, ``margin`` grid
        pixels wider (clipped to the image), and the crop's top-left grid pixel."""
        x0, y0, x1, y1 = box
        s, (hg, wg) = self.s, self.shape
        if self.mode == "down":
            x0, y0, x1, y1 = x0 // s, y0 // s, -(-x1 // s), -(-y1 // s)
        x0, y0 = max(0, x0 - margin), max(0, y0 - margin)
        x1, y1 = min(wg, x1 + margin), min(hg, y1 + margin)
        if self.mode == "down":  # a grid pixel is in the mask when half its block is
            block = mask[y0 * s:y1 * s, x0 * s:x1 * s].reshape(y1 - y0, s, x1 - x0, s)
            count = block.sum(axis=3, dtype=np.uint16).sum(axis=1, dtype=np.uint16)  # (h, w)
            return (2 * count >= s * s).view(np.uint8), depth[y0:y1, x0:x1], x0, y0
        m = mask[y0:y1, x0:x1].view(np.uint8)
        if self.mode == "up":
            o = s // 2  # the depth pixel at (or next to) the colour pixel's centre
            return m, depth[y0 * s + o:y1 * s:s, x0 * s + o:x1 * s:s], x0, y0
        return m, depth[y0:y1, x0:x1], x0, y0


def _mask_box(mask: np.ndarray, rows_any: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """x0, y0, x1, y1 (exclusive) of a mask whose rows holding pixels are ``rows_any``, else None."""
    rows = np.flatnonzero(rows_any)
    if rows.size == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[y0:y1].any(axis=0))
    return int(cols[0]), y0, int(cols[-1]) + 1, y1


def _depth_mm(depth: np.ndarray) -> np.ndarray:
    """A depth crop as uint16 millimetres, 0 where there is no depth."""
    if depth.dtype == np.uint16:
        return depth
    mm = depth * 1000.0
    good = (mm > 0) & (mm < _MAX_MM + 0.5)  # False for NaN and inf
    return np.where(good, mm + 0.5, 0).astype(np.uint16)


def _as_array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor: to the CPU, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _per_object(values, ids: List[int], what: str, default):
    """A sequence aligned with the ids, or a mapping by id, -> a list aligned with the ids."""
    if values is None:
        return [default] * len(ids)
    if isinstance(values, Mapping):
        return [values.get(i, default) for i in ids]
    values = list(_as_array(values).reshape(-1)) if not isinstance(values, (list, tuple)) else list(values)
    if len(values) != len(ids):
        raise Objects3DError(f"{len(ids)} object ids need as many {what} (or a mapping by id), got {len(values)}")
    return values


class Objects3D:
    """The 3-D step, configured once (see the module doc), then :meth:`estimate` per frame.

    Args:
        erosion_px: colour pixels taken off the mask's border before measuring (>= 0).
        min_points: valid depth pixels an object needs for 3-D (>= 1).
        trim_percent: the boxes span the ``trim_percent`` to ``100 - trim_percent``
            percentiles of the points along each axis (0 to 25).
        median_ksize: the depth's median filter, 3 or 5 (0 or 1: none).
        max_points_per_object: points returned per object when asked for (a regular subsample).
        oriented: also the oriented boxes (PCA; about a quarter of the step's time).
    """

    def __init__(self, erosion_px: int = 3, min_points: int = 30, trim_percent: float = 1.0,
                 median_ksize: int = 3, max_points_per_object: int = 1000, oriented: bool = True) -> None:
        for name, value, low in (("erosion_px", erosion_px, 0), ("min_points", min_points, 1),
                                 ("max_points_per_object", max_points_per_object, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if isinstance(trim_percent, bool) or not 0.0 <= float(trim_percent) < 25.0:
            raise ValueError(f"trim_percent must be in [0, 25), got {trim_percent!r}")
        if median_ksize not in MEDIAN_KSIZES + (1,):
            raise ValueError(f"median_ksize must be 0 or 1 (no filter), 3 or 5, got {median_ksize!r}")
        self.erosion_px, self.min_points = int(erosion_px), int(min_points)
        self.trim_percent, self.median_ksize = float(trim_percent), int(median_ksize)
        self.max_points_per_object = int(max_points_per_object)
        self.oriented = bool(oriented)
        self._kernels: Dict[int, np.ndarray] = {}
        self._size: Optional[Tuple[int, int]] = None  # the intrinsics' size last accepted

    def estimate(self, masks, object_ids: Sequence[int], depth, intrinsics, scores=None,
                 labels=None, states=None, with_points: bool = False, boxes=None) -> List[Object3D]:
        """Each object's 3-D on one frame, in the order of ``object_ids``.

        Args:
            masks: (N, H, W) bool at the colour image's size (numpy or torch).
            object_ids: (N,) the objects' ids.
            depth: (h, w) (or (h, w, 1)) uint16 millimetres or float32 / float64 metres,
                registered to the colour image: (h, w) = (H, W), (H / s, W / s) or (H s, W s).
            intrinsics: the colour camera's :class:`Intrinsics` (its size must be W x H), or a
                3 x 3 K for W x H images.
            scores, labels, states: per object, aligned with the ids or as a mapping by id
                (defaults 1.0, None, visible). Objects whose state is not visible get no 3-D.
            with_points: also return each object's points (at most ``max_points_per_object``).
            boxes: (N, 4) x0, y0, x1, y1 (x1, y1 exclusive) of each mask, None for an empty one,
                when the caller has them already (saves a pass over every mask's pixels).
        """
        masks = _as_array(masks)
        if masks.ndim != 3 or masks.dtype != np.bool_:
            raise Objects3DError(f"masks must be an (N, H, W) bool array, got {masks.dtype} of shape "
                                 f"{masks.shape} (threshold logits first: logits > 0)")
        ids = [int(i) for i in object_ids]
        if len(ids) != masks.shape[0]:
            raise Objects3DError(f"{masks.shape[0]} masks need as many object ids, got {len(ids)}")
        h, w = masks.shape[1:]
        depth = self._check_depth(depth)
        k = self._check_intrinsics(intrinsics, w, h)
        grid = _Grid((h, w), depth.shape, k)
        scores = [float(s) for s in _per_object(scores, ids, "scores", 1.0)]
        labels = _per_object(labels, ids, "labels", None)
        states = _per_object(states, ids, "states", VISIBLE)
        out, measured = [], []
        if boxes is not None and len(boxes) != len(ids):
            raise Objects3DError(f"{len(ids)} object ids need as many boxes, got {len(boxes)}")
        rows_any = masks.any(axis=2) if ids and boxes is None else None  # (N, H): all objects at once
        for n, oid in enumerate(ids):
            obj = Object3D(oid, str(states[n]), labels[n], scores[n])
            if obj.state not in STATES:
                raise Objects3DError(f"object {oid}: state {obj.state!r} is none of {', '.join(STATES)}")
            out.append(obj)
            if obj.state != VISIBLE:
                obj.reason = obj.state
                continue
            box = _mask_box(masks[n], rows_any[n]) if boxes is None else boxes[n]
            if box is None:
                obj.reason = "empty mask"
                continue
            p = self._measure(obj, masks[n], depth, grid, tuple(int(v) for v in box), with_points)
            if p is not None:
                measured.append((obj, p))
        self._boxes(measured)
        return out

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _check_depth(depth) -> np.ndarray:
        d = _as_array(depth)
        if d.ndim == 3 and d.shape[2] == 1:
            d = d[..., 0]
        if d.ndim != 2 or 0 in d.shape:
            raise DepthFormatError(f"the depth image must be one channel, (h, w) or (h, w, 1), got shape {d.shape}")
        if d.dtype == np.uint16 or d.dtype == np.float32 or d.dtype == np.float64:
            return d
        raise DepthFormatError(f"depth of type {d.dtype} is not accepted: uint16 millimetres (ROS 16UC1) or "
                               "float32 metres (ROS 32FC1; float64 too)")

    def _check_intrinsics(self, intrinsics, w: int, h: int) -> Intrinsics:
        if intrinsics is None:
            raise IntrinsicsError("no intrinsics: 3-D needs the colour camera's K (its camera_info)")
        if not isinstance(intrinsics, Intrinsics):
            intrinsics = Intrinsics.from_matrix(intrinsics, w, h)
        size = (intrinsics.width, intrinsics.height)
        if size != (w, h):
            before = (f"; the camera_info changed size mid-stream (it was {self._size[0]}x{self._size[1]})"
                      if self._size is not None and self._size != size else "")
            raise IntrinsicsError(
                f"the intrinsics are for {size[0]}x{size[1]} images, the colour image is {w}x{h}{before}: "
                "give the colour camera's camera_info, at the colour image's size")
        self._size = size
        return intrinsics

    # ------------------------------------------------------------------ one object
    def _kernel(self, r: int) -> np.ndarray:
        if r not in self._kernels:
            self._kernels[r] = np.ones((2 * r + 1, 2 * r + 1), np.uint8)  # square: OpenCV's fast path
        return self._kernels[r]

    def _measure(self, obj: Object3D, mask: np.ndarray, depth: np.ndarray, grid: _Grid,
                 box: Tuple[int, int, int, int], with_points: bool) -> Optional[np.ndarray]:
        """The valid depth pixels of one object's mask (see the module doc): its points (3, M)
        for the statistics (a regular subsample), None when too few (``obj.reason`` says so);
        ``obj.points`` too when asked for."""
        r = grid.erosion(self.erosion_px)
        ksize = self.median_ksize if self.median_ksize > 1 else 0
        m, d, ox, oy = grid.crop(mask, depth, box, r + ksize // 2 + 1)
        mm = _depth_mm(d)
        has = mm > 0
        if ksize:  # the filtered depth where the raw depth agrees with it (flying pixels do not);
            # the raw depth where most of the neighbourhood has none (the median is then 0)
            med = cv2.medianBlur(np.ascontiguousarray(mm), ksize)
            lone = med == 0
            has &= lone | (cv2.absdiff(med, mm) <= (med >> _AGREE_SHIFT) + _AGREE_MM)
            mm = np.where(lone, mm, med)
        whole = has & m.view(np.bool_)  # the mask's pixels with depth
        valid = whole
        if r:  # eroded (replicated border: no erosion at the image's edge, no depth edge there)
            valid = has & cv2.erode(m, self._kernel(r), borderType=cv2.BORDER_REPLICATE).view(np.bool_)
            if np.count_nonzero(valid) >= self.min_points:  # then grown back along the surface
                valid = self._grow(valid, whole, mm, r, min(grid.k.fx, grid.k.fy))
            else:  # too thin for the erosion: the whole mask
                valid = whole
        count = int(np.count_nonzero(valid))
        obj.n_points = count
        if count < self.min_points:
            obj.reason = f"{count} valid depth pixels in the mask, fewer than min_points = {self.min_points}"
            return None
        k = grid.k
        if with_points:
            cap = self.max_points_per_object
            pts = self._points(valid, mm, ox, oy, k, math.ceil(math.sqrt(count / cap)), np.float32).T
            if len(pts) > cap:
                pts = pts[np.linspace(0, len(pts) - 1, cap).astype(np.intp)]
            obj.points = np.ascontiguousarray(pts)
        return self._points(valid, mm, ox, oy, k, math.ceil(math.sqrt(count / STAT_POINTS)), np.float64)

    def _boxes(self, measured: List[Tuple[Object3D, np.ndarray]]) -> None:
        """Centroid, axis-aligned and oriented boxes of each measured object from its points
        (3, M); the principal axes of all objects in one call."""
        if not measured:
            return
        covs, stats = [], []
        for obj, p in measured:
            m = p.shape[1]
            lo_i = int(round(self.trim_percent / 100.0 * (m - 1)))
            ps = np.partition(p, sorted({lo_i, (m - 1) // 2, m // 2, m - 1 - lo_i}), axis=1)
            lo, hi = ps[:, lo_i], ps[:, m - 1 - lo_i]
            med = 0.5 * (ps[:, (m - 1) // 2] + ps[:, m // 2])
            obj.centroid, obj.center, obj.extent = med, 0.5 * (lo + hi), hi - lo
            if not self.oriented:
                continue
            q = p - med[:, None]
            covs.append(q @ q.T / m)
            stats.append((obj, q, lo_i))
        if not stats:
            return
        rots = np.linalg.eigh(np.stack(covs))[1][:, :, ::-1]  # (N, 3, 3), largest spread first
        # a fixed sign for the first two axes (largest component positive: no flips between
        # frames), the third makes the frame right-handed
        n = np.arange(len(stats))[:, None]
        big = np.abs(rots[:, :, :2]).argmax(axis=1)  # (N, 2)
        first = rots[:, :, :2] * np.where(rots[n, big, (0, 1)] < 0, -1.0, 1.0)[:, None, :]
        rots = np.concatenate([first, np.cross(first[:, :, 0], first[:, :, 1])[:, :, None]], axis=2)
        for (obj, q, lo_i), rot in zip(stats, rots):
            m = q.shape[1]
            pr = np.partition(rot.T @ q, sorted({lo_i, m - 1 - lo_i}), axis=1)  # (3, M) along the axes
            plo, phi = pr[:, lo_i], pr[:, m - 1 - lo_i]
            obj.obb_rotation = rot
            obj.obb_center = obj.centroid + rot @ (0.5 * (plo + phi))
            obj.obb_size = phi - plo

    def _grow(self, inner: np.ndarray, outer: np.ndarray, mm: np.ndarray, r: int, f: float) -> np.ndarray:
        """The eroded mask's valid pixels (``inner``) and those of the ring the erosion took off
        (``outer`` minus ``inner``) reached from them in up to ``r`` steps of one pixel, each
        step to a depth no farther from a reached neighbour's than a surface seen at
        MAX_INCIDENCE_DEG moves over a pixel. Flying pixels and background across a depth edge
        stay out; the object's own edges, and its oblique sides, come back."""
        ring = np.flatnonzero(outer & ~inner)  # (R,) flat indices
        if ring.size == 0:
            return inner
        zr = np.take(mm, ring)  # (R,) uint16
        tol = (zr * np.float32(_MAX_STEP / f)).astype(np.int32) + 1  # mm a surface moves over a pixel
        # a ring pixel is reached when the deepest reached neighbour is at least z - tol deep and
        # the nearest at most z + tol (kept as MAX - depth, so that both are dilations)
        lo, hi = zr - tol, (_MAX_MM - tol) - zr  # (R,) int32
        deep = np.where(inner, mm, np.uint16(0))  # (h, w) the reached pixels' depth, 0 elsewhere
        near = np.where(inner, _MAX_MM - mm, np.uint16(0))  # the same as MAX - depth
        acc = inner.copy()
        for step in range(r):  # reached pixels are reached again: no bookkeeping of the ring
            new = (np.take(cv2.dilate(deep, _K3), ring) >= lo) & (np.take(cv2.dilate(near, _K3), ring) >= hi)
            idx = ring[new]
            acc.ravel()[idx] = True
            if step + 1 < r:
                deep.ravel()[idx] = zr[new]
                near.ravel()[idx] = _MAX_MM - zr[new]
        return acc

    @staticmethod
    def _points(valid: np.ndarray, mm: np.ndarray, ox: int, oy: int, k: Intrinsics, stride: int,
                dtype) -> np.ndarray:
        """(3, M) x, y, z of the valid pixels on a regular ``stride`` subsample of the crop."""
        vs, us = np.nonzero(valid[::stride, ::stride])
        out = np.empty((3, vs.size), dtype)
        z = np.multiply(mm[::stride, ::stride][vs, us], 0.001, out=out[2])  # (M,) metres
        yn = vs * (stride / k.fy) + (oy - k.cy) / k.fy  # (M,) y / z
        xn = us * (stride / k.fx) + (ox - k.cx) / k.fx  # (M,) x / z
        if k.skew:
            xn -= (k.skew / k.fx) * yn
        np.multiply(xn, z, out=out[0])
        np.multiply(yn, z, out=out[1])
        return out


def objects_3d(masks, object_ids: Sequence[int], depth, intrinsics, scores=None, labels=None,
               states=None, with_points: bool = False, **settings) -> List[Object3D]:
    """One frame's objects in 3-D with a one-off :class:`Objects3D` (``settings``: its
    arguments); see :meth:`Objects3D.estimate`."""
    return Objects3D(**settings).estimate(masks, object_ids, depth, intrinsics, scores, labels, states,
                                          with_points)

"""Synthetic RGB-D scenes for the 3-D tests: boxes and spheres at known poses in front of a
wall, ray-cast exactly at pixel centres, then spoiled as depth cameras spoil them (depth noise
growing with the square of the distance, flying pixels and dropouts at depth edges, random
holes and a blob of no depth on each object, millimetre steps for 16UC1).

The truth of each object is measured on the exact render at the colour image's resolution: the
per-axis median (centroid) and the range (extent) of the surface points the camera sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import cv2
import numpy as np

from sam2_ros.tracking.objects3d import Intrinsics

GRAZING_DEG = 75.0  # depth cameras return nothing from surfaces seen more obliquely
# A RealSense D435-like colour camera at 640 x 480.
K640 = Intrinsics(fx=615.0, fy=615.0, cx=320.5, cy=238.5, width=640, height=480)


def rotation_y(deg: float) -> np.ndarray:
    """Rotation about the optical frame's y axis (down): a turn seen from above."""
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rotation_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


@dataclass
class Box:
    center: Sequence[float]
    size: Sequence[float]
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # box axes in the camera frame

    def hit(self, d: np.ndarray):
        """Depth (z) where rays (..., 3) with d_z = 1 from the origin first meet it (inf
        elsewhere) and the surface normals there (..., 3)."""
        r, c, h = np.asarray(self.rotation, float), np.asarray(self.center, float), np.asarray(self.size, float) / 2
        o = -(r.T @ c)  # the camera's origin in the box frame
        db = d @ r  # (..., 3) directions in the box frame
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-h - o) / db, (h - o) / db
        t_in = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf)
        face = np.argmax(t_in, axis=-1)  # the slab entered last: the face hit
        t_near = np.take_along_axis(t_in, face[..., None], -1)[..., 0]
        t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
        sign = -np.sign(np.take_along_axis(db, face[..., None], -1))  # the face looks back at the ray
        normal = r.T[face] * sign
        return np.where((t_far >= t_near) & (t_near > 0), t_near, np.inf), normal


@dataclass
class Sphere:
    center: Sequence[float]
    radius: float

    def hit(self, d: np.ndarray) -> np.ndarray:
        c = np.asarray(self.center, float)
        a = (d * d).sum(-1)
        b = d @ c
        disc = b * b - a * (c @ c - self.radius ** 2)
        with np.errstate(invalid="ignore"):
            t = (b - np.sqrt(disc)) / a
        normal = (d * t[..., None] - c) / self.radius
        return np.where(disc >= 0, t, np.inf), normal


def rays(k: Intrinsics) -> np.ndarray:
    """(H, W, 3) rays through the pixel centres, z = 1."""
    v, u = np.mgrid[0:k.height, 0:k.width].astype(float)
    yn = (v - k.cy) / k.fy
    xn = (u - k.cx - k.skew * yn) / k.fx
    return np.stack([xn, yn, np.ones_like(xn)], axis=-1)


def render(shapes: Sequence, k: Intrinsics, wall_z: float):
    """Exact depth (H, W) metres, ids (H, W) (0: the wall, i + 1: shape i) and the angle of
    incidence (H, W) degrees between ray and surface normal, at pixel centres."""
    d = rays(k)
    depth = np.full(d.shape[:2], float(wall_z))
    ids = np.zeros(d.shape[:2], np.int32)
    cos = 1.0 / np.linalg.norm(d, axis=-1)  # the wall faces the camera
    for i, shape in enumerate(shapes):
        z, normal = shape.hit(d)
        nearer = z < depth
        depth[nearer], ids[nearer] = z[nearer], i + 1
        cos[nearer] = np.abs((normal[nearer] * d[nearer]).sum(-1)) / np.linalg.norm(d[nearer], axis=-1)
    return depth, ids, np.degrees(np.arccos(np.clip(cos, 0, 1)))


def spoil(depth: np.ndarray, rng: np.random.Generator, noise: float = 0.001, hole_fraction: float = 0.02,
          blob_ids: Optional[np.ndarray] = None, invalid: float = 0.0,
          incidence: Optional[np.ndarray] = None) -> np.ndarray:
    """A depth camera's view of an exact depth image: noise sigma = ``noise`` z^2, flying pixels
    (a mix of both sides) and dropouts at depth edges (> 3 cm), no depth where the surface is
    seen at more than GRAZING_DEG (``incidence``), random holes, and a blob without depth on
    each object of ``blob_ids``; ``invalid`` is what a hole reads (0 or NaN)."""
    z = depth.copy()
    h, w = z.shape
    edge = np.zeros_like(z, bool)
    other = z.copy()
    for axis in (0, 1):  # pixels next to a depth jump, and the depth across it
        for shift in (1, -1):
            nb = np.roll(depth, shift, axis=axis)
            jump = np.abs(nb - depth) > 0.03
            take = jump & ~edge
            other[take] = nb[take]
            edge |= jump
    flying = edge & (rng.random(z.shape) < 0.6)
    alpha = rng.random(z.shape)
    z[flying] = alpha[flying] * depth[flying] + (1 - alpha[flying]) * other[flying]
    z += rng.normal(size=z.shape) * noise * z * z
    holes = rng.random(z.shape) < hole_fraction
    holes |= edge & (rng.random(z.shape) < 0.2)
    if incidence is not None:
        holes |= incidence > GRAZING_DEG
    if blob_ids is not None:
        for i in np.unique(blob_ids[blob_ids > 0]):
            ys, xs = np.nonzero(blob_ids == i)
            cy, cx = int(np.median(ys)), int(np.median(xs))
            rad = max(2, int(0.15 * np.sqrt(len(ys))))
            holes[max(0, cy - rad):cy + rad, max(0, cx - rad):cx + rad] = True
    z[holes] = invalid
    return z


def to_16uc1(z: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres (holes, NaN and out of range: 0)."""
    mm = np.nan_to_num(z * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
    return np.where((mm > 0) & (mm < 65535), np.round(mm), 0).astype(np.uint16)


def truth(depth: np.ndarray, ids: np.ndarray, incidence: np.ndarray, k: Intrinsics, n: int):
    """Per shape i (1..n): (centroid, extent) of the surface a depth camera measures (seen at
    up to GRAZING_DEG), from the exact render."""
    d = rays(k)
    pts = d * depth[..., None]
    out = []
    for i in range(1, n + 1):
        p = pts[(ids == i) & (incidence <= GRAZING_DEG)]
        out.append((np.median(p, axis=0), p.max(axis=0) - p.min(axis=0)))
    return out


def masks_of(ids: np.ndarray, n: int, grow: int = 0) -> np.ndarray:
    """(n, H, W) bool masks of shapes 1..n, dilated (grow > 0) or eroded (grow < 0) by |grow| px,
    as a segmenter's masks miss or overshoot an object's edge."""
    out = np.zeros((n,) + ids.shape, bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow) + 1,) * 2)
    for i in range(n):
        m = (ids == i + 1).astype(np.uint8)
        if grow > 0:
            m = cv2.dilate(m, kernel)
        elif grow < 0:
            m = cv2.erode(m, kernel)
        out[i] = m.astype(bool)
    return out


@dataclass
class Scene:
    shapes: List
    wall_z: float
    colour_ids: np.ndarray  # (H, W) at the colour image's size
    depth_exact: np.ndarray  # (h, w) exact depth at the depth image's size
    depth: np.ndarray  # (h, w) spoiled, float metres with NaN holes
    truths: list  # per shape: (centroid, extent)


def scene(shapes: Sequence, wall_z: float, k: Intrinsics = K640, depth_scale: int = 1, seed: int = 0,
          noise: float = 0.001, invalid: float = float("nan")) -> Scene:
    """Render ``shapes`` before a wall at ``wall_z``: colour-size ids and truth, depth at the
    colour size (``depth_scale`` 1) or ``depth_scale`` times coarser, spoiled."""
    rng = np.random.default_rng(seed)
    exact, ids, inc = render(shapes, k, wall_z)
    kd = k.coarser(depth_scale)
    exact_d, ids_d, inc_d = (exact, ids, inc) if depth_scale == 1 else render(shapes, kd, wall_z)
    spoiled = spoil(exact_d, rng, noise=noise, blob_ids=ids_d, invalid=invalid, incidence=inc_d)
    return Scene(list(shapes), wall_z, ids, exact_d, spoiled, truth(exact, ids, inc, k, len(shapes)))

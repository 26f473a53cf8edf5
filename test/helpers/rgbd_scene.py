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


def three_objects(dist: float) -> list:
    """The tests' scene at ``dist`` metres: a box turned 30 degrees (two faces seen), a sphere,
    a box turned -35 degrees."""
    return [Box([-0.125 * dist, 0.0, dist], [0.2, 0.15, 0.1], rotation_y(30)),
            Sphere([0.1 * dist, -0.05, dist], 0.08),
            Box([0.0, 0.1 * dist, dist - 0.05], [0.15, 0.10, 0.18], rotation_y(-35))]


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
    """Per shape i (1..n): (centroid, extent, box centre) of the surface a depth camera
    measures (seen at up to GRAZING_DEG), from the exact render."""
    d = rays(k)
    pts = d * depth[..., None]
    out = []
    for i in range(1, n + 1):
        p = pts[(ids == i) & (incidence <= GRAZING_DEG)]
        out.append((np.median(p, axis=0), p.max(axis=0) - p.min(axis=0), (p.max(axis=0) + p.min(axis=0)) / 2))
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
    depth: np.ndarray  # (h, w) spoiled, float metres with NaN holes
    truths: list  # per shape: (centroid, extent)
    centres: list  # per shape: the centre of its axis-aligned box


def scene(shapes: Sequence, wall_z: float, k: Intrinsics = K640, depth_scale: int = 1, seed: int = 0,
          noise: float = 0.001, invalid: float = float("nan")) -> Scene:
    """Render ``shapes`` before a wall at ``wall_z``: colour-size ids and truth, depth at the
    colour size (``depth_scale`` 1) or ``depth_scale`` times coarser, spoiled."""
    rng = np.random.default_rng(seed)
    exact, ids, inc = render(shapes, k, wall_z)
    kd = k.coarser(depth_scale)
    exact_d, ids_d, inc_d = (exact, ids, inc) if depth_scale == 1 else render(shapes, kd, wall_z)  # depth size
    spoiled = spoil(exact_d, rng, noise=noise, blob_ids=ids_d, invalid=invalid, incidence=inc_d)
    truths = truth(exact, ids, inc, k, len(shapes))
    return Scene(list(shapes), wall_z, ids, spoiled, [t[:2] for t in truths], [t[2] for t in truths])


def _box_corners(center, extent, rotation=None) -> np.ndarray:
    """(8, 3) corners of a box (axis-aligned without ``rotation``)."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    local = signs * np.asarray(extent, float) / 2
    return np.asarray(center, float) + (local if rotation is None else local @ np.asarray(rotation).T)


_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def draw(sc: Scene, objects, k: Intrinsics = K640) -> np.ndarray:
    """What the 3-D step found, for a person to look at (RGB uint8): left, the camera's view
    (objects tinted, their points, axis-aligned boxes in white, oriented boxes in their colour,
    centroids as dots); right, seen from above (x right, z up the page): points, the boxes'
    footprints, the truth's boxes in grey."""
    from sam2_ros.visualization import color_for_id

    h, w = sc.colour_ids.shape
    top_size = h
    view = np.full((h, w, 3), 40, np.uint8)
    for o in objects:
        view[sc.colour_ids == o.obj_id] = (np.array(color_for_id(o.obj_id)) * 0.35 + 40).astype(np.uint8)

    def line(img, p, q, colour, thick=1):
        cv2.line(img, tuple(int(round(v)) for v in p), tuple(int(round(v)) for v in q), colour, thick, cv2.LINE_AA)

    for o in objects:
        if not o.has_3d:
            continue
        c = color_for_id(o.obj_id)
        if o.points is not None:
            for u, v in k.project(o.points).astype(int):
                if 0 <= u < w and 0 <= v < h:
                    view[v, u] = c
        for corners, colour in ((_box_corners(o.center, o.extent), (255, 255, 255)),
                                (_box_corners(o.obb_center, o.obb_size, o.obb_rotation), c)):
            uv = k.project(corners)
            for a, b in _EDGES:
                line(view, uv[a], uv[b], colour)
        cu, cv_ = k.project(o.centroid[None])[0]
        cv2.circle(view, (int(cu), int(cv_)), 4, (255, 255, 255), -1)
        cv2.putText(view, f"{o.obj_id}: z {o.centroid[2]:.2f} m", (int(cu) + 6, int(cv_) - 6),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    # from above: fit every point and box
    pts = [o.points for o in objects if o.points is not None] + [_box_corners(c, t[1]) for c, t in zip(sc.centres, sc.truths)]
    allp = np.concatenate(pts)
    x0, x1 = allp[:, 0].min() - 0.05, allp[:, 0].max() + 0.05
    z0, z1 = allp[:, 2].min() - 0.05, allp[:, 2].max() + 0.05
    scale = top_size / max(x1 - x0, z1 - z0)
    top = np.full((top_size, top_size, 3), 25, np.uint8)

    def to_top(x, z):  # centred
        return top_size / 2 + (x - (x0 + x1) / 2) * scale, top_size / 2 - (z - (z0 + z1) / 2) * scale

    for centre, (_, extent) in zip(sc.centres, sc.truths):
        a = to_top(centre[0] - extent[0] / 2, centre[2] - extent[2] / 2)
        b = to_top(centre[0] + extent[0] / 2, centre[2] + extent[2] / 2)
        cv2.rectangle(top, tuple(int(v) for v in a), tuple(int(v) for v in b), (110, 110, 110), 1)
    for o in objects:
        if not o.has_3d:
            continue
        c = color_for_id(o.obj_id)
        if o.points is not None:
            for x, z in zip(o.points[:, 0], o.points[:, 2]):
                u, v = to_top(x, z)
                cv2.circle(top, (int(u), int(v)), 1, c, -1)
        a = to_top(o.center[0] - o.extent[0] / 2, o.center[2] - o.extent[2] / 2)
        b = to_top(o.center[0] + o.extent[0] / 2, o.center[2] + o.extent[2] / 2)
        cv2.rectangle(top, tuple(int(v) for v in a), tuple(int(v) for v in b), (255, 255, 255), 1)
        obb = _box_corners(o.obb_center, o.obb_size, o.obb_rotation)
        for p, q in _EDGES:
            line(top, to_top(obb[p, 0], obb[p, 2]), to_top(obb[q, 0], obb[q, 2]), c)
        u, v = to_top(o.centroid[0], o.centroid[2])
        cv2.circle(top, (int(u), int(v)), 4, (255, 255, 255), -1)
    cv2.putText(top, "from above: x right, z up; grey: truth", (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (200, 200, 200), 1, cv2.LINE_AA)
    return np.concatenate([view, top], axis=1)

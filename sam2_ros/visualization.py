"""Drawing tracked masks: colored overlays, label images and contact sheets.

numpy and OpenCV only (no torch, no rclpy): used by the ROS node (``~/overlay``, ``~/masks``),
the demo and the evaluation tool. Inputs may also be torch tensors; they are converted.
"""
from __future__ import annotations

import colorsys
import functools
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

__all__ = ['color_for_id', 'overlay', 'draw_prompts', 'label_image', 'stamp', 'contact_sheet']

_GOLDEN = 0.6180339887498949
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _to_numpy(array) -> np.ndarray:
    """Return ``array`` as a numpy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(array, 'detach'):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


@functools.lru_cache(maxsize=4096)
def color_for_id(obj_id: int) -> tuple[int, int, int]:
    """Fixed, distinct RGB color of an object id (the same on every frame and in every run).

    Hues step by the golden ratio, so consecutive ids get well separated colors; saturation
    and value vary slightly with the id so that ids whose hues come close still differ.
    """
    obj_id = int(obj_id)
    hue = (0.11 + obj_id * _GOLDEN) % 1.0
    sat = (0.95, 0.75, 0.85)[obj_id % 3]
    val = (1.0, 0.85)[(obj_id // 3) % 2]
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _check_frame(frame_rgb) -> np.ndarray:
    frame = _to_numpy(frame_rgb)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f'frame must be H x W x 3 RGB, got shape {frame.shape}')
    if frame.dtype != np.uint8:
        raise ValueError(f'frame must be uint8, got {frame.dtype}')
    return frame


def _check_masks(masks, shape: tuple[int, int], object_ids: Sequence[int]) -> np.ndarray:
    masks = _to_numpy(masks)
    if len(object_ids) == 0 and masks.size == 0:
        return np.zeros((0,) + shape, bool)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or (masks.shape[0] and masks.shape[1:] != shape):
        raise ValueError(f'masks must be N x {shape[0]} x {shape[1]}, got shape {masks.shape}')
    if len(object_ids) != masks.shape[0]:
        raise ValueError(f'{masks.shape[0]} masks but {len(object_ids)} object ids')
    return masks.astype(bool, copy=False)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of a non-empty mask (end-exclusive), else None."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _put_text(image: np.ndarray, text: str, org: tuple[int, int], scale: float,
              color: tuple[int, int, int], thickness: int) -> None:
    """Text with a dark outline, readable on any background (drawn in place).

    The outline is the same text shifted around, not a thicker stroke: OpenCV advances each
    glyph by the stroke thickness, so a thicker copy would not line up with the text.
    """
    step = max(1, thickness)
    x, y = org
    for dx, dy in ((-step, -step), (0, -step), (step, -step), (-step, 0), (step, 0),
                   (-step, step), (0, step), (step, step)):
        cv2.putText(image, text, (x + dx, y + dy), _FONT, scale, (0, 0, 0), thickness,
                    cv2.LINE_AA)
    cv2.putText(image, text, org, _FONT, scale, color, thickness, cv2.LINE_AA)


def _draw_tag(image: np.ndarray, text: str, cx: float, top: int,
              color: tuple[int, int, int], scale: float, thickness: int,
              below: bool = False) -> None:
    """A filled label box in ``color`` centered on x = cx, just above row ``top`` (the mask's
    top edge), or just below it when there is no room above (or ``below``); kept inside the
    image (in place)."""
    height, width = image.shape[:2]
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, thickness + 1)
    bw, bh = tw + 2 * pad, th + base + 2 * pad
    x0 = int(np.clip(round(cx - bw / 2), 0, max(0, width - bw)))
    y0 = top - bh - 1 if top - bh - 1 >= 0 and not below else top + 1
    y0 = int(np.clip(y0, 0, max(0, height - bh)))
    cv2.rectangle(image, (x0, y0), (x0 + bw - 1, y0 + bh - 1), color, cv2.FILLED)
    cv2.rectangle(image, (x0, y0), (x0 + bw - 1, y0 + bh - 1), (0, 0, 0), 1)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(image, text, (x0 + pad, y0 + pad + th), _FONT, scale, ink, thickness, cv2.LINE_AA)


def overlay(frame_rgb: np.ndarray, masks: np.ndarray, object_ids: Sequence[int],
            scores: Sequence[float] | np.ndarray | None = None,
            labels: Mapping[int, str] | None = None, alpha: float = 0.5) -> np.ndarray:
    """Draw tracked objects on a frame.

    Args:
        frame_rgb: H x W x 3 uint8 RGB frame (not modified).
        masks: N x H x W bool masks (a torch tensor works too); where masks overlap, the later
            one is drawn on top.
        object_ids: N object ids; each id always gets the same color (:func:`color_for_id`).
        scores: optional N scores (e.g. object-presence probabilities), written after the id.
        labels: optional {object id: class label}, written after the id.
        alpha: opacity of the mask colors, 0 (invisible) to 1 (opaque).

    Returns:
        A new H x W x 3 uint8 RGB image: blended masks, their outlines, and a tag with each
        visible object's id (and label, score) in its color, centered over the mask's centroid
        on its top edge. An object whose mask is empty gets a tag too, "<id> <score> no mask",
        stacked in the bottom-right corner: a tracked object never disappears silently.
    """
    frame = _check_frame(frame_rgb)
    height, width = frame.shape[:2]
    object_ids = [int(i) for i in object_ids]
    masks = _check_masks(masks, (height, width), object_ids)
    if scores is not None:
        scores = _to_numpy(scores).reshape(-1)
        if scores.shape[0] != len(object_ids):
            raise ValueError(f'{len(object_ids)} object ids but {scores.shape[0]} scores')
    alpha = float(np.clip(alpha, 0.0, 1.0))
    out = frame.copy()
    if not object_ids:
        return out

    # Index (1-based) of the topmost mask at each pixel, written inside each mask's bounding box,
    # then one color lookup and one blend over the whole frame.
    boxes = [_bbox(masks[k]) for k in range(len(object_ids))]
    top = np.zeros((height, width), np.uint8 if len(object_ids) < 255 else np.uint16)
    for k, box in enumerate(boxes):
        if box is not None:
            y0, y1, x0, x1 = box
            np.copyto(top[y0:y1, x0:x1], k + 1, where=masks[k, y0:y1, x0:x1])
    if alpha > 0 and any(box is not None for box in boxes):
        lut = np.zeros((256 if top.dtype == np.uint8 else len(object_ids) + 1, 3), np.uint8)
        lut[1:len(object_ids) + 1] = [color_for_id(i) for i in object_ids]
        if top.dtype == np.uint8:
            colors = cv2.LUT(cv2.merge([top, top, top]), lut.reshape(256, 1, 3))
        else:
            colors = lut[top]
        blended = cv2.addWeighted(frame, 1.0 - alpha, colors, alpha, 0.0)
        cv2.copyTo(blended, (top > 0).view(np.uint8), out)

    scale = max(0.45, min(height, width) / 720.0 * 0.8)
    thickness = max(1, int(round(min(height, width) / 400.0)))
    tags, unmasked = [], []
    for k, obj_id in enumerate(object_ids):
        if boxes[k] is None:
            unmasked.append((_no_mask_text(obj_id, k, scores, labels), color_for_id(obj_id)))
            continue
        y0, y1, x0, x1 = boxes[k]
        color = color_for_id(obj_id)
        # Contours of the mask's bounding box only (with a 1 pixel margin), shifted back.
        crop = np.zeros((y1 - y0 + 2, x1 - x0 + 2), np.uint8)
        crop[1:-1, 1:-1] = masks[k, y0:y1, x0:x1]
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                       offset=(x0 - 1, y0 - 1))
        cv2.drawContours(out, contours, -1, color, thickness, cv2.LINE_AA)
        moments = cv2.moments(crop, binaryImage=True)
        cx = x0 - 1 + moments['m10'] / moments['m00']
        tags.append((_tag_text(obj_id, k, scores, labels), cx, y0, color))

    for text, cx, top_row, color in tags:  # after every outline: no outline covers a tag
        _draw_tag(out, text, cx, top_row, color, scale, thickness)
    # larger than the mask tags: they carry a sentence, and contact sheets shrink the frame
    _draw_corner_tags(out, unmasked, scale * 1.3, thickness)
    return out


def _no_mask_text(obj_id: int, k: int, scores: np.ndarray | None,
                  labels: Mapping[int, str] | None) -> str:
    """The tag of a tracked object whose mask is empty, e.g. "object 1 (0.03): no mask"."""
    text = f'object {obj_id}'
    if labels and labels.get(obj_id):
        text += f' {labels[obj_id]}'
    if scores is not None:
        text += f' ({float(scores[k]):.2f})'
    return text + ': no mask'


def _tag_text(obj_id: int, k: int, scores: np.ndarray | None,
              labels: Mapping[int, str] | None) -> str:
    """The tag of object ``obj_id`` (index ``k``): its id, class label and score."""
    text = str(obj_id)
    if labels and labels.get(obj_id):
        text += f' {labels[obj_id]}'
    if scores is not None:
        text += f' {float(scores[k]):.2f}'
    return text


def _draw_corner_tags(image: np.ndarray, tags: Sequence[tuple[str, tuple[int, int, int]]],
                      scale: float, thickness: int) -> None:
    """Filled tags stacked upwards from the bottom-right corner (in place).

    The bottom-right corner because a warning banner (:func:`stamp`) covers the top rows and
    contact-sheet captions the bottom-left.
    """
    height, width = image.shape[:2]
    bottom = height - 2
    for text, color in tags:
        fit = scale
        # on a small frame, shrink the tag to the frame's width rather than cut it off
        while cv2.getTextSize(text, _FONT, fit, thickness)[0][0] + 8 > width and fit > 0.3:
            fit *= 0.9
        (tw, th), base = cv2.getTextSize(text, _FONT, fit, thickness)
        bh = th + base + 2 * max(2, thickness + 1)
        if bottom - bh < 0:
            break  # more objects than rows: the rest would be drawn off the image
        cx = width - 2 - (tw + 2 * max(2, thickness + 1)) / 2
        _draw_tag(image, text, cx, bottom + 1, color, fit, thickness)
        bottom -= bh + 2


def draw_prompts(image: np.ndarray, points: Sequence[Sequence[float]] | None = None,
                 labels: Sequence[int] | None = None,
                 box: Sequence[float] | None = None, obj_id: int | None = None) -> np.ndarray:
    """Mark one object's prompt on an RGB image (returns a new image).

    Points are dots, green for foreground (label 1) and red for background (0), ringed in
    black so that they show on any background; a box is a white rectangle with a black edge.
    With ``obj_id`` the prompt is labelled "prompt <id>" in the object's color, so that a reader
    can match it with the object's tag even when the object got no mask.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    height, width = out.shape[:2]
    radius = max(4, min(height, width) // 60)
    scale = max(0.5, min(height, width) / 720.0)
    thickness = max(1, int(round(min(height, width) / 400.0)))
    anchor = None
    if box is not None:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 0, 0), thickness + 2)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), thickness)
        anchor = (min(x0, x1), max(y0, y1))
    if points is not None:
        labels = [1] * len(points) if labels is None else labels
        for (x, y), label in zip(points, labels):
            center = (int(round(float(x))), int(round(float(y))))
            cv2.circle(out, center, radius + 2, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(out, center, radius, (40, 220, 40) if int(label) else (230, 40, 40), -1,
                       cv2.LINE_AA)
            if anchor is None:
                anchor = (center[0] - radius, center[1] + radius + 2)
    if obj_id is not None and anchor is not None:
        text = f'prompt {obj_id}'
        (tw, _), _ = cv2.getTextSize(text, _FONT, scale, thickness)
        # _draw_tag puts the tag above ``top`` when there is room: below the anchor, then
        _draw_tag(out, text, anchor[0] + tw / 2, min(anchor[1], height - 1),
                  color_for_id(obj_id), scale, thickness, below=True)
    return out


def label_image(logits: np.ndarray, object_ids: Sequence[int],
                threshold: float = 0.0) -> np.ndarray:
    """Label image of tracked objects: pixel = object id, 0 = background.

    Args:
        logits: N x H x W mask logits (float; a torch tensor works too).
        object_ids: N object ids, 1 to 65535.
        threshold: a pixel belongs to an object where its logit is > threshold.

    Returns:
        H x W uint16. Where several objects claim a pixel, it goes to the one with the highest
        logit (the first of them on a tie).
    """
    if hasattr(logits, 'is_cuda') and logits.is_cuda and logits.ndim == 3 and logits.shape[0] > 1:
        return _label_image_torch(logits, object_ids, threshold)
    logits = _to_numpy(logits)
    if logits.ndim != 3:
        raise ValueError(f'logits must be N x H x W, got shape {logits.shape}')
    ids = _check_ids(object_ids, logits.shape[0])
    height, width = logits.shape[1:]
    if ids.size == 0:
        return np.zeros((height, width), np.uint16)
    # Running maximum over the objects: N passes over H x W, cheaper than argmax over axis 0.
    best = logits[0].astype(np.float32, copy=True)
    label = np.full((height, width), ids[0], np.uint16)
    for k in range(1, ids.size):
        stronger = logits[k] > best  # strict: on a tie the first object keeps the pixel
        np.maximum(best, logits[k], out=best)
        np.copyto(label, ids[k], where=stronger)
    label[~(best > threshold)] = 0  # NaN logits count as background too
    return label


def _check_ids(object_ids: Sequence[int], count: int) -> np.ndarray:
    ids = np.asarray([int(i) for i in object_ids], dtype=np.int64)
    if ids.shape[0] != count:
        raise ValueError(f'{count} logit maps but {ids.shape[0]} object ids')
    if ids.size and (ids.min() < 1 or ids.max() > 65535):
        raise ValueError('object ids must be in 1..65535 (0 is the background)')
    return ids.astype(np.uint16)


def _label_image_torch(logits, object_ids: Sequence[int], threshold: float) -> np.ndarray:
    """label_image on the logits' GPU: only the H x W result crosses to the host."""
    import torch

    ids = _check_ids(object_ids, logits.shape[0])
    best, index = logits.max(dim=0)  # first maximum on a tie, as in the numpy path
    lut = torch.as_tensor(ids.astype(np.int32), device=logits.device)
    label = torch.where(best > threshold, lut[index], torch.zeros_like(index, dtype=torch.int32))
    return label.cpu().numpy().astype(np.uint16)


def stamp(image: np.ndarray, text: str, color: tuple[int, int, int] = (255, 60, 60)) -> np.ndarray:
    """Write a warning banner across the top of an RGB image (returns a new image)."""
    out = np.array(image, dtype=np.uint8, copy=True)
    scale, thickness, th, bar = _banner_layout(text, out.shape[1])
    out[:bar] = (out[:bar].astype(np.float32) * 0.35).astype(np.uint8)
    _put_text(out, text, (4, th + 4), scale, color, thickness)
    return out


def _banner_layout(text: str, width: int) -> tuple[float, int, int, int]:
    """(font scale, thickness, text height, banner height) of ``text`` across ``width`` px."""
    scale = max(0.45, width / 1280.0 * 1.2)
    thickness = max(1, int(round(width / 640.0)))
    # Shrink the font until the text fits the width.
    while True:
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
        if tw <= width - 8 or scale <= 0.25:
            break
        scale *= 0.9
    return scale, thickness, th, th + base + 8


def _banner_height(text: str, width: int) -> int:
    """Rows that :func:`stamp` darkens for ``text`` on an image ``width`` px wide."""
    return _banner_layout(text, width)[3]


def contact_sheet(images: Iterable[np.ndarray], columns: int = 4, tile_width: int = 320,
                  captions: Sequence[str] | None = None, banner: str | None = None) -> np.ndarray:
    """Tile images (H x W x 3 uint8, any sizes) into one image, row by row, with captions.

    ``banner``: a warning written once across the top of the sheet, in a strip of its own.
    Pass the unstamped images with it: a banner stamped on each full-size image shrinks with
    the tile to an unreadable size.
    """
    images = list(images)
    if not images:
        raise ValueError('no images for the contact sheet')
    columns = max(1, min(columns, len(images)))
    tiles = []
    for k, image in enumerate(images):
        height, width = image.shape[:2]
        tile = cv2.resize(image, (tile_width, max(1, round(height * tile_width / width))),
                          interpolation=cv2.INTER_AREA)
        if captions is not None and k < len(captions):
            _put_text(tile, captions[k], (6, tile.shape[0] - 8), 0.6, (255, 255, 255), 1)
        tiles.append(tile)
    tile_height = max(t.shape[0] for t in tiles)
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((rows * tile_height, columns * tile_width, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[r * tile_height:r * tile_height + tile.shape[0],
              c * tile_width:(c + 1) * tile_width] = tile
    if banner:
        strip = np.zeros((_banner_height(banner, sheet.shape[1]), sheet.shape[1], 3), np.uint8)
        sheet = stamp(np.concatenate([strip, sheet]), banner)
    return sheet

"""Label-image PNGs: DAVIS-style indexed (palette) PNGs and 8/16-bit grayscale ones.

OpenCV expands palette PNGs to colors, losing the indices DAVIS stores object ids in. With
Pillow installed the indices are read directly; otherwise the colors OpenCV decodes are mapped
back to indices through the file's own PLTE chunk.
"""
from __future__ import annotations

import pathlib
import struct
import zlib

import cv2
import numpy as np

__all__ = ['LabelPngError', 'read_label_png', 'write_label_png', 'DAVIS_PALETTE']


class LabelPngError(ValueError):
    pass


def _davis_palette() -> np.ndarray:
    """The 256-color palette DAVIS annotations use (bit-interleaved, as in PASCAL VOC)."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


DAVIS_PALETTE = _davis_palette()


def _chunks(data: bytes):
    if data[:8] != b'\x89PNG\r\n\x1a\n':
        raise LabelPngError('not a PNG file')
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        yield kind, data[pos + 8:pos + 8 + length]
        pos += 12 + length


def _png_info(data: bytes) -> tuple[int, np.ndarray | None]:
    """(color type, palette (N, 3) RGB or None)."""
    color_type, palette = None, None
    for kind, body in _chunks(data):
        if kind == b'IHDR':
            color_type = body[9]
        elif kind == b'PLTE':
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b'IDAT':
            break
    if color_type is None:
        raise LabelPngError('PNG without IHDR')
    return color_type, palette


def read_label_png(path) -> np.ndarray:
    """H x W uint16 label image: palette indices of an indexed PNG, or the gray values of a
    grayscale PNG (8 or 16 bits). Color PNGs without a palette are refused."""
    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LabelPngError(f'cannot read {path}: {error}') from None
    try:
        color_type, palette = _png_info(data)
    except LabelPngError as error:
        raise LabelPngError(f'{path}: {error}') from None
    if color_type == 3:
        try:
            from PIL import Image
        except ImportError:
            Image = None
        if Image is not None:
            with Image.open(path) as im:
                return np.asarray(im, dtype=np.uint8).astype(np.uint16)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise LabelPngError(f'OpenCV cannot decode {path}')
        code = (bgr[..., 2].astype(np.uint32) << 16) | (bgr[..., 1].astype(np.uint32) << 8) | bgr[..., 0]
        pal = palette.astype(np.uint32)
        pcode = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
        # the first index of each color wins (duplicated palette colors are ambiguous)
        uniq, first = np.unique(pcode, return_index=True)
        pos = np.searchsorted(uniq, code)
        pos = np.clip(pos, 0, len(uniq) - 1)
        if not (uniq[pos] == code).all():
            raise LabelPngError(f'{path}: decoded colors outside the palette')
        return first[pos].astype(np.uint16)
    if color_type in (0, 4):  # gray, gray + alpha
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise LabelPngError(f'OpenCV cannot decode {path}')
        if arr.ndim == 3:
            arr = arr[..., 0]
        return arr.astype(np.uint16)
    raise LabelPngError(f'{path} is a color PNG without a palette; label images must be '
                        'indexed (DAVIS) or grayscale PNGs with pixel = object id')


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))


def write_label_png(path, label: np.ndarray, palette: np.ndarray = DAVIS_PALETTE) -> None:
    """Write an indexed (palette) PNG as DAVIS annotations are (ids 0..255)."""
    label = np.asarray(label)
    if label.ndim != 2 or label.size == 0 or label.max(initial=0) > 255 or label.min(initial=0) < 0:
        raise LabelPngError('an indexed PNG holds an H x W label image with ids 0..255')
    h, w = label.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), label.astype(np.uint8)], axis=1).tobytes()
    png = (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 3, 0, 0, 0))
           + _chunk(b'PLTE', np.asarray(palette, np.uint8).tobytes())
           + _chunk(b'IDAT', zlib.compress(raw, 9)) + _chunk(b'IEND', b''))
    pathlib.Path(path).write_bytes(png)

"""Compressed image payloads for the decoding tests: real encodings of small images, bombs
(small messages claiming huge images) and formats the node does not accept, shared by
test_decoding_bombs.py (no ROS) and test_reliability_node.py (over DDS)."""
import struct

import cv2
import numpy as np

def encode(ext, arr, params=()):
    ok, buf = cv2.imencode(ext, arr, list(params))
    assert ok, ext
    return buf.tobytes()


def bmp_rle8(w, h):
    """An 8-bit run-length-encoded BMP whose data is only 'end of bitmap': about 1 KB that
    OpenCV decodes into a full w x h x 3 image (8000 x 8000: 190 MB, measured below)."""
    palette, data = bytes(1024), b'\x00\x01'
    offset = 14 + 40 + len(palette)
    dib = struct.pack('<IiiHHIIiiII', 40, w, h, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    return b'BM' + struct.pack('<IHHI', offset + len(data), 0, 0, offset) + dib + palette + data


def webp_vp8x(w, h):
    """An extended WebP header whose canvas is w x h, and nothing after it."""
    chunk = struct.pack('<4sI', b'VP8X', 10) + bytes([0, 0, 0, 0]) + (w - 1).to_bytes(3, 'little') \
        + (h - 1).to_bytes(3, 'little')
    return b'RIFF' + struct.pack('<I', 4 + len(chunk)) + b'WEBP' + chunk


def bombs():
    """name -> (payload, width, height): all above the default budget (8.3 MP), none over 1 MB."""
    zeros8k = np.zeros((4320, 7680), np.uint8)
    return {
        'jpeg': (encode('.jpg', zeros8k), 7680, 4320),
        'jpeg_progressive': (encode('.jpg', zeros8k, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), 7680, 4320),
        'png': (encode('.png', np.zeros((8000, 8000), np.uint8)), 8000, 8000),
        'webp_lossless': (encode('.webp', np.zeros((6000, 6000, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101]),
                          6000, 6000),
        'webp_lossy': (encode('.webp', np.zeros((4000, 4000, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 10]),
                       4000, 4000),
        'webp_canvas': (webp_vp8x(16000, 16000), 16000, 16000),
        'bmp_rle': (bmp_rle8(8000, 8000), 8000, 8000),
        'ppm': (b'P6\n# a comment\n20000 20000\n255\n' + bytes(64), 20000, 20000),
        'pbm': (b'P4 30000 30000\n' + bytes(64), 30000, 30000),
    }


def small_images():
    """name -> (payload, width, height): the accepted formats, really encoded, 30 x 20."""
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    gray = rgb[..., 1].copy()
    return {
        'jpeg': encode('.jpg', rgb), 'png': encode('.png', rgb), 'png16': encode('.png', gray.astype(np.uint16) * 257),
        'webp_lossy': encode('.webp', rgb), 'webp_lossless': encode('.webp', rgb, [cv2.IMWRITE_WEBP_QUALITY, 101]),
        'bmp': encode('.bmp', rgb), 'ppm': encode('.ppm', rgb), 'pgm': encode('.pgm', gray),
        'pbm': encode('.pbm', (gray > 127).astype(np.uint8) * 255),
    }


def unaccepted():
    """name -> (payload, what the refusal calls it): formats OpenCV would decode, and junk."""
    rgb = np.zeros((20, 30, 3), np.uint8)
    return {
        'tiff': (encode('.tiff', rgb), 'TIFF'), 'gif': (encode('.gif', rgb), 'GIF'),
        'avif': (encode('.avif', rgb), "'avif' ISO media file"), 'hdr': (encode('.hdr', rgb), 'Radiance HDR'),
        'sunraster': (encode('.ras', rgb), 'Sun raster'), 'pfm': (encode('.pfm', rgb), 'PFM'),
        'pam': (encode('.pam', rgb), 'PAM'), 'bigtiff': (b'II+\x00' + bytes(60), 'BigTIFF'),
        'jpeg2000': (b'\x00\x00\x00\x0cjP  \r\n\x87\n' + bytes(60), 'JPEG 2000'),
        'exr': (b'\x76\x2f\x31\x01' + bytes(60), 'OpenEXR'),
        'junk': (b'definitely not an image', 'unknown format (first bytes 64 65 66 69 6e 69 74 65)'),
    }

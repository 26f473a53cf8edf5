"""Plot held memory over a stream (from bench_tracker.py --memory-frames ... --json F) to a PNG.

    .venv/bin/python benchmarks/plot_memory.py benchmarks/results/tracker_memory.json docs/memory.png
"""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np

W, H, PAD = 900, 480, 70
OURS, OFFICIAL = (200, 90, 20), (40, 40, 200)  # BGR


def plot(series, title: str) -> np.ndarray:
    img = np.full((H, W, 3), 255, np.uint8)
    frames = [s[0] for s in series]
    ours = [s[1] / 2**20 for s in series]
    theirs = [s[2] / 2**20 for s in series]
    x_max, y_max = max(frames) or 1, max(max(theirs), max(ours)) * 1.1 or 1

    def pt(f, mb):
        return int(PAD + (W - 2 * PAD) * f / x_max), int(H - PAD - (H - 2 * PAD) * mb / y_max)

    cv2.rectangle(img, (PAD, PAD), (W - PAD, H - PAD), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(6):
        mb = y_max * i / 5
        y = pt(0, mb)[1]
        cv2.line(img, (PAD - 5, y), (W - PAD, y), (225, 225, 225), 1)
        cv2.putText(img, f"{mb:.0f}", (8, y + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        f = x_max * i / 5
        x = pt(f, 0)[0]
        cv2.putText(img, f"{f:.0f}", (x - 15, H - PAD + 22), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for values, color, name in ((theirs, OFFICIAL, "official SAM2VideoPredictor"), (ours, OURS, "sam2_ros Tracker")):
        pts = np.array([pt(f, v) for f, v in zip(frames, values)], np.int32)
        cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA)
        cv2.putText(img, f"{name}: {values[-1]:.1f} MB", (pts[-1][0] - 300, pts[-1][1] - 10), font, 0.5, color, 1, cv2.LINE_AA)
    cv2.putText(img, title, (PAD, 40), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "frames", (W // 2 - 25, H - 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "MB held", (8, PAD - 15), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    data = json.load(open(src))
    run = data["memory"][0]
    title = f"Held tensors, {run['model']} @ {run['image_size']} px, {run['objects']} object(s) ({data['date']})"
    cv2.imwrite(dst, plot(run["series"], title))


if __name__ == "__main__":
    main()

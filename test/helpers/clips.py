"""The endurance runs' frames, prompt schedule and process figures, shared by the short run in
the suite (test_reliability_endurance.py) and the long ones in benchmarks/."""
import os

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository


def process_figures():
    """(resident MiB, OS threads, open file descriptors) of this process."""
    with open('/proc/self/statm') as f:
        rss = int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    return rss, len(os.listdir('/proc/self/task')), len(os.listdir('/proc/self/fd'))


def clip_frames(n=48, size=(160, 96)):
    cap = cv2.VideoCapture(os.path.join(ROOT, 'data', 'sample', 'bunny.mp4'))
    out = []
    while len(out) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA))
    cap.release()
    assert out
    return out


def prompts_for(i, Prompt):
    """The prompt schedule shared with benchmarks/bench_endurance.py: two objects from frame 0,
    a correction of object 1 every 50 frames (its conditioning frames cycle past
    max_cond_frames), object 2 removed and started again every 200 frames."""
    if i == 0:
        return [Prompt(1, points=[[60, 40]], labels=[1]), Prompt(2, box=[90, 20, 150, 80])]
    out = []
    if i % 50 == 0:
        out.append(Prompt(1, points=[[60 + i % 7, 40], [10, 10]], labels=[1, 0]))
    if i % 200 == 100:
        out.append(Prompt(2, box=[90, 20, 150, 80]))
    return out

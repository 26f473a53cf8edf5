"""Endurance, short version (issue 7): 500 frames through the tracker with objects added,
corrected and removed along the way. The tracker's held state stays constant once its memory
bank is full, and no thread or file descriptor is left behind. The long run (20,000 frames,
RSS over time, a plot): benchmarks/bench_endurance.py.
"""
import os
import threading

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_500_frames_keep_state_threads_and_fds_constant():
    import torch

    from sam2_ros import Prompt, Tracker
    from sam2_ros.model.build import build_random_model

    frames = clip_frames()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 OpenMP threads on 2 busy cores spin: 10x slower
    try:
        tracker = Tracker(build_random_model('tiny', 64, 'cpu'), max_cond_frames=4, num_maskmem=7)
        state, figures = {}, {}
        for i in range(500):
            if i % 200 == 99:
                assert tracker.remove_object(2)
            result = tracker.track(frames[i % len(frames)], prompts_for(i, Prompt))
            assert result.logits.shape[1:] == (96, 160)
            if i % 50 == 49:
                state[i] = (tuple(result.object_ids), tracker.state_bytes())
                figures[i] = process_figures()
    finally:
        torch.set_num_threads(threads)
    # Once object 1 holds max_cond_frames (4) prompted frames (its 4th correction is on frame
    # 150) and every memory bank is full, the held state depends only on which objects are
    # tracked: the same bytes at every sample.
    by_objects = {}
    for i, (ids, nbytes) in state.items():
        if i >= 199:
            by_objects.setdefault(ids, set()).add(nbytes)
    assert len(by_objects[(1, 2)]) == 1 and all(len(v) == 1 for v in by_objects.values()), state
    assert max(n for _, n in state.values()) == max(by_objects[(1, 2)])  # never more than steady state
    rss0, threads0, fds0 = figures[199]
    rss1, threads1, fds1 = figures[499]
    assert threads1 == threads0 and threading.active_count() <= 2 + threads, figures
    assert fds1 == fds0, figures
    assert rss1 - rss0 < 40, figures  # MiB; generous (allocator noise), the long run measures the slope

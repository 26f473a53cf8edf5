"""Endurance, short version: 500 frames through the tracker with objects added,
corrected and removed along the way. The tracker's held state stays constant once its memory
bank is full, and no thread or file descriptor is left behind. The long run (20,000 frames,
RSS over time, a plot): benchmarks/bench_endurance.py.
"""
import threading

from helpers.clips import clip_frames, process_figures, prompts_for  # noqa: E402


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

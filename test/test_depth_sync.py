"""Pairing colour frames with depth images by stamp (sam2_ros.ros.depth_sync.DepthBuffer)."""

import threading

import pytest

from sam2_ros.ros.depth_sync import DepthBuffer

MS = 1_000_000  # nanoseconds


def filled(stamps_ms, max_delay=0.010, capacity=15):
    buf = DepthBuffer(max_delay=max_delay, capacity=capacity)
    buf.put_camera_info("K")
    for t in stamps_ms:
        buf.put(t * MS, f"depth@{t}")
    return buf


def test_exact_stamp_then_nearest_within_the_bound_then_none():
    buf = filled([100, 133, 166])
    m = buf.take(133 * MS)
    assert (m.depth, m.camera_info, m.stamp_ns, m.delay_ns) == ("depth@133", "K", 133 * MS, 0)
    m = buf.take(140 * MS)  # 7 ms after 133, 26 ms before 166
    assert m.depth == "depth@133" and m.delay_ns == -7 * MS
    m = buf.take(160 * MS)  # 6 ms before 166
    assert m.depth == "depth@166" and m.delay_ns == 6 * MS
    assert buf.take(150 * MS) is None  # 16 and 17 ms away: beyond 10 ms
    assert buf.last_miss_gap_ns == 16 * MS  # to the nearest depth (166), signed
    assert buf.take(10 * MS) is None and buf.take(500 * MS) is None
    assert buf.counts == {"put": 3, "exact": 1, "nearest": 2, "none": 3, "no_camera_info": 0}
    assert buf.take(133 * MS).depth == "depth@133"  # the depth stays: frames may share it
    assert buf.last_delay_ns == 0


def test_a_tie_takes_the_earlier_and_the_bound_is_inclusive():
    buf = filled([100, 120])
    assert buf.take(110 * MS).depth == "depth@100"
    assert buf.take(130 * MS).depth == "depth@120"  # exactly max_delay away
    assert buf.take(130 * MS + 1) is None


def test_out_of_order_puts_replacements_and_the_capacity():
    buf = filled([300, 100, 200, 250, 150], capacity=4)  # 300 came first: pushed out
    assert len(buf) == 4 and buf.take(300 * MS) is None
    assert buf.take(100 * MS).depth == "depth@100" and buf.take(250 * MS).depth == "depth@250"
    buf.put(200 * MS, "again")  # the same stamp: replaced (and as new), not added
    assert len(buf) == 4 and buf.take(200 * MS).depth == "again"
    buf.put(50 * MS, "late")  # stamped before everything kept: in; 100, the first to come, out
    assert len(buf) == 4 and buf.take(50 * MS).depth == "late" and buf.take(100 * MS) is None


def test_a_bag_replayed_in_a_loop_pairs_again():
    """Time jumps back: the new images are stamped before those kept and must stay."""
    buf = filled(range(1000, 1500, 33), capacity=5)
    for t in range(0, 200, 33):
        buf.put(t * MS, f"again@{t}")
    assert buf.take(99 * MS).depth == "again@99" and buf.take(1000 * MS) is None


def test_live_settings():
    buf = filled([100, 140], max_delay=0.010)
    assert buf.take(125 * MS) is None
    buf.configure(max_delay=0.020)
    assert buf.take(125 * MS).depth == "depth@140"
    buf.configure(capacity=1)
    buf.put(200 * MS, "new")
    assert len(buf) == 1
    with pytest.raises(ValueError, match="depth_max_delay"):
        buf.configure(max_delay=-1.0)
    assert buf.max_delay_ns == 20 * MS


def test_same_stamp_only_and_no_camera_info_yet():
    buf = DepthBuffer(max_delay=0.0)
    buf.put(100 * MS, "d")
    assert buf.take(100 * MS) is None and buf.counts["no_camera_info"] == 1
    buf.put_camera_info("K2")
    assert buf.take(100 * MS).camera_info == "K2"
    assert buf.take(100 * MS + 1) is None
    buf.clear()
    assert len(buf) == 0 and buf.take(100 * MS) is None
    buf.put(1, "d")
    assert buf.take(1).camera_info == "K2"  # the camera_info outlives a clear


@pytest.mark.parametrize("kwargs, match", [
    ({"max_delay": -0.1}, "depth_max_delay"), ({"max_delay": float("nan")}, "depth_max_delay"),
    ({"capacity": 0}, "capacity"), ({"capacity": 2.5}, "capacity"), ({"max_delay": True}, "depth_max_delay"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DepthBuffer(**kwargs)


def test_callbacks_put_while_the_worker_takes():
    buf = DepthBuffer(max_delay=0.001, capacity=8)
    buf.put_camera_info("K")
    stop = threading.Event()
    found = []

    def worker():
        t = 0
        while not stop.is_set():
            m = buf.take(t * MS)
            if m is not None:
                found.append(m.stamp_ns)
            t = (t + 1) % 2000

    threads = [threading.Thread(target=worker)]
    threads += [threading.Thread(target=lambda o=o: [buf.put((i * 2 + o) * MS, i) for i in range(1000)])
                for o in (0, 1)]
    for th in threads:
        th.start()
    for th in threads[1:]:
        th.join()
    stop.set()
    threads[0].join()
    assert len(buf) == 8 and buf.counts["put"] == 2000
    assert buf._stamps == sorted(buf._stamps)
    assert all(s % MS == 0 for s in found)


def test_a_pinned_frame_keeps_its_depth_through_a_slow_step():
    """The worker pins a colour frame, tracks it for a second while 30 depth images come (the
    buffer holds 5): the depth that pairs with it, even one that came after the pin, is kept."""
    buf = filled([1000, 1033], capacity=5)
    buf.pin(1040 * MS)  # its depth (1042) is not there yet
    for t in range(1042, 2042, 33):
        buf.put(t * MS, f"depth@{t}")
    assert len(buf) == 5 + 2  # the newest five, and 1033 and 1042 (within 10 ms of the pin)
    m = buf.take(1040 * MS)
    assert m.depth == "depth@1042" and m.delay_ns == 2 * MS
    buf.put(2100 * MS, "next")  # unpinned: the two go as newer images come
    buf.put(2133 * MS, "next2")
    assert len(buf) == 5 and buf.take(1040 * MS) is None
    # a frame never taken does not pin for ever
    for i in range(DepthBuffer.MAX_PINS + 1):
        buf.pin((3000 + i) * MS)
    assert len(buf._pins) == DepthBuffer.MAX_PINS and 3000 * MS not in buf._pins
    buf.clear()
    assert not buf._pins

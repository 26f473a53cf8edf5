"""Object states (visible / occluded / lost) from presence scores, with hysteresis."""

import pytest

from sam2_ros.tracking.object_state import LOST, OCCLUDED, VISIBLE, ObjectStates


def run(states, seq, oid=1):
    return [states.update([oid], [s])[oid] for s in seq]


def test_occluded_after_missing_frames_then_lost_and_back_keeping_the_id():
    st = ObjectStates(present_threshold=0.6, absent_threshold=0.4, visible_frames=2, occluded_frames=2, lost_frames=5)
    got = run(st, [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9])
    assert got == [VISIBLE, VISIBLE, OCCLUDED, OCCLUDED, OCCLUDED, LOST, LOST, LOST, VISIBLE, VISIBLE]
    assert st.get(1).since == 2 and st.get(1).frames == 10


def test_hysteresis_band_and_single_frame_noise():
    st = ObjectStates(present_threshold=0.6, absent_threshold=0.4, visible_frames=1, occluded_frames=3, lost_frames=30)
    # one or two missing frames, or scores in the band, do not make a visible object occluded
    assert run(st, [0.9, 0.2, 0.9, 0.2, 0.2, 0.5, 0.5, 0.9]) == [VISIBLE] * 8
    # a score in the band neither breaks nor extends a missing run
    assert run(st, [0.1, 0.5, 0.1, 0.5, 0.1]) == [VISIBLE, VISIBLE, VISIBLE, VISIBLE, OCCLUDED]
    # an occluded object needs a score >= present_threshold to come back: the band is not enough
    assert run(st, [0.55, 0.55, 0.61]) == [OCCLUDED, OCCLUDED, VISIBLE]


def test_many_objects_counts_boxes_and_forgetting():
    st = ObjectStates(occluded_frames=1, lost_frames=2)
    st.update([1, 2, 3], [0.9, 0.1, 0.9], boxes=[(0, 0, 10, 10), None, (5, 5, 9, 9)])
    assert st.counts() == {VISIBLE: 2, OCCLUDED: 1, LOST: 0}
    st.update([1, 2, 3], [0.1, 0.1, 0.9], boxes=[None, None, (6, 6, 9, 9)])
    assert st.counts() == {VISIBLE: 1, OCCLUDED: 1, LOST: 1}
    assert st.get(1).last_box == (0, 0, 10, 10)  # an occluded object keeps the box it had
    assert st.get(3).last_box == (6, 6, 9, 9)
    st.update([1, 3], [0.1, 0.9])  # object 2 was removed from the tracker
    assert st.state(2) is None and len(st) == 2 and [i for i, _ in st.items()] == [1, 3]
    st.clear()
    assert st.counts() == {VISIBLE: 0, OCCLUDED: 0, LOST: 0}


def test_settings_are_checked_and_clamped():
    with pytest.raises(ValueError, match="present_threshold"):
        ObjectStates(present_threshold=1.5)
    with pytest.raises(ValueError, match="lost_frames"):
        ObjectStates(lost_frames=0)
    st = ObjectStates(present_threshold=0.5, absent_threshold=0.8, occluded_frames=4, lost_frames=2)
    assert st.absent_threshold == 0.5 and st.lost_frames == 4
    with pytest.raises(ValueError, match="as many scores"):
        st.update([1, 2], [0.5])

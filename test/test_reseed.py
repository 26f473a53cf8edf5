"""Detections as prompts: greedy IoU matching and the reseed policies, on synthetic detection
sequences (no ROS, no model)."""

import numpy as np
import pytest

from sam2_ros.tracking.reseed import Reseeder, Tracked, box_iou, match, select_new_masks


def test_box_iou_and_greedy_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 0, 5]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10]])
    iou = box_iou(a, b)
    assert iou.shape == (3, 2) and iou[0, 0] == 1.0 and abs(iou[0, 1] - 50 / 150) < 1e-12
    assert iou[1].max() == 0 and iou[2].max() == 0  # disjoint, and an empty box
    # greedy: the best pair first, each detection and object once
    dets = np.array([[0, 0, 10, 10], [5, 0, 15, 10]])
    objs = np.array([[1, 0, 11, 10], [5, 0, 15, 10]])
    assert [(d, o) for d, o, _ in match(dets, objs, 0.3)] == [(1, 1), (0, 0)]
    assert [(d, o) for d, o, _ in match(dets, objs, 0.95)] == [(1, 1)]  # (0, 0) overlaps 0.82
    # class labels that differ do not match; an unknown label matches anything
    assert match(dets[:1], objs[:1], 0.3, det_classes=["cup"], obj_classes=["dog"]) == []
    assert len(match(dets[:1], objs[:1], 0.3, det_classes=["cup"], obj_classes=[None])) == 1


def drift(box, dx):
    x0, y0, x1, y1 = box
    return (x0 + dx, y0, x1 + dx, y1)


def test_every_n_frames_reprompts_matched_objects_keeping_their_ids():
    r = Reseeder("every_n_frames", every_n=3, iou_threshold=0.3)
    det = np.array([[10, 10, 50, 50], [100, 10, 140, 60], [300, 300, 320, 320]])
    objs = {1: Tracked((12, 10, 52, 50)), 2: Tracked((105, 12, 145, 60))}
    plans = [r.plan(det, [0.9, 0.8, 0.7], [None] * 3, objs, frame=f, free_slots=4) for f in range(7)]
    done = [f for f, p in enumerate(plans) if p.reprompt]
    assert done == [0, 3, 6]  # every 3 tracked frames
    assert [(oid, box.tolist()) for oid, box, _ in plans[0].reprompt] == [(1, [10, 10, 50, 50]), (2, [100, 10, 140, 60])]
    assert plans[0].matched == {0: 1, 1: 2} and plans[0].new == []  # new objects only when asked


def test_on_loss_reprompts_a_lost_object_when_a_detection_reappears_near_it():
    """The object drifts, is lost (empty mask: its last box is kept), then the detector sees it
    again near where it was lost: the same id is prompted with the detection's box."""
    r = Reseeder("on_loss", iou_threshold=0.3)
    box = (10.0, 10.0, 50.0, 50.0)
    for f in range(5):  # tracked and visible, drifting right: detections match, nothing to do
        box = drift(box, 4)
        plan = r.plan(np.array([drift(box, 1)]), [0.9], [None], {7: Tracked(box, "visible")}, f, 4)
        assert plan.matched == {0: 7} and plan.reprompt == [] and plan.new == []
    last = box
    plan = r.plan(np.zeros((0, 4)), [], [], {7: Tracked(last, "occluded")}, 5, 4)  # gone: no detection
    assert plan.reprompt == [] and plan.matched == {}
    far = np.array([[200, 200, 240, 240]])
    plan = r.plan(far, [0.9], [None], {7: Tracked(last, "lost")}, 6, 4)  # something else, far away
    assert plan.reprompt == [] and plan.new == []
    near = np.array([drift(last, 6), (200, 200, 240, 240)])
    plan = r.plan(near, [0.8, 0.9], [None, None], {7: Tracked(last, "lost")}, 7, 4)
    assert [(oid, b.tolist()) for oid, b, _ in plan.reprompt] == [(7, list(drift(last, 6)))]
    # a visible object is never re-prompted on_loss
    plan = r.plan(near[:1], [0.8], [None], {7: Tracked(last, "visible")}, 8, 4)
    assert plan.matched == {0: 7} and plan.reprompt == []


def test_new_objects_best_first_up_to_free_slots_and_not_twice():
    r = Reseeder("none", new_objects=True, min_score=0.5)
    det = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10], [0, 0, 5, 5]])
    scores = [0.6, 0.95, 0.3, 0.8, 0.99]
    classes = ["a", "b", "c", "d", "e"]
    objs = {1: Tracked((0, 0, 5, 5), "visible", "e")}
    plan = r.plan(det, scores, classes, objs, 0, free_slots=2)
    assert plan.ignored == 1  # below min_score
    assert plan.matched == {4: 1}  # 0.99 matches the tracked object (same class)
    assert [(b.tolist(), c) for b, c, _ in plan.new] == [([20, 0, 30, 10], "b"), ([60, 0, 70, 10], "d")]
    for oid, (b, c, _) in zip((2, 3), plan.new):
        r.started(oid, b, c, 0)
    again = r.plan(det, scores, classes, objs, 1, free_slots=0 + 2)  # before the tracker reports 2, 3
    assert sorted(again.matched.values()) == [1, 2, 3] and [c for _, c, _ in again.new] == ["a"]
    # once the tracker reports them, they are ordinary objects
    objs.update({2: Tracked((20, 0, 30, 10)), 3: Tracked((60, 0, 70, 10))})
    assert sorted(r.plan(det, scores, classes, objs, 2, 1).matched.values()) == [1, 2, 3]


def test_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="reseed mode"):
        Reseeder("sometimes")
    with pytest.raises(ValueError, match="every_n"):
        Reseeder(every_n=0)
    with pytest.raises(ValueError, match="as many scores"):
        Reseeder().plan(np.zeros((2, 4)), [1.0], [None, None], {}, 0, 1)
    plan = Reseeder(new_objects=True).plan(np.array([[5, 5, 5, 9], [np.nan, 0, 1, 1]]), [1, 1], [None, None], {}, 0, 3)
    assert plan.ignored == 2 and plan.new == []


def test_select_new_masks_largest_first_skipping_tracked_and_small():
    def rec(y0, y1, x0, x1):
        m = np.zeros((20, 30), bool)
        m[y0:y1, x0:x1] = True
        return {"segmentation": m, "area": int(m.sum())}
    records = [rec(0, 2, 0, 2), rec(0, 10, 0, 10), rec(10, 20, 10, 30), rec(0, 5, 20, 25), rec(1, 10, 1, 10)]
    existing = np.zeros((1, 20, 30), bool)
    existing[0, 0:10, 0:10] = True  # the 10 x 10 square (and the 9 x 9 inside it) is tracked
    got = select_new_masks(records, existing, max_new=2, min_area=5)
    assert [int(m.sum()) for m in got] == [200, 25]  # largest first; tracked and tiny ones left out
    assert [int(m.sum()) for m in select_new_masks(records, None, 10)] == [200, 100, 81, 25, 4]
    assert select_new_masks(records, None, 0) == []


# --------------------------------------------------------------------------------------------
# the message side: vision_msgs is not installable here, so the two layouts are imitated; with
# vision_msgs installed, the real messages go through the same functions.

class _NS:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _fake_vision(v4=True):
    """A stand-in for vision_msgs.msg: 4.x layout (center.position, hypothesis.class_id) or 3.x."""
    class Hyp:
        def __init__(self):
            if v4:
                self.hypothesis = _NS(class_id='', score=0.0)
            else:
                self.id, self.score = '', 0.0

    class Det:
        def __init__(self):
            center = _NS(position=_NS(x=0.0, y=0.0), theta=0.0) if v4 else _NS(x=0.0, y=0.0, theta=0.0)
            self.header, self.results, self.id = None, [], ''
            self.bbox = _NS(center=center, size_x=0.0, size_y=0.0)

    class Arr:
        def __init__(self):
            self.header, self.detections = None, []
    return _NS(Detection2DArray=Arr, Detection2D=Det, ObjectHypothesisWithPose=Hyp)


@pytest.mark.parametrize("v4", [True, False], ids=["vision_msgs4", "vision_msgs3"])
def test_detections_round_trip_with_states(v4):
    from sam2_ros.ros import detections

    module = _fake_vision(v4)
    masks = np.zeros((3, 20, 30), bool)
    masks[0, 2:6, 3:9] = True  # visible
    out = detections.build(module, "hdr", [4, 5, 6], masks, [0.9, 0.2, 0.1], {4: "cup"},
                           states={4: "visible", 5: "occluded", 6: "lost"}, last_boxes={5: (10, 10, 20, 16)})
    assert [d.id for d in out.detections] == ["4", "5"]  # 6 never had a box
    boxes, scores, classes = detections.to_arrays(out)
    assert boxes.tolist() == [[3, 2, 9, 6], [10, 10, 20, 16]]
    assert scores.tolist() == [0.9, 0.2] and classes == ["cup", "5"]  # best hypothesis: the class one
    state = [(h.hypothesis.class_id if v4 else h.id) for h in (d.results[1] for d in out.detections)]
    assert state == ["state/visible", "state/occluded"]
    # without states: visible objects only, one hypothesis (the former output)
    out = detections.build(module, "hdr", [4, 5], masks[:2], [0.9, 0.2])
    assert [d.id for d in out.detections] == ["4"] and len(out.detections[0].results) == 1


def test_real_vision_msgs_round_trip():
    vision = pytest.importorskip("vision_msgs.msg")
    from sam2_ros.ros import detections

    masks = np.zeros((1, 20, 30), bool)
    masks[0, 2:6, 3:9] = True
    out = detections.build(vision, detections.load().Detection2DArray().header, [4], masks, [0.9],
                           states={4: "visible"})
    boxes, scores, classes = detections.to_arrays(out)
    assert boxes.tolist() == [[3, 2, 9, 6]] and classes == ["4"]

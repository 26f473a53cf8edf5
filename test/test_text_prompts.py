"""Text prompts on a stream, without a model: what detections do to the tracked objects
(sam2_ros.tracking.text_prompts.plan_detections), when the detector runs (DetectorSchedule), the
detector off the caller's thread (sam2_ros.tracking.detector_runner) and the two together
(TextPrompter). The detector here is a function returning fixed boxes; the real one is tested
in test_text_detector.py. No transformers needed."""
import threading

import numpy as np
import pytest

from sam2_ros.model.text_detector import Detections
from sam2_ros.model.text_query import TextPromptError, parse_text_prompt
from sam2_ros.tracking.detector_runner import DetectorRunner
from sam2_ros.tracking.reseed import Tracked
from sam2_ros.tracking.text_prompts import DetectorSchedule, TextPrompter, plan_detections

SIZE = (480, 640)  # H, W
FRAME = np.zeros((*SIZE, 3), np.uint8)


def plan(boxes, scores, phrases, now, then=None, free=10, **kw):
    return plan_detections(np.array(boxes, float), scores, phrases, SIZE, now if then is None else then, now, free, **kw)


# ---------------------------------------------------------------------- plan_detections
def test_a_detection_of_a_tracked_object_adds_nothing_and_others_start_objects():
    now = {1: Tracked((10, 10, 50, 50), "visible", "person"), 2: Tracked((200, 200, 260, 300), "occluded", None)}
    p = plan([[12, 11, 50, 52], [205, 198, 262, 300], [400, 100, 450, 200]], [0.9, 0.8, 0.7],
             ["person", "person", "person"], now)
    assert p.matched == {0: 1, 1: 2}  # same class; an unlabelled (clicked) object matches any phrase
    assert p.reprompt == []
    assert [(b.tolist(), c, s) for b, c, s in p.new] == [([400, 100, 450, 200], "person", 0.7)]


def test_a_detection_of_another_class_over_a_tracked_object_is_another_object():
    now = {1: Tracked((10, 10, 50, 50), "visible", "person")}
    p = plan([[10, 10, 50, 45]], [0.9], ["shirt"], now)  # a shirt on the person: IoU 0.875
    assert p.matched == {} and [c for _, c, _ in p.new] == ["shirt"]


def test_duplicate_boxes_of_one_phrase_start_one_object_best_score_first():
    p = plan([[100, 100, 200, 200], [102, 101, 201, 199], [100, 100, 200, 200], [0, 0, 0, 10]],
             [0.5, 0.9, 0.6, 0.99], ["cup", "cup", "red cup", "cup"], {})
    assert p.ignored == 2  # the lower-scored cup duplicate and the empty box
    assert [(b.tolist(), c) for b, c, _ in p.new] == [([102, 101, 201, 199], "cup"), ([100, 100, 200, 200], "red cup")]


def test_boxes_are_clipped_to_the_frame_and_bad_ones_ignored():
    p = plan([[-20, -5, 30, 40], [600, 400, 700, 500], [np.nan, 0, 10, 10], [np.inf, 0, np.inf, 10],
              [700, 10, 800, 20]], [0.9, 0.8, 0.7, 0.6, 0.5], ["cup"] * 5, {})
    assert [b.tolist() for b, _, _ in p.new] == [[0, 0, 30, 40], [600, 400, 640, 480]]
    assert p.ignored == 3


def test_new_objects_up_to_the_free_slots_best_scores_first():
    boxes = [[i * 60, 0, i * 60 + 50, 50] for i in range(5)]
    p = plan(boxes, [0.5, 0.9, 0.7, 0.8, 0.6], ["dog"] * 5, {}, free=2)
    assert [s for _, _, s in p.new] == [0.9, 0.8]
    assert plan(boxes, [0.5] * 5, ["dog"] * 5, {}, free=0).new == []


def test_a_lost_object_is_reacquired_under_its_id_by_overlap_then_by_class():
    now = {1: Tracked((10, 10, 50, 50), "lost", "person"), 2: Tracked((300, 300, 340, 340), "lost", "person"),
           3: Tracked((500, 10, 540, 50), "lost", "cup"), 4: Tracked((100, 100, 150, 150), "lost", None)}
    # det 0 overlaps lost 1's last box; det 1 is a person far from both: it goes to lost 2 (by
    # class, not by box); det 2 is a cup over lost 2's box: another class, lost 3 takes it;
    # det 3, a second cup over the unlabelled lost 4 (no class to re-acquire it by), starts a new
    # object: lost 3 is nearer det 2
    p = plan([[12, 12, 50, 50], [600, 400, 630, 470], [300, 300, 340, 340], [100, 100, 150, 150]],
             [0.6, 0.9, 0.8, 0.7], ["person", "person", "cup", "cup"], now)
    assert [(o, c) for o, _, c in p.reprompt] == [(1, "person"), (2, "person"), (3, "cup")]
    assert p.reprompt[1][1].tolist() == [600, 400, 630, 470]
    assert [c for _, c, _ in p.new] == ["cup"] and p.new[0][0].tolist() == [100, 100, 150, 150]


def test_lost_objects_of_a_class_pair_with_the_nearest_detections():
    now = {1: Tracked((0, 0, 40, 40), "lost", "cat"), 2: Tracked((600, 440, 640, 480), "lost", "cat")}
    p = plan([[560, 400, 600, 440], [50, 50, 90, 90], [300, 200, 340, 240]], [0.5, 0.6, 0.9], ["cat"] * 3, now)
    assert {o: b.tolist() for o, b, _ in p.reprompt} == {1: [50, 50, 90, 90], 2: [560, 400, 600, 440]}
    assert [b.tolist() for b, _, _ in p.new] == [[300, 200, 340, 240]]


def test_objects_as_they_were_on_the_detections_frame_and_as_they_are():
    # object 1 moved since the frame the detector ran on: its old box still marks it tracked;
    # object 5 started since: its box now counts; object 9 was removed: it blocks nothing;
    # object 2 was visible then and is lost now: the detection there is of it, not re-acquired
    # (its loss makes the detector run again on a fresh frame)
    then = {1: Tracked((10, 10, 50, 50), "visible", "dog"), 9: Tracked((300, 0, 340, 40), "visible", "dog"),
            2: Tracked((100, 300, 150, 350), "visible", "dog")}
    now = {1: Tracked((200, 10, 240, 50), "visible", "dog"), 5: Tracked((400, 400, 450, 450), "visible", None),
           2: Tracked((100, 300, 150, 350), "lost", "dog")}
    p = plan([[10, 10, 50, 50], [400, 400, 450, 450], [300, 0, 340, 40], [100, 300, 150, 350]], [0.9, 0.8, 0.7, 0.6],
             ["dog"] * 4, now, then=then)
    assert p.matched == {0: 1, 1: 5, 3: 2} and p.reprompt == []
    assert [b.tolist() for b, _, _ in p.new] == [[300, 0, 340, 40]]


def test_plan_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="as many scores"):
        plan([[0, 0, 1, 1]], [0.5, 0.6], ["a"], {})


# ---------------------------------------------------------------------- DetectorSchedule
def test_schedule_text_then_every_n_frames():
    s = DetectorSchedule(every_n=3)
    assert s.due(0, {}) is None  # no text
    s.start(["person"])
    assert s.due(5, {}) == "text"
    s.ran(5, {})
    assert [s.due(f, {}) for f in (6, 7)] == [None, None]
    assert s.due(8, {}) == "every_n"
    s.ran(8, {})
    assert s.due(2, {}) == "every_n"  # frame indices restarted (a new stream): due again
    s.stop()
    assert s.due(100, {}) is None


def test_schedule_runs_once_per_loss_of_an_object_of_the_phrases():
    s = DetectorSchedule(every_n=0)
    s.start(["person"])
    s.ran(0, {})
    seen = {1: Tracked((0, 0, 9, 9), "visible", "person"), 2: Tracked((0, 0, 9, 9), "lost", "cup")}
    assert s.due(1, seen) is None  # every_n 0: no timer; a lost cup is not a phrase
    lost = {**seen, 1: Tracked((0, 0, 9, 9), "lost", "person")}
    assert s.due(2, lost) == "lost"
    s.ran(2, lost)
    assert s.due(3, lost) is None  # still lost: looked for already
    assert s.due(4, seen) is None  # found again
    assert s.due(5, lost) == "lost"  # and lost again
    s.ran(5, lost)
    s.retry()
    assert s.due(6, lost) == "retry"


def test_schedule_refuses_a_bad_every_n():
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="every_n must be an integer >= 0"):
            DetectorSchedule(bad)


# ---------------------------------------------------------------------- DetectorRunner
class SlowDetector:
    """Blocks in detect until released: proves the caller never waits for it."""

    def __init__(self):
        self.started, self.release, self.calls = threading.Event(), threading.Event(), []

    def __call__(self, frame, query):
        self.calls.append((frame.copy(), query))
        self.started.set()
        assert self.release.wait(30), "the test never released the detector"
        if query == "boom":
            raise RuntimeError("the detector failed")
        return ("boxes of", query)


def test_submit_returns_at_once_while_a_slow_detector_runs():
    det = SlowDetector()
    runner = DetectorRunner(det)
    frame = np.full((4, 5, 3), 7, np.uint8)
    try:
        assert runner.submit(frame, 3, stamp=123, query="cup", context={"objects": 1})
        frame[:] = 0  # the runner copied the frame
        assert not det.release.is_set()  # submit returned while detect cannot have finished
        assert det.started.wait(30) and runner.busy
        assert runner.submit(frame, 4, query="dog") is False  # one run at a time, nothing queued
        assert runner.poll() is None
        det.release.set()
        assert runner.wait(30)
        result = runner.poll()
        assert (result.frame_index, result.stamp, result.query, result.context) == (3, 123, "cup", {"objects": 1})
        assert result.detections == ("boxes of", "cup") and result.error is None and result.latency_s > 0
        assert (det.calls[0][0] == 7).all() and len(det.calls) == 1
        assert runner.poll() is None  # once
        stats = runner.stats()
        assert stats["runs"] == 1 and stats["failures"] == 0 and not stats["busy"]
        assert stats["latency_ms_p50"] > 0 and stats["latency_ms_p95"] >= stats["latency_ms_p50"]
    finally:
        det.release.set()
        runner.close()


def test_a_failed_run_is_a_result_and_a_discarded_run_is_never_returned():
    det = SlowDetector()
    det.release.set()
    runner = DetectorRunner(det)
    try:
        assert runner.submit(FRAME, 0, query="boom") and runner.wait(30)
        result = runner.poll()
        assert result.detections is None and result.error == "RuntimeError: the detector failed"
        det.release.clear()
        det.started.clear()
        assert runner.submit(FRAME, 1, query="cup") and det.started.wait(30)
        runner.discard()  # e.g. the text changed while it ran
        det.release.set()
        assert runner.wait(30) and runner.poll() is None
        assert runner.stats()["runs"] == 2 and runner.stats()["failures"] == 1 and runner.stats()["discarded"] == 1
        assert runner.submit(FRAME, 2, query="dog") and runner.wait(30) and runner.poll().query == "dog"
    finally:
        det.release.set()
        runner.close()
    with pytest.raises(RuntimeError, match="closed"):
        runner.submit(FRAME, 3, query="cup")


def test_a_synchronous_runner_has_the_result_when_submit_returns():
    runner = DetectorRunner(lambda frame, query: query.upper(), asynchronous=False)
    assert runner.submit(FRAME, 0, query="cup") and not runner.busy
    assert runner.poll().detections == "CUP"
    assert runner._thread is None


# ---------------------------------------------------------------------- TextPrompter
class Scripted:
    """A detector whose boxes the test sets; optionally blocking until released."""

    def __init__(self, blocking=False):
        self.boxes, self.scores, self.phrases = [], [], []
        self.blocking, self.release, self.calls = blocking, threading.Event(), []
        self.started = threading.Event()

    def detect(self, frame, query):
        self.calls.append(query.phrases)
        self.started.set()
        if self.blocking:
            assert self.release.wait(30)
        return Detections(np.array(self.boxes, np.float32).reshape(-1, 4), np.array(self.scores, np.float32),
                          list(self.phrases), list(self.phrases), tuple(frame.shape[:2]), query)

    def check(self, query):
        if len(query.phrases) > 3:
            raise TextPromptError("too many phrases for this detector")
        return query


def test_prompter_text_starts_objects_then_reacquires_a_lost_one_under_its_id():
    det = Scripted()
    det.boxes, det.scores, det.phrases = [[10, 10, 50, 50], [100, 100, 160, 160]], [0.9, 0.8], ["person", "cup"]
    tp = TextPrompter(det, every_n=5, asynchronous=False)
    assert tp.step(FRAME, 0, {}, 10) is None  # no text: no detector
    assert tp.set_text("Person . CUP").phrases == ("person", "cup")
    up = tp.step(FRAME, 1, {}, 10)
    assert up.frame_index == 1 and up.age == 0 and not up.dropped
    assert [(b.tolist(), c) for b, c, _ in up.plan.new] == [([10, 10, 50, 50], "person"), ([100, 100, 160, 160], "cup")]
    objects = {1: Tracked((10, 10, 50, 50), "visible", "person"), 2: Tracked((100, 100, 160, 160), "visible", "cup")}
    assert [tp.step(FRAME, f, objects, 8) for f in (2, 3, 4, 5)] == [None] * 4
    up = tp.step(FRAME, 6, objects, 8)  # every_n: the same two detections add nothing
    assert up.plan.new == [] and up.plan.reprompt == [] and up.plan.matched == {0: 1, 1: 2}
    objects[1] = Tracked((10, 10, 50, 50), "lost", "person")
    det.boxes = [[300, 200, 340, 260], [100, 100, 160, 160]]
    up = tp.step(FRAME, 7, objects, 8)  # the loss runs the detector at once
    assert [(o, b.tolist(), c) for o, b, c in up.plan.reprompt] == [(1, [300, 200, 340, 260], "person")]
    assert up.plan.new == []
    stats = tp.stats()
    assert (stats["runs_text"], stats["runs_every_n"], stats["runs_lost"], stats["runs"]) == (1, 1, 1, 3)
    assert (stats["objects_started"], stats["objects_reacquired"], stats["results_applied"]) == (2, 1, 3)
    assert stats["text"] == "person. cup."
    with pytest.raises(TextPromptError, match="too many phrases"):
        tp.set_text("a . b . c . d")
    assert tp.query.phrases == ("person", "cup")  # a refused text changes nothing
    assert tp.set_text("") is None and tp.step(FRAME, 8, objects, 8) is None  # empty: stop
    tp.close()


@pytest.fixture
def dog():
    """A detector finding one dog once released, and a maker of prompters (every_n 0) on it."""
    det = Scripted(blocking=True)
    det.boxes, det.scores, det.phrases = [[10, 10, 50, 50]], [0.9], ["dog"]
    made = []

    def prompter(**kw):
        made.append(TextPrompter(det, every_n=0, **kw))
        made[-1].set_text("dog")
        return made[-1]

    yield det, prompter
    det.release.set()
    for tp in made:
        tp.close()


def test_prompter_applies_an_asynchronous_result_on_the_newest_frame(dog):
    det, prompter = dog
    tp = prompter(max_age=3)
    assert tp.step(FRAME, 10, {}, 5) is None  # submitted, not waited for
    assert tp.step(FRAME, 11, {}, 5) is None and tp.runner.busy
    det.release.set()
    assert tp.runner.wait(30)
    up = tp.step(FRAME, 12, {}, 5)
    assert (up.frame_index, up.age, up.dropped) == (10, 2, False) and len(up.plan.new) == 1
    assert tp.step(FRAME, 13, {}, 5) is None  # every_n 0: nothing more until a loss or a text


def test_prompter_drops_a_result_too_old_and_runs_again(dog):
    det, prompter = dog
    tp = prompter(max_age=1)
    tp.step(FRAME, 0, {}, 5)
    det.release.set()
    assert tp.runner.wait(30)
    up = tp.step(FRAME, 2, {}, 5)  # two frames old
    assert up.dropped and up.plan.new == [] and tp.stats()["results_dropped"] == 1
    assert tp.runner.wait(30)
    up = tp.step(FRAME, 3, {}, 5)  # the retry ran on frame 2, picked up on frame 3
    assert (up.frame_index, up.age, len(up.plan.new)) == (2, 1, 1) and tp.stats()["runs_retry"] == 1


def test_prompter_discards_the_run_of_a_replaced_text(dog):
    det, prompter = dog
    tp = prompter()
    tp.step(FRAME, 0, {}, 5)
    assert det.started.wait(30)
    tp.set_text("cat")  # while the dog run is in progress
    det.release.set()
    assert tp.runner.wait(30)
    assert tp.step(FRAME, 1, {}, 5) is None  # the dog result is gone; the cat run submitted
    assert tp.runner.wait(30)
    assert det.calls == [("dog",), ("cat",)] and tp.stats()["discarded"] == 1


def test_prompter_settings_are_validated():
    with pytest.raises(ValueError, match="max_age must be an integer >= 0"):
        TextPrompter(Scripted(), max_age=-1)
    with pytest.raises(ValueError, match=r"iou_threshold must be a number in \[0, 1\]"):
        TextPrompter(Scripted(), iou_threshold=2)
    with pytest.raises(TextPromptError, match="UTF-8"):
        TextPrompter(Scripted()).set_text(b"\xff\xfe")
    assert parse_text_prompt("  ") is None

"""Text prompts through the Python API: ``Tracker(detector=...)``, ``Prompt(text=...)`` and
``TrackResult.labels`` (sam2_ros.tracking.text_tracking), with a tiny random SAM 2 and a tiny
random Grounding DINO saved to a directory (test/helpers/text_models.py).

Where the detector's boxes fall is known: the frame is always the same, and the box threshold is
chosen (helpers.text_models.threshold_for) so that exactly ``COUNT`` objects start. The masks of a
random SAM 2 mean nothing, so the tracker's ``mask_threshold`` is set above every logit: masks are
empty and each object's box stays the box it was prompted with, which makes "does a detection
overlap a tracked object" deterministic. The detector runs synchronously (the API's default)."""
import numpy as np
import pytest

pytest.importorskip("transformers")

from sam2_ros import Prompt, PromptError, Tracker  # noqa: E402
from sam2_ros.tracking.text_tracking import TrackerText, mask_boxes  # noqa: E402

COUNT = 3
TEXT = "Cup"  # phrases are lower-cased: the label is "cup"


@pytest.fixture(scope="module")
def frame():
    from helpers.ros import H, W

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 255 // (W - 1), y * 255 // (H - 1), (x * y) % 256], -1) + rng.integers(-20, 21, (H, W, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, frame):
    """(detector directory, box threshold, the plan of the COUNT objects on an empty tracker)."""
    from helpers.text_models import make_grounding_dino, threshold_for
    from sam2_ros.model.text_detector import TextDetector

    path = make_grounding_dino(tmp_path_factory.mktemp("gdino"), seed=1)
    threshold, plan, gap = threshold_for(TextDetector.from_pretrained(str(path), device="cpu"), frame, TEXT, COUNT)
    assert gap > 0.05
    return str(path), threshold, plan


def make_tracker(setup, max_objects=8, **options):
    path, threshold, _ = setup
    tracker = Tracker.from_config("tiny", image_size=128, device="cpu", max_objects=max_objects, detector=path,
                                  detector_options={"box_threshold": threshold, "every_n": 0, **options})
    tracker.mask_threshold = 1e9  # empty masks: each object's box is its prompt's (see the module doc)
    return tracker


def boxes_of(tracker):
    return {o: tuple(np.round(b, 3)) for o, b in tracker.text.boxes.items()}


def test_a_text_prompt_starts_labelled_objects_where_the_detector_found_them(setup, frame):
    tracker = make_tracker(setup)
    r = tracker.track(frame, [Prompt(text=TEXT), Prompt(7, points=[[5, 5]], labels=[1]),
                              Prompt(9, box=[100, 60, 150, 90], label="Box thing")])
    detected = [o for o in r.object_ids if o not in (7, 9)]
    assert detected == [1, 2, 3] and r.labels == {1: "cup", 2: "cup", 3: "cup", 7: None, 9: "Box thing"}
    # each object started from its detection's box, best scores first (object 9 is no cup: a
    # detection overlapping it would still start a cup)
    assert [boxes_of(tracker)[o] for o in detected] == [tuple(np.round(b, 3)) for b, _, _ in setup[2].new]
    st = tracker.text.stats()
    assert st["runs_text"] == 1 and st["objects_started"] == 3 and st["text"] == "cup."
    # labels follow the objects: kept on later frames, gone with a removed object
    tracker.remove_object(2)
    r = tracker.track(frame)
    assert r.labels == {1: "cup", 3: "cup", 7: None, 9: "Box thing"}


def test_a_second_detection_of_the_same_objects_adds_nothing(setup, frame):
    tracker = make_tracker(setup, every_n=1)
    tracker.track(frame, [Prompt(text=TEXT)])
    boxes = boxes_of(tracker)
    for _ in range(3):
        r = tracker.track(frame)
    st = tracker.text.stats()
    assert st["runs_every_n"] >= 2 and st["results_applied"] == st["runs"] >= 3
    assert r.object_ids == [1, 2, 3] and st["objects_started"] == 3 and st["objects_reacquired"] == 0
    assert boxes_of(tracker) == boxes  # no object was prompted again


def test_lost_objects_are_reacquired_under_their_ids(setup, frame):
    tracker = make_tracker(setup)
    tracker.track(frame, [Prompt(text=TEXT)])
    boxes = boxes_of(tracker)
    # every frame misses every object (scores < 1): occluded, then lost after one more frame
    tracker.text.states.configure(present_threshold=1.0, absent_threshold=1.0, occluded_frames=1, lost_frames=2)
    for _ in range(3):
        r = tracker.track(frame)
    st = tracker.text.stats()
    assert st["runs_lost"] == 1 and st["objects_reacquired"] == 3 and st["objects_started"] == 3
    assert r.object_ids == [1, 2, 3] and r.labels == {1: "cup", 2: "cup", 3: "cup"}
    assert boxes_of(tracker) == boxes
    r = tracker.track(frame)  # still lost: one run per loss, not one per frame
    assert tracker.text.stats()["runs"] == 2


def test_max_objects_is_respected_and_reset_detects_again(setup, frame):
    tracker = make_tracker(setup, max_objects=2, every_n=1)
    r = tracker.track(frame, [Prompt(text=TEXT)])
    assert r.object_ids == [1, 2]
    for _ in range(2):
        r = tracker.track(frame)
    assert r.object_ids == [1, 2] and tracker.text.stats()["objects_started"] == 2
    tracker.reset()  # the text stays: detected again on the next frame
    r = tracker.track(frame)
    assert r.object_ids == [1, 2] and r.labels == {1: "cup", 2: "cup"}
    assert tracker.text.stats()["runs_reset"] == 1
    tracker.track(frame, [Prompt(text="")])  # stops detecting; the objects stay
    runs = tracker.text.stats()["runs"]
    r = tracker.track(frame)
    assert r.object_ids == [1, 2] and tracker.text.stats()["runs"] == runs and tracker.text.text == ""


@pytest.fixture(scope="module")
def detecting(setup, frame):
    tracker = make_tracker(setup)
    tracker.track(frame, [Prompt(text=TEXT)])
    return tracker


@pytest.mark.parametrize("prompts, message", [
    ([Prompt(text="cup . . person")], "phrase 2 of the text prompt"),
    ([Prompt(text="a" * 10_000)], "10000 characters"),
    ([Prompt(text=b"cup \xff")], "not valid UTF-8"),
    ([Prompt(text="cup\x00")], "control character"),
    ([Prompt(text="cup", obj_id=3)], "a text prompt is Prompt(text=...) alone"),
    ([Prompt(text="cup"), Prompt(text="dog")], "2 text prompts on one frame"),
    ([Prompt(text="cup"), Prompt(4, points=[[500, 5]], labels=[1])], "outside the 160 x 96 frame"),
    ([Prompt(4, box=[1, 1, 9, 9], label="")], "label must be a non-empty string"),
])
def test_a_bad_text_prompt_raises_and_changes_nothing(detecting, frame, prompts, message):
    tracker = detecting
    before = (tracker.frame_index, tracker.object_ids, tracker.text.text, tracker.text.stats()["runs"])
    with pytest.raises(PromptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tracker.track(frame, prompts)
    assert (tracker.frame_index, tracker.object_ids, tracker.text.text, tracker.text.stats()["runs"]) == before


def test_without_a_detector_text_is_refused_and_labels_still_work(frame):
    tracker = Tracker.from_config("tiny", image_size=128, device="cpu")
    with pytest.raises(PromptError, match="text prompts need a detector: Tracker.from_pretrained"):
        tracker.track(frame, [Prompt(text="cup")])
    r = tracker.track(frame, [Prompt(1, box=[10, 10, 60, 50], label="mug"), Prompt(2, points=[[80, 40]], labels=[1])])
    assert r.labels == {1: "mug", 2: None} and tracker.text.stats() == {}
    with pytest.raises(ValueError, match="detector_options without a detector"):
        TrackerText(None, {"every_n": 3})
    with pytest.raises(ValueError, match="unknown detector_options \\['every'\\]"):
        Tracker.from_config("tiny", image_size=128, device="cpu", detector="x", detector_options={"every": 3})


def test_asynchronous_results_apply_on_the_newest_frame_or_are_dropped_when_too_old(setup, frame):
    tracker = make_tracker(setup, asynchronous=True, max_age=1)
    prompter = tracker.text.prompter
    r = tracker.track(frame, [Prompt(text=TEXT)])  # submitted, not waited for
    assert r.object_ids == []
    assert prompter.runner.wait(60)
    r = tracker.track(frame)  # picked up one frame later (max_age 1): applied to this frame
    assert r.object_ids == [1, 2, 3] and prompter.stats()["results_applied"] == 1
    prompter.configure(every_n=0, max_age=0)  # only results of the frame being tracked count
    tracker.reset()
    tracker.track(frame)  # submitted on the reset
    assert prompter.runner.wait(60)
    r = tracker.track(frame)  # one frame old: dropped, and the detector runs again at once
    st = prompter.stats()
    assert r.object_ids == [] and st["results_dropped"] == 1 and st["runs_retry"] == 1
    tracker.text.close()


def test_mask_boxes():
    import torch

    masks = torch.zeros(3, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[2, 5, 7] = True
    assert mask_boxes(masks) == [(2.0, 1.0, 5.0, 3.0), None, (7.0, 5.0, 8.0, 6.0)]
    assert mask_boxes(masks[:0]) == []

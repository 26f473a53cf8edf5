"""The text detector (sam2_ros.model.text_detector) against transformers' own processor, model
and post-processing, on small Grounding DINO / MM Grounding DINO / OWLv2 checkpoints with random
weights and tokenizers made in the test (test/helpers/text_models.py); text prompts' parsing and
validation (sam2_ros.model.text_query); the refusal when transformers is not installed."""
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from sam2_ros.model.text_detector import (DetectorLoadError, TextDetector, as_query)
from sam2_ros.model.text_query import MAX_TEXT_CHARS, TextPromptError, TextQuery, parse_text_prompt

TEXT = "person . red cup"
SIZES = [(48, 80), (80, 48), (37, 101), (64, 64), (150, 90)]  # (H, W): wide, tall, odd, square, upscaled


def frame_of(h, w, seed=0):
    """A frame with structure (gradients and a block), not only noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1).astype(np.int32)
    img[h // 4:h // 2, w // 3:w // 2] = rng.integers(0, 256, 3)
    return np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def gd_dir(tmp_path_factory):
    from helpers.text_models import make_grounding_dino

    return make_grounding_dino(tmp_path_factory.mktemp("grounding_dino"), seed=1)


@pytest.fixture(scope="module")
def detector(gd_dir):
    """Ours, loaded once; tests set its thresholds."""
    return TextDetector.from_pretrained(str(gd_dir), device="cpu")


@pytest.fixture(scope="module")
def by_hand(gd_dir):
    """transformers' own processor and model, loaded by themselves from the directory."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    return AutoProcessor.from_pretrained(gd_dir), AutoModelForZeroShotObjectDetection.from_pretrained(gd_dir).eval()


def run_by_hand(processor, model, frame, text, **post):
    inputs = processor(images=frame, text=text, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    h, w = frame.shape[:2]
    if "text_threshold" in post:
        res = processor.post_process_grounded_object_detection(out, inputs.input_ids, target_sizes=[(h, w)], **post)[0]
    else:
        res = processor.post_process_grounded_object_detection(out, target_sizes=[(h, w)], **post)[0]
    return inputs, out, res


def phrases_by_hand(logits, input_ids, threshold, phrases):
    """Each kept box's phrase, from the token ids split at "." (id 1012; 101/102 are [CLS]/[SEP])."""
    group, k = [], 0
    for t in input_ids.tolist():
        if t == 1012:
            k += 1
        group.append(-1 if t in (101, 102, 1012) else k)
    probs = logits.sigmoid()
    out = []
    for row in probs[probs.max(-1).values > threshold]:
        best = [max(float(row[t]) for t in range(len(group)) if group[t] == p) for p in range(len(phrases))]
        out.append(phrases[int(np.argmax(best))])
    return out


# ---------------------------------------------------------------------- Grounding DINO
def test_boxes_scores_and_labels_equal_transformers_post_processing(detector, by_hand):
    det = detector
    det.box_threshold, det.text_threshold = 0.9, 0.6
    frame = frame_of(48, 80)
    ours = det.detect(frame, TEXT)
    inputs, out, theirs = run_by_hand(*by_hand, frame, "person. red cup.", threshold=0.9, text_threshold=0.6)
    assert 0 < len(ours) < det.model.config.num_queries  # the threshold keeps some boxes, not all
    np.testing.assert_array_equal(ours.boxes, theirs["boxes"].numpy())
    np.testing.assert_array_equal(ours.scores, theirs["scores"].numpy())
    assert ours.labels == theirs["text_labels"]
    assert ours.phrases == phrases_by_hand(out.logits[0], inputs.input_ids[0], 0.9, ["person", "red cup"])
    assert set(ours.phrases) == {"person", "red cup"}  # both occur, so the assignment is tested
    assert ours.size == (48, 80) and ours.boxes.dtype == np.float32 and ours.query.phrases == ("person", "red cup")
    det.box_threshold = 1.0  # nothing kept: empty, not transformers' [""] label of no boxes
    none = det.detect(frame, TEXT)
    assert none.boxes.shape == (0, 4) and none.scores.shape == (0,) and none.labels == none.phrases == []


@pytest.mark.parametrize("h, w", SIZES)
def test_boxes_are_placed_in_the_frames_pixels(detector, by_hand, h, w):
    detector.box_threshold, detector.text_threshold = 0.5, 0.25
    frame = frame_of(h, w, seed=h + w)
    ours = detector.detect(frame, TEXT)
    _, out, _ = run_by_hand(*by_hand, frame, "person. red cup.", threshold=0.5, text_threshold=0.25)
    # the model's boxes are (cx, cy, bw, bh) relative to the frame: x by its width, y by its height
    keep = out.logits[0].sigmoid().max(-1).values > 0.5
    cx, cy, bw, bh = out.pred_boxes[0][keep].unbind(-1)
    by_hand_boxes = torch.stack([(cx - 0.5 * bw) * w, (cy - 0.5 * bh) * h, (cx + 0.5 * bw) * w, (cy + 0.5 * bh) * h], -1)
    assert len(ours) > 0
    np.testing.assert_allclose(ours.boxes, by_hand_boxes.numpy(), rtol=1e-6, atol=1e-4)


def test_a_smaller_image_size_resizes_the_frame_less_and_still_places_boxes_in_its_pixels(detector, by_hand):
    det = TextDetector(detector.model, detector.processor, box_threshold=0.5, device="cpu", image_size=128)
    frame = frame_of(90, 150, seed=7)
    ours = det.detect(frame, TEXT)
    processor, model = by_hand
    inputs = processor(images=frame, text="person. red cup.", return_tensors="pt",
                       size={"shortest_edge": 128, "longest_edge": 213})
    assert inputs["pixel_values"].shape[-2:] == (128, 213)
    with torch.no_grad():
        out = model(**inputs)
    theirs = processor.post_process_grounded_object_detection(out, inputs.input_ids, threshold=0.5, text_threshold=0.25,
                                                              target_sizes=[(90, 150)])[0]
    assert len(ours) > 0
    np.testing.assert_array_equal(ours.boxes, theirs["boxes"].numpy())
    assert detector.processor.image_processor.size.shortest_edge == 96  # the shared processor is untouched


def test_mm_grounding_dino_goes_through_the_same_path(tmp_path):
    from helpers.text_models import make_grounding_dino
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    path = make_grounding_dino(tmp_path / "mm", seed=2, mm=True)
    processor, model = AutoProcessor.from_pretrained(path), AutoModelForZeroShotObjectDetection.from_pretrained(path)
    frame = frame_of(60, 90, seed=3)
    _, out, _ = run_by_hand(processor, model.eval(), frame, "person. red cup.", threshold=0.0, text_threshold=0.0)
    box_threshold = float(out.logits[0].sigmoid().max(-1).values.median())  # keeps about half the boxes
    _, _, theirs = run_by_hand(processor, model, frame, "person. red cup.", threshold=box_threshold,
                               text_threshold=box_threshold / 2)
    det = TextDetector.from_pretrained(str(path), box_threshold=box_threshold, text_threshold=box_threshold / 2,
                                       device="cpu")
    assert det.model.config.model_type == "mm-grounding-dino" and not det.owl
    ours = det.detect(frame, TEXT)
    assert len(ours) > 0
    np.testing.assert_array_equal(ours.boxes, theirs["boxes"].numpy())
    np.testing.assert_array_equal(ours.scores, theirs["scores"].numpy())
    assert ours.labels == theirs["text_labels"] and set(ours.phrases) <= {"person", "red cup"}


def test_owlv2_takes_the_phrases_as_a_list_and_labels_each_box_with_its_phrase(tmp_path):
    from helpers.text_models import make_owlv2
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    path = make_owlv2(tmp_path / "owl", seed=4, scale=0.02)
    processor, model = AutoProcessor.from_pretrained(path), AutoModelForZeroShotObjectDetection.from_pretrained(path)
    frame = frame_of(40, 64, seed=5)  # padded to a 64 x 64 square by OWLv2's processor
    phrases = [["person", "red cup"]]
    _, out, _ = run_by_hand(processor, model.eval(), frame, phrases, threshold=0.0, text_labels=phrases)
    box_threshold = float(out.logits[0].sigmoid().max(-1).values.median())  # keeps about half the boxes
    _, _, theirs = run_by_hand(processor, model, frame, phrases, threshold=box_threshold, text_labels=phrases)
    det = TextDetector.from_pretrained(str(path), box_threshold=box_threshold, device="cpu")
    assert det.owl
    ours = det.detect(frame, TEXT)
    assert 0 < len(ours) < out.logits.shape[1]
    np.testing.assert_array_equal(ours.boxes, theirs["boxes"].numpy())
    np.testing.assert_array_equal(ours.scores, theirs["scores"].numpy())
    assert ours.labels == ours.phrases == theirs["text_labels"]
    # boxes relative to the padded square: both axes scale by max(H, W)
    keep = out.logits[0].sigmoid().max(-1).values > box_threshold
    cx, cy, bw, bh = out.pred_boxes[0][keep].unbind(-1)
    s = 64
    by_hand_boxes = torch.stack([(cx - 0.5 * bw) * s, (cy - 0.5 * bh) * s, (cx + 0.5 * bw) * s, (cy + 0.5 * bh) * s], -1)
    np.testing.assert_allclose(ours.boxes, by_hand_boxes.numpy(), rtol=1e-6, atol=1e-4)


def test_bfloat16_autocast_runs_on_the_cpu(detector):
    det = TextDetector(detector.model, detector.processor, box_threshold=0.5, device="cpu", dtype="bfloat16")
    assert det.dtype == torch.bfloat16 and next(det.model.parameters()).dtype == torch.float32
    ours = det.detect(frame_of(48, 80), ["person", "red cup"])
    assert ours.boxes.dtype == np.float32 and ours.boxes.shape == (len(ours), 4) and len(ours.phrases) == len(ours)


def test_a_text_the_model_cannot_read_whole_is_refused(detector):
    det = detector  # max_text_len 48 tokens
    assert det.check("person . red cup") == TextQuery(("person", "red cup"))
    with pytest.raises(TextPromptError, match=r"is \d+ tokens; this detector reads at most 48"):
        det.check(" . ".join(f"cup {i}" for i in range(20)))
    with pytest.raises(TextPromptError, match="empty"):
        det.detect(frame_of(48, 80), "")
    with pytest.raises(ValueError, match="H x W x 3"):
        det.detect(np.zeros((48, 80), np.uint8), "cup")


def test_detector_settings_and_sources_are_checked(gd_dir, tmp_path):
    with pytest.raises(ValueError, match=r"box_threshold must be a number in \[0, 1\]"):
        TextDetector.from_pretrained(str(gd_dir), box_threshold=1.5)
    with pytest.raises(ValueError, match="no CUDA device|unknown dtype"):
        TextDetector.from_pretrained(str(gd_dir), device="cuda" if not torch.cuda.is_available() else "cpu",
                                     dtype="float64")
    with pytest.raises(ValueError, match=r"image_size must be an integer in \[64, 2048\]"):
        TextDetector.from_pretrained(str(gd_dir), image_size=32)
    with pytest.raises(DetectorLoadError, match="does not exist"):
        TextDetector.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(DetectorLoadError, match="cannot load the detector"):
        TextDetector.from_pretrained(str(tmp_path))  # a directory without a checkpoint
    # the Hub path, up to the network: not in an empty cache, and no download allowed
    with pytest.raises(DetectorLoadError, match="grounding-dino-tiny"):
        TextDetector.from_pretrained(local_files_only=True, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DetectorLoadError, match="not a detector sam2_ros can prompt"):
        TextDetector(types.SimpleNamespace(config=types.SimpleNamespace(model_type="detr")), None)


# ---------------------------------------------------------------------- text prompts
@pytest.mark.parametrize("text, phrases", [
    ("person . red cup", ("person", "red cup")),
    ("Person. Red  Cup.", ("person", "red cup")),
    ("  dog\t.\ncat \r\n", ("dog", "cat")),
    ("cup . Cup . bottle", ("cup", "bottle")),
    (b"person . caf\xc3\xa9 table", ("person", "caf\u00e9 table")),
    ("cup", ("cup",)),
])
def test_text_prompts_are_normalised(text, phrases):
    query = parse_text_prompt(text)
    assert query.phrases == phrases
    assert query.text == ". ".join(phrases) + "."
    assert [query.text[s:e] for s, e in query.spans()] == list(phrases)


@pytest.mark.parametrize("text, reason", [
    (". cup", "phrase 1 of the text prompt '. cup' is empty"),
    ("person . . cup", "phrase 2 .* is empty"),
    ("person .. cup", "phrase 2 .* is empty"),
    ("x" * 10_000, f"has 10000 characters, at most {MAX_TEXT_CHARS}"),
    (b"person \xff cup", r"not valid UTF-8 \(byte 7"),
    ("person\x07", r"control character \(U\+0007\) at position 6"),
    ("cup\u202e", r"control character \(U\+202E\)"),
    ("cup\x00", r"U\+0000"),
    (42, "got int"),
])
def test_malformed_text_prompts_are_refused_with_the_reason(text, reason):
    with pytest.raises(TextPromptError, match=reason):
        parse_text_prompt(text)


def test_empty_text_means_stop_and_phrase_lists_are_accepted():
    assert parse_text_prompt("") is None and parse_text_prompt(b" \n ") is None
    assert as_query(["Person", "red cup"]).phrases == ("person", "red cup")
    with pytest.raises(TextPromptError, match="cannot hold '.'"):
        as_query(["a.b"])


# ---------------------------------------------------------------------- missing dependency
BLOCKER = """
import sys

class NoTransformers:  # as if transformers were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "transformers" or name.startswith("transformers."):
            raise ModuleNotFoundError("No module named 'transformers'", name=name)
        return None

sys.meta_path.insert(0, NoTransformers())
from sam2_ros import AutomaticMaskGenerator, ImagePredictor, Prompt, PromptError, Tracker  # all import without it
from sam2_ros.tracking import text_prompts  # the pure logic too
from sam2_ros.tracking.text_tracking import TrackerText
from sam2_ros.model.text_detector import MissingDependencyError, TextDetector
assert text_prompts.parse_text_prompt("cup").phrases == ("cup",)
assert TrackerText().prompter is None  # a tracker without a detector: labels only
for make in (TextDetector.from_pretrained, lambda: TrackerText("IDEA-Research/grounding-dino-tiny")):
    try:
        make()  # the default Hub id, as Tracker(..., detector=...) loads it: refused before any download
    except MissingDependencyError as error:
        assert isinstance(error, ImportError)
        print(error)
    else:
        raise SystemExit("no refusal")
"""


def test_without_transformers_the_package_imports_and_a_detector_is_refused_with_the_install_command():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    r = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("text prompts need the optional dependencies transformers and pillow") == 2
    assert "pip install 'sam2_ros[text]'" in r.stdout and "requirements-text.txt" in r.stdout

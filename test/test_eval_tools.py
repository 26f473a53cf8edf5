"""sam2_evaluate end to end: bags in; masks, J&F, report and plots out.

The key check: evaluating a random-weight official-format checkpoint against ground truth made
by Meta's official video predictor (driven one frame at a time) with the same checkpoint and
prompts gives J&F = 1 (up to pixels whose logit is a float tie at the threshold).
"""
import csv
import json
import pathlib

import cv2
import numpy as np
import pytest
import yaml

from helpers.oracle import OfficialStreamingOracle, sample_frames
from sam2_ros.tools import bagio, evaluate, video_to_bag
from sam2_ros.tools.labelpng import write_label_png
from sam2_ros.visualization import label_image

START = 1_700_000_000_000_000_000
DT = 40_000_000


def header(i):
    ns = START + i * DT
    return bagio.Header(ns // 10**9, ns % 10**9, "camera")


def write_bag(path, frames, storage="sqlite3", labels=None, markers=()):
    with bagio.BagWriter(path, storage=storage) as w:
        for i, f in enumerate(frames):
            w.write("/cam", bagio.image_message(f, "rgb8", header(i)), START + i * DT)
            if labels is not None:
                w.write("/gt", bagio.image_message(labels[i], "mono16", header(i)), START + i * DT)
        for log_time, msg in markers:
            w.write("/sam2_tracker/prompt", msg, log_time)


def ellipse(h, w, cx, cy, rx, ry):
    yy, xx = np.mgrid[:h, :w]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def run_eval(args):
    return evaluate.main([str(a) for a in args] + ["--quiet", "--device", "cpu", "--model", "tiny"])


def test_official_predictor_ground_truth_gives_jf_one(tmp_path, official_checkpoint):
    ckpt = official_checkpoint("tiny", 256)
    frames = sample_frames(5, 320, 180)
    h, w = frames[0].shape[:2]
    mask3 = ellipse(h, w, 0.7 * w, 0.4 * h, 0.12 * w, 0.2 * h)
    cv2.imwrite(str(tmp_path / "obj3.png"), mask3.astype(np.uint8) * 255)
    plan = {0: [dict(obj_id=1, points=[[0.45 * w, 0.55 * h]], labels=[1]),
                dict(obj_id=2, box=[0.05 * w, 0.1 * h, 0.4 * w, 0.6 * h])],
            2: [dict(obj_id=3, mask=mask3)]}
    oracle = OfficialStreamingOracle(ckpt, "tiny", 256, frames)
    gt = []
    for t in range(len(frames)):
        res = oracle.step(t, plan.get(t, []))
        ids = list(res)
        gt.append(label_image(np.stack([np.asarray(res[i]) for i in ids]), ids, 0.0))
    assert all(len(np.unique(g)) >= 3 for g in gt[2:]), "degenerate ground truth"
    write_bag(tmp_path / "in", frames, labels=gt)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"prompts": [
        {"frame": 0, "object_id": 1, "points": plan[0][0]["points"], "labels": [1]},
        {"stamp": f"{header(0).sec}.{header(0).nanosec:09d}", "object_id": 2, "box": plan[0][1]["box"]},
        {"frame": 2, "object_id": 3, "mask": "obj3.png"}]}))
    out = tmp_path / "out"
    rc = run_eval(["--bag", tmp_path / "in", "--image-topic", "/cam", "--prompts", tmp_path / "p.yaml",
                   "--gt-topic", "/gt", "--checkpoint", ckpt, "--image-size", 256, "--out", out])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 5 and report["fps"] > 0
    assert report["JF_mean"] == pytest.approx(1.0, abs=1e-3)
    for oid in ("1", "2", "3"):
        assert report["objects"][oid]["J_mean"] == pytest.approx(1.0, abs=1e-3), oid
    assert report["objects"]["3"]["first_prompt_frame"] == 2
    assert report["objects"]["3"]["frames_evaluated"] == 3
    # the masks in the output bag: the ground truth (up to threshold ties), stamped as the input
    masks = list(bagio.iter_labels(out / "bag", evaluate.MASK_TOPIC))
    inputs = list(bagio.iter_images(tmp_path / "in", "/cam", decode=False))
    assert [(m.header, m.log_time) for m in masks] == [(f.header, f.log_time) for f in inputs]
    for m, g in zip(masks, gt):
        assert (m.image != g).mean() <= 1e-3


@pytest.fixture(scope="module")
def davis_dir(tmp_path_factory):
    """A DAVIS-style folder: 4 JPEG frames of the bundled clip and indexed annotations of two
    moving ellipses (object 2 appears on frame 1)."""
    root = tmp_path_factory.mktemp("davis")
    cap = cv2.VideoCapture("data/sample/bunny.mp4")
    (root / "JPEGImages/480p/bun").mkdir(parents=True)
    (root / "Annotations/480p/bun").mkdir(parents=True)
    for i in range(4):
        ok, bgr = cap.read()
        assert ok
        bgr = cv2.resize(bgr, (320, 180), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / f"JPEGImages/480p/bun/{i:05d}.jpg"), bgr)
        label = np.zeros((180, 320), np.uint16)
        label[ellipse(180, 320, 90 + 3 * i, 110, 40, 30)] = 1
        if i >= 1:
            label[ellipse(180, 320, 230, 60, 30, 25)] = 2
        write_label_png(root / f"Annotations/480p/bun/{i:05d}.png", label)
    cap.release()
    return root


def test_davis_folder_to_bag_then_evaluate(tmp_path, davis_dir, official_checkpoint):
    ckpt = official_checkpoint("tiny", 256)
    bag = tmp_path / "bun"
    assert video_to_bag.main(["--davis-dir", str(davis_dir), "--sequence", "bun", "--out", str(bag),
                              "--storage", "mcap", "--compressed"]) == 0
    topics = bagio.bag_topics(bag)
    assert topics == {"/camera/image_raw/compressed": (bagio.COMPRESSED, 4), "/gt/labels": (bagio.IMAGE, 4)}
    prompts = tmp_path / "bun_prompts" / "prompts.yaml"
    entries = yaml.safe_load(prompts.read_text())["prompts"]
    assert [(e["object_id"], e["frame"]) for e in entries] == [(1, 0), (2, 1)]  # first appearance
    out = tmp_path / "out"
    rc = run_eval(["--bag", bag, "--image-topic", "/camera/image_raw/compressed", "--prompts", prompts,
                   "--gt-topic", "/gt/labels", "--checkpoint", ckpt, "--image-size", 128, "--out", out,
                   "--overlay", "--copy-images"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("JF_mean", "J_mean", "F_mean", "frames", "fps"):
        assert report[key] is not None, key
    assert 0.0 <= report["JF_mean"] <= 1.0
    assert report["frames"] == 4 and len(report["memory"]["state_bytes"]) == 4
    assert set(report["latency_ms"]) >= {"mean", "p50", "p95", "max"}
    assert report["objects"]["2"]["frames_evaluated"] == 3
    # the report names what ran, and tells these random weights from Meta's files by content
    import hashlib
    assert report["checkpoint"] == str(ckpt) and report["model"] == "tiny" and report["image_size"] == 128
    assert report["device"] == "cpu" and report["dtype"] == "float32"
    assert report["checkpoint_sha256"] == hashlib.sha256(pathlib.Path(ckpt).read_bytes()).hexdigest()[:16]
    assert report["checkpoint_official"] is None
    assert any("none of Meta's published files" in w for w in report["warnings"])
    markdown = (out / "report.md").read_text()
    assert report["checkpoint_sha256"] in markdown and "not one of Meta's published files" in markdown
    # mask prompts: the prompted frame is (nearly) the annotation itself
    rows = list(csv.DictReader(open(out / "per_frame.csv")))
    first = [r for r in rows if r["frame"] == "0" and r["object_id"] == "1"][0]
    assert float(first["J"]) > 0.9
    assert len(rows) == 1 + 3 * 2  # frame 0: object 1; frames 1-3: objects 1 and 2
    # outputs: bag topics stamped as the input, plots, markdown
    in_frames = list(bagio.iter_images(bag, "/camera/image_raw/compressed", decode=False))
    assert set(bagio.bag_topics(out / "bag")) == {evaluate.MASK_TOPIC, evaluate.OVERLAY_TOPIC,
                                                 "/camera/image_raw/compressed"}
    assert bagio.storage_of(out / "bag") == "mcap"
    for topic in (evaluate.MASK_TOPIC, evaluate.OVERLAY_TOPIC):
        got = list(bagio.iter_images(out / "bag", topic, decode=False))
        assert [(g.header, g.log_time) for g in got] == [(f.header, f.log_time) for f in in_frames]
    for png in ("jf_over_time.png", "latency_hist.png", "memory_over_time.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.shape[0] > 100 and img.std() > 5, png
        assert f"]({png})" in (out / "report.md").read_text()
    # the same ground truth from the annotation folder gives the same figures
    out2 = tmp_path / "out2"
    rc = run_eval(["--bag", bag, "--image-topic", "/camera/image_raw/compressed", "--prompts", prompts,
                   "--gt-dir", davis_dir / "Annotations/480p/bun", "--checkpoint", ckpt,
                   "--image-size", 128, "--out", out2, "--max-frames", 2])
    assert rc == 0
    report2 = json.loads((out2 / "report.json").read_text())
    assert report2["frames"] == 2
    assert report2["objects"]["1"]["J_mean"] == pytest.approx(
        np.mean([float(r["J"]) for r in rows if r["object_id"] == "1" and int(r["frame"]) < 2]), abs=1e-6)


def test_memory_selections_side_by_side(tmp_path, davis_dir, official_checkpoint):
    """``--memory-selection sam2 samurai``: each selection evaluated on the same frames and
    prompts into OUT/<selection>/, compared in report.md and comparison.json in OUT."""
    ckpt = official_checkpoint("tiny", 256)
    bag = tmp_path / "bun"
    assert video_to_bag.main(["--davis-dir", str(davis_dir), "--sequence", "bun", "--out", str(bag)]) == 0
    out = tmp_path / "out"
    rc = run_eval(["--bag", bag, "--image-topic", "/camera/image_raw", "--prompts", tmp_path / "bun_prompts" / "prompts.yaml",
                   "--gt-topic", "/gt/labels", "--checkpoint", ckpt, "--image-size", 128, "--out", out,
                   "--memory-selection", "sam2", "samurai"])
    assert rc == 0
    reports = {s: json.loads((out / s / "report.json").read_text()) for s in ("sam2", "samurai")}
    assert {s: r["memory_selection"] for s, r in reports.items()} == {"sam2": "sam2", "samurai": "samurai"}
    assert reports["sam2"]["frames"] == reports["samurai"]["frames"] == 4
    data = json.loads((out / "comparison.json").read_text())
    assert data["selections"] == ["sam2", "samurai"] and set(data["objects"]) == {"1", "2"}
    for s, r in reports.items():
        assert data["summary"][s]["JF_mean"] == r["JF_mean"] is not None
        assert data["objects"]["2"][s]["JF_mean"] == r["objects"]["2"]["JF_mean"]
    markdown = (out / "report.md").read_text()
    assert "| sam2 |" in markdown and "| samurai |" in markdown and "memory_selection samurai" in (
        out / "samurai" / "report.md").read_text()
    for oid in ("1", "2"):
        img = cv2.imread(str(out / f"jf_object_{oid}.png"))
        assert img is not None and img.std() > 5 and f"(jf_object_{oid}.png)" in markdown


def _marker(oid, kind, pts, stamp):
    store = bagio.typestore()
    T = store.types
    col = T["std_msgs/msg/ColorRGBA"](r=0.0, g=0.0, b=0.0, a=0.0)
    return T[bagio.MARKER](
        header=bagio._header_msg(store, stamp), ns="", id=oid, type=kind, action=0,
        position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0), scale=1.0, outline_color=col,
        filled=0, fill_color=col, lifetime=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=0),
        points=[T["geometry_msgs/msg/Point"](x=float(x), y=float(y), z=float(z)) for x, y, z in pts],
        outline_colors=[])


def test_recorded_image_markers_as_prompts(tmp_path, official_checkpoint):
    ckpt = official_checkpoint("tiny", 256)
    frames = sample_frames(3, 160, 90)
    markers = [(START + 1, _marker(1, 4, [(70, 50, 1)], header(0))),
               # zero stamp: the latest frame received before the marker (frame 1)
               (START + DT + 5, _marker(2, 1, [(100, 10, 0), (150, 60, 0)], bagio.Header(0, 0)))]
    write_bag(tmp_path / "in", frames, markers=markers)
    (tmp_path / "p.yaml").write_text(
        "prompts:\n  - {frame: 0, object_id: 1, points: [[70, 50]], labels: [1]}\n"
        "  - {frame: 1, object_id: 2, box: [100, 10, 150, 60]}\n")
    common = ["--bag", tmp_path / "in", "--image-topic", "/cam", "--checkpoint", ckpt, "--image-size", 128]
    assert run_eval(common + ["--prompt-topic", "/sam2_tracker/prompt", "--out", tmp_path / "a"]) == 0
    assert run_eval(common + ["--prompts", tmp_path / "p.yaml", "--out", tmp_path / "b"]) == 0
    a = [m.image for m in bagio.iter_labels(tmp_path / "a" / "bag", evaluate.MASK_TOPIC)]
    b = [m.image for m in bagio.iter_labels(tmp_path / "b" / "bag", evaluate.MASK_TOPIC)]
    assert len(a) == 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["JF_mean"] is None and report["objects"]["2"]["first_prompt_frame"] == 1


def test_bad_input_exits_2(tmp_path, capsys):
    frames = [np.zeros((20, 30, 3), np.uint8)] * 2
    write_bag(tmp_path / "in", frames)
    good = tmp_path / "p.yaml"
    good.write_text("prompts:\n  - {frame: 0, object_id: 1, points: [[5, 5]]}\n")
    cases = {
        "no such bag": ["--bag", tmp_path / "nope", "--image-topic", "/cam", "--prompts", good],
        "no topic '/x'": ["--bag", tmp_path / "in", "--image-topic", "/x", "--prompts", good],
        "matches no frame": ["--bag", tmp_path / "in", "--image-topic", "/cam", "--prompts", "FRAME9"],
        "nearest image stamp": ["--bag", tmp_path / "in", "--image-topic", "/cam", "--prompts", "STAMP"],
        "outside the 30x20 frame": ["--bag", tmp_path / "in", "--image-topic", "/cam", "--prompts", "FAR"],
        "not a folder": ["--bag", tmp_path / "in", "--image-topic", "/cam", "--prompts", good,
                         "--gt-dir", tmp_path / "none"],
        "cannot read prompts file": ["--bag", tmp_path / "in", "--image-topic", "/cam", "--prompts",
                                     tmp_path / "missing.yaml"],
    }
    (tmp_path / "FRAME9").write_text("prompts:\n  - {frame: 9, object_id: 1, points: [[5, 5]]}\n")
    (tmp_path / "STAMP").write_text("prompts:\n  - {stamp: 1700000000.5, object_id: 1, points: [[5, 5]]}\n")
    (tmp_path / "FAR").write_text("prompts:\n  - {frame: 0, object_id: 1, points: [[50, 5]]}\n")
    for message, args in cases.items():
        args = [tmp_path / a if a in ("FRAME9", "STAMP", "FAR") else a for a in args]
        rc = run_eval(args + ["--checkpoint", tmp_path / "unused.pt", "--out", tmp_path / "o"])
        err = capsys.readouterr().err
        assert rc == 2, message
        assert "sam2_evaluate: error:" in err and message in err, (message, err)
    assert not (tmp_path / "o").exists()  # nothing written on bad input
    with pytest.raises(SystemExit) as exc:  # argparse: missing required option
        evaluate.main(["--bag", str(tmp_path / "in")])
    assert exc.value.code == 2

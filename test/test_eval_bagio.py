"""rosbag2 reading and writing without ROS (sam2_ros.tools.bagio), label PNGs, video_to_bag."""
import sys

import cv2
import numpy as np
import pytest

from sam2_ros.tools import bagio, labelpng, video_to_bag

CLIP = "data/sample/bunny.mp4"
N = 4


def clip_frames(n=N, width=320):
    cap = cv2.VideoCapture(CLIP)
    out = []
    while len(out) < n:
        ok, bgr = cap.read()
        assert ok
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out.append(cv2.resize(rgb, (width, width * 9 // 16), interpolation=cv2.INTER_AREA))
    cap.release()
    return out


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("compressed", [False, True])
def test_video_to_bag_from_real_clip(tmp_path, storage, compressed):
    out = tmp_path / "bag"
    rc = video_to_bag.main(["--video", CLIP, "--out", str(out), "--storage", storage, "--width", "320",
                            "--max-frames", str(N), "--fps", "10", "--start", "100.5"]
                           + (["--compressed"] if compressed else []))
    assert rc == 0
    assert bagio.storage_of(out) == storage
    topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    msgtype = bagio.COMPRESSED if compressed else bagio.IMAGE
    assert bagio.bag_topics(out) == {topic: (msgtype, N)}
    frames = list(bagio.iter_images(out, topic))
    want = clip_frames()
    assert [f.index for f in frames] == list(range(N))
    for i, (f, w) in enumerate(zip(frames, want)):
        ns = 100_500_000_000 + i * 100_000_000
        assert f.header == bagio.Header(ns // 10**9, ns % 10**9, "camera")
        assert f.log_time == ns
        assert f.image.shape == w.shape and f.image.dtype == np.uint8
        err = np.abs(f.image.astype(int) - w).mean()
        assert err == 0 if not compressed else err < 3.0


ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"]


def _as_encoding(rgb, enc):
    if enc == "rgb8":
        return rgb
    if enc == "bgr8":
        return rgb[..., ::-1]
    if enc == "rgba8":
        return np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    if enc == "bgra8":
        return np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)])
    gray = rgb[..., 1]
    return gray if enc == "mono8" else gray.astype(np.uint16) * 257


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_encodings_round_trip(tmp_path, storage):
    rgb = clip_frames(1, 96)[0]
    with bagio.BagWriter(tmp_path / "b", storage=storage) as w:
        for k, enc in enumerate(ENCODINGS):
            w.write("/" + enc, bagio.image_message(_as_encoding(rgb, enc), enc, bagio.Header(1, k, "f")), 10 + k)
        w.write("/png", bagio.compressed_message(rgb, bagio.Header(2, 0), "png"), 20)
        w.write("/jpeg", bagio.compressed_message(rgb, bagio.Header(2, 1), "jpeg"), 21)
    gray3 = np.repeat(rgb[..., 1:2], 3, axis=2)
    for enc in ENCODINGS:
        (f,) = bagio.iter_images(tmp_path / "b", "/" + enc)
        want = gray3 if enc.startswith("mono") else rgb
        np.testing.assert_array_equal(f.image, want, err_msg=enc)
    (f,) = bagio.iter_images(tmp_path / "b", "/png")
    np.testing.assert_array_equal(f.image, rgb)
    (f,) = bagio.iter_images(tmp_path / "b", "/jpeg")
    assert np.abs(f.image.astype(int) - rgb).mean() < 6  # JPEG of a tiny image (chroma subsampling)


def test_padded_rows_and_big_endian_mono16(tmp_path):
    store = bagio.typestore()
    label = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    rows = np.zeros((3, 10), np.uint8)  # step 10 > 4 * 2: padding at the end of each row
    rows[:, :8] = label.astype(">u2").view(np.uint8).reshape(3, 8)
    msg = bagio.image_message(label, "mono16", bagio.Header(0, 5))
    msg = store.types[bagio.IMAGE](header=msg.header, height=3, width=4, encoding="mono16",
                                   is_bigendian=1, step=10, data=rows.reshape(-1))
    with bagio.BagWriter(tmp_path / "b") as w:
        w.write("/gt", msg, 5)
    (f,) = bagio.iter_labels(tmp_path / "b", "/gt")
    np.testing.assert_array_equal(f.image, label)


def test_prompt_markers(tmp_path):
    store = bagio.typestore()
    Marker = store.types[bagio.MARKER]
    Point = store.types["geometry_msgs/msg/Point"]
    Color = store.types["std_msgs/msg/ColorRGBA"]
    Duration = store.types["builtin_interfaces/msg/Duration"]

    def marker(oid, action, kind, pts, stamp, ns=""):
        h = bagio._header_msg(store, bagio.Header(*stamp))
        return Marker(header=h, ns=ns, id=oid, type=kind, action=action,
                      position=Point(x=0.0, y=0.0, z=0.0), scale=1.0,
                      outline_color=Color(r=0.0, g=0.0, b=0.0, a=0.0), filled=0,
                      fill_color=Color(r=0.0, g=0.0, b=0.0, a=0.0), lifetime=Duration(sec=0, nanosec=0),
                      points=[Point(x=float(x), y=float(y), z=float(z)) for x, y, z in pts],
                      outline_colors=[])

    with bagio.BagWriter(tmp_path / "b", storage="mcap") as w:
        w.write("/p", marker(1, 0, 4, [(10, 20, 1), (30, 40, 0)], (5, 0), "cat"), 1)
        w.write("/p", marker(2, 0, 1, [(50, 60, 0), (5, 6, 0)], (5, 0)), 2)
        w.write("/p", marker(3, 0, 3, [(1, 2, 0), (3, 4, 0)], (0, 0)), 3)
        w.write("/p", marker(1, 1, 4, [], (6, 0)), 4)
    got = bagio.read_prompt_markers(tmp_path / "b", "/p")
    assert [(m.object_id, m.action, m.label) for m in got] == [(1, 0, "cat"), (2, 0, ""), (3, 0, ""), (1, 1, "")]
    np.testing.assert_array_equal(got[0].points, [[10, 20], [30, 40]])
    np.testing.assert_array_equal(got[0].labels, [1, 0])
    np.testing.assert_array_equal(got[1].box, [5, 6, 50, 60])  # corners in any order
    np.testing.assert_array_equal(got[2].box, [1, 2, 3, 4])
    assert got[2].header.stamp_ns == 0 and got[2].log_time == 3


def test_bad_bag_and_topic_errors(tmp_path):
    with pytest.raises(bagio.BagError, match="no such bag"):
        bagio.bag_topics(tmp_path / "missing")
    with bagio.BagWriter(tmp_path / "b") as w:
        w.write("/img", bagio.image_message(np.zeros((4, 4), np.uint8), "mono8", bagio.Header(0, 1)), 1)
    with pytest.raises(bagio.BagError, match="no topic '/nope'.*'?/img"):
        list(bagio.iter_images(tmp_path / "b", "/nope"))
    with pytest.raises(bagio.BagError, match="exists already"):
        bagio.BagWriter(tmp_path / "b")


@pytest.mark.parametrize("pillow", [True, False])
def test_indexed_label_png_round_trip(tmp_path, monkeypatch, pillow):
    if not pillow:
        monkeypatch.setitem(sys.modules, "PIL", None)  # the OpenCV + PLTE fallback
    label = np.zeros((30, 40), np.uint16)
    label[5:15, 5:20] = 1
    label[10:25, 18:35] = 2
    label[0, 0] = 255
    labelpng.write_label_png(tmp_path / "a.png", label)
    np.testing.assert_array_equal(labelpng.read_label_png(tmp_path / "a.png"), label)
    cv2.imwrite(str(tmp_path / "g.png"), (label * 100).astype(np.uint16))  # 16-bit gray
    np.testing.assert_array_equal(labelpng.read_label_png(tmp_path / "g.png"), label * 100)

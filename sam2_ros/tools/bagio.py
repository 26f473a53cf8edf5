"""Reading and writing rosbag2 files without ROS, with the ``rosbags`` library.

Both storage formats (``sqlite3`` and ``mcap``) are read and written. Messages are
(de)serialized with a ``rosbags`` typestore of ROS 2 message definitions (Humble by default;
``sensor_msgs/Image``, ``CompressedImage`` and ``visualization_msgs/ImageMarker`` are the same
in Humble, Jazzy and Kilted).

* :func:`iter_images`: ``sensor_msgs/Image`` or ``CompressedImage`` of a topic -> RGB frames
  with their header (rgb8, bgr8, rgba8, bgra8, mono8, mono16, JPEG and PNG).
* :func:`iter_labels`: label images (mono8 / mono16 / 16UC1 / 8UC1, or PNG compressed).
* :func:`read_prompt_markers`: ``visualization_msgs/ImageMarker`` prompts as the node reads
  them on ``~/prompt`` (README.md, "The tracker node").
* :func:`iter_messages`: the messages of a topic as they are (depth images, camera_info).
* :class:`BagWriter`: new bag with Image / CompressedImage topics stamped as the source.

No rclpy, no torch.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Iterator

import cv2
import numpy as np

__all__ = ['BagError', 'Header', 'ImageFrame', 'MarkerPrompt', 'BagWriter', 'bag_topics',
           'iter_images', 'iter_labels', 'iter_messages', 'read_prompt_markers', 'decode_image', 'decode_label',
           'image_message', 'compressed_message', 'typestore']

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
MARKER = 'visualization_msgs/msg/ImageMarker'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
IMAGE_TYPES = (IMAGE, COMPRESSED)

# ImageMarker constants (visualization_msgs/msg/ImageMarker)
MARKER_ADD, MARKER_REMOVE = 0, 1
MARKER_LINE_STRIP, MARKER_POLYGON, MARKER_POINTS = 1, 3, 4


class BagError(ValueError):
    """A bag, topic or message that cannot be used (the message says which and why)."""


@dataclasses.dataclass(frozen=True)
class Header:
    sec: int
    nanosec: int
    frame_id: str = ''

    @property
    def stamp_ns(self) -> int:
        return self.sec * 1_000_000_000 + self.nanosec

    @property
    def stamp(self) -> tuple[int, int]:
        return self.sec, self.nanosec


@dataclasses.dataclass
class ImageFrame:
    index: int            # position in the topic (0, 1, ...)
    header: Header
    log_time: int         # bag receive time, ns
    image: np.ndarray     # H x W x 3 uint8 RGB (or a label image from iter_labels)


@dataclasses.dataclass
class MarkerPrompt:
    """A recorded ``~/prompt`` ImageMarker."""

    header: Header
    log_time: int
    object_id: int
    action: int                        # MARKER_ADD or MARKER_REMOVE
    points: np.ndarray | None = None   # (K, 2) float32
    labels: np.ndarray | None = None   # (K,) int32
    box: np.ndarray | None = None      # (4,) float32
    label: str = ''                    # ns: optional class label


_TYPESTORES: dict = {}


def typestore(distro: str = 'humble'):
    """The rosbags typestore of a ROS 2 distro (humble, jazzy, kilted)."""
    from rosbags.typesys import Stores, get_typestore

    if distro not in _TYPESTORES:
        try:
            store = Stores[f'ROS2_{distro.upper()}']
        except KeyError:
            raise BagError(f'unknown ROS 2 distro {distro!r} for message definitions') from None
        _TYPESTORES[distro] = get_typestore(store)
    return _TYPESTORES[distro]


# --- reading ----------------------------------------------------------------------------------

def _check_bag(path) -> pathlib.Path:
    path = pathlib.Path(path)
    if not path.exists():
        raise BagError(f'no such bag: {path}')
    if path.is_file():  # a single .db3 / .mcap file: rosbags wants the folder with metadata.yaml
        path = path.parent
    if not (path / 'metadata.yaml').is_file():
        raise BagError(f'{path} is not a rosbag2 folder (no metadata.yaml); '
                       'rosbag2 bags are folders written by `ros2 bag record`')
    return path


def _reader(path):
    from rosbags.rosbag2 import Reader

    path = _check_bag(path)
    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:  # rosbags raises its own ReaderError and others
        raise BagError(f'cannot open bag {path}: {error}') from None
    return reader


def bag_topics(path) -> dict[str, tuple[str, int]]:
    """``{topic: (message type, message count)}`` of a bag."""
    reader = _reader(path)
    try:
        out: dict[str, tuple[str, int]] = {}
        for conn in reader.connections:
            _, count = out.get(conn.topic, (conn.msgtype, 0))
            out[conn.topic] = (conn.msgtype, count + conn.msgcount)
        return out
    finally:
        reader.close()


def _connections(reader, topic: str, allowed: tuple[str, ...], what: str):
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        topics = sorted({f'{c.topic} ({c.msgtype})' for c in reader.connections})
        raise BagError(f'no topic {topic!r} in the bag; it has: {", ".join(topics) or "none"}')
    bad = [c.msgtype for c in conns if c.msgtype not in allowed]
    if bad:
        raise BagError(f'topic {topic!r} holds {bad[0]}; {what} must be '
                       f'{" or ".join(allowed)}')
    return conns


def _messages(path, topic: str, allowed: tuple[str, ...], what: str, distro: str):
    """Yield (msgtype, log_time, message) of a topic, in log-time order."""
    reader = _reader(path)
    store = typestore(distro)
    try:
        conns = _connections(reader, topic, allowed, what)
        for conn, log_time, raw in reader.messages(connections=conns):
            yield conn.msgtype, log_time, store.deserialize_cdr(raw, conn.msgtype)
    finally:
        reader.close()


def _header(msg) -> Header:
    return Header(int(msg.header.stamp.sec), int(msg.header.stamp.nanosec), str(msg.header.frame_id))


def topic_count(path, topic: str) -> int:
    return bag_topics(path).get(topic, ('', 0))[1]


def _raw_array(msg) -> np.ndarray:
    """The pixels of a sensor_msgs/Image as an H x W (x C) array of its own depth."""
    enc = msg.encoding.lower()
    channels = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, '8uc1': 1,
                'mono16': 1, '16uc1': 1, '8uc3': 3, '8uc4': 4}.get(enc)
    if channels is None:
        raise BagError(f'image encoding {msg.encoding!r} is not supported '
                       '(rgb8, bgr8, rgba8, bgra8, mono8, mono16, 8UC1, 16UC1)')
    depth = 2 if enc in ('mono16', '16uc1') else 1
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < w * channels * depth or data.size < h * step:
        raise BagError(f'image {w}x{h} {msg.encoding}: step {step} and {data.size} data bytes '
                       'do not fit')
    rows = data[:h * step].reshape(h, step)[:, :w * channels * depth]
    if depth == 2:
        dtype = np.dtype('>u2' if msg.is_bigendian else '<u2')
        arr = rows.copy().view(dtype).astype(np.uint16).reshape(h, w)
    else:
        arr = rows.reshape(h, w, channels) if channels > 1 else rows.reshape(h, w)
    return arr


def decode_image(msg, msgtype: str = IMAGE) -> np.ndarray:
    """H x W x 3 uint8 RGB of an Image or CompressedImage message (mono16 scaled to 8 bits)."""
    if msgtype == COMPRESSED:
        buf = np.asarray(msg.data, dtype=np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if bgr is None:
            raise BagError(f'cannot decode a compressed image (format {msg.format!r})')
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    arr = _raw_array(msg)
    enc = msg.encoding.lower()
    if enc in ('mono16', '16uc1'):
        return np.repeat((arr >> 8).astype(np.uint8)[..., None], 3, axis=2)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if enc in ('rgb8', '8uc3'):
        return arr.copy()  # writable, not a view of the message buffer
    if enc == 'bgr8':
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if enc in ('rgba8', '8uc4'):
        return arr[..., :3].copy()
    return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)  # bgra8


def decode_label(msg, msgtype: str = IMAGE) -> np.ndarray:
    """H x W uint16 label image (pixel = object id) of a mono8/mono16 (or PNG) message."""
    if msgtype == COMPRESSED:
        arr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None or arr.ndim != 2:
            raise BagError(f'a compressed label image must be a single-channel PNG, got {msg.format!r}')
        return arr.astype(np.uint16)
    enc = msg.encoding.lower()
    if enc not in ('mono8', 'mono16', '8uc1', '16uc1'):
        raise BagError(f'label images must be mono8 or mono16 (pixel = object id), got {msg.encoding!r}')
    return _raw_array(msg).astype(np.uint16)


def iter_images(path, topic: str, max_frames: int | None = None, decode: bool = True,
                distro: str = 'humble') -> Iterator[ImageFrame]:
    """The frames of an Image or CompressedImage topic in bag order, as RGB (``decode=False``:
    ``image`` is None, for a cheap pass over the headers)."""
    for index, (msgtype, log_time, msg) in enumerate(
            _messages(path, topic, IMAGE_TYPES, 'the image topic', distro)):
        if max_frames is not None and index >= max_frames:
            return
        image = decode_image(msg, msgtype) if decode else None
        yield ImageFrame(index, _header(msg), log_time, image)


def iter_messages(path, topic: str, allowed: tuple[str, ...], what: str,
                  distro: str = 'humble') -> Iterator[tuple[int, Header, int, object]]:
    """``(index, header, log_time, message)`` of a topic in bag order, the messages as rosbags
    reads them (fields as in ROS, arrays as numpy); ``allowed``: the message types the topic may
    hold, ``what``: its name in errors (e.g. 'the depth topic')."""
    for index, (_, log_time, msg) in enumerate(_messages(path, topic, allowed, what, distro)):
        yield index, _header(msg), log_time, msg


def iter_labels(path, topic: str, distro: str = 'humble') -> Iterator[ImageFrame]:
    """Label images (H x W uint16) of a ground-truth topic, in bag order."""
    for index, (msgtype, log_time, msg) in enumerate(
            _messages(path, topic, IMAGE_TYPES, 'the ground-truth topic', distro)):
        yield ImageFrame(index, _header(msg), log_time, decode_label(msg, msgtype))


def read_prompt_markers(path, topic: str, distro: str = 'humble') -> list[MarkerPrompt]:
    """Recorded ``~/prompt`` ImageMarkers as prompts (README.md, "The tracker node": id = object id; action ADD
    or REMOVE; POINTS with z = label; LINE_STRIP or POLYGON with 2 points = a box)."""
    out = []
    for _, log_time, msg in _messages(path, topic, (MARKER,), 'the prompt topic', distro):
        where = f'ImageMarker on {topic} at log time {log_time}'
        oid = int(msg.id)
        action = int(msg.action)
        if not 1 <= oid <= 65535:
            raise BagError(f'{where}: id {oid} is not an object id (1..65535)')
        prompt = MarkerPrompt(_header(msg), log_time, oid, action, label=str(msg.ns))
        if action == MARKER_REMOVE:
            out.append(prompt)
            continue
        if action != MARKER_ADD:
            raise BagError(f'{where}: action {action} is neither ADD (0) nor REMOVE (1)')
        pts = np.array([[p.x, p.y] for p in msg.points], np.float32).reshape(-1, 2)
        if int(msg.type) == MARKER_POINTS:
            if len(pts) == 0:
                raise BagError(f'{where}: POINTS marker without points')
            labels = np.array([p.z for p in msg.points], np.float64)
            if not np.isin(labels, (0.0, 1.0)).all():
                raise BagError(f'{where}: point labels (z) must be 1 or 0, got {labels.tolist()}')
            prompt.points, prompt.labels = pts, labels.astype(np.int32)
        elif int(msg.type) in (MARKER_LINE_STRIP, MARKER_POLYGON):
            if len(pts) != 2:
                raise BagError(f'{where}: a box is a LINE_STRIP or POLYGON of exactly 2 points, '
                               f'got {len(pts)}')
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            prompt.box = np.concatenate([lo, hi]).astype(np.float32)
        else:
            raise BagError(f'{where}: marker type {int(msg.type)} is not POINTS (4), '
                           'LINE_STRIP (1) or POLYGON (3)')
        out.append(prompt)
    return out


def storage_of(path) -> str:
    """'sqlite3' or 'mcap'."""
    import yaml

    meta = yaml.safe_load((_check_bag(path) / 'metadata.yaml').read_text())
    return meta.get('rosbag2_bagfile_information', {}).get('storage_identifier', 'sqlite3')


# --- writing ----------------------------------------------------------------------------------

def _header_msg(store, header: Header):
    Time = store.types['builtin_interfaces/msg/Time']
    Hdr = store.types['std_msgs/msg/Header']
    return Hdr(stamp=Time(sec=int(header.sec), nanosec=int(header.nanosec)), frame_id=header.frame_id)


def image_message(array: np.ndarray, encoding: str, header: Header, distro: str = 'humble'):
    """A sensor_msgs/Image of ``array`` (H x W x C uint8 in ``encoding``'s channel order, or
    H x W uint8 / uint16 for mono8 / mono16, little-endian)."""
    store = typestore(distro)
    arr = np.ascontiguousarray(array)
    if encoding in ('mono16', '16UC1'):
        arr = arr.astype('<u2')
    h, w = arr.shape[:2]
    data = arr.view(np.uint8).reshape(-1)
    return store.types[IMAGE](header=_header_msg(store, header), height=h, width=w,
                              encoding=encoding, is_bigendian=0, step=data.size // h, data=data)


def compressed_message(rgb: np.ndarray, header: Header, fmt: str = 'jpeg', quality: int = 95,
                       distro: str = 'humble'):
    """A sensor_msgs/CompressedImage of an RGB frame, as image_transport's compressed plugin
    writes it (format ``"rgb8; jpeg compressed bgr8"``)."""
    store = typestore(distro)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt == 'jpeg':
        ok, buf = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == 'png':
        ok, buf = cv2.imencode('.png', bgr)
    else:
        raise BagError(f'compressed format must be jpeg or png, got {fmt!r}')
    if not ok:
        raise BagError(f'OpenCV could not encode a {fmt} image')
    return store.types[COMPRESSED](header=_header_msg(store, header),
                                   format=f'rgb8; {fmt} compressed bgr8',
                                   data=np.asarray(buf, np.uint8).reshape(-1))


class BagWriter:
    """A new rosbag2 (the folder must not exist)::

        with BagWriter(out, storage='mcap') as bag:
            bag.write(topic, msg, log_time)          # msg: a rosbags message object
    """

    def __init__(self, path, storage: str = 'sqlite3', distro: str = 'humble'):
        from rosbags.rosbag2 import StoragePlugin, Writer

        path = pathlib.Path(path)
        if path.exists():
            raise BagError(f'output bag {path} exists already; remove it or choose another path')
        plugin = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}.get(storage)
        if plugin is None:
            raise BagError(f'storage must be sqlite3 or mcap, got {storage!r}')
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.distro = distro
        self._store = typestore(distro)
        self._writer = Writer(path, version=8, storage_plugin=plugin)
        self._conns: dict[str, object] = {}

    def __enter__(self) -> 'BagWriter':
        self._writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def connection(self, topic: str, msgtype: str):
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self._store)
            self._conns[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f'topic {topic} is {conn.msgtype}, cannot write {msgtype} to it')
        return conn

    def write(self, topic: str, msg, log_time: int) -> None:
        msgtype = msg.__msgtype__
        conn = self.connection(topic, msgtype)
        self._writer.write(conn, int(log_time), self._store.serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, data: bytes, log_time: int) -> None:
        """Copy an already serialized (CDR) message."""
        self._writer.write(self.connection(topic, msgtype), int(log_time), data)


def copy_topic(src, topic: str, writer: BagWriter, max_messages: int | None = None) -> int:
    """Copy a topic's serialized messages into ``writer`` (same topic, type, log times)."""
    reader = _reader(src)
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        count = 0
        for conn, log_time, raw in reader.messages(connections=conns):
            if max_messages is not None and count >= max_messages:
                break
            writer.write_raw(topic, conn.msgtype, bytes(raw), log_time)
            count += 1
        return count
    finally:
        reader.close()

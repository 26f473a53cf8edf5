"""Live mode: play a rosbag into the running sam2_tracker node over ROS 2 and record its answers.

::

    python -m sam2_ros.tools.live --bag BAG --image-topic /camera/image_raw --prompts prompts.yaml \\
        --node-ns /sam2_tracker --out OUT [--rate 1.0] [--clock] [--gt-topic /gt/labels]
    python -m sam2_ros.tools.live --bag BAG --image-topic /camera/image_raw --prompts prompts.yaml \\
        --out OUT --start-node --checkpoint sam2.1_hiera_tiny.pt --model tiny --image-size 512 --device cpu

Unlike ``sam2_evaluate`` (which calls the tracker in-process, frame by frame), this measures the
node as deployed: the bag's image messages go out unchanged (their serialized bytes, as
``ros2 bag play`` sends them) on the node's real image topic at the bag's timing (log times,
scaled by ``--rate``), with ``/clock`` (rosgraph_msgs/Clock: the bag's log time, at
``--clock-hz`` and at every frame) for a node running with ``use_sim_time: true``. The prompts
file's prompts (or the ImageMarkers recorded on ``--prompt-topic``) go to ``<node>/prompt`` and
``<node>/prompt_mask`` stamped with their frame's stamp, just ahead of their frame (never more
than a few frames ahead of what the node has answered, so that ``prompt_buffer`` does not expire
them while frames queue up with ``frame_policy: all``). The tool records what the node publishes
on ``<node>/masks`` (and ``<node>/overlay`` with ``--overlay``) and its ``/diagnostics``.

``--start-node`` starts the node itself (``python -m sam2_ros --ros-args -p use_sim_time:=true
...`` with its image topic remapped to the bag's topic, reliable image QoS) and stops it with
SIGINT at the end; otherwise the node ``--node-ns`` must be running (same ROS_DOMAIN_ID), and
its image topic is found from the ROS graph (or given with ``--node-image-topic``).

Writes under OUT:

* ``bag/``: a rosbag2 of what the node published, as published (headers untouched: the input
  image's stamp and frame_id), logged at the playback clock of its arrival (what
  ``ros2 bag record --use-sim-time`` would write);
* ``live_report.json``: frames sent, masks received, dropped (sent - received), end-to-end
  latency (arrival of the masks - publication of the image, matched by header stamp; wall
  clock) p50 / p95 / max, the node's mode (frame_policy, use_sim_time, QoS, model...), its last
  diagnostics, the /clock published and the node's clock as seen in its diagnostics, and J&F
  (evaluate.py's code) on the answered frames when ``--gt-topic`` is given;
* ``per_frame.csv`` (stamp, sent, answered, latency) and ``latency_hist.png``; ``node.log``
  with ``--start-node``.

Exit status: 0 done, 2 bad input, 1 no node / the node failed.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import pathlib
import platform
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from sam2_ros.tools import bagio, metrics, plots
from sam2_ros.tools.evaluate import (MODELS, EvaluationError, GroundTruth, _cpu_name, _fmt_stamp,
                                     checkpoint_identity,
                                     _percentiles, schedule_prompts)
from sam2_ros.tools.prompts_file import PromptsFileError, load_prompts
from sam2_ros.tools.cli import HelpFormatter

__all__ = ['LiveError', 'build_parser', 'run', 'main']

PROMPT_LEAD = 3  # frame_policy all: send a frame's prompts when at most this many earlier
                 # frames are unanswered (the node's prompt_buffer is 8 by default)
NODE_PARAMS = ('frame_policy', 'use_sim_time', 'image_transport', 'image_qos', 'qos_depth',
               'prompt_buffer', 'model', 'image_size', 'device', 'dtype', 'encoder_backend',
               'checkpoint')


class LiveError(RuntimeError):
    """An error the user can act on; ``code`` is the exit status (2 bad input, 1 node)."""

    def __init__(self, text: str, code: int = 2):
        super().__init__(text)
        self.code = code


def rate_hz(count: int, span_s: float) -> float | None:
    """Frames per second of ``count`` frames whose first and last are ``span_s`` apart.

    ``count - 1`` intervals, not ``count``: 6 frames of a 25 fps bag span 0.2 s, and 6 / 0.2
    would report 30 fps. None for fewer than 2 frames or no time between them.
    """
    if count < 2 or span_s <= 0:
        return None
    return (count - 1) / span_s


def _log(args, text: str) -> None:
    if not args.quiet:
        print(f'[sam2_live] {text}', flush=True)


def _split_fqn(fqn: str) -> tuple[str, str]:
    fqn = '/' + fqn.strip('/')
    ns, _, name = fqn.rpartition('/')
    if not name:
        raise LiveError(f'--node-ns {fqn!r} is not a node name (e.g. /sam2_tracker)')
    return ns or '/', name


# --- the bag ------------------------------------------------------------------------------------

def _frames(args) -> tuple[list[bagio.ImageFrame], str, int]:
    """Headers of the image topic (no decoding), its message type and its message count."""
    try:
        topics = bagio.bag_topics(args.bag)
        if args.image_topic not in topics:
            known = ', '.join(f'{t} ({m})' for t, (m, _) in sorted(topics.items())) or 'none'
            raise LiveError(f'no topic {args.image_topic!r} in the bag; it has: {known}')
        msgtype, count = topics[args.image_topic]
        frames = list(bagio.iter_images(args.bag, args.image_topic, args.max_frames, decode=False))
    except bagio.BagError as error:
        raise LiveError(str(error)) from None
    if not frames:
        raise LiveError(f'no images on {args.image_topic}')
    return frames, msgtype, count


def _raw_messages(bag, topic: str, limit: int):
    """(serialized CDR bytes, log time) of a topic in bag order: what ``ros2 bag play`` sends."""
    reader = bagio._reader(bag)
    try:
        conns = bagio._connections(reader, topic, bagio.IMAGE_TYPES, 'the image topic')
        for n, (_, log_time, raw) in enumerate(reader.messages(connections=conns)):
            if n >= limit:
                return
            yield bytes(raw), int(log_time)
    finally:
        reader.close()


# --- the node process ---------------------------------------------------------------------------

class NodeProcess:
    """``python -m sam2_ros --ros-args ...`` started by the tool, its output in OUT/node.log."""

    def __init__(self, args, ns: str, name: str, image_topic: str, compressed: bool, log_path):
        ros = ['--ros-args', '-r', f'__node:={name}']
        if ns != '/':
            ros += ['-r', f'__ns:={ns}']
        ros += ['-r', f'{"image/compressed" if compressed else "image"}:={image_topic}']
        params = [f'use_sim_time:={"true" if args.clock else "false"}', f'model:={args.model}',
                  f'image_size:={args.image_size}', f'device:={args.device}',
                  'image_qos:=reliable', 'qos_depth:=10']
        if compressed:
            params.append('image_transport:=compressed')
        if args.checkpoint:
            params.append(f'checkpoint:={pathlib.Path(args.checkpoint).resolve()}')
        if args.frame_policy:
            params.append(f'frame_policy:={args.frame_policy}')
        params += args.node_param
        for p in params:
            ros += ['-p', p]
        self.cmd = [sys.executable, '-m', 'sam2_ros'] + ros
        self.log_path = pathlib.Path(log_path)
        env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0')
        self._log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def tail(self, lines: int = 20) -> str:
        try:
            return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-lines:])
        except OSError:
            return ''

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise LiveError(f'the node exited with status {self.proc.returncode} '
                            f'(log {self.log_path}):\n{self.tail()}', code=1)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# --- recording ------------------------------------------------------------------------------------

class Recorder:
    """Records the node's outputs: subscription callbacks only time-stamp and queue the raw bytes;
    a thread writes them to the output bag and matches the masks to the frames sent."""

    def __init__(self, path, storage: str, fqn: str, playclock, index_of: dict[int, int]):
        self.writer = None  # opened in the thread (sqlite3 connections belong to one thread)
        self._path, self._storage = path, storage
        self.fqn = fqn
        self.playclock = playclock  # wall (monotonic) time -> playback clock, ns
        self.index_of = index_of    # image stamp ns -> frame index
        self.store = bagio.typestore()
        self.lock = threading.Lock()
        self.received: dict[int, float] = {}   # image stamp ns -> arrival (monotonic), first one
        self.last_answered = -1                # highest frame index answered
        self.last_arrival = None
        self.unmatched = 0
        self.repeated = 0
        self.counts: dict[str, int] = {}
        self.diagnostics: list[dict] = []      # the node's own: stamp ns and values
        self.errors: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._work, name='sam2_live_recorder', daemon=True)
        self._thread.start()
        self._opened.wait()
        if self.writer is None:
            raise LiveError(f'cannot write the output bag {path}: {self.errors[-1]}')

    def callback(self, topic: str, msgtype: str):
        def on_message(raw: bytes) -> None:
            self._queue.put((topic, msgtype, raw, time.monotonic()))
        return on_message

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        try:
            self.writer = bagio.BagWriter(self._path, storage=self._storage).__enter__()
        except Exception as error:  # noqa: BLE001 - reported by __init__
            self.errors.append(f'{type(error).__name__}: {error}')
            return
        finally:
            self._opened.set()
        try:
            self._loop()
        finally:
            self.writer.close()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, msgtype, raw, arrival = item
            try:
                self._record(topic, msgtype, raw, arrival)
            except Exception as error:  # noqa: BLE001 - keep recording; report it
                self.errors.append(f'{topic}: {type(error).__name__}: {error}')

    def _record(self, topic, msgtype, raw, arrival) -> None:
        msg = self.store.deserialize_cdr(raw, msgtype)
        if msgtype == 'diagnostic_msgs/msg/DiagnosticArray':
            mine = [s for s in msg.status if s.name.startswith(self.fqn + ':')]
            if not mine:
                return  # another node's diagnostics
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            with self.lock:
                self.diagnostics.append({'stamp_ns': stamp, 'arrival': arrival, 'level': int(mine[0].level),
                                         'message': str(mine[0].message),
                                         'values': {kv.key: kv.value for kv in mine[0].values}})
        self.writer.write_raw(topic, msgtype, raw, self.playclock(arrival))
        with self.lock:
            self.counts[topic] = self.counts.get(topic, 0) + 1
            if topic != self.fqn + '/masks':
                return
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            index = self.index_of.get(stamp)
            if index is None:
                self.unmatched += 1
            elif stamp in self.received:
                self.repeated += 1
            else:
                self.received[stamp] = arrival
                self.last_answered = max(self.last_answered, index)
            self.last_arrival = arrival

    def state(self) -> tuple[int, int, float | None]:
        with self.lock:
            return len(self.received), self.last_answered, self.last_arrival


# --- the run --------------------------------------------------------------------------------------

def _prompt_groups(args, frames, count):
    """{frame index: [(kind, message)]} of the prompts, and the schedule (for J&F)."""
    from builtin_interfaces.msg import Time
    from visualization_msgs.msg import ImageMarker

    from sam2_ros.tools.play_clip import PlayError, prompt_messages

    if args.prompts is None and args.prompt_topic is None:
        return {}, {}, []
    try:
        specs = load_prompts(args.prompts) if args.prompts is not None else []
        markers = bagio.read_prompt_markers(args.bag, args.prompt_topic) if args.prompt_topic else []
        schedule, warnings = schedule_prompts(specs, markers, frames, len(frames) < count)
    except (PromptsFileError, bagio.BagError, EvaluationError) as error:
        raise LiveError(str(error)) from None
    shape = next(bagio.iter_images(args.bag, args.image_topic, 1)).image.shape
    groups = {}
    for index, actions in sorted(schedule.items()):
        h = frames[index].header
        stamp = Time(sec=h.sec, nanosec=h.nanosec)
        msgs = []
        for a in actions:
            if a.kind == 'remove':
                m = ImageMarker(id=a.object_id, action=ImageMarker.REMOVE)
                m.header.stamp = stamp
                msgs.append(('marker', m))
                continue
            try:
                a.spec.to_prompt(shape)  # checks the coordinates against the frame size
                msgs += prompt_messages(a.spec, stamp, shape)
            except (PromptsFileError, PlayError) as error:
                raise LiveError(f'frame {index}: {error}') from None
        groups[index] = msgs
    return groups, schedule, warnings


def _jf(args, out_bag, mask_topic, frames, schedule, gt) -> dict:
    """J&F of the masks the node answered (evaluate.py's metrics), per object and overall."""
    first_frame = {}
    for index in sorted(schedule):
        for a in schedule[index]:
            if a.kind == 'prompt':
                first_frame.setdefault(a.object_id, index)
    by_stamp = {f.header.stamp_ns: f.index for f in frames}
    per_obj = {oid: {'frames': [], 'J': [], 'F': []} for oid in sorted(first_frame)}
    for msg in bagio.iter_labels(out_bag, mask_topic):
        t = by_stamp.get(msg.header.stamp_ns)
        truth = gt.get(t) if t is not None else None
        if truth is None:
            continue
        if truth.shape != msg.image.shape:
            raise LiveError(f'ground truth of frame {t} is {truth.shape[1]}x{truth.shape[0]}, the '
                            f'masks are {msg.image.shape[1]}x{msg.image.shape[0]}')
        for oid, d in per_obj.items():
            if first_frame[oid] <= t:
                pred, g = msg.image == oid, truth == oid
                d['frames'].append(t)
                d['J'].append(metrics.jaccard(pred, g))
                d['F'].append(metrics.f_measure(pred, g, args.bound_th))
    objects = {}
    for oid, d in per_obj.items():
        j, f = metrics.summarize(d['J']), metrics.summarize(d['F'])
        objects[str(oid)] = {'first_prompt_frame': first_frame[oid], 'frames_evaluated': len(d['frames']),
                             'J_mean': j['mean'], 'F_mean': f['mean'],
                             'JF_mean': None if j['mean'] is None else (j['mean'] + f['mean']) / 2}
    scored = [o for o in objects.values() if o['J_mean'] is not None]
    j_mean = float(np.mean([o['J_mean'] for o in scored])) if scored else None
    f_mean = float(np.mean([o['F_mean'] for o in scored])) if scored else None
    return {'JF_mean': None if j_mean is None else (j_mean + f_mean) / 2, 'J_mean': j_mean,
            'F_mean': f_mean, 'objects': objects, 'bound_th': args.bound_th,
            'ground_truth': {'source': gt.source, 'frames': len(gt)},
            'note': 'on the frames the node answered (dropped frames are not scored)'}


def _wait(cond, timeout: float, check=None, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check is not None:
            check()
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def _node_image_topic(node, ns, name, fqn, msgtype, timeout, check) -> str:
    """The image topic the node subscribes to (of the bag's message type), from the ROS graph."""
    found = []

    def look() -> bool:
        try:
            subs = node.get_subscriber_names_and_types_by_node(name, ns)
        except Exception:  # noqa: BLE001 - not discovered yet
            return False
        found[:] = [t for t, types in subs if msgtype in types and t != f'{fqn}/prompt_mask']
        return bool(found)

    if not _wait(look, timeout, check):
        raise LiveError(f'no node {fqn} subscribing to a {msgtype} topic within {timeout:.0f} s (is it '
                        'running and active, with the same ROS_DOMAIN_ID? for a CompressedImage bag '
                        'it needs image_transport: compressed)', code=1)
    if len(found) > 1:
        raise LiveError(f'{fqn} subscribes to several {msgtype} topics ({", ".join(found)}): '
                        'choose one with --node-image-topic')
    return found[0]


def _node_mode(node, fqn, timeout=10.0) -> dict:
    from rclpy.parameter import parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(node, fqn)
    if not client.wait_for_services(timeout_sec=timeout):
        return {}
    future = client.get_parameters(list(NODE_PARAMS))
    if not _wait(future.done, timeout):
        return {}
    values = future.result().values
    return {k: parameter_value_to_python(v) for k, v in zip(NODE_PARAMS, values)}


def _set_frame_policy(node, fqn, policy, timeout=10.0) -> None:
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(node, fqn)
    if not client.wait_for_services(timeout_sec=timeout):
        raise LiveError(f'{fqn} has no parameter services', code=1)
    future = client.set_parameters([Parameter('frame_policy', value=policy)])
    if not _wait(future.done, timeout) or not future.result().results[0].successful:
        reason = future.result().results[0].reason if future.done() else 'no answer'
        raise LiveError(f'could not set frame_policy:={policy} on {fqn}: {reason}', code=1)


def run(args) -> dict:
    """Play the bag into the node and record its answers (``args`` from :func:`build_parser`)."""
    if args.rate <= 0:
        raise LiveError('--rate must be > 0')
    if args.clock_hz <= 0:
        raise LiveError('--clock-hz must be > 0')
    if args.max_frames is not None and args.max_frames < 1:
        raise LiveError('--max-frames must be >= 1')
    if args.start_node and (args.image_size < 64 or args.image_size % 32):
        raise LiveError('--image-size must be a multiple of 32, at least 64')
    if args.clock is None:
        args.clock = bool(args.start_node)
    ns, name = _split_fqn(args.node_ns)
    fqn = (ns.rstrip('/') + '/' + name)
    frames, msgtype, count = _frames(args)
    compressed = msgtype == bagio.COMPRESSED
    index_of = {}
    duplicates = 0
    for f in frames:
        if f.header.stamp_ns in index_of:
            duplicates += 1
        else:
            index_of[f.header.stamp_ns] = f.index
    gt = None
    if args.gt_topic:
        try:
            gt = GroundTruth.from_topic(args.bag, args.gt_topic, frames)
        except (bagio.BagError, EvaluationError) as error:
            raise LiveError(str(error)) from None
    storage = bagio.storage_of(args.bag)
    out = pathlib.Path(args.out)
    out_bag = out / 'bag'
    if out_bag.exists():
        if not args.overwrite:
            raise LiveError(f'{out_bag} exists; remove it or pass --overwrite')
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CompressedImage, Image
        from visualization_msgs.msg import ImageMarker
        from diagnostic_msgs.msg import DiagnosticArray
    except ImportError as error:
        raise LiveError(f'live mode needs rclpy and the ROS 2 messages ({error}); install '
                        'requirements.txt or source a ROS 2 installation', code=1) from None
    groups, schedule, warnings = _prompt_groups(args, frames, count)
    for w in warnings:
        print(f'[sam2_live] warning: {w}', file=sys.stderr)
    if out_bag.exists():
        shutil.rmtree(out_bag)
    out.mkdir(parents=True, exist_ok=True)

    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    node_proc = None
    node = None
    spinning = [True]
    executor = None
    thread = None
    recorder = None
    report = {}
    try:
        node = rclpy.create_node(f'sam2_live_{os.getpid()}', context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)

        def spin():
            while spinning[0] and context.ok():
                executor.spin_once(timeout_sec=0.05)

        thread = threading.Thread(target=spin, name='sam2_live_spin', daemon=True)
        thread.start()
        check = None
        if args.start_node:
            node_topic = args.node_image_topic or args.image_topic
            node_proc = NodeProcess(args, ns, name, node_topic, compressed, out / 'node.log')
            check = node_proc.check_alive
            _log(args, f'started the node {fqn} (log {out / "node.log"}): ' + ' '.join(node_proc.cmd[1:]))
        _log(args, f'waiting for the node {fqn} ...')
        node_topic = args.node_image_topic or _node_image_topic(
            node, ns, name, fqn, msgtype, args.wait_node, check)
        image_pub = node.create_publisher(CompressedImage if compressed else Image, node_topic, reliable)
        marker_pub = node.create_publisher(ImageMarker, f'{fqn}/prompt', 10)
        mask_pub = node.create_publisher(Image, f'{fqn}/prompt_mask', 10)
        clock_pub = node.create_publisher(Clock, '/clock', 10) if args.clock else None
        kinds = {kind for msgs in groups.values() for kind, _ in msgs}
        mask_topic = f'{fqn}/masks'

        def ready():
            return (image_pub.get_subscription_count() > 0
                    and ('marker' not in kinds or marker_pub.get_subscription_count() > 0)
                    and ('mask' not in kinds or mask_pub.get_subscription_count() > 0)
                    and node.count_publishers(mask_topic) > 0)

        if not _wait(ready, args.wait_node, check):
            raise LiveError(f'the node {fqn} did not come up on {node_topic} within {args.wait_node:.0f} s',
                            code=1)
        if args.frame_policy and not args.start_node:
            _set_frame_policy(node, fqn, args.frame_policy)
        mode = _node_mode(node, fqn)
        if mode.get('use_sim_time') is False and args.clock:
            warnings.append(f'{fqn} does not use sim time (use_sim_time: false): /clock is ignored')
        if mode.get('use_sim_time') and not args.clock:
            warnings.append(f'{fqn} uses sim time but --no-clock: the node has no clock '
                            '(its diagnostics stop)')

        log0 = frames[0].log_time
        wall0 = [None]

        def playclock(wall: float) -> int:
            return log0 + int(round((wall - wall0[0]) * args.rate * 1e9)) if wall0[0] is not None else log0

        recorder = Recorder(out_bag, args.out_storage or storage, fqn, playclock, index_of)
        node.create_subscription(Image, mask_topic, recorder.callback(mask_topic, bagio.IMAGE),
                                 reliable, raw=True)
        if args.overlay:
            node.create_subscription(Image, f'{fqn}/overlay',
                                     recorder.callback(f'{fqn}/overlay', bagio.IMAGE), reliable, raw=True)
        node.create_subscription(DiagnosticArray, '/diagnostics',
                                 recorder.callback('/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray'),
                                 10, raw=True)
        time.sleep(0.5)  # let our subscriptions match the node's publishers both ways
        _log(args, f'playing {len(frames)} frames of {args.bag} ({msgtype}) on {node_topic} at rate '
                   f'{args.rate}{" with /clock" if args.clock else ""}; node mode: '
                   f'frame_policy {mode.get("frame_policy")}, use_sim_time {mode.get("use_sim_time")}')

        # --- playback
        clock_info = {'published': bool(args.clock), 'messages': 0, 'first_ns': None, 'last_ns': None}

        def publish_clock(ns_value: int) -> None:
            if clock_pub is None:
                return
            if clock_info['last_ns'] is not None and ns_value < clock_info['last_ns']:
                ns_value = clock_info['last_ns']  # never backwards
            from builtin_interfaces.msg import Time

            clock_pub.publish(Clock(clock=Time(sec=ns_value // 1_000_000_000, nanosec=ns_value % 1_000_000_000)))
            clock_info['messages'] += 1
            clock_info['first_ns'] = ns_value if clock_info['first_ns'] is None else clock_info['first_ns']
            clock_info['last_ns'] = ns_value

        pending = sorted(groups)
        # frame_policy all: frames queue up in the node, and a prompt stamped ahead of them expires
        # after prompt_buffer tracked frames; with latest at most one frame waits, so never hold
        hold = mode.get('frame_policy') != 'latest'
        prompt_log = []
        published = [0]

        def send_prompts(force: bool = False) -> None:
            while pending:
                i = pending[0]
                _, answered, _ = recorder.state()
                if published[0] < i:
                    return  # frame i-1 not out yet
                behind = min(published[0], i) - (answered + 1)  # frames ahead of i not answered yet
                if hold and behind > PROMPT_LEAD and not force:
                    return
                for kind, msg in groups[i]:
                    (marker_pub if kind == 'marker' else mask_pub).publish(msg)
                late = answered >= i
                prompt_log.append({'frame': i, 'messages': len(groups[i]), 'frames_published_before': published[0],
                                   'late': late})
                if late:
                    warnings.append(f'the prompts of frame {i} were sent after the node had answered it: '
                                    'the node applies them to a later frame')
                pending.pop(0)

        clock_at_last_frame = [None]
        send_prompts()
        if prompt_log:
            time.sleep(0.3)  # prompts and frames travel on different topics
        sent: dict[int, float] = {}
        start = time.monotonic()
        wall0[0] = start
        publish_clock(log0)
        next_tick = [start + 1.0 / args.clock_hz]

        def tick(now: float) -> None:
            """/clock at --clock-hz: the playback clock (past the bag's end while draining)."""
            if clock_pub is not None and now >= next_tick[0]:
                publish_clock(playclock(now))
                next_tick[0] = max(next_tick[0] + 1.0 / args.clock_hz, now)

        for i, (raw, log_time) in enumerate(_raw_messages(args.bag, args.image_topic, len(frames))):
            due = start + (log_time - log0) / 1e9 / args.rate
            while True:
                now = time.monotonic()
                send_prompts()
                if now >= due:
                    break
                tick(now)
                wake = min(due, next_tick[0] if clock_pub is not None else due, now + 0.01)
                time.sleep(max(0.0, wake - now))
            if check is not None:
                check()
            publish_clock(log_time)
            clock_at_last_frame[0] = clock_info['last_ns']
            stamp = frames[i].header.stamp_ns
            sent.setdefault(stamp, time.monotonic())
            image_pub.publish(raw)
            published[0] = i + 1
            send_prompts()
            if not args.quiet and (i + 1) % max(1, len(frames) // 10) == 0:
                got, _, _ = recorder.state()
                _log(args, f'{i + 1}/{len(frames)} frames sent, {got} answered')
        end_sent = time.monotonic()
        last_stamp = frames[-1].header.stamp_ns

        # --- drain: every frame answered, or the last one (later ones are all there is), or idle
        def drained():
            send_prompts(force=True)
            got, _, last_arrival = recorder.state()
            if got >= len(index_of) or last_stamp in recorder.received:
                return True
            idle_since = max(end_sent, last_arrival or 0.0)
            return time.monotonic() - idle_since > args.drain_timeout

        def check_and_tick():
            if check is not None:
                check()
            tick(time.monotonic())

        step = min(0.05, 1.0 / args.clock_hz)
        _wait(drained, 1e9, check_and_tick, step)
        # overlays still on their way, and the node's diagnostics after the last frame (its
        # timer runs on the /clock that keeps going meanwhile)
        mark = time.monotonic()
        _wait(lambda: any(d['arrival'] > mark + 0.2 for d in recorder.diagnostics),
              min(5.0, 0.5 + 1.2 / args.rate), check_and_tick, step)
        finished = time.monotonic()
        spinning[0] = False
        thread.join(5)
        recorder.close()

        # --- figures
        received = dict(recorder.received)
        rows, latencies = [], []
        for f in frames:
            s = f.header.stamp_ns
            row = {'frame': f.index, 'stamp': _fmt_stamp(s), 'log_time': f.log_time,
                   'sent_s': f'{sent[s] - start:.6f}' if s in sent else '', 'answered': int(s in received)}
            if s in received and s in sent and row['frame'] == index_of[s]:
                lat = (received[s] - sent[s]) * 1000.0
                latencies.append(lat)
                row['latency_ms'] = f'{lat:.3f}'
            rows.append(row)
        n_sent = len(frames)
        n_recv = len(received)
        out_span = (max(received.values()) - min(received.values())) if received else 0.0
        diags = [d for d in recorder.diagnostics if d['arrival'] >= start]  # during the playback
        bag_first, bag_last = frames[0].log_time, frames[-1].log_time
        diag_stamps = [d['stamp_ns'] for d in diags]
        node_clock = {'diagnostics': len(diags),
                      'first_stamp': _fmt_stamp(min(diag_stamps)) if diag_stamps else None,
                      'last_stamp': _fmt_stamp(max(diag_stamps)) if diag_stamps else None,
                      # sim time: the node's clock follows the playback clock (bag time), not the wall
                      'sim_time': bool(diag_stamps) and all(bag_first - 1_000_000_000 <= s <= playclock(finished)
                                                            + 1_000_000_000 for s in diag_stamps)}
        lat = _percentiles(latencies)
        report = {
            'tool': 'sam2_live',
            'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
            'machine': {'cpu': _cpu_name(), 'cpu_count': os.cpu_count(), 'python': platform.python_version()},
            'bag': str(args.bag), 'storage': storage, 'image_topic': args.image_topic,
            'message_type': msgtype, 'node': fqn, 'node_image_topic': node_topic,
            'started_node': bool(args.start_node), 'rate': args.rate,
            'prompts': str(args.prompts) if args.prompts else None, 'prompt_topic': args.prompt_topic,
            'prompts_sent': prompt_log,
            'frames_sent': n_sent, 'masks_received': n_recv, 'dropped': n_sent - n_recv,
            'drop_ratio': (n_sent - n_recv) / n_sent,
            'masks_unmatched': recorder.unmatched, 'masks_repeated': recorder.repeated,
            'duplicate_input_stamps': duplicates,
            'latency_ms': {k: lat[k] for k in ('p50', 'p95', 'max', 'mean', 'min')} if lat else {},
            'input_fps': rate_hz(n_sent, (bag_last - bag_first) / 1e9 / args.rate),
            'output_fps': rate_hz(n_recv, out_span),
            'playback_s': end_sent - start, 'wall_s': finished - start,
            'node_mode': mode,
            # the node's checkpoint by content, where this machine can read it (as sam2_evaluate)
            'node_checkpoint': checkpoint_identity(mode['checkpoint'])
            if mode.get('checkpoint') and os.path.isfile(mode['checkpoint']) else None,
            'node_diagnostics': diags[-1]['values'] if diags else None,
            'clock': {'published': clock_info['published'], 'messages': clock_info['messages'],
                      'first': _fmt_stamp(clock_info['first_ns']) if clock_info['first_ns'] is not None else None,
                      'last': _fmt_stamp(clock_info['last_ns']) if clock_info['last_ns'] is not None else None,
                      'bag_last': _fmt_stamp(bag_last), 'at_last_frame': _fmt_stamp(clock_at_last_frame[0])
                      if clock_at_last_frame[0] is not None else None},
            'node_clock': node_clock,
            'outputs': {'bag': str(out_bag), 'storage': args.out_storage or storage,
                        'topics': dict(sorted(recorder.counts.items()))},
            'warnings': warnings + recorder.errors,
        }
        if duplicates:
            report['warnings'].append(f'{duplicates} input frame(s) repeat an earlier stamp: only the first '
                                      'of each stamp is matched')
        if gt is not None:
            report.update(_jf(args, out_bag, mask_topic, frames, schedule, gt))
    finally:
        spinning[0] = False
        if thread is not None:
            thread.join(5)
        if recorder is not None and recorder._thread.is_alive():
            recorder.close()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        if node_proc is not None:
            code = node_proc.stop()
            if report:
                report['node_exit_code'] = code
            _log(args, f'stopped the node (exit status {code})')

    with open(out / 'per_frame.csv', 'w', newline='', encoding='utf-8') as stream:
        w = csv.DictWriter(stream, ['frame', 'stamp', 'log_time', 'sent_s', 'answered', 'latency_ms'],
                           restval='')
        w.writeheader()
        w.writerows(rows)
    if latencies:
        plots.histogram(out / 'latency_hist.png', latencies, 'End-to-end latency (image sent -> masks back)',
                        'ms', markers={'p50': lat['p50'], 'p95': lat['p95']})
    (out / 'live_report.json').write_text(json.dumps(report, indent=2) + '\n')
    return report


# --- command line -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='sam2_live', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--bag', required=True, type=pathlib.Path, help='rosbag2 folder (sqlite3 or mcap)')
    p.add_argument('--image-topic', required=True, help='sensor_msgs/Image or CompressedImage topic of the bag')
    p.add_argument('--prompts', type=pathlib.Path, default=None, help='prompts YAML (format: README.md, "Prompts files")')
    p.add_argument('--prompt-topic', default=None,
                   help='topic of recorded visualization_msgs/ImageMarker prompts in the bag')
    p.add_argument('--gt-topic', default=None, help='ground-truth label-image topic of the bag: J&F '
                   'of the answered frames')
    p.add_argument('--node-ns', default='/sam2_tracker',
                   help='fully qualified name of the node (its topics are <node-ns>/masks, ...)')
    p.add_argument('--node-image-topic', default=None,
                   help='publish the images here (default: the node\'s image subscription, from the '
                        'ROS graph; with --start-node the bag\'s topic, the node remapped to it)')
    p.add_argument('--out', required=True, type=pathlib.Path, help='output folder')
    p.add_argument('--rate', type=float, default=1.0, help='playback speed (1.0: the bag\'s timing)')
    p.add_argument('--clock', action=argparse.BooleanOptionalAction, default=None,
                   help='publish /clock (default: with --start-node, which then sets use_sim_time)')
    p.add_argument('--clock-hz', type=float, default=40.0, help='/clock rate between frames')
    p.add_argument('--overlay', action='store_true', help='also record <node>/overlay')
    p.add_argument('--max-frames', type=int, default=None, help='play the first N frames only')
    p.add_argument('--frame-policy', choices=('latest', 'all'), default=None,
                   help='set the node\'s frame_policy (default: leave it as it is: latest)')
    p.add_argument('--out-storage', choices=('sqlite3', 'mcap'), default=None,
                   help='storage of the output bag (default: that of the input)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing OUT/bag')
    p.add_argument('--wait-node', type=float, default=180.0, help='seconds to wait for the node')
    p.add_argument('--drain-timeout', type=float, default=30.0,
                   help='after the last frame: stop waiting when no answer came for this many seconds')
    p.add_argument('--bound-th', type=float, default=metrics.BOUND_TH, help='F boundary tolerance')
    p.add_argument('--quiet', action='store_true')
    g = p.add_argument_group('--start-node: start the node (python -m sam2_ros) and stop it at the end')
    g.add_argument('--start-node', action='store_true')
    g.add_argument('--checkpoint', default=None, help="Meta's SAM 2 / 2.1 checkpoint (default: download once)")
    g.add_argument('--model', default='tiny', choices=MODELS)
    g.add_argument('--image-size', type=int, default=1024)
    g.add_argument('--device', default='auto')
    g.add_argument('--node-param', action='append', default=[], metavar='NAME:=VALUE',
                   help='another node parameter (repeatable)')
    return p


def _summary(r: dict) -> str:
    lat = r['latency_ms']
    text = (f'{r["masks_received"]} of {r["frames_sent"]} frames answered ({r["dropped"]} dropped), '
            f'latency p50 {lat.get("p50", float("nan")):.1f} ms, p95 {lat.get("p95", float("nan")):.1f} ms, '
            f'max {lat.get("max", float("nan")):.1f} ms')
    if r.get('JF_mean') is not None:
        text += f', J&F {r["JF_mean"]:.4f}'
    return text


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except LiveError as error:
        print(f'sam2_live: error: {error}', file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print('sam2_live: interrupted', file=sys.stderr)
        return 130
    print(f'sam2_live: {_summary(report)}; wrote {args.out}/live_report.json')
    return 0


if __name__ == '__main__':
    sys.exit(main())

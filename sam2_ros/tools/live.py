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
import os
import pathlib
import shutil
import sys
import threading
import time

from sam2_ros.tools import bagio, live_report, metrics
from sam2_ros.tools.cli import HelpFormatter
from sam2_ros.tools.eval_inputs import EvaluationError, GroundTruth, schedule_prompts
from sam2_ros.tools.evaluate import MODELS
from sam2_ros.tools.live_node import (LiveError, NodeProcess, node_image_topic, node_mode, set_frame_policy,
                                      split_fqn, wait)
from sam2_ros.tools.live_playback import Playback
from sam2_ros.tools.live_recorder import Recorder
from sam2_ros.tools.live_report import rate_hz
from sam2_ros.tools.prompts_file import PromptsFileError, load_prompts

__all__ = ['LiveError', 'build_parser', 'rate_hz', 'run', 'main']


def _log(args, text: str) -> None:
    if not args.quiet:
        print(f'[sam2_live] {text}', flush=True)


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


def _check_args(args) -> None:
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


def run(args) -> dict:
    """Play the bag into the node and record its answers (``args`` from :func:`build_parser`)."""
    _check_args(args)
    ns, name = split_fqn(args.node_ns)
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
    if out_bag.exists() and not args.overwrite:
        raise LiveError(f'{out_bag} exists; remove it or pass --overwrite')
    try:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import String
        from visualization_msgs.msg import ImageMarker
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
    node_proc = node = thread = recorder = None
    spinning = [True]
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
        node_topic = args.node_image_topic or node_image_topic(node, ns, name, fqn, msgtype, args.wait_node, check)
        image_pub = node.create_publisher(CompressedImage if compressed else Image, node_topic, reliable)
        marker_pub = node.create_publisher(ImageMarker, f'{fqn}/prompt', 10)
        mask_pub = node.create_publisher(Image, f'{fqn}/prompt_mask', 10)
        text_pub = node.create_publisher(String, f'{fqn}/text_prompt', 10)
        clock_pub = node.create_publisher(Clock, '/clock', 10) if args.clock else None
        kinds = {kind for msgs in groups.values() for kind, _ in msgs}
        mask_topic = f'{fqn}/masks'

        def ready():
            return (image_pub.get_subscription_count() > 0
                    and ('marker' not in kinds or marker_pub.get_subscription_count() > 0)
                    and ('mask' not in kinds or mask_pub.get_subscription_count() > 0)
                    and ('text' not in kinds or text_pub.get_subscription_count() > 0)
                    and node.count_publishers(mask_topic) > 0)

        if not wait(ready, args.wait_node, check):
            raise LiveError(f'the node {fqn} did not come up on {node_topic} within {args.wait_node:.0f} s',
                            code=1)
        if args.frame_policy and not args.start_node:
            set_frame_policy(node, fqn, args.frame_policy)
        mode = node_mode(node, fqn)
        if mode.get('use_sim_time') is False and args.clock:
            warnings.append(f'{fqn} does not use sim time (use_sim_time: false): /clock is ignored')
        if mode.get('use_sim_time') and not args.clock:
            warnings.append(f'{fqn} uses sim time but --no-clock: the node has no clock '
                            '(its diagnostics stop)')

        # frame_policy all: frames queue up in the node (prompts are held back, see Playback)
        playback = Playback(args, frames, groups, None, image_pub, marker_pub, mask_pub, clock_pub,
                            hold=mode.get('frame_policy') != 'latest', warnings=warnings, check=check,
                            text_pub=text_pub)
        recorder = playback.recorder = Recorder(out_bag, args.out_storage or storage, fqn, playback.playclock, index_of)
        node.create_subscription(Image, mask_topic, recorder.callback(mask_topic, bagio.IMAGE), reliable, raw=True)
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
        playback.play(_raw_messages(args.bag, args.image_topic, len(frames)))
        finished = playback.drain(len(index_of))
        spinning[0] = False
        thread.join(5)
        recorder.close()

        rows, latencies = live_report.per_frame(frames, playback.sent, dict(recorder.received), playback.start,
                                                index_of)
        known = dict(storage=storage, msgtype=msgtype, fqn=fqn, node_topic=node_topic, mode=mode, out_bag=out_bag,
                     duplicates=duplicates, warnings=warnings)
        report = live_report.build(args, known, playback, recorder, frames, latencies, finished)
        if gt is not None:
            report.update(live_report.jf(args, out_bag, mask_topic, frames, schedule, gt))
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
    live_report.write(out, report, rows, latencies)
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
    g.add_argument('--checkpoint', default=None, help="Meta's .pt, a folder or a Hugging Face Hub id (default: the official one of --model, downloaded once)")
    g.add_argument('--model', default='tiny', choices=MODELS,
                   help='SAM 2 size, or edgetam (EdgeTAM; --image-size a multiple of 256)')
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

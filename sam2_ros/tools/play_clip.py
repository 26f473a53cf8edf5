"""Play a video into a running sam2_tracker node over ROS 2 and save what it publishes.

    python -m sam2_ros.tools.play_clip                         # bundled clip + prompts, node at /sam2_tracker
    python -m sam2_ros.tools.play_clip --video V.mp4 --prompts P.yaml --namespace /cam1 --out OUT

Frames go out as sensor_msgs/Image (rgb8) on ``<namespace>/image``, stamped ``--start-stamp``
+ index / fps; the prompts file's prompts go to ``<namespace>/sam2_tracker/prompt`` (points:
ImageMarker POINTS, box: LINE_STRIP with 2 points) and ``.../prompt_mask`` (masks), stamped with
their frame's stamp and sent before it, so the node applies each to exactly its frame; a text
prompt (``{frame: N, text: "person . red cup"}``) goes to ``.../text_prompt`` (std_msgs/String,
unstamped: the node's detector runs on the next frame it tracks, frame N in lockstep).
By default each frame is sent once and waits for the node's answer (lockstep: every frame is
tracked, at the node's pace; the node should subscribe reliable, ``image_qos: reliable``, so that
no frame is lost on the way); ``--rate HZ`` plays in real time instead (the node may drop frames).
With ``--node-pid PID`` (and ``--node-log FILE``) the wait ends as soon as that process exits,
printing the end of its log: the node's reason.

Writes OUT/overlay.mp4 (the node's ``~/overlay``), OUT/overlay_NNNNN.png every --png-every
frames, OUT/overlay_sheet.png, OUT/masks_NNNNN.png (the mono16 label images, every frame) and
OUT/summary.json (frames sent / answered, latency, the checkpoint and whether its weights are
random). Each saved overlay shows the prompts sent with its frame; ``--random-weights`` writes a
warning banner on the saved overlays and the contact sheet (the demo uses it when offline).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import os
import sys
import threading
import time

import cv2
import numpy as np

from sam2_ros.tools.demo import bundled_sample, read_frames, video_fps
from sam2_ros.tools.prompts_file import PromptsFileError, load_prompts
from sam2_ros.tools.cli import HelpFormatter


class PlayError(RuntimeError):
    """An error the user can act on; main() prints it and exits 2."""


def _args(argv=None):
    p = argparse.ArgumentParser(prog='play_clip', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--video', type=pathlib.Path, default=None, help='video file or image folder '
                   '(default: the bundled sample clip)')
    p.add_argument('--prompts', type=pathlib.Path, default=None, help='prompts YAML (default: the '
                   "bundled clip's prompts)")
    p.add_argument('--namespace', default='', help='namespace of the node (its topics are '
                   '<namespace>/image and <namespace>/sam2_tracker/...)')
    p.add_argument('--node-name', default='sam2_tracker')
    p.add_argument('--out', type=pathlib.Path, default=pathlib.Path('outputs/play_clip'))
    p.add_argument('--max-frames', type=int, default=None)
    p.add_argument('--rate', type=float, default=None, help='publish at this rate (Hz) instead of '
                   'waiting for each answer')
    p.add_argument('--frame-timeout', type=float, default=120.0, help='seconds to wait for an answer')
    p.add_argument('--wait-node', type=float, default=180.0, help='seconds to wait for the node')
    p.add_argument('--node-pid', type=int, default=None, help="the node's process id: stop waiting "
                   'as soon as it exits')
    p.add_argument('--node-log', type=pathlib.Path, default=None, help="the node's log file: its "
                   'last lines are shown when the node exits')
    p.add_argument('--checkpoint', default=None, help='the checkpoint the node runs, for summary.json')
    p.add_argument('--random-weights', action='store_true', help='the node runs random weights: '
                   'banner on every saved overlay, noted in summary.json')
    p.add_argument('--png-every', type=int, default=8)
    p.add_argument('--start-stamp', type=float, default=1000.0, help='stamp of the first frame (s)')
    p.add_argument('--frame-id', default='sample_camera')
    return p.parse_args(argv)


RANDOM_WEIGHTS_STAMP = 'RANDOM WEIGHTS: masks are meaningless; pass --checkpoint'


class NodeExited(PlayError):
    """The node's process ended while we waited for it (the message holds its log's end)."""


def process_exited(pid: int) -> bool:
    """True when process ``pid`` no longer runs (gone, or a zombie that its parent has not
    reaped yet: the demo's shell reaps its node only when it next waits)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process with that id: it runs
        return False
    try:
        stat = pathlib.Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return False  # no /proc (not Linux): kill() said it exists
    return stat.rpartition(')')[2].split()[0] == 'Z'


def log_tail(path: pathlib.Path | None, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, indented ('' without one)."""
    if path is None or not path.is_file():
        return ''
    text = path.read_text(errors='replace').rstrip().splitlines()[-lines:]
    return '\n'.join('  ' + line for line in text)


def _time(seconds: float):
    from builtin_interfaces.msg import Time

    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def prompt_messages(spec, stamp, frame_shape):
    """The messages that send one prompts-file entry: [(kind, msg)], kind 'marker', 'mask' or
    'text'. A ``label`` is the markers' ``ns``."""
    from geometry_msgs.msg import Point
    from std_msgs.msg import String
    from visualization_msgs.msg import ImageMarker

    from sam2_ros.ros.conversions import numpy_to_image

    if spec.text is not None:
        return [('text', String(data=spec.text))]
    out = []
    if spec.mask_path is not None:
        mask = spec.load_mask()
        if mask.shape != tuple(frame_shape[:2]):
            raise PlayError(f'object {spec.object_id}: mask {spec.mask_path} is {mask.shape[1]}x'
                            f'{mask.shape[0]}, the frames are {frame_shape[1]}x{frame_shape[0]}')
        msg = numpy_to_image(mask.astype(np.uint16) * spec.object_id, 'mono16')
        msg.header.stamp = stamp
        out.append(('mask', msg))
    if spec.box is not None:
        m = ImageMarker(id=spec.object_id, action=ImageMarker.ADD, type=ImageMarker.LINE_STRIP, ns=spec.label or '')
        m.header.stamp = stamp
        x0, y0, x1, y1 = (float(v) for v in spec.box)
        m.points = [Point(x=x0, y=y0), Point(x=x1, y=y1)]
        out.append(('marker', m))
    if spec.points is not None:  # with a box too: a correction, applied on the next frame
        m = ImageMarker(id=spec.object_id, action=ImageMarker.ADD, type=ImageMarker.POINTS, ns=spec.label or '')
        m.header.stamp = stamp
        m.points = [Point(x=float(x), y=float(y), z=float(lab))
                    for (x, y), lab in zip(spec.points, spec.labels)]
        out.append(('marker', m))
    return out


def run(args) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from visualization_msgs.msg import ImageMarker

    from sam2_ros.ros.conversions import image_to_labels, image_to_rgb, numpy_to_image
    from sam2_ros.visualization import contact_sheet, draw_prompts, stamp as stamp_image

    video = args.video or bundled_sample('bunny.mp4')
    prompts_path = args.prompts or bundled_sample('prompts.yaml')
    specs = load_prompts(prompts_path)
    fps = video_fps(video)
    frames = list(read_frames(video, args.max_frames))
    if not frames:
        raise PlayError(f'no frames in {video}')
    by_frame = {}
    for spec in specs:
        if spec.frame is not None:
            index = spec.frame
        else:
            index = int(round((spec.stamp[0] + spec.stamp[1] * 1e-9) * fps))
        by_frame.setdefault(index, []).append(spec)
    stamps = [_time(args.start_stamp + i / fps) for i in range(len(frames))]
    prompt_msgs = {i: [m for s in group for m in prompt_messages(s, stamps[i], frames[0].shape)]
                   for i, group in by_frame.items() if i < len(frames)}

    ns = args.namespace.rstrip('/')
    tracker = f'{ns}/{args.node_name}'
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    rclpy.init()
    node = rclpy.create_node('sam2_play_clip')
    image_pub = node.create_publisher(Image, f'{ns}/image', reliable)
    marker_pub = node.create_publisher(ImageMarker, f'{tracker}/prompt', 10)
    mask_pub = node.create_publisher(Image, f'{tracker}/prompt_mask', 10)
    text_pub = node.create_publisher(String, f'{tracker}/text_prompt', 10)
    pubs = {'marker': marker_pub, 'mask': mask_pub, 'text': text_pub}
    lock = threading.Lock()
    overlays, masks, received = {}, {}, {}

    def on_overlay(msg):
        with lock:
            overlays[_ns(msg.header.stamp)] = msg

    def on_masks(msg):
        with lock:
            masks[_ns(msg.header.stamp)] = msg
            received.setdefault(_ns(msg.header.stamp), time.monotonic())  # the first answer

    node.create_subscription(Image, f'{tracker}/overlay', on_overlay, reliable)
    node.create_subscription(Image, f'{tracker}/masks', on_masks, reliable)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinning = [True]

    def spin():
        while spinning[0] and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()

    def wait(cond, timeout):
        # polls: the node's exit must end the wait at once, not after the timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            if args.node_pid is not None and process_exited(args.node_pid):
                tail = log_tail(args.node_log)
                where = f' (its log: {args.node_log})' if args.node_log else ''
                raise NodeExited(f'the node (pid {args.node_pid}) exited{where}'
                                 + (f':\n{tail}' if tail else ''))
            time.sleep(0.02)
        return cond()

    sent = {}

    def latency_ms(key: int) -> float:
        # one definition for the per-frame lines and summary.json's percentiles
        return (received[key] - sent[key]) * 1000.0

    try:
        print(f'[play_clip] waiting for the node {tracker} (image topic {ns}/image) ...', flush=True)
        if not wait(lambda: image_pub.get_subscription_count() > 0 and marker_pub.get_subscription_count() > 0
                    and mask_pub.get_subscription_count() > 0
                    and (not any(s.text is not None for s in specs) or text_pub.get_subscription_count() > 0)
                    and node.count_publishers(f'{tracker}/overlay') > 0,
                    args.wait_node):
            raise PlayError(f'no node {tracker} subscribed to {ns}/image within {args.wait_node:.0f} s '
                            '(is it running, with the same ROS_DOMAIN_ID?)')
        time.sleep(0.5)  # let the node's subscriptions match ours both ways
        print(f'[play_clip] {len(frames)} frames of {video} ({frames[0].shape[1]}x{frames[0].shape[0]}), '
              f'prompts {prompts_path} on frame(s) {sorted(prompt_msgs)}', flush=True)
        start = time.monotonic()
        for i, frame in enumerate(frames):
            for kind, msg in prompt_msgs.get(i, []):
                pubs[kind].publish(msg)
            if prompt_msgs.get(i):
                time.sleep(0.2)  # prompts and frames travel on different topics
            msg = numpy_to_image(frame, 'rgb8')
            msg.header.stamp, msg.header.frame_id = stamps[i], args.frame_id
            key = _ns(stamps[i])
            sent[key] = time.monotonic()
            image_pub.publish(msg)
            if args.rate:
                time.sleep(max(0.0, start + (i + 1) / args.rate - time.monotonic()))
                continue
            # lockstep: the frame was sent once, reliably; waiting longer is no reason to send
            # it again (with frame_policy: all the node would track every copy)
            if not wait(lambda: key in masks and key in overlays, args.frame_timeout):
                raise PlayError(f'no answer to frame {i} within {args.frame_timeout:.0f} s '
                                '(is the node subscribed reliable, image_qos: reliable?)')
            print(f'[play_clip] frame {i:4d}: answered in {latency_ms(key):7.1f} ms', flush=True)
        if args.rate:
            wait(lambda: _ns(stamps[-1]) in masks, args.frame_timeout)
            time.sleep(0.5)
    finally:
        spinning[0] = False
        thread.join(2)
        node.destroy_node()
        rclpy.try_shutdown()

    # --- save what came back
    args.out.mkdir(parents=True, exist_ok=True)
    keys = [_ns(s) for s in stamps]
    writer = cv2.VideoWriter(str(args.out / 'overlay.mp4'), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                             (frames[0].shape[1], frames[0].shape[0]))
    pngs, captions = [], []
    for i, key in enumerate(keys):
        if key in masks:
            cv2.imwrite(str(args.out / f'masks_{i:05d}.png'), image_to_labels(masks[key]))
        if key not in overlays:
            continue
        rgb = np.ascontiguousarray(image_to_rgb(overlays[key]))
        for spec in by_frame.get(i, []):  # what was asked, beside what the node answered
            if spec.text is not None:
                continue  # a text prompt: the node's overlay shows its objects
            rgb = draw_prompts(rgb, points=spec.points, labels=spec.labels, box=spec.box,
                               obj_id=spec.object_id)
        stamped = stamp_image(rgb, RANDOM_WEIGHTS_STAMP) if args.random_weights else rgb
        bgr = cv2.cvtColor(stamped, cv2.COLOR_RGB2BGR)
        writer.write(bgr)
        if i % args.png_every == 0:
            cv2.imwrite(str(args.out / f'overlay_{i:05d}.png'), bgr)
            pngs.append(rgb)  # unstamped: the sheet carries one readable banner of its own
            captions.append(f'frame {i}')
    writer.release()
    if pngs:
        sheet = contact_sheet(pngs, columns=3, captions=captions,
                              banner=RANDOM_WEIGHTS_STAMP if args.random_weights else None)
        cv2.imwrite(str(args.out / 'overlay_sheet.png'), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    latency = [latency_ms(k) for k in keys if k in received and k in sent]
    summary = {'video': str(video), 'checkpoint': args.checkpoint,
               'random_weights': bool(args.random_weights),
               'frames_sent': len(keys),
               'frames_answered': sum(k in masks for k in keys),
               'overlays': sum(k in overlays for k in keys),
               'mode': f'rate {args.rate} Hz' if args.rate else 'lockstep',
               'latency': 'image published -> its masks received, ms (wall clock)',
               'latency_ms_p50': float(np.percentile(latency, 50)) if latency else None,
               'latency_ms_p95': float(np.percentile(latency, 95)) if latency else None,
               'latency_ms_max': float(np.max(latency)) if latency else None}
    (args.out / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    print(f"[play_clip] {summary['frames_answered']} of {len(keys)} frames answered; latency p50 "
          f"{summary['latency_ms_p50'] or float('nan'):.1f} ms, p95 "
          f"{summary['latency_ms_p95'] or float('nan'):.1f} ms")
    if args.random_weights:
        print('[play_clip] RANDOM WEIGHTS: the masks are meaningless (summary.json: '
              '"random_weights": true)')
    print(f'[play_clip] wrote {args.out}/overlay.mp4, {len(pngs)} overlay PNG(s), overlay_sheet.png, '
          f'masks_*.png and summary.json')
    return 0


def main(argv=None) -> int:
    args = _args(argv)
    try:
        return run(args)
    except NodeExited as error:
        print(f'[play_clip] error: {error}', file=sys.stderr)
        return 3  # the node is gone: scripts/demo.sh tells this from a failure of the player's own
    except (PlayError, PromptsFileError) as error:
        print(f'[play_clip] error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('[play_clip] interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())

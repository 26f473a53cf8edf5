"""Evaluate the tracker on a rosbag2: masks, J&F against ground truth, latency, memory, plots.

::

    python -m sam2_ros.tools.evaluate --bag BAG --image-topic /camera/image_raw \\
        --prompts prompts.yaml [--gt-topic /gt/labels | --gt-dir DIR] \\
        --checkpoint sam2.1_hiera_tiny.pt --model tiny --image-size 512 --device cpu --out OUT

Runs the tracker on every frame of the image topic, in bag order, deterministically (no frame
is dropped; the ROS node's ``frame_policy: all``). Prompts come from a prompts YAML
(README.md, "Prompts files"; ``frame`` index or ``stamp``) or from ``~/prompt`` ImageMarkers recorded in the
bag (``--prompt-topic``). Writes under OUT:

* ``bag/``: a rosbag2 with ``/sam2_tracker/masks`` (mono16 label images, pixel = object id),
  optionally ``/sam2_tracker/overlay`` (bgr8) and a copy of the input images, every message
  stamped with its source image's header and logged at its receive time, so that
  ``ros2 bag play OUT/bag`` (beside the input bag) shows results and camera together;
* ``report.json``, ``report.md``, ``per_frame.csv`` and PNG plots (J&F over time per object,
  latency histogram, tracker memory over time);
* with ``--depth-topic`` and ``--camera-info-topic`` (a depth image registered to the colour
  image, and the colour camera's camera_info): each object's 3-D track, as the node measures it
  with ``depth: true`` (``tracks_3d.csv``, ``tracks_3d.png``; :mod:`sam2_ros.tools.eval_3d`).

J and F follow DAVIS (``sam2_ros.tools.metrics``); an object is evaluated on the frames with
ground truth from its first prompt on. ``--memory-selection sam2 samurai`` evaluates each
memory selection on the same frames and prompts, each into ``OUT/<selection>/``, and compares
them in the ``report.md`` in OUT (``sam2_ros.tools.eval_compare``). Exit code 2 on bad input.
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import time

import numpy as np

from sam2_ros.tools import bagio, eval_compare, eval_report, metrics
from sam2_ros.tools.eval_3d import Tracks3D
from sam2_ros.tools.cli import HelpFormatter, Progress
from sam2_ros.tools.detector_args import add_detector_arguments, detector_kwargs, text_without_detector
from sam2_ros.tools.eval_inputs import EvaluationError, GroundTruth, fmt_stamp, schedule_prompts
from sam2_ros.tools.eval_report import MASK_TOPIC, OVERLAY_TOPIC, checkpoint_identity
from sam2_ros.tools.labelpng import LabelPngError
from sam2_ros.tools.prompts_file import PromptsFileError, PromptSpec, load_prompts

__all__ = ['EvaluationError', 'MASK_TOPIC', 'MODELS', 'OVERLAY_TOPIC', 'build_parser', 'evaluate', 'main']
MODELS = ('tiny', 'small', 'base_plus', 'large', 'edgetam')




# --- the run ------------------------------------------------------------------------------------

def _build_tracker(args):
    from sam2_ros import Tracker
    from sam2_ros.model.checkpoint import CheckpointError, resolve_checkpoint
    from sam2_ros.model.text_detector import DetectorLoadError, MissingDependencyError

    try:
        checkpoint = str(resolve_checkpoint(args.checkpoint, args.model))
        tracker = Tracker.from_pretrained(checkpoint, model=args.model, image_size=args.image_size,
                                          device=args.device, max_objects=args.max_objects,
                                          memory_selection=args.memory_selection[0], **detector_kwargs(args))
    except (CheckpointError, FileNotFoundError) as error:
        raise EvaluationError(f'checkpoint: {error}') from None
    except (MissingDependencyError, DetectorLoadError) as error:  # the text detector
        raise EvaluationError(f'detector: {error}') from None
    return tracker, checkpoint


def _to_prompt(spec: PromptSpec, shape) -> object:
    try:
        return spec.to_prompt(shape)
    except PromptsFileError as error:
        raise EvaluationError(str(error)) from None


def evaluate(args) -> dict:
    """Run an evaluation (``args`` as parsed by :func:`build_parser`); returns the report."""
    import torch

    from sam2_ros.tracking.tracker import PromptError
    from sam2_ros.visualization import label_image, overlay

    if args.image_size < 64 or args.image_size % 32:
        raise EvaluationError('--image-size must be a multiple of 32, at least 64')
    if args.max_frames is not None and args.max_frames < 1:
        raise EvaluationError('--max-frames must be >= 1')
    if args.gt_topic and args.gt_dir:
        raise EvaluationError('give --gt-topic or --gt-dir, not both')
    if args.prompts is None and args.prompt_topic is None:
        raise EvaluationError('no prompts: give --prompts FILE.yaml and/or --prompt-topic TOPIC')
    if bool(args.depth_topic) != bool(args.camera_info_topic):
        raise EvaluationError('objects in 3-D need both --depth-topic (the depth image registered to the colour '
                              "image) and --camera-info-topic (the colour camera's camera_info)")
    if not args.depth_max_delay >= 0:
        raise EvaluationError(f'--depth-max-delay must be >= 0 seconds, got {args.depth_max_delay}')
    try:
        topics = bagio.bag_topics(args.bag)
        storage = bagio.storage_of(args.bag)
        frames = list(bagio.iter_images(args.bag, args.image_topic, args.max_frames, decode=False))
    except bagio.BagError as error:
        raise EvaluationError(str(error)) from None
    if not frames:
        raise EvaluationError(f'no images on {args.image_topic}')
    truncated = args.max_frames is not None and topics[args.image_topic][1] > len(frames)
    try:
        specs = load_prompts(args.prompts) if args.prompts is not None else []
        markers = bagio.read_prompt_markers(args.bag, args.prompt_topic) if args.prompt_topic else []
    except (PromptsFileError, bagio.BagError) as error:
        raise EvaluationError(str(error)) from None
    schedule, warnings = schedule_prompts(specs, markers, frames, truncated)
    if text_without_detector(specs, args):
        raise EvaluationError(text_without_detector(specs, args))
    if not schedule:
        raise EvaluationError('none of the prompts falls on an evaluated frame')
    for w in warnings:
        print(f'sam2_evaluate: warning: {w}', file=sys.stderr)
    try:
        tracks3d = (Tracks3D(args.bag, args.depth_topic, args.camera_info_topic, frames, args.depth_max_delay)
                    if args.depth_topic else None)
        if args.gt_topic:
            gt = GroundTruth.from_topic(args.bag, args.gt_topic, frames)
        elif args.gt_dir:
            gt = GroundTruth.from_dir(args.gt_dir, frames)
        else:
            gt = None
    except bagio.BagError as error:
        raise EvaluationError(str(error)) from None

    # Check every prompt against the frame size (and load mask PNGs) before anything runs.
    first = next(bagio.iter_images(args.bag, args.image_topic, 1))
    prompt_of = {}
    for index in sorted(schedule):
        for a in schedule[index]:
            if a.kind == 'prompt':
                prompt_of[id(a)] = _to_prompt(a.spec, first.image.shape)

    out = pathlib.Path(args.out)
    out_bag = out / 'bag'
    if out_bag.exists():
        if not args.overwrite:
            raise EvaluationError(f'{out_bag} exists; remove it or pass --overwrite')
        shutil.rmtree(out_bag)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    tracker, checkpoint = _build_tracker(args)
    first_frame = {}
    for index in sorted(schedule):
        for a in schedule[index]:
            if a.kind == 'prompt' and a.object_id is not None:  # (text prompts: the detector numbers its objects)
                first_frame.setdefault(a.object_id, index)
    eval_ids = sorted(first_frame)

    rows, latencies, memory = [], [], []
    per_obj = {oid: {'frames': [], 'J': [], 'F': [], 'gt_on': [], 'pred_on': [], 'scores': []}
               for oid in eval_ids}
    shape = None
    progress = Progress(len(frames), enabled=not args.quiet)
    wall_start = time.perf_counter()
    out_storage = args.out_storage or storage
    with bagio.BagWriter(out_bag, storage=out_storage) as writer:
        try:
            for frame in bagio.iter_images(args.bag, args.image_topic, args.max_frames):
                t = frame.index
                rgb = frame.image
                if shape is None:
                    shape = rgb.shape[:2]
                elif rgb.shape[:2] != shape:
                    raise EvaluationError(f'frame {t} is {rgb.shape[1]}x{rgb.shape[0]}, the topic '
                                          f'started at {shape[1]}x{shape[0]}')
                prompts = []
                for a in schedule.get(t, []):
                    if a.kind == 'remove':
                        tracker.remove_object(a.object_id)
                    else:
                        prompts.append(prompt_of[id(a)])
                start = time.perf_counter()
                try:
                    result = tracker.track(rgb, prompts=prompts)
                except PromptError as error:
                    raise EvaluationError(f'frame {t}: {error}') from None
                if result.logits.is_cuda:
                    torch.cuda.synchronize()
                latency = (time.perf_counter() - start) * 1000.0
                ids = [int(i) for i in result.object_ids]
                label = label_image(result.logits, ids, result.mask_threshold)
                scores = dict(zip(ids, result.scores.detach().float().cpu().numpy().tolist()))
                if tracks3d is not None:
                    tracks3d.frame(frame, ids, result.logits > result.mask_threshold if ids else
                                   np.zeros((0,) + shape, bool), [scores[i] for i in ids])
                latencies.append(latency)
                held = int(tracker.state_bytes())
                memory.append(held)
                writer.write(MASK_TOPIC, bagio.image_message(label, 'mono16', frame.header),
                             frame.log_time)
                if args.overlay:
                    masks = np.stack([label == i for i in ids]) if ids else np.zeros((0,) + shape, bool)
                    image = overlay(rgb, masks, ids, scores=[scores[i] for i in ids], labels=result.labels)
                    writer.write(OVERLAY_TOPIC, bagio.image_message(image[..., ::-1], 'bgr8', frame.header),
                                 frame.log_time)
                truth = gt.get(t) if gt is not None else None
                if truth is not None and truth.shape != shape:
                    raise EvaluationError(f'ground truth of frame {t} is {truth.shape[1]}x{truth.shape[0]}, '
                                          f'the images are {shape[1]}x{shape[0]}')
                base = {'frame': t, 'stamp': fmt_stamp(frame.header.stamp_ns),
                        'latency_ms': f'{latency:.3f}', 'state_bytes': held, 'objects': len(ids)}
                listed = sorted(set(ids) | {o for o in eval_ids if first_frame[o] <= t})
                if not listed:
                    rows.append({**base, 'object_id': ''})
                for oid in listed:
                    pred = label == oid
                    row = {**base, 'object_id': oid, 'score': f'{scores[oid]:.4f}' if oid in scores else '',
                           'pred_area': int(pred.sum())}
                    if truth is not None and oid in per_obj and first_frame[oid] <= t:
                        g = truth == oid
                        j = metrics.jaccard(pred, g)
                        f = metrics.f_measure(pred, g, args.bound_th)
                        d = per_obj[oid]
                        d['frames'].append(t)
                        d['J'].append(j)
                        d['F'].append(f)
                        d['gt_on'].append(bool(g.any()))
                        d['pred_on'].append(bool(pred.any()))
                        row.update(gt_area=int(g.sum()), J=f'{j:.6f}', F=f'{f:.6f}')
                    if oid in per_obj and oid in scores:
                        per_obj[oid]['scores'].append(scores[oid])
                    rows.append(row)
                progress.update(t + 1)
            if args.copy_images:
                bagio.copy_topic(args.bag, args.image_topic, writer, len(frames))
        finally:
            progress.close()
    wall = time.perf_counter() - wall_start

    ran = {'checkpoint': checkpoint, **checkpoint_identity(checkpoint), 'model': args.model,
           'image_size': args.image_size, 'device': str(tracker.device),
           'device_requested': args.device, 'dtype': str(tracker.dtype).replace('torch.', ''),
           'memory_selection': tracker.memory_selection}
    if args.detector:
        ran['detector'] = {'model': args.detector, **tracker.text.stats()}
    if ran['checkpoint_official'] is None:
        warnings.append(f'the checkpoint {checkpoint} (SHA-256 {ran["checkpoint_sha256"]}...) is '
                        "none of Meta's published files: fine-tuned, converted, or random weights")
    report = eval_report.build(args, ran, storage, out_storage, frames, shape, latencies, memory,
                     per_obj, first_frame, gt, wall, warnings)
    if tracks3d is not None:
        report['objects_3d'] = tracks3d.report()
        tracks3d.write(out)
    eval_report.write(out, report, rows, per_obj, latencies, memory, gt is not None)
    return report


# --- command line -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='sam2_evaluate', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--bag', required=True, type=pathlib.Path, help='rosbag2 folder (sqlite3 or mcap)')
    p.add_argument('--image-topic', required=True, help='sensor_msgs/Image or CompressedImage topic')
    p.add_argument('--prompts', type=pathlib.Path, default=None, help='prompts YAML (format: README.md, "Prompts files")')
    p.add_argument('--prompt-topic', default=None,
                   help='topic of recorded visualization_msgs/ImageMarker prompts (e.g. /sam2_tracker/prompt)')
    p.add_argument('--gt-topic', default=None, help='ground-truth label-image topic (mono8/mono16, '
                   'pixel = object id), matched to images by header stamp')
    p.add_argument('--gt-dir', type=pathlib.Path, default=None,
                   help='folder of ground-truth PNGs (DAVIS indexed or grayscale), one per frame, '
                        'named by frame index (00000.png) or in frame order')
    p.add_argument('--checkpoint', default=None, help="Meta's .pt, a folder or a Hugging Face Hub id (default: the official one of --model, downloaded once)")
    p.add_argument('--model', default='tiny', choices=MODELS,
                   help='SAM 2 size, or edgetam (EdgeTAM; --image-size a multiple of 256)')
    p.add_argument('--image-size', type=int, default=1024, help='model input size')
    p.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    p.add_argument('--max-objects', type=int, default=16)
    p.add_argument('--memory-selection', nargs='+', choices=('sam2', 'samurai'), default=['sam2'],
                   help="the tracker's memory_selection; two (sam2 samurai): each runs on the same frames and "
                        'prompts into OUT/<selection>/, and report.md in OUT compares them')
    p.add_argument('--out', required=True, type=pathlib.Path, help='output folder')
    p.add_argument('--out-storage', choices=('sqlite3', 'mcap'), default=None,
                   help='storage of the output bag (default: that of the input)')
    p.add_argument('--overlay', action='store_true', help='also write /sam2_tracker/overlay (bgr8)')
    p.add_argument('--copy-images', action='store_true', help='copy the input images into the output bag')
    p.add_argument('--depth-topic', default=None, help='objects in 3-D: sensor_msgs/Image depth topic (16UC1 mm, '
                   '32FC1 m) registered to the image topic (its size or an integer scale of it)')
    p.add_argument('--camera-info-topic', default=None, help="objects in 3-D: the colour camera's "
                   'sensor_msgs/CameraInfo topic')
    p.add_argument('--depth-max-delay', type=float, default=0.02,
                   help='seconds a depth stamp may differ from the frame\'s (the node\'s depth_max_delay)')
    p.add_argument('--max-frames', type=int, default=None, help='evaluate the first N frames only')
    p.add_argument('--bound-th', type=float, default=metrics.BOUND_TH,
                   help='F boundary tolerance: fraction of the image diagonal (< 1) or pixels')
    p.add_argument('--loss-frames', type=int, default=5, help='track loss: at least this many frames')
    p.add_argument('--loss-iou', type=float, default=0.1, help='track loss: IoU below this')
    p.add_argument('--overwrite', action='store_true', help='replace an existing OUT/bag')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    add_detector_arguments(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if len(set(args.memory_selection)) > 1:
            reports = eval_compare.compare(args, evaluate)
        else:
            reports = {args.memory_selection[0]: evaluate(args)}
    except (EvaluationError, bagio.BagError, PromptsFileError, LabelPngError) as error:
        print(f'sam2_evaluate: error: {error}', file=sys.stderr)
        return 2
    for selection, report in reports.items():
        jf = report['JF_mean']
        print(f'sam2_evaluate: memory_selection {selection}: {report["frames"]} frames, {report["fps"]:.2f} '
              f'frames/s (tracker), J&F {"-" if jf is None else f"{jf:.4f}"}')
    print(f'sam2_evaluate: wrote {args.out}/report.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())

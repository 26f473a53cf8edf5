"""Turn a video file or a DAVIS-style sequence into a rosbag2 for ``sam2_evaluate``.

::

    sam2_video_to_bag --video clip.mp4 --out clip_bag [--storage mcap] [--compressed]
    sam2_video_to_bag --davis-dir DAVIS --sequence bear --out bear_bag

A DAVIS-style folder holds ``JPEGImages/<res>/<seq>/*.jpg`` and indexed annotation PNGs
``Annotations/<res>/<seq>/*.png`` (pixel = object id); ``<res>`` is ``480p`` by default.
With annotations the bag also gets a ground-truth label topic (mono8, or mono16 for ids over
255), and a prompts YAML is written with one mask prompt per object on the first frame it is
annotated on (the semi-supervised VOS protocol), its mask PNGs beside it.

Images are stamped ``--start + i / --fps`` (header and log time), ``frame_id`` ``--frame-id``.
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import sys

import cv2
import numpy as np
import yaml

from sam2_ros.tools import bagio
from sam2_ros.tools.labelpng import LabelPngError, read_label_png
from sam2_ros.tools.cli import HelpFormatter

__all__ = ['ConvertError', 'convert', 'main']


class ConvertError(ValueError):
    pass


def _video_frames(path: pathlib.Path, max_frames):
    if not path.is_file():
        raise ConvertError(f'no such video: {path}')
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConvertError(f'OpenCV cannot open the video {path}')
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and 1.0 <= fps <= 1000.0 else None

    def gen():
        count = 0
        try:
            while max_frames is None or count < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                count += 1
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None
        finally:
            cap.release()
        if count == 0:
            raise ConvertError(f'no frames could be decoded from {path}')
    return gen(), fps


def _davis_frames(root: pathlib.Path, sequence: str, resolution: str, max_frames):
    images = root / 'JPEGImages' / resolution / sequence
    if not images.is_dir():
        raise ConvertError(f'no image folder {images} (DAVIS layout: JPEGImages/{resolution}/{sequence}/*.jpg)')
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
    if not files:
        raise ConvertError(f'no images in {images}')
    files = files[:max_frames] if max_frames else files
    ann_dir = root / 'Annotations' / resolution / sequence

    def gen():
        for path in files:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ConvertError(f'cannot read image {path}')
            ann = ann_dir / (path.stem + '.png')
            label = None
            if ann.is_file():
                try:
                    label = read_label_png(ann)
                except LabelPngError as error:
                    raise ConvertError(str(error)) from None
                if label.shape != bgr.shape[:2]:
                    raise ConvertError(f'{ann} is {label.shape[1]}x{label.shape[0]}, its image '
                                       f'{bgr.shape[1]}x{bgr.shape[0]}')
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), label
    return gen(), None, ann_dir.is_dir()


def _resize(rgb, label, width):
    if not width or rgb.shape[1] == width:
        return rgb, label
    height = int(round(rgb.shape[0] * width / rgb.shape[1]))
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    if label is not None:
        label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
    return rgb, label


def convert(args) -> dict:
    """Write the bag (and prompts); returns a summary."""
    if (args.video is None) == (args.davis_dir is None):
        raise ConvertError('give --video FILE or --davis-dir DIR --sequence NAME')
    if args.davis_dir is not None and not args.sequence:
        raise ConvertError('--davis-dir needs --sequence NAME')
    if args.max_frames is not None and args.max_frames < 1:
        raise ConvertError('--max-frames must be >= 1')
    if args.video is not None:
        frames, fps = _video_frames(args.video, args.max_frames)
        has_gt = False
    else:
        frames, fps, has_gt = _davis_frames(args.davis_dir, args.sequence, args.resolution, args.max_frames)
    fps = args.fps or fps or 25.0
    if fps <= 0:
        raise ConvertError('--fps must be > 0')
    out = pathlib.Path(args.out)
    if out.exists():
        raise ConvertError(f'{out} exists already; choose another --out or remove it')
    prompts_path = pathlib.Path(args.prompts_out) if args.prompts_out else out.parent / f'{out.name}_prompts' / 'prompts.yaml'
    topic = args.topic + '/compressed' if args.compressed and not args.topic.endswith('/compressed') else args.topic
    start_ns = int(round(args.start * 1e9))
    first_seen: dict[int, tuple[int, np.ndarray]] = {}
    count = 0
    gt_count = 0
    try:
        with bagio.BagWriter(out, storage=args.storage) as writer:
            for index, (rgb, label) in enumerate(frames):
                rgb, label = _resize(rgb, label, args.width)
                ns = start_ns + int(round(index * 1e9 / fps))
                header = bagio.Header(ns // 1_000_000_000, ns % 1_000_000_000, args.frame_id)
                if args.compressed:
                    msg = bagio.compressed_message(rgb, header, 'jpeg', args.jpeg_quality)
                else:
                    msg = bagio.image_message(rgb if args.encoding == 'rgb8' else rgb[..., ::-1],
                                              args.encoding, header)
                writer.write(topic, msg, ns)
                if label is not None and args.gt_topic:
                    enc = 'mono8' if label.max(initial=0) < 256 else 'mono16'
                    data = label.astype(np.uint8) if enc == 'mono8' else label
                    writer.write(args.gt_topic, bagio.image_message(data, enc, header), ns)
                    gt_count += 1
                if label is not None:
                    for oid in np.unique(label):
                        oid = int(oid)
                        if oid and oid != 255 and oid not in first_seen:  # 255: DAVIS "void"
                            first_seen[oid] = (index, label == oid)
                count += 1
    except (bagio.BagError, ConvertError) as error:
        if out.exists():
            shutil.rmtree(out)  # no half-written bag left behind
        raise ConvertError(str(error)) from None
    if count == 0:
        raise ConvertError('no frames')
    summary = {'bag': str(out), 'topic': topic, 'frames': count, 'fps': fps, 'storage': args.storage,
               'gt_topic': args.gt_topic if gt_count else None, 'gt_frames': gt_count, 'prompts': None}
    if first_seen:
        prompts_path.parent.mkdir(parents=True, exist_ok=True)
        entries = []
        for oid in sorted(first_seen):
            index, mask = first_seen[oid]
            name = f'object_{oid:03d}_frame_{index:05d}.png'
            cv2.imwrite(str(prompts_path.parent / name), mask.astype(np.uint8) * 255)
            entries.append({'frame': index, 'object_id': oid, 'mask': name})
        with open(prompts_path, 'w', encoding='utf-8') as stream:
            stream.write(f'# First-frame mask prompts of {args.sequence or args.video} '
                         '(written by sam2_video_to_bag)\n')
            yaml.safe_dump({'prompts': entries}, stream, default_flow_style=None, sort_keys=False)
        summary['prompts'] = str(prompts_path)
    elif has_gt:
        print('sam2_video_to_bag: warning: the annotations hold no object', file=sys.stderr)
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='sam2_video_to_bag', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--video', type=pathlib.Path, default=None, help='video file')
    p.add_argument('--davis-dir', type=pathlib.Path, default=None, help='DAVIS-style dataset root')
    p.add_argument('--sequence', default=None, help='sequence name under --davis-dir')
    p.add_argument('--resolution', default='480p', help='DAVIS resolution folder')
    p.add_argument('--out', required=True, type=pathlib.Path, help='output bag folder (must not exist)')
    p.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    p.add_argument('--compressed', action='store_true',
                   help='sensor_msgs/CompressedImage (JPEG) on TOPIC/compressed')
    p.add_argument('--jpeg-quality', type=int, default=95)
    p.add_argument('--encoding', choices=('rgb8', 'bgr8'), default='rgb8', help='raw image encoding')
    p.add_argument('--topic', default='/camera/image_raw')
    p.add_argument('--gt-topic', default='/gt/labels', help="ground-truth label topic ('' for none)")
    p.add_argument('--prompts-out', type=pathlib.Path, default=None,
                   help='prompts YAML (default: OUT_prompts/prompts.yaml beside the bag)')
    p.add_argument('--fps', type=float, default=None, help='frame rate (default: the video\'s, or 25)')
    p.add_argument('--start', type=float, default=1_700_000_000.0, help='stamp of the first frame, s')
    p.add_argument('--frame-id', default='camera')
    p.add_argument('--width', type=int, default=None, help='resize to this width (keeps the aspect)')
    p.add_argument('--max-frames', type=int, default=None)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = convert(args)
    except ConvertError as error:
        print(f'sam2_video_to_bag: error: {error}', file=sys.stderr)
        return 2
    print(f'sam2_video_to_bag: wrote {summary["frames"]} frames on {summary["topic"]} to '
          f'{summary["bag"]} ({summary["storage"]})'
          + (f', ground truth on {summary["gt_topic"]}' if summary['gt_topic'] else '')
          + (f', prompts {summary["prompts"]}' if summary['prompts'] else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Quick-start demo: track objects through a video with the Python API and write overlays.

    python -m sam2_ros.tools.demo                      # the bundled sample clip and its prompts
    python -m sam2_ros.tools.demo --video V.mp4 --prompts P.yaml --checkpoint sam2.1_hiera_tiny.pt
    sam2_demo --help                                   # installed console script

Writes OUT/overlay.mp4 (every frame), OUT/frame_NNNNN.png (every --png-every frames) and
OUT/overlay_sheet.png (those PNGs side by side). Without --checkpoint, Meta's official SAM 2.1
checkpoint of --model is downloaded once into the Hugging Face Hub cache; when that fails
(offline) the demo stops with the reason, or with --random-weights goes on with a randomly
initialised model and stamps every overlay with a warning: such masks are meaningless, they only
show that the pipeline runs.
"""
from __future__ import annotations

import argparse
import itertools
import pathlib
import sys
import textwrap
import time
from typing import Iterator

import cv2
import numpy as np

from sam2_ros.tools.prompts_file import PromptsFileError, PromptSpec, load_prompts
from sam2_ros.visualization import contact_sheet, overlay, stamp
from sam2_ros.visualization import draw_prompts as draw_prompt
from sam2_ros.tools.cli import HelpFormatter
from sam2_ros.tools.detector_args import add_detector_arguments, detector_kwargs, text_without_detector

MODELS = ('tiny', 'small', 'base_plus', 'large', 'edgetam')
RANDOM_WEIGHTS_STAMP = 'RANDOM WEIGHTS: masks are meaningless; pass --checkpoint'
RANDOM_WEIGHTS_FRAMES = 16  # frames run with random weights unless --max-frames says otherwise
_VIDEO_SUFFIXES = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v')
_IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


class DemoError(RuntimeError):
    """An error the user can act on; main() prints it and exits 2."""


# --- bundled sample -------------------------------------------------------------------------

def bundled_sample(name: str) -> pathlib.Path:
    """Path of a file of data/sample/ in a source checkout or an installed package."""
    candidates = [pathlib.Path(__file__).resolve().parents[2] / 'data' / 'sample' / name,
                  pathlib.Path(sys.prefix) / 'share' / 'sam2_ros' / 'data' / 'sample' / name]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(pathlib.Path(get_package_share_directory('sam2_ros'))
                          / 'data' / 'sample' / name)
    except Exception:  # not a ROS environment, or sam2_ros not in its index
        pass
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]


# --- video ----------------------------------------------------------------------------------

def video_fps(path: pathlib.Path | str, default: float = 25.0) -> float:
    """Frame rate of a video file (``default`` for an image folder or an unknown rate)."""
    path = pathlib.Path(path)
    if path.is_dir():
        return default
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return fps if fps and 1.0 <= fps <= 1000.0 else default


def read_frames(path: pathlib.Path | str, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield H x W x 3 uint8 RGB frames of a video file or a folder of images (sorted by name)."""
    path = pathlib.Path(path)
    if max_frames is not None and max_frames <= 0:
        return
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise DemoError(f'no images ({", ".join(_IMAGE_SUFFIXES)}) in {path}')
        for count, file in enumerate(files):
            if max_frames is not None and count >= max_frames:
                return
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise DemoError(f'cannot read image {file}')
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return
    if not path.is_file():
        raise DemoError(f'no such video: {path}')
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DemoError(f'OpenCV cannot open the video {path}')
    try:
        count = 0
        while max_frames is None or count < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if count == 0:
            raise DemoError(f'no frames could be decoded from {path}')
    finally:
        cap.release()


# --- prompts --------------------------------------------------------------------------------

def prompts_by_frame(specs: list[PromptSpec], fps: float) -> dict[int, list[PromptSpec]]:
    """Group prompts by frame index; a ``stamp`` counts as seconds from the video's start."""
    grouped: dict[int, list[PromptSpec]] = {}
    for spec in specs:
        if spec.frame is not None:
            index = spec.frame
        else:
            index = int(round((spec.stamp[0] + spec.stamp[1] * 1e-9) * fps))
        grouped.setdefault(index, []).append(spec)
    return grouped


def draw_prompts(image: np.ndarray, specs: list[PromptSpec]) -> np.ndarray:
    """Mark the prompts of one frame on an RGB image: points (green: foreground, red:
    background) and boxes, each labelled with its object id (a mask prompt is not drawn: the
    object's mask shows it)."""
    for spec in specs:
        if spec.text is None:  # a text prompt: its objects show as the detector starts them
            image = draw_prompt(image, points=spec.points, labels=spec.labels, box=spec.box,
                                obj_id=spec.object_id)
    return image


# --- model ----------------------------------------------------------------------------------

def _resolve_checkpoint(args) -> str:
    """Path of the checkpoint: --checkpoint (a path or a Hub id), or the official SAM 2.1 one
    (downloaded once into the Hugging Face Hub cache)."""
    from sam2_ros.model.checkpoint import resolve_checkpoint

    return str(resolve_checkpoint(args.checkpoint, args.model))


def _load_tracker(checkpoint: str, args):
    from sam2_ros import Tracker

    return Tracker.from_pretrained(checkpoint, model=args.model, image_size=args.image_size,
                                   device=args.device, **detector_kwargs(args))


def _random_tracker(args):
    from sam2_ros import Tracker

    return Tracker.from_config(model=args.model, image_size=args.image_size, device=args.device,
                               **detector_kwargs(args))


def _build_tracker(args):
    """Returns (tracker, random_weights). Raises DemoError when there is no way on.

    Only a missing default checkpoint (None: the download failed) may fall back to random
    weights, and only with --random-weights; an explicit --checkpoint that fails is an error.
    """
    from sam2_ros.model.checkpoint import CheckpointError

    try:
        checkpoint = _resolve_checkpoint(args)
    except CheckpointError as error:
        if args.checkpoint is not None or not args.random_weights:
            hint = '' if args.checkpoint is not None else (
                '\n  Real masks need the checkpoint: run once with internet access (it is cached)'
                '\n  or download it yourself and pass --checkpoint PATH.'
                '\n  To try the pipeline without it, add --random-weights (masks are meaningless).')
            raise DemoError(f'no checkpoint: {error}{hint}') from None
        _shout(f'No checkpoint: {error}', '',
               'Going on with RANDOM WEIGHTS because of --random-weights: the masks are '
               'meaningless and only show that the pipeline runs end to end. '
               "Real masks need Meta's SAM 2.1 checkpoint, downloaded on first use when this "
               'machine is online, or given with --checkpoint PATH.')
        return _random_tracker(args), True
    print(f'[demo] checkpoint: {checkpoint}')
    return _load_tracker(checkpoint, args), False


def _shout(*paragraphs: str) -> None:
    """Print a boxed, wrapped warning to stderr."""
    lines = [line for text in paragraphs for line in textwrap.wrap(text, 76) or ['']]
    width = max(len(line) for line in lines) + 4
    bar = '!' * width
    print('\n'.join([bar, *(f'! {line.ljust(width - 4)} !' for line in lines), bar]),
          file=sys.stderr, flush=True)


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, 'detach'):
        value = value.detach().float().cpu().numpy() if value.dtype.is_floating_point \
            else value.detach().cpu().numpy()
    return np.asarray(value)


# --- main -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='sam2_demo', description=__doc__.split('\n\n')[0],
        formatter_class=HelpFormatter)
    parser.add_argument('--video', type=pathlib.Path, default=None,
                        help='video file or folder of images (default: the bundled sample clip)')
    parser.add_argument('--prompts', type=pathlib.Path, default=None,
                        help='prompts YAML (default: the bundled sample prompts)')
    parser.add_argument('--checkpoint', default=None,
                        help="Meta's checkpoint file (.pt), a folder, or a Hugging Face Hub id "
                             '(facebook/sam2.1-hiera-small, or a SAM 2 saved by transformers); default: '
                             'the official SAM 2.1 checkpoint of --model, downloaded once into the Hub cache')
    parser.add_argument('--model', default='tiny', choices=MODELS,
                        help='SAM 2 size, or edgetam (EdgeTAM; --image-size a multiple of 256)')
    parser.add_argument('--image-size', type=int, default=512,
                        help='model input size (1024 is SAM 2 as trained; 512 is 4x faster)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--max-frames', type=int, default=None, help='stop after N frames')
    # not outputs/demo: that is scripts/demo.sh's ROS run, whose overlay.mp4 and contact sheet
    # this one would overwrite
    parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('outputs/demo_api'),
                        help='output folder')
    parser.add_argument('--png-every', type=int, default=8,
                        help='save every Nth overlay as PNG (and in the contact sheet)')
    parser.add_argument('--random-weights', action='store_true',
                        help='if the checkpoint cannot be had, go on with a randomly initialised '
                             'model (meaningless masks; shows the pipeline runs)')
    add_detector_arguments(parser)
    return parser


def run(args) -> int:
    video = args.video if args.video is not None else bundled_sample('bunny.mp4')
    prompts_path = args.prompts if args.prompts is not None else bundled_sample('prompts.yaml')
    if args.png_every < 1:
        raise DemoError('--png-every must be >= 1')
    if args.image_size < 64 or args.image_size % 32:
        raise DemoError('--image-size must be a multiple of 32, at least 64')
    if args.model == 'edgetam' and args.image_size % 256:
        raise DemoError(f'--image-size {args.image_size} does not fit --model edgetam: a multiple of 256 (512, 1024)')
    specs = load_prompts(prompts_path)
    if text_without_detector(specs, args):
        raise DemoError(text_without_detector(specs, args))
    fps = video_fps(video)
    by_frame = prompts_by_frame(specs, fps)
    frames = read_frames(video, args.max_frames)
    first = next(frames, None)  # fail on an unreadable video before loading the model
    if first is None:
        raise DemoError(f'no frames in {video}')
    print(f'[demo] video: {video} ({first.shape[1]}x{first.shape[0]}, {fps:g} fps)')
    print(f'[demo] prompts: {prompts_path} ({len(specs)} prompt(s) on frame(s) '
          f'{sorted(by_frame)})')

    tracker, random_weights = _build_tracker(args)
    if random_weights and args.max_frames is None:
        # meaningless masks: show that the pipeline runs, without minutes of CPU time
        frames = itertools.islice(frames, RANDOM_WEIGHTS_FRAMES - 1)
        print(f'[demo] random weights: stopping after {RANDOM_WEIGHTS_FRAMES} frames '
              '(--max-frames N to change)')

    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    video_out = args.out / 'overlay.mp4'
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(video_out), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                             (width, height))
    if not writer.isOpened():
        raise DemoError(f'OpenCV cannot write {video_out}')
    pngs, captions, times = [], [], []
    index = -1
    try:
        for index, frame in enumerate(_chain(first, frames)):
            if frame.shape[:2] != (height, width):
                raise DemoError(f'frame {index} is {frame.shape[1]}x{frame.shape[0]}, '
                                f'the video started at {width}x{height}')
            specs_now = by_frame.get(index, [])
            prompts = [spec.to_prompt(frame.shape) for spec in specs_now]
            start = time.perf_counter()
            result = tracker.track(frame, prompts=prompts)
            elapsed = time.perf_counter() - start
            times.append(elapsed)
            ids = [int(i) for i in result.object_ids]
            masks = _as_numpy(result.masks).astype(bool) if ids else \
                np.zeros((0, height, width), bool)
            scores = _as_numpy(result.scores).reshape(-1) if ids else None
            image = overlay(frame, masks, ids, scores=scores, labels=result.labels)
            if specs_now:
                image = draw_prompts(image, specs_now)
            stamped = stamp(image, RANDOM_WEIGHTS_STAMP) if random_weights else image
            writer.write(cv2.cvtColor(stamped, cv2.COLOR_RGB2BGR))
            if index % args.png_every == 0:
                png = args.out / f'frame_{index:05d}.png'
                cv2.imwrite(str(png), cv2.cvtColor(stamped, cv2.COLOR_RGB2BGR))
                pngs.append(image)  # unstamped: the sheet carries one banner of its own
                captions.append(f'frame {index}')
            areas = ', '.join(f'{i}{" " + result.labels[i] if result.labels.get(i) else ""}: {int(m.sum())} px'
                              for i, m in zip(ids, masks)) or 'none'
            print(f'[demo] frame {index:4d}  {elapsed * 1000:8.1f} ms  objects {areas}',
                  flush=True)
    finally:
        writer.release()
    late = [spec for key, group in by_frame.items() if key > index for spec in group]
    if late:
        print(f'[demo] warning: {len(late)} prompt(s) are for frames after the last one '
              f'({index}) and were not used', file=sys.stderr)
    sheet = args.out / 'overlay_sheet.png'
    banner = RANDOM_WEIGHTS_STAMP if random_weights else None
    cv2.imwrite(str(sheet), cv2.cvtColor(contact_sheet(pngs, columns=3, captions=captions,
                                                       banner=banner), cv2.COLOR_RGB2BGR))

    steady = times[1:] or times
    print(f'[demo] {len(times)} frames; first {times[0] * 1000:.0f} ms (warm-up), then '
          f'{np.mean(steady) * 1000:.1f} ms per frame on average ({1 / np.mean(steady):.1f} fps)')
    print(f'[demo] wrote {video_out}')
    print(f'[demo] wrote {len(pngs)} PNG overlay(s) {args.out}/frame_*.png and {sheet}')
    if random_weights:
        _shout('These overlays come from RANDOM WEIGHTS: the masks are meaningless. '
               "For real masks, get Meta's checkpoint (downloaded on first use when online) "
               'or pass --checkpoint PATH.')
    return 0


def _chain(first, rest):
    yield first
    yield from rest


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from sam2_ros.model.text_detector import DetectorLoadError, MissingDependencyError

    try:
        return run(args)
    except (DemoError, PromptsFileError, DetectorLoadError, MissingDependencyError) as error:
        print(f'[demo] error: {error}', file=sys.stderr)
        return 2
    except ImportError as error:
        print(f'[demo] error: {error}\n  (the SAM 2 model or tracker is not available in this '
              'installation; run scripts/setup.sh)', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())

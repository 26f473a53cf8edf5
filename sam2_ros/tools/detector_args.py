"""The text detector's command-line options, shared by the tools that run the tracker in-process
(``sam2_evaluate``, the demo): ``--detector`` and its settings, turned into ``Tracker`` keyword
arguments. The detector runs synchronously there (on the frame it is due, before that frame is
tracked): runs are reproducible and the boxes exact on their frame."""
from __future__ import annotations

import argparse
from typing import Dict, Sequence


def add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group('text prompts (prompts-file entries {frame: N, text: "person . red cup"}); '
                                  "need the extra sam2_ros[text]")
    g.add_argument('--detector', default=None, metavar='ID_OR_DIR',
                   help='open-vocabulary detector for text prompts: a Hugging Face Hub id '
                        '(IDEA-Research/grounding-dino-tiny) or a local directory')
    g.add_argument('--detector-box-threshold', type=float, default=0.35, help='keep detections scored above this')
    g.add_argument('--detector-text-threshold', type=float, default=0.25,
                   help="Grounding DINO: tokens above this make a detection's own label")
    g.add_argument('--detector-every-n', type=int, default=30,
                   help='frames between detector runs (0: on the text prompt and on losses only)')
    g.add_argument('--detector-device', default=None, help="the detector's device (default: the tracker's)")
    g.add_argument('--detector-image-size', type=int, default=None,
                   help="Grounding DINO's shortest edge (default: the checkpoint's, 800)")


def detector_kwargs(args) -> Dict:
    """``Tracker`` keyword arguments for the options (empty without ``--detector``)."""
    if not args.detector:
        return {}
    options = dict(box_threshold=args.detector_box_threshold, text_threshold=args.detector_text_threshold,
                   every_n=args.detector_every_n, image_size=args.detector_image_size, asynchronous=False)
    if args.detector_device:
        options['device'] = args.detector_device
    return {'detector': args.detector, 'detector_options': options}


def text_without_detector(specs: Sequence, args) -> str:
    """Why the run cannot start: text prompts and no ``--detector`` ('' when fine)."""
    if args.detector or not any(getattr(s, 'text', None) is not None for s in specs):
        return ''
    return ('the prompts hold text prompts: give --detector (e.g. IDEA-Research/grounding-dino-tiny, or a '
            'local directory) and install the extra sam2_ros[text]')

"""The services of a camera's node: ``~/reset`` (drop every object) and ``~/track_everything``
(segment everything on the latest tracked frame and track what is new). Both are answered at
once; the work is done under the tracker lock when it is free, else by the worker as soon as
its frame is done (reset) or between two frames (segment everything: seconds on a CPU)."""
from __future__ import annotations

import time
from typing import Callable, Mapping

import numpy as np

from sam2_ros.ros import prompts
from sam2_ros.ros.stream import CameraStream


class Services:
    """The service handlers (see the module docstring); ``state()`` is the node's lifecycle
    state's label, ``p`` its parameters."""

    def __init__(self, stream: CameraStream, p: Mapping, state: Callable[[], str], logger) -> None:
        self._stream = stream
        self._p = p
        self._state = state
        self._logger = logger

    def on_reset(self, request, response):
        """Drop every object. Applied now if no frame is being tracked, else as soon as that
        frame is done, before the next one. Prompts waiting now are dropped too; prompts that
        arrive after this call are kept (they come after the reset)."""
        stream = self._stream
        n = len(set(stream.ids))
        now = stream.reset_objects()
        response.success = True
        response.message = f'dropped {n} object(s)' + (
            '' if now else ' (a frame was being tracked: applied as soon as it is done, before the next frame)')
        stream.log('info', 'reset', f'reset: {response.message}')
        return response

    def on_track_everything(self, request, response):
        """Segment everything on the latest tracked frame and track each mask found (largest
        first, up to max_objects), as mask prompts on that frame.

        The work is queued for the worker, which runs it between two frames and logs the
        result (``track_everything: started ...``). Calls while one is waiting are answered as
        covered by it."""
        stream = self._stream
        tracker, last, state = stream.tracker, stream.last_frame, self._state()
        if state != 'active' or tracker is None:
            response.success, response.message = False, f'the node is {state}: activate it first'
        elif last is None:
            response.success, response.message = False, 'no frame tracked yet: send images first'
        elif len(set(stream.ids) | stream.prompts.pending_ids()) >= tracker.max_objects:
            response.success = False
            response.message = f'max_objects ({tracker.max_objects}) objects are tracked already'
        elif stream.jobs:
            response.success = True
            response.message = 'already queued: the segment-everything run waiting covers this request'
        else:
            stream.jobs.append(self._track_everything)
            stream.frames.wake()
            response.success = True
            response.message = ('queued: segmenting everything on the latest tracked frame (stamped '
                                f'{prompts.format_stamp(prompts.stamp_to_ns(last[1].stamp))}) between two '
                                'frames; the new objects start on that frame and are logged')
        if not response.success:  # rate-limited: a burst of refused calls is one line
            stream.log('info', 'track_everything:' + response.message[:20], f'track_everything: {response.message}')
        return response

    def _track_everything(self) -> None:
        """The work of ~/track_everything (worker thread, tracker lock held)."""
        from sam2_ros.image.automatic import AutomaticMaskGenerator
        from sam2_ros.tracking.reseed import select_new_masks

        p, stream, logger = self._p, self._stream, self._logger
        tracker, last = stream.tracker, stream.last_frame
        if tracker is None or last is None or last[3] is None:  # no label: that frame's outputs failed
            logger.info('track_everything: started 0 objects: no frame tracked since the reset')
            return
        rgb, header, index, label = last
        free = tracker.max_objects - len(tracker.object_ids)
        if free <= 0:
            logger.info(f'track_everything: started 0 objects: max_objects ({tracker.max_objects}) '
                        'objects are tracked already')
            return
        start = time.perf_counter()
        generator = AutomaticMaskGenerator(
            tracker.model, points_per_side=p['everything_points_per_side'],
            points_per_batch=p['everything_points_per_batch'], pred_iou_thresh=p['everything_pred_iou_thresh'],
            stability_score_thresh=p['everything_stability_score_thresh'],
            box_nms_thresh=p['everything_box_nms_thresh'],
            min_mask_region_area=p['everything_min_mask_region_area'])
        records = generator.generate(rgb)
        ids = [i for i in np.unique(label) if i]
        existing = np.stack([label == i for i in ids]) if ids else None
        chosen = select_new_masks(records, existing, free, p['everything_min_area'])
        used = set(tracker.object_ids) | stream.prompts.pending_ids() | {stream.last_click_id}
        new = []
        for mask in chosen:
            oid = prompts.next_free_id(used)
            used.add(oid)
            new.append(prompts.Prompt(oid, mask=mask))
        if new:
            stream.last_click_id = new[-1].obj_id
        where = 'on the latest frame'
        if new and index in tracker.buffered_frames:
            tracker.prompt_past(index, new)
            stream.ids = list(tracker.object_ids)
        elif new:
            stamp = prompts.stamp_to_ns(header.stamp)
            for pr in new:
                stream.prompts.push(prompts.PromptOp('add', pr.obj_id, pr, None, stamp, '~/track_everything'))
            where = 'from the next frame (prompt_buffer is 0)'
        took = time.perf_counter() - start
        if new:
            message = (f'started {len(new)} object(s) {where}: ids {new[0].obj_id} to {new[-1].obj_id} '
                       f'({len(records)} mask(s) found in {took:.1f} s)')
        else:
            message = f'started 0 objects: {len(records)} mask(s) found in {took:.1f} s, none new and large enough'
        logger.info(f'track_everything: {message}')

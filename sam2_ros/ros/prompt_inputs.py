"""The prompt topics of a camera's node: ``~/prompt`` (ImageMarker), ``~/prompt_mask`` (label
image), ``~/click`` (Point) and ``~/prompt_boxes`` (Detection2DArray, where vision_msgs is
installed). Each callback turns its message into prompt operations on the stream's prompt
queue (:mod:`sam2_ros.ros.prompts`: what each message means and when it applies), or refuses it
with the reason; none waits for the frame being tracked, none lets a bad message stop the node."""
from __future__ import annotations

from typing import Mapping

from sam2_ros.ros import conversions, detections, prompts
from sam2_ros.ros.objects import ObjectBook
from sam2_ros.ros.stream import CameraStream


class PromptInputs:
    """The callbacks (see the module docstring); ``p``: the node's parameters."""

    def __init__(self, stream: CameraStream, objects: ObjectBook, p: Mapping, logger) -> None:
        self._stream = stream
        self._objects = objects
        self._p = p
        self._logger = logger

    def on_marker(self, msg) -> None:
        try:
            op = prompts.marker_to_op(msg)
        except prompts.PromptMessageError as error:
            self._stream.bad_prompt('~/prompt', str(error))
            return
        except Exception as error:  # noqa: BLE001 - a message must never stop the node
            self._stream.bad_prompt('~/prompt', f'unexpected {type(error).__name__}: {error}')
            return
        self._stream.prompts.push(op)

    def on_prompt_mask(self, msg) -> None:
        try:
            labels = conversions.image_to_labels(msg, max_pixels=self._p['max_image_pixels'])
            ops = prompts.labels_to_ops(labels, prompts.stamp_to_ns(msg.header.stamp), max_ids=self._p['max_objects'])
            for op in ops:
                prompts.check_id(op.obj_id)
        except (conversions.ConversionError, prompts.PromptMessageError) as error:
            self._stream.bad_prompt('~/prompt_mask', str(error))
            return
        except Exception as error:  # noqa: BLE001 - a message must never stop the node
            self._stream.bad_prompt('~/prompt_mask', f'unexpected {type(error).__name__}: {error}')
            return
        for op in ops:
            self._stream.prompts.push(op)

    def on_click(self, msg) -> None:
        # Not under the tracker lock (that would wait for the frame in progress): the last id
        # given to a click is remembered, so a click whose prompt the worker has just taken
        # (no longer pending, not yet tracked) is not given again.
        stream = self._stream
        try:
            obj_id = prompts.next_free_id(stream.used_ids())
            op = prompts.click_to_op(msg, obj_id)
        except prompts.PromptMessageError as error:
            stream.bad_prompt('~/click', str(error))
            return
        stream.last_click_id = obj_id
        stream.prompts.push(op)
        self._logger.info(f'click at ({msg.x:.0f}, {msg.y:.0f}): new object {obj_id}')

    def on_prompt_boxes(self, msg) -> None:
        """Detections (vision_msgs/Detection2DArray) -> box prompts, by the ``reseed`` policy
        (matching and policy: :mod:`sam2_ros.tracking.reseed`)."""
        stream, book = self._stream, self._objects
        try:
            boxes, scores, classes = detections.to_arrays(msg)
        except (ValueError, TypeError, AttributeError) as error:
            stream.bad_prompt('~/prompt_boxes', f'cannot read the detections: {error}')
            return
        stamp = prompts.stamp_to_ns(msg.header.stamp)
        with book.lock:
            tracked = dict(book.tracked)
            pending = stream.prompts.pending_ids()
            free = max(0, self._p['max_objects'] - len(set(tracked) | pending))
            plan = book.reseeder.plan(boxes, scores, classes, tracked, stream.frame_count, free)
            used = set(stream.ids) | pending | {stream.last_click_id}
            ops = [prompts.PromptOp('add', oid, prompts.Prompt(oid, box=box), None, stamp, '~/prompt_boxes')
                   for oid, box, _ in plan.reprompt]
            for box, cls, _ in plan.new:
                oid = prompts.next_free_id(used)
                used.add(oid)
                stream.last_click_id = oid
                ops.append(prompts.PromptOp('add', oid, prompts.Prompt(oid, box=box), cls, stamp, '~/prompt_boxes'))
                book.reseeder.started(oid, box, cls, stream.frame_count)
        for op in ops:
            stream.prompts.push(op)
        if ops:
            again = ', '.join(str(o) for o, _, _ in plan.reprompt) or 'none'
            new = ', '.join(str(o.obj_id) for o in ops[len(plan.reprompt):]) or 'none'
            stream.log('info', 'prompt_boxes', f'~/prompt_boxes: {len(boxes)} detection(s): objects prompted '
                       f'again with their box: {again}; new objects: {new} (reseed: {self._p["reseed"]})')

"""Per-object state from the tracker's presence scores over time: visible, occluded or lost.

Pure Python (no torch, no rclpy). SAM 2 scores every tracked object on every frame with an
object-presence probability (``TrackResult.scores``; its mask is empty when the score is below
0.5). One frame's score is noisy, so the state changes with hysteresis, in the score and in time:

* a frame *sees* the object when its score is >= ``present_threshold``, *misses* it when the
  score is < ``absent_threshold`` (taken as at most ``present_threshold``); a score in between
  changes nothing and breaks no run;
* ``visible`` -> ``occluded`` after ``occluded_frames`` missing frames in a row;
* ``occluded`` -> ``lost`` once ``lost_frames`` frames in a row have missed it (counted from the
  first missing one; taken as at least ``occluded_frames``);
* ``occluded`` or ``lost`` -> ``visible`` after ``visible_frames`` seeing frames in a row.

An object starts ``visible`` when it is first reported (it was just prompted). Lost objects
keep their id (and the tracker keeps their memory): SAM 2 often finds an object again when it
comes back, and a detector can re-prompt it (:mod:`sam2_ros.tracking.reseed`). The tracker's objects
are the truth for which ids exist: ids no longer reported are forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence, Tuple

VISIBLE, OCCLUDED, LOST = "visible", "occluded", "lost"
STATES = (VISIBLE, OCCLUDED, LOST)

Box = Tuple[float, float, float, float]


@dataclass
class ObjectState:
    """One object's state and what it is derived from."""

    state: str = VISIBLE
    score: float = 1.0  # presence probability on the last frame
    seen_run: int = 0  # seeing frames in a row
    missed_run: int = 0  # missing frames in a row
    frames: int = 0  # frames reported
    since: int = 0  # frames in the current state
    last_box: Optional[Box] = None  # x0, y0, x1, y1 of its mask on the last frame it had one


class ObjectStates:
    """The states of all tracked objects, updated once per tracked frame (:meth:`update`).

    Args:
        present_threshold, absent_threshold: presence-score hysteresis (see the module doc).
        visible_frames, occluded_frames, lost_frames: frames in a row for each change.
    """

    def __init__(self, present_threshold: float = 0.6, absent_threshold: float = 0.4,
                 visible_frames: int = 1, occluded_frames: int = 2, lost_frames: int = 30) -> None:
        self.configure(present_threshold, absent_threshold, visible_frames, occluded_frames, lost_frames)
        self._objects: Dict[int, ObjectState] = {}

    def configure(self, present_threshold: float = 0.6, absent_threshold: float = 0.4,
                  visible_frames: int = 1, occluded_frames: int = 2, lost_frames: int = 30) -> None:
        """Change the settings; objects keep their states and runs."""
        for name, value in (("present_threshold", present_threshold), ("absent_threshold", absent_threshold)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        for name, value in (("visible_frames", visible_frames), ("occluded_frames", occluded_frames),
                            ("lost_frames", lost_frames)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.present_threshold = float(present_threshold)
        self.absent_threshold = min(float(absent_threshold), self.present_threshold)
        self.visible_frames = int(visible_frames)
        self.occluded_frames = int(occluded_frames)
        self.lost_frames = max(int(lost_frames), self.occluded_frames)

    def update(self, object_ids: Sequence[int], scores: Sequence[float],
               boxes: Optional[Sequence[Optional[Box]]] = None) -> Dict[int, str]:
        """One tracked frame: each object's presence score (and the box of its mask, None when
        empty). Returns the states after it, by object id (only the ids given)."""
        ids = [int(i) for i in object_ids]
        if len(scores) != len(ids) or (boxes is not None and len(boxes) != len(ids)):
            raise ValueError(f"{len(ids)} object ids need as many scores (got {len(scores)})"
                             + ("" if boxes is None else f" and boxes (got {len(boxes)})"))
        for gone in set(self._objects) - set(ids):
            del self._objects[gone]
        out = {}
        for k, oid in enumerate(ids):
            st = self._objects.get(oid)
            if st is None:
                st = self._objects[oid] = ObjectState()
            self._step(st, float(scores[k]))
            if boxes is not None and boxes[k] is not None:
                st.last_box = tuple(float(v) for v in boxes[k])
            out[oid] = st.state
        return out

    def _step(self, st: ObjectState, score: float) -> None:
        st.score = score
        st.frames += 1
        if score >= self.present_threshold:
            st.seen_run, st.missed_run = st.seen_run + 1, 0
        elif score < self.absent_threshold:
            st.seen_run, st.missed_run = 0, st.missed_run + 1
        before = st.state
        if st.state == VISIBLE:
            if st.missed_run >= self.occluded_frames:
                st.state = OCCLUDED
        elif st.seen_run >= self.visible_frames:
            st.state = VISIBLE
        if st.state == OCCLUDED and st.missed_run >= self.lost_frames:
            st.state = LOST
        st.since = 1 if st.state != before else st.since + 1

    # ------------------------------------------------------------------ queries
    def state(self, obj_id: int) -> Optional[str]:
        st = self._objects.get(int(obj_id))
        return st.state if st is not None else None

    def get(self, obj_id: int) -> Optional[ObjectState]:
        return self._objects.get(int(obj_id))

    def items(self) -> Iterable[Tuple[int, ObjectState]]:
        return sorted(self._objects.items())

    def counts(self) -> Dict[str, int]:
        """Objects per state (every state listed)."""
        out = {s: 0 for s in STATES}
        for st in self._objects.values():
            out[st.state] += 1
        return out

    def remove(self, obj_id: int) -> None:
        self._objects.pop(int(obj_id), None)

    def clear(self) -> None:
        self._objects.clear()

    def __len__(self) -> int:
        return len(self._objects)

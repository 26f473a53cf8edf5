"""The playback of ``sam2_live``: the bag's image messages go out unchanged at the bag's timing
(scaled by ``--rate``) with ``/clock``, each frame's prompts just ahead of it, then the tool waits
for the node's last answers."""
from __future__ import annotations

import time

from sam2_ros.tools.live_node import wait

PROMPT_LEAD = 3  # frame_policy all: send a frame's prompts when at most this many earlier
                 # frames are unanswered (the node's prompt_buffer is 8 by default)


class Playback:
    """Publishes frames, prompts and /clock to the node; ``recorder`` tells what it answered.

    Args:
        args: the command line (``rate``, ``clock_hz``, ``quiet``, ``drain_timeout``).
        frames: the bag's image headers (:class:`~sam2_ros.tools.bagio.ImageFrame`).
        groups: {frame index: [(kind, message)]}: the prompts ('marker', 'mask' or 'text') of each frame.
        image_pub, marker_pub, mask_pub, clock_pub: the publishers (``clock_pub`` None: no /clock).
        hold: keep a frame's prompts until at most :data:`PROMPT_LEAD` earlier frames are
            unanswered (``frame_policy: all``: frames queue up in the node, and a prompt stamped
            ahead of them expires after ``prompt_buffer`` tracked frames).
        warnings: the run's warnings, appended to.
        check: raises when the node died (or None).
        text_pub: the publisher of ``<node>/text_prompt`` (std_msgs/String), for text prompts.
    """

    def __init__(self, args, frames, groups, recorder, image_pub, marker_pub, mask_pub, clock_pub, hold: bool,
                 warnings: list, check=None, text_pub=None) -> None:
        self.args, self.frames, self.groups = args, frames, groups
        self.recorder = recorder
        self.image_pub, self.marker_pub, self.mask_pub, self.clock_pub = image_pub, marker_pub, mask_pub, clock_pub
        self.hold = hold
        self.pubs = {'marker': marker_pub, 'mask': mask_pub, 'text': text_pub}
        self.warnings = warnings
        self.check = check
        self.log0 = frames[0].log_time
        self.wall0 = None  # monotonic time of the first frame
        self.clock = {'published': clock_pub is not None, 'messages': 0, 'first_ns': None, 'last_ns': None}
        self.clock_at_last_frame = None
        self.prompt_log: list = []
        self.sent: dict[int, float] = {}  # image stamp ns -> when it was published (monotonic)
        self.start = self.end_sent = None
        self._pending = sorted(groups)
        self._published = 0  # frames published so far
        self._next_tick = None

    def playclock(self, wall: float) -> int:
        """Wall (monotonic) time -> the playback clock (the bag's log time), ns."""
        return self.log0 + int(round((wall - self.wall0) * self.args.rate * 1e9)) if self.wall0 is not None else self.log0

    def publish_clock(self, ns_value: int) -> None:
        if self.clock_pub is None:
            return
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        info = self.clock
        if info['last_ns'] is not None and ns_value < info['last_ns']:
            ns_value = info['last_ns']  # never backwards
        self.clock_pub.publish(Clock(clock=Time(sec=ns_value // 1_000_000_000, nanosec=ns_value % 1_000_000_000)))
        info['messages'] += 1
        info['first_ns'] = ns_value if info['first_ns'] is None else info['first_ns']
        info['last_ns'] = ns_value

    def tick(self, now: float) -> None:
        """/clock at --clock-hz: the playback clock (past the bag's end while draining)."""
        if self.clock_pub is not None and now >= self._next_tick:
            self.publish_clock(self.playclock(now))
            self._next_tick = max(self._next_tick + 1.0 / self.args.clock_hz, now)

    def send_prompts(self, force: bool = False) -> None:
        """The prompts of every frame whose turn has come (see :class:`Playback`)."""
        while self._pending:
            i = self._pending[0]
            _, answered, _ = self.recorder.state()
            if self._published < i:
                return  # frame i-1 not out yet
            behind = min(self._published, i) - (answered + 1)  # frames ahead of i not answered yet
            if self.hold and behind > PROMPT_LEAD and not force:
                return
            for kind, msg in self.groups[i]:
                self.pubs[kind].publish(msg)
            late = answered >= i
            self.prompt_log.append({'frame': i, 'messages': len(self.groups[i]),
                                    'frames_published_before': self._published, 'late': late})
            if late:
                self.warnings.append(f'the prompts of frame {i} were sent after the node had answered it: '
                                     'the node applies them to a later frame')
            self._pending.pop(0)

    def play(self, raw_messages) -> None:
        """Publish ``raw_messages`` ((serialized image, log time) in bag order) at their time."""
        args, frames = self.args, self.frames
        self.send_prompts()
        if self.prompt_log:
            time.sleep(0.3)  # prompts and frames travel on different topics
        self.start = self.wall0 = time.monotonic()
        self.publish_clock(self.log0)
        self._next_tick = self.start + 1.0 / args.clock_hz
        for i, (raw, log_time) in enumerate(raw_messages):
            due = self.start + (log_time - self.log0) / 1e9 / args.rate
            while True:
                now = time.monotonic()
                self.send_prompts()
                if now >= due:
                    break
                self.tick(now)
                wake = min(due, self._next_tick if self.clock_pub is not None else due, now + 0.01)
                time.sleep(max(0.0, wake - now))
            if self.check is not None:
                self.check()
            self.publish_clock(log_time)
            self.clock_at_last_frame = self.clock['last_ns']
            self.sent.setdefault(frames[i].header.stamp_ns, time.monotonic())
            self.image_pub.publish(raw)
            self._published = i + 1
            self.send_prompts()
            if not args.quiet and (i + 1) % max(1, len(frames) // 10) == 0:
                got, _, _ = self.recorder.state()
                print(f'[sam2_live] {i + 1}/{len(frames)} frames sent, {got} answered', flush=True)
        self.end_sent = time.monotonic()

    def drain(self, expected: int) -> float:
        """Wait for the node's answers: every one of the ``expected`` stamps, or the last frame's
        (later ones are all there is), or none for --drain-timeout seconds; then for the overlays
        still on their way and a diagnostics message after the last frame (its timer runs on the
        /clock that keeps going meanwhile). Returns when it finished (monotonic)."""
        args, recorder = self.args, self.recorder
        last_stamp = self.frames[-1].header.stamp_ns

        def drained():
            self.send_prompts(force=True)
            got, _, last_arrival = recorder.state()
            if got >= expected or last_stamp in recorder.received:
                return True
            idle_since = max(self.end_sent, last_arrival or 0.0)
            return time.monotonic() - idle_since > args.drain_timeout

        def check_and_tick():
            if self.check is not None:
                self.check()
            self.tick(time.monotonic())

        step = min(0.05, 1.0 / args.clock_hz)
        wait(drained, 1e9, check_and_tick, step)
        mark = time.monotonic()
        wait(lambda: any(d['arrival'] > mark + 0.2 for d in recorder.diagnostics),
             min(5.0, 0.5 + 1.2 / args.rate), check_and_tick, step)
        return time.monotonic()

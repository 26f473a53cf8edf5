"""The end and the start of a node process (single camera or several): exit statuses, the
signal rules, autostart, and closing the nodes. Used by :mod:`sam2_ros.ros.entry` and
:mod:`sam2_ros.ros.multi`.

Exit statuses: 0 after a clean stop; 1 when a node cannot configure or activate with
``autostart`` (unknown model, missing checkpoint, ...: the reason is logged); 2 for invalid
parameters, a parameters file that does not parse, or bad cameras at start-up; 128 + N when a
second signal N came more than :data:`SIGNAL_GRACE_S` after the first (the user insisting:
exit at once). A repeat within the grace period is the same request delivered twice (ros2 launch
signals the node and, without a terminal, the process group does too) and is ignored.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from typing import List, Sequence, Tuple

NODE_NAME = 'sam2_tracker'
EXIT_OK, EXIT_CONFIGURE_FAILED, EXIT_BAD_PARAMETERS = 0, 1, 2
SIGNAL_GRACE_S = 1.0


def say(text: str) -> None:
    """One line on stderr, as the node's name says it (before a node exists or after it is gone)."""
    print(f'[{NODE_NAME}] {text}', file=sys.stderr, flush=True)


def install_signal_handlers() -> Tuple[threading.Event, List[float], List[int]]:
    """SIGINT and SIGTERM handlers for a node process (the rules: the module docstring):
    returns the event set by the first signal, the time of that signal (a list, empty until
    then) and the signals ignored as repeats. Installed for the rest of the process."""
    stop = threading.Event()
    first_at: List[float] = []  # monotonic time of the first signal
    ignored: List[int] = []  # signals repeated within the grace period

    def on_signal(signum, frame):
        now = time.monotonic()
        if not first_at:
            first_at.append(now)
            stop.set()
            return
        if now - first_at[0] < SIGNAL_GRACE_S:
            ignored.append(signum)
            return
        os.write(2, f'[{NODE_NAME}] {signal.Signals(signum).name} again {now - first_at[0]:.1f} s after the '
                 f'first signal: exiting at once ({128 + signum})\n'.encode())
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    return stop, first_at, ignored


def init_rclpy(argv: Sequence[str]) -> None:
    """rclpy.init with our signal handling (not rclpy's). Raises :class:`BadRosArguments` for
    ROS arguments rcl refuses, such as a parameters file that does not parse: a bad parameter,
    status 2, not a crash."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    try:
        rclpy.init(args=list(argv), signal_handler_options=SignalHandlerOptions.NO)
    except Exception as error:  # rclpy raises _rclpy.RCLError (not importable by a stable name)
        if type(error).__name__ != 'RCLError':
            raise
        raise BadRosArguments(ros_arguments_error(str(error))) from None


class BadRosArguments(ValueError):
    """The process's ROS arguments cannot be used (the text says what is wrong, where)."""


def ros_arguments_error(text: str) -> str:
    """rcl's message for refused ROS arguments, as one line that says what is wrong where
    (rcl appends the C source locations that raised it: dropped)."""
    text = ' '.join(text.split())
    text = re.sub(r',? at /\S+:\d+', '', text).removeprefix('failed to initialize rcl: ')
    match = re.search(r"Couldn't parse params file: '(?:--params-file )?([^']+)'\. Error: (.*)", text)
    if match:
        return (f'the parameters file {match.group(1)} does not parse: {match.group(2).rstrip(". ")} '
                '(a parameter is one value or a list of one type; config/tracker.yaml shows the layout)')
    return f'the ROS arguments cannot be used: {text}'


def autostart(node, stop: threading.Event) -> bool:
    """Configure and activate ``node`` if its ``autostart`` parameter says so (and no signal
    came first); False, with the reason logged, when a transition failed."""
    from rclpy.lifecycle import TransitionCallbackReturn

    if not node.p['autostart']:
        return True
    for step, trigger in (('configure', node.trigger_configure), ('activate', node.trigger_activate)):
        if stop.is_set():
            break
        if trigger() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().fatal(f'autostart: {step} failed (reason above); exiting with status '
                                    f'{EXIT_CONFIGURE_FAILED}')
            return False
    return True


def spin(executor, stop: threading.Event) -> None:
    """Spin until a signal or until rclpy shuts down."""
    import rclpy

    while not stop.is_set() and rclpy.ok():
        executor.spin_once(timeout_sec=0.1)


def close_nodes(nodes: Sequence, finished: bool, code: int, first_at: List[float], ignored: List[int]) -> None:
    """The end of a node process: exit at once with ``code`` if an inference thread did not
    stop (``finished`` False: it could hang the interpreter's exit), else destroy the nodes;
    then say which repeated signals were ignored, shut rclpy down, and ignore further signals
    while the interpreter exits."""
    import rclpy

    if not finished:
        say('the inference thread did not stop within 10 s; exiting anyway')
        sys.stdout.flush()
        os._exit(code)
    for node in nodes:
        try:
            node.destroy_node()
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass
    if ignored:
        names = ', '.join(signal.Signals(n).name for n in ignored)
        say(f'ignored {names} repeated within {SIGNAL_GRACE_S} s of the first signal '
            '(the same request delivered twice, e.g. by ros2 launch and the process group)')
    rclpy.try_shutdown()
    # Stopped: what is left is the interpreter's exit, during which Python puts the default
    # handlers back, so that a repeat arriving then would kill the process (status -2,
    # launch's "process has died"). Ignore both signals from here: exiting is under way.
    if first_at:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)

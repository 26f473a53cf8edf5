"""What the ROS benchmarks share: the node in its own process on a private DDS domain, and a
client node spun in a background thread (rclpy from the PyPI wheels or a sourced ROS 2)."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Optional, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]


def private_domain(low: int = 120, high: int = 230) -> None:
    """A random DDS domain on loopback only, for this process and the node it starts, so that
    runs on one machine do not hear each other."""
    os.environ['ROS_DOMAIN_ID'] = str(random.randint(low, high))
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'


def start_node(params: Dict[str, object], log_path: pathlib.Path, threads: Optional[int] = None,
               ros_args: Sequence[str] = ()) -> subprocess.Popen:
    """``python -m sam2_ros`` with ``params`` as ``-p name:=value``, output to ``log_path``;
    ``threads`` sets its OMP_NUM_THREADS; ``ros_args``: more ROS arguments (``-r __ns:=/a``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    args = [sys.executable, '-m', 'sam2_ros', '--ros-args', *ros_args]
    for name, value in params.items():
        args += ['-p', f'{name}:={value}']
    with open(log_path, 'w') as log:  # the child keeps its own descriptor
        return subprocess.Popen(args, env=env, stdout=log, stderr=log, cwd=ROOT)


def spin_in_background(node, period: float = 0.02) -> Callable[[], None]:
    """Spin ``node`` in a daemon thread; returns the function that stops it."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    running = threading.Event()
    running.set()

    def spin():
        while running.is_set():
            executor.spin_once(timeout_sec=period)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()

    def stop():
        running.clear()
        thread.join(2)

    return stop


def shut_down(proc: subprocess.Popen, client, stop_spin: Callable[[], None], timeout: float = 30.0) -> int:
    """Stop the client, then the node (SIGINT, as Ctrl-C); returns the node's exit status."""
    import rclpy

    stop_spin()
    client.destroy_node()
    rclpy.try_shutdown()
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout)


def wait_for_node(proc: subprocess.Popen, image_pub, client, log_path: pathlib.Path, timeout: float = 300.0,
                  masks_topic: str = '/sam2_tracker/masks') -> None:
    """Until the node subscribes to the client's ``image_pub`` and publishes ``~/masks``
    (``masks_topic``; model loaded and warmed up), then one more second for discovery to settle."""
    deadline = time.monotonic() + timeout
    while image_pub.get_subscription_count() == 0 or client.count_publishers(masks_topic) == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f'the node did not start; see {log_path}')
        time.sleep(0.1)
    time.sleep(1.0)

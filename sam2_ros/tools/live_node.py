"""The node under test of ``sam2_live``: started by the tool (``--start-node``) or found running,
and what the tool asks of it over ROS (its image topic from the graph, its mode, its
``frame_policy``)."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

NODE_PARAMS = ('frame_policy', 'use_sim_time', 'image_transport', 'image_qos', 'qos_depth',
               'prompt_buffer', 'model', 'image_size', 'device', 'dtype', 'encoder_backend',
               'checkpoint')


class LiveError(RuntimeError):
    """An error the user can act on; ``code`` is the exit status (2 bad input, 1 node)."""

    def __init__(self, text: str, code: int = 2):
        super().__init__(text)
        self.code = code


def wait(cond, timeout: float, check=None, step: float = 0.05) -> bool:
    """Poll ``cond()`` until it is true or ``timeout`` s passed (``check()`` first each time:
    it raises when waiting is pointless, e.g. the node died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check is not None:
            check()
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def split_fqn(fqn: str) -> tuple[str, str]:
    """``/ns/name`` -> (``/ns``, ``name``)."""
    fqn = '/' + fqn.strip('/')
    ns, _, name = fqn.rpartition('/')
    if not name:
        raise LiveError(f'--node-ns {fqn!r} is not a node name (e.g. /sam2_tracker)')
    return ns or '/', name


class NodeProcess:
    """``python -m sam2_ros --ros-args ...`` started by the tool, its output in OUT/node.log."""

    def __init__(self, args, ns: str, name: str, image_topic: str, compressed: bool, log_path):
        ros = ['--ros-args', '-r', f'__node:={name}']
        if ns != '/':
            ros += ['-r', f'__ns:={ns}']
        ros += ['-r', f'{"image/compressed" if compressed else "image"}:={image_topic}']
        params = [f'use_sim_time:={"true" if args.clock else "false"}', f'model:={args.model}',
                  f'image_size:={args.image_size}', f'device:={args.device}',
                  'image_qos:=reliable', 'qos_depth:=10']
        if compressed:
            params.append('image_transport:=compressed')
        if args.checkpoint:
            path = pathlib.Path(args.checkpoint)  # a file or folder here; else a Hub id, as it is
            params.append(f'checkpoint:={path.resolve() if path.exists() else args.checkpoint}')
        if args.frame_policy:
            params.append(f'frame_policy:={args.frame_policy}')
        params += args.node_param
        for p in params:
            ros += ['-p', p]
        self.cmd = [sys.executable, '-m', 'sam2_ros'] + ros
        self.log_path = pathlib.Path(log_path)
        env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0')
        self._log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def tail(self, lines: int = 20) -> str:
        try:
            return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-lines:])
        except OSError:
            return ''

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise LiveError(f'the node exited with status {self.proc.returncode} '
                            f'(log {self.log_path}):\n{self.tail()}', code=1)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def node_image_topic(node, ns, name, fqn, msgtype, timeout, check) -> str:
    """The image topic the node subscribes to (of the bag's message type), from the ROS graph."""
    found = []

    def look() -> bool:
        try:
            subs = node.get_subscriber_names_and_types_by_node(name, ns)
        except Exception:  # noqa: BLE001 - not discovered yet
            return False
        found[:] = [t for t, types in subs if msgtype in types and t != f'{fqn}/prompt_mask']
        return bool(found)

    if not wait(look, timeout, check):
        raise LiveError(f'no node {fqn} subscribing to a {msgtype} topic within {timeout:.0f} s (is it '
                        'running and active, with the same ROS_DOMAIN_ID? for a CompressedImage bag '
                        'it needs image_transport: compressed)', code=1)
    if len(found) > 1:
        raise LiveError(f'{fqn} subscribes to several {msgtype} topics ({", ".join(found)}): '
                        'choose one with --node-image-topic')
    return found[0]


def node_mode(node, fqn, timeout=10.0) -> dict:
    """The node's parameters in :data:`NODE_PARAMS` (empty when it does not answer)."""
    from rclpy.parameter import parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(node, fqn)
    if not client.wait_for_services(timeout_sec=timeout):
        return {}
    future = client.get_parameters(list(NODE_PARAMS))
    if not wait(future.done, timeout):
        return {}
    values = future.result().values
    return {k: parameter_value_to_python(v) for k, v in zip(NODE_PARAMS, values)}


def set_frame_policy(node, fqn, policy, timeout=10.0) -> None:
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(node, fqn)
    if not client.wait_for_services(timeout_sec=timeout):
        raise LiveError(f'{fqn} has no parameter services', code=1)
    future = client.set_parameters([Parameter('frame_policy', value=policy)])
    if not wait(future.done, timeout) or not future.result().results[0].successful:
        reason = future.result().results[0].reason if future.done() else 'no answer'
        raise LiveError(f'could not set frame_policy:={policy} on {fqn}: {reason}', code=1)

"""What the tests of the node over DDS share: a DDS domain of their own (``ros_env``), a tiny
random checkpoint and the clip's frames (fixtures: import them into a test module to use them),
the node as a process (:class:`NodeProcess`, :class:`MultiProcess` for several cameras) and this
process as its client (:class:`Client`), and the helpers around them."""
import array
import os
import random
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import ImageMarker

from sam2_ros.ros import conversions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository


W, H = 160, 96


RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope='module', autouse=True)
def ros_env():
    """A DDS domain of our own on loopback, and rclpy in this process."""
    saved = {k: os.environ.get(k) for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')}
    os.environ['ROS_DOMAIN_ID'] = str(random.Random(os.getpid() ^ int(time.time())).randint(1, 100))
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    rclpy.init()
    yield
    rclpy.try_shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    import torch
    from sam2_ros.model.build import build_random_model

    path = tmp_path_factory.mktemp('ckpt') / 'sam2.1_hiera_tiny_random.pt'
    torch.save({'model': build_random_model('tiny', 128, 'cpu').state_dict()}, path)
    return str(path)


@pytest.fixture(scope='module')
def frames():
    cap = cv2.VideoCapture(os.path.join(ROOT, 'data', 'sample', 'bunny.mp4'))
    out = []
    while len(out) < 48:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (W, H), interpolation=cv2.INTER_AREA))
    cap.release()
    assert len(out) >= 24
    return out


class NodeProcess:
    """``python -m sam2_ros --ros-args ...`` with its output in files."""

    def __init__(self, tmp_path, checkpoint, *extra, name='node', image_size=128, cameras=(), threads=1):
        """``extra``: ``name:=value`` parameters, other ROS arguments (``-r ...``, ``--params-file
        F``) as they are. ``cameras``: ``--cameras ...`` (one process, several cameras);
        ``threads``: torch's (OMP_NUM_THREADS)."""
        self.stdout_path = tmp_path / f'{name}.out'
        self.stderr_path = tmp_path / f'{name}.err'
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), RCUTILS_LOGGING_BUFFERED_STREAM='0',
                   PYTHONUNBUFFERED='1')
        args = [sys.executable, '-m', 'sam2_ros', *(['--cameras', *cameras] if cameras else []), '--ros-args',
                '-p', f'checkpoint:={checkpoint}', '-p', f'image_size:={image_size}', '-p', 'device:=cpu']
        for e in extra:  # a remap rule (front/image:=...) or a namespace rule is not a parameter
            args += ['-p', e] if ':=' in e and not e.startswith(('-', '/', '__', 'front/')) else [e]
        self.args = args
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=open(self.stdout_path, 'wb'),
                                     stderr=open(self.stderr_path, 'wb'))

    def stderr(self):
        return self.stderr_path.read_text(errors='replace')

    def wait_log(self, text, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stderr():
                return True
            time.sleep(0.05)
        return False

    def stop(self, sig=signal.SIGINT, timeout=20.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def to_ns(stamp):
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def make_stamp(k):
    """Stamp of the client's k-th frame (never zero)."""
    return Time(sec=1000 + k // 10, nanosec=(k % 10) * 100_000_000)


class Client:
    """Publishes frames and prompts; records what the node publishes."""

    def __init__(self, ns='', name='sam2_test_client'):
        self.ns = ns
        self.node = rclpy.create_node(name)
        n = self.node
        tracker = f'{ns}/sam2_tracker'
        self.tracker_ns = tracker
        self.image_pub = n.create_publisher(Image, f'{ns}/image', RELIABLE)
        self.compressed_pub = n.create_publisher(CompressedImage, f'{ns}/image/compressed', RELIABLE)
        self.marker_pub = n.create_publisher(ImageMarker, f'{tracker}/prompt', 10)
        self.mask_pub = n.create_publisher(Image, f'{tracker}/prompt_mask', 10)
        self.click_pub = n.create_publisher(Point, f'{tracker}/click', 10)
        self.lock = threading.Lock()
        self.masks = {}  # stamp ns -> (msg, receive time)
        self.mask_order = []
        self.overlays = {}
        self.diagnostics = []
        self.objects = {}  # id -> {stamp ns: msg}
        self.sent = {}  # stamp ns -> publish time
        self.masks_sub = n.create_subscription(Image, f'{tracker}/masks', self._on_masks, RELIABLE)
        n.create_subscription(Image, f'{tracker}/overlay', self._on_overlay, RELIABLE)
        n.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.reset_cli = n.create_client(Trigger, f'{tracker}/reset')
        self.change_cli = n.create_client(ChangeState, f'{tracker}/change_state')
        self.state_cli = n.create_client(GetState, f'{tracker}/get_state')
        from rclpy.parameter_client import AsyncParameterClient

        self.params = AsyncParameterClient(n, tracker)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self.thread.start()

    def _spin(self):
        while self._running and rclpy.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        self._running = False
        self.thread.join(2)
        self.node.destroy_node()

    # -- recording
    def _on_masks(self, msg):
        with self.lock:
            key = to_ns(msg.header.stamp)
            self.masks[key] = (msg, time.monotonic())
            self.mask_order.append(key)

    def _on_overlay(self, msg):
        with self.lock:
            self.overlays[to_ns(msg.header.stamp)] = msg

    def _on_diag(self, msg):
        with self.lock:
            self.diagnostics.append(msg)

    def watch_object(self, obj_id):
        self.objects.setdefault(obj_id, {})

        def cb(msg):
            with self.lock:
                self.objects[obj_id][to_ns(msg.header.stamp)] = msg
        return self.node.create_subscription(Image, f'{self.tracker_ns}/object_{obj_id}/mask', cb, RELIABLE)

    # -- waiting
    @staticmethod
    def wait_for(cond, timeout=10.0, step=0.02):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(step)
        return bool(cond())

    def wait_ready(self, timeout=60.0, proc=None):
        def ready():
            if proc is not None and proc.proc.poll() is not None:
                raise AssertionError(f'node exited ({proc.proc.returncode}):\n{proc.stderr()}')
            return (self.image_pub.get_subscription_count() > 0
                    and self.marker_pub.get_subscription_count() > 0
                    and self.mask_pub.get_subscription_count() > 0
                    and self.count_publishers(f'{self.tracker_ns}/masks') > 0
                    # matched by our reader, not only seen in the graph: reliable masks published
                    # before the match would be lost
                    and self.masks_sub.get_publisher_count() > 0)
        assert self.wait_for(ready, timeout), 'the node did not come up'

    def count_publishers(self, topic):
        return self.node.count_publishers(topic)

    # -- sending
    def frame(self, rgb, k, encoding='rgb8', frame_id='camera', step=None):
        stamp = make_stamp(k)
        if encoding == 'rgb8':
            arr = rgb
        elif encoding == 'bgr8':
            arr = rgb[..., ::-1]
        elif encoding == 'mono8':
            arr = rgb[..., 1]
        else:
            arr = rgb
        if encoding in conversions.SUPPORTED_ENCODINGS:
            msg = conversions.numpy_to_image(arr, encoding, step=step)
        else:
            msg = raw_image(arr, encoding)
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        self.sent[to_ns(stamp)] = time.monotonic()
        self.image_pub.publish(msg)
        return to_ns(stamp)

    def frame_and_wait(self, rgb, k, timeout=10.0, **kw):
        key = self.frame(rgb, k, **kw)
        assert self.wait_for(lambda: key in self.masks, timeout), f'no masks for frame {k}'
        return self.masks[key][0]

    def first_masks(self, rgb, timeout=90.0, every=10.0):
        """A node just started: send a frame every ``every`` seconds until one comes back with
        masks (on a loaded machine the first can wait behind the node's start-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            key = self.frame(rgb, next_k())
            if self.wait_for(lambda: key in self.masks, min(every, deadline - time.monotonic())):
                return self.masks[key][0]
        raise AssertionError(f'no masks within {timeout:.0f} s of frames')

    def marker(self, obj_id, points=None, labels=None, box=None, action=ImageMarker.ADD, k=None, ns=''):
        m = ImageMarker()
        m.id = obj_id
        m.action = action
        m.ns = ns
        if k is not None:
            m.header.stamp = make_stamp(k)
        if box is not None:
            m.type = ImageMarker.LINE_STRIP
            m.points = [Point(x=float(box[0]), y=float(box[1])), Point(x=float(box[2]), y=float(box[3]))]
        elif points is not None:
            m.type = ImageMarker.POINTS
            m.points = [Point(x=float(x), y=float(y), z=float(lab)) for (x, y), lab in zip(points, labels)]
        self.marker_pub.publish(m)
        time.sleep(0.15)  # prompts and frames travel on different topics: let the prompt land

    def mask_prompt(self, labels, k=None):
        msg = conversions.numpy_to_image(labels.astype(np.uint16), 'mono16')
        if k is not None:
            msg.header.stamp = make_stamp(k)
        self.mask_pub.publish(msg)
        time.sleep(0.15)

    def call(self, client, request, timeout=15.0, resend_after=None):
        """One service call. DDS may drop a request sent before the server has matched this
        client's endpoints (a loaded machine widens that window), so requests that are safe to
        repeat pass resend_after: sent again after that many seconds without an answer."""
        assert client.wait_for_service(timeout_sec=timeout), f'service {client.srv_name} missing'
        return self._answer(lambda: client.call_async(request), timeout, resend_after, client.srv_name)

    def _answer(self, send, timeout, resend_after, what):
        deadline = time.monotonic() + timeout
        while True:
            future = send()
            wait = deadline - time.monotonic()
            if resend_after is not None:
                wait = min(wait, resend_after)
            if self.wait_for(future.done, max(wait, 0.0)):
                return future.result()
            assert time.monotonic() < deadline, f'no answer from {what}'

    def reset(self):
        return self.call(self.reset_cli, Trigger.Request())

    def set_params(self, **values):
        """Setting the same values twice is harmless, so a lost request is sent again."""
        assert self.params.wait_for_services(timeout_sec=10.0), 'no parameter services'
        params = [Parameter(k, value=v) for k, v in values.items()]
        return self._answer(lambda: self.params.set_parameters(params), 10.0, 3.0, 'set_parameters').results

    def transition(self, transition_id):
        req = ChangeState.Request()
        req.transition.id = transition_id
        return self.call(self.change_cli, req).success

    def state(self):
        return self.call(self.state_cli, GetState.Request(), resend_after=3.0).current_state.label

    def stderr_since(self, proc, mark):
        return proc.stderr()[mark:]


def raw_image(arr, encoding):
    """An Image in an encoding the node does not support (bytes as given)."""
    msg = Image()
    msg.height, msg.width = arr.shape[:2]
    msg.encoding = encoding
    data = np.ascontiguousarray(arr).tobytes()
    msg.step = len(data) // msg.height
    msg.data = array.array('B', data)
    return msg


def rect(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


_K = [0]


def next_k(n=1):
    """Fresh frame indices (stamps only increase over the whole module)."""
    k = _K[0]
    _K[0] += n
    return k


def k_ns(k):
    return to_ns(make_stamp(k))


class MultiProcess(NodeProcess):
    """``python -m sam2_ros --cameras ... --ros-args ...`` with its output in files; ``threads``:
    torch's, 2 or more runs the shared worker in two stages."""

    def __init__(self, tmp_path, checkpoint, cameras, *extra, name='multi', image_size=128, threads=1):
        super().__init__(tmp_path, checkpoint, *extra, name=name, image_size=image_size, cameras=cameras,
                         threads=threads)

    def stop(self, sig=signal.SIGINT, timeout=30.0):  # several cameras take longer to stop
        return super().stop(sig, timeout)


def _values(arr, node_name):
    for st in arr.status:
        if st.name.startswith(node_name + ':'):  # '/ns/sam2_tracker: tracking'; other nodes share /diagnostics
            return {kv.key: kv.value for kv in st.values}
    return None


def status(c):
    """The node's latest diagnostic values, or None."""
    with c.lock:
        for arr in reversed(c.diagnostics):
            values = _values(arr, c.tracker_ns)
            if values is not None:
                return values
    return None


def fresh_status(c, timeout=5.0):
    """Diagnostic values published after now (they come once a second)."""
    with c.lock:
        n = len(c.diagnostics)

    def newer():
        with c.lock:
            return any(_values(a, c.tracker_ns) is not None for a in c.diagnostics[n:])
    assert c.wait_for(newer, timeout), 'no diagnostics'
    return status(c)

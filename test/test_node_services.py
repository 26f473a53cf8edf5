"""The node's services and signals over DDS against the real node process: callbacks never wait for a frame being
tracked (bursts of every service answered, effects in order, frames flowing), and signals
delivered twice do not turn a clean stop into an error exit. Decoding bombs over DDS:
test_reliability_node.py; their unit tests: test_decoding_bombs.py. Per-call latencies are
measured in benchmarks/bench_services.py, not asserted here.
"""
import signal
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from sam2_ros.ros import conversions  # noqa: E402
from helpers.ros import fresh_status  # noqa: E402
from helpers.ros import (H, W, Client, NodeProcess, checkpoint, frames, k_ns, make_stamp,  # noqa: E402,F401
                           next_k, ros_env)

NS = '/burst'
OBJECTS = 16
BURST = 50


def sixteen_objects():
    """A label image with ids 1..16 in a 4 x 4 grid."""
    labels = np.zeros((H, W), np.uint16)
    for i in range(OBJECTS):
        r, c = divmod(i, 4)
        labels[4 + 23 * r:20 + 23 * r, 4 + 39 * c:34 + 39 * c] = i + 1
    return labels


class Streamer:
    """Sends frames at ``rate`` Hz from a thread, so that the node is always tracking one."""

    def __init__(self, client, frames, k0, rate=30.0):
        self.c, self.frames, self.k, self.rate = client, frames, k0, rate
        self.sent = []
        self._run = threading.Event()
        self._run.set()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        j = 0
        while self._run.is_set():
            self.sent.append(self.c.frame(self.frames[j % len(self.frames)], self.k + j))
            j += 1
            time.sleep(1.0 / self.rate)

    def stop(self):
        self._run.clear()
        self.thread.join(2)
        return self.k + len(self.sent)


# The client's side of a burst: its response reader must hold a burst's answers too.
DEEP = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


def deep_client(c, srv_type, name):
    return c.node.create_client(srv_type, f'{c.tracker_ns}/{name}', qos_profile=DEEP)


def burst(c, client, make_request, n=BURST, timeout=60.0):
    """``n`` calls sent at once, none waited for before the next; all their answers."""
    assert client.wait_for_service(timeout_sec=15.0), client.srv_name
    futures = [client.call_async(make_request(i)) for i in range(n)]
    assert c.wait_for(lambda: all(f.done() for f in futures), timeout), \
        f'{sum(not f.done() for f in futures)} of {n} calls to {client.srv_name} not answered'
    return [f.result() for f in futures]


@pytest.fixture(scope='module')
def node(tmp_path_factory, checkpoint):  # noqa: F811
    proc = NodeProcess(tmp_path_factory.mktemp('burst'), checkpoint, '-r', f'__ns:={NS}', f'max_objects:={OBJECTS}',
                       'everything_points_per_side:=4', 'everything_pred_iou_thresh:=0.0',
                       'everything_stability_score_thresh:=0.0', name='burst', image_size=256)
    yield proc
    code = proc.stop(signal.SIGINT)
    assert code == 0, proc.stderr()
    assert 'Traceback' not in proc.stderr()


@pytest.fixture(scope='module')
def client(node):
    c = Client(NS, name='burst_client')
    c.everything = deep_client(c, Trigger, 'track_everything')
    c.reset_deep = deep_client(c, Trigger, 'reset')
    c.state_deep = deep_client(c, GetState, 'get_state')
    from rclpy.parameter_client import AsyncParameterClient

    c.params_deep = AsyncParameterClient(c.node, c.tracker_ns, qos_profile=DEEP)
    c.wait_ready(proc=node)
    yield c
    c.close()


def test_bursts_of_every_service_are_all_answered_in_order_while_frames_flow(client, node, frames):  # noqa: F811
    c = client
    k = next_k(10_001)  # stamps up to k + 10000 are this test's (the waiting prompt's is the last)
    c.mask_prompt(sixteen_objects(), k=k)
    out = conversions.image_to_labels(c.frame_and_wait(frames[0], k, timeout=30))
    assert set(np.unique(out)) == set(range(OBJECTS + 1))
    mark = len(node.stderr())
    stream = Streamer(c, frames, k + 1)
    try:
        assert c.wait_for(lambda: len([s for s in stream.sent if s in c.masks]) >= 1, 30), 'frames do not flow'
        # a prompt waiting when the resets come is dropped by them
        late = np.zeros((H, W), np.uint16)
        late[10:40, 10:60] = 20
        c.mask_prompt(late, k=k + 10_000)  # stamped ahead: it waits for its frame
        answered_before = len(c.masks)
        resets = burst(c, c.reset_deep, lambda i: Trigger.Request())
        assert all(r.success and r.message.startswith('dropped ') for r in resets)
        # the node was tracking a frame for some of them: answered without waiting for it
        assert any('a frame was being tracked' in r.message for r in resets), [r.message for r in resets]
        # parameters: 50 values in a burst, the last one wins (applied in order)
        values = [round(0.01 * i, 2) for i in range(BURST)]
        assert c.params_deep.wait_for_services(timeout_sec=10.0)
        futures = [c.params_deep.set_parameters([Parameter('mask_threshold', value=v)]) for v in values]
        assert c.wait_for(lambda: all(f.done() for f in futures), 60), 'set_parameters not all answered'
        assert all(f.result().results[0].successful for f in futures)
        got = c.params.get_parameters(['mask_threshold'])
        assert c.wait_for(got.done, 10) and got.result().values[0].double_value == values[-1]
        # lifecycle services: get_state in a burst, all answered 'active'
        states = burst(c, c.state_deep, lambda i: GetState.Request())
        assert {s.current_state.label for s in states} == {'active'}
        # segment everything (it needs a frame tracked after the resets): all answered at once;
        # the runs waiting at a time are one
        n = len(c.masks)
        assert c.wait_for(lambda: len(c.masks) > n, 30), 'no frame answered after the resets'
        everything = burst(c, c.everything, lambda i: Trigger.Request())
        assert all(r.success for r in everything), [r.message for r in everything if not r.success]
        assert sum(r.message.startswith('queued:') for r in everything) >= 1
        assert c.wait_for(lambda: 'track_everything: started' in node.stderr()[mark:], 60)
        runs = node.stderr()[mark:].count('track_everything: started')
        assert 1 <= runs < BURST, runs
        # frames kept flowing through all of it
        assert c.wait_for(lambda: len(c.masks) > answered_before, 30), 'no frame answered during the bursts'
    finally:
        k_next = stream.stop()
    # order: after the resets, a prompt sent later is tracked alone (the resets came first and
    # did not eat it); the waiting prompt (id 20) was dropped by them
    assert c.reset().success
    c.wait_for(lambda: False, 0.5)
    labels = np.zeros((H, W), np.uint16)
    labels[30:70, 40:120] = 5
    c.mask_prompt(labels, k=k_next + 1)
    out = conversions.image_to_labels(c.frame_and_wait(frames[1], k_next + 1, timeout=30))
    assert set(np.unique(out)) == {0, 5}
    out = conversions.image_to_labels(c.frame_and_wait(frames[2], k + 10_000, timeout=30))
    assert 20 not in out
    assert 'Traceback' not in node.stderr()[mark:]
    assert c.set_params(mask_threshold=0.0)[0].successful


def test_lifecycle_transitions_during_tracking_answer_without_waiting_for_the_frame(client, node, frames):  # noqa: F811
    """Deactivate / activate ten times while 16 objects are tracked: each transition is
    answered (deactivate does not wait for the frame in progress), and the node tracks after."""
    c = client
    assert c.reset().success
    k = next_k(500)
    c.mask_prompt(sixteen_objects(), k=k)
    c.frame_and_wait(frames[0], k, timeout=30)
    mark = len(node.stderr())
    stream = Streamer(c, frames, k + 1)
    try:
        for _ in range(10):
            time.sleep(0.2)
            assert c.transition(Transition.TRANSITION_DEACTIVATE) and c.state() == 'inactive'
            assert c.transition(Transition.TRANSITION_ACTIVATE) and c.state() == 'active'
    finally:
        k_next = stream.stop()
    c.wait_ready(proc=node)
    c.frame_and_wait(frames[3], k_next + 1, timeout=30)
    assert int(fresh_status(c)['objects']) == OBJECTS, node.stderr()[mark:][-3000:]  # kept (random weights: masks vary)
    assert 'Traceback' not in node.stderr()[mark:]


# --------------------------------------------------------------------------------------------
# signals delivered twice (ros2 launch without a terminal: launch and the process group)

def _started(tmp_path, checkpoint, name):  # noqa: F811
    proc = NodeProcess(tmp_path, checkpoint, '-r', f'__ns:=/{name}', name=name)
    c = Client(f'/{name}', name=f'{name}_client')
    try:
        c.wait_ready(proc=proc)
    finally:
        c.close()
    return proc


@pytest.mark.parametrize('first,second,gap', [
    (signal.SIGINT, signal.SIGINT, 0.0),
    (signal.SIGINT, signal.SIGINT, 0.05),
    (signal.SIGINT, signal.SIGTERM, 0.3),
    (signal.SIGTERM, signal.SIGINT, 0.6),
], ids=['INT+INT-0ms', 'INT+INT-50ms', 'INT+TERM-300ms', 'TERM+INT-600ms'])
def test_a_signal_repeated_within_the_grace_period_still_stops_cleanly(tmp_path, checkpoint, first, second, gap):  # noqa: F811
    proc = _started(tmp_path, checkpoint, f'twice{int(first)}{int(second)}{int(gap * 1000)}')
    try:
        proc.proc.send_signal(first)
        time.sleep(gap)
        if proc.proc.poll() is None:
            proc.proc.send_signal(second)
        code = proc.proc.wait(30)
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
    err = proc.stderr()
    assert code == 0, err
    assert 'signal received: shutting down' in err and 'Traceback' not in err
    assert 'KeyboardInterrupt' not in err


def test_a_later_second_signal_stops_at_once(tmp_path, checkpoint):  # noqa: F811
    """The user insisting: a second signal more than the grace period after the first, while
    the node is still stopping (here: waiting for a long segment-everything run), exits at once
    with 128 + the signal's number."""
    from sam2_ros.ros.process import SIGNAL_GRACE_S

    name = 'insist'
    proc = NodeProcess(tmp_path, checkpoint, '-r', f'__ns:=/{name}', 'everything_points_per_side:=64',
                       'everything_points_per_batch:=16', name=name)
    c = Client(f'/{name}', name=f'{name}_client')
    c.everything = c.node.create_client(Trigger, f'{c.tracker_ns}/track_everything')
    try:
        c.wait_ready(proc=proc)
        k = next_k(100)
        for j in range(100):  # best-effort images: the first ones after discovery may be lost
            c.frame(np.full((H, W, 3), 90, np.uint8), k + j)
            if c.wait_for(lambda: c.masks, 0.2):
                break
        assert c.masks, proc.stderr()
        res = c.call(c.everything, Trigger.Request())
        assert res.success and res.message.startswith('queued:'), res.message
        time.sleep(0.5)  # the worker is in the run (4096 points: many seconds on a CPU)
        proc.proc.send_signal(signal.SIGINT)
        time.sleep(SIGNAL_GRACE_S + 0.5)
        assert proc.proc.poll() is None, 'stopped before the second signal: the run was too short'
        t = time.monotonic()
        proc.proc.send_signal(signal.SIGINT)
        code = proc.proc.wait(30)
        took = time.monotonic() - t
    finally:
        c.close()
        if proc.proc.poll() is None:
            proc.proc.kill()
    assert code == 128 + signal.SIGINT, proc.stderr()
    assert 'SIGINT again' in proc.stderr() and 'exiting at once (130)' in proc.stderr()
    assert took < 5, took


def test_a_node_that_cannot_configure_exits_with_status_1_and_says_so(tmp_path, checkpoint):  # noqa: F811
    """What launch's OnProcessExit handler (launch/tracker.launch.py) acts on: the exit status
    of the node process, and its reason in the log."""
    missing = NodeProcess(tmp_path, str(tmp_path / 'nope.pt'), '-r', '__ns:=/nockpt', name='nockpt')
    assert missing.proc.wait(60) == 1
    err = missing.stderr()
    assert 'cannot configure' in err and 'nope.pt' in err
    assert 'autostart: configure failed (reason above); exiting with status 1' in err
    assert 'Traceback' not in err
    bad = NodeProcess(tmp_path, checkpoint, 'model:=huge', name='badmodel')
    assert bad.proc.wait(60) == 2
    assert "unknown model 'huge'" in bad.stderr() and 'Traceback' not in bad.stderr()

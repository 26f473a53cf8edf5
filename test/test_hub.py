"""Checkpoints through the Hugging Face Hub, against a Hub on loopback (test/helpers/hub_server.py).

The client runs in processes of its own, configured only through the environment a user sets
(HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE, HF_TOKEN), so what huggingface_hub reads at import time
is real too. Nothing reaches the internet: HF_ENDPOINT points at 127.0.0.1.

The official tiny repository serves an official-format checkpoint with random weights; the
test tells the client (and only the client) its SHA-256, since the real digest is that of
Meta's weights (``hub_server._patch_official``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.hub_server import RESULT, HubServer
from test_transformers_format import tiny_config, transformers_state

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_loopbacktoken"
OFFICIAL = "facebook/sam2.1-hiera-tiny"
FINETUNE = "tester/sam2.1-tiny-finetuned"
PRIVATE = "tester/private-weights"
CORRUPT = "facebook/sam2-hiera-tiny"  # the CDN flips a byte of its file
ABSENT = "facebook/sam2.1-hiera-large"  # not on the server: never cached


def _sha(data: bytes):
    return [hashlib.sha256(data).hexdigest(), len(data)]


@pytest.fixture(scope="module")
def weights():
    """(official-format .pt bytes, transformers-format model.safetensors bytes) of a random tiny."""
    from safetensors.torch import save

    from sam2_ros.model.build import build_random_model

    state = build_random_model("tiny", 128, "cpu", seed=1).state_dict()
    buffer = io.BytesIO()
    torch.save({"model": state}, buffer)
    return buffer.getvalue(), save(transformers_state(state))


@pytest.fixture(scope="module")
def hub(tmp_path_factory, weights):
    official, safetensors = weights
    server = HubServer()
    server.add(OFFICIAL, {"sam2.1_hiera_tiny.pt": official, "README.md": b"# SAM 2.1 tiny\n"})
    server.add(CORRUPT, {"sam2_hiera_tiny.pt": bytes(range(256)) * 4096})
    server.repos[CORRUPT].corrupt = True
    transformers_files = {"config.json": json.dumps(tiny_config()).encode(), "model.safetensors": safetensors}
    server.add(FINETUNE, transformers_files)
    server.add(PRIVATE, {"config.json": b"{}", "weights.bin": b"\x00" * 50_000}, token=TOKEN)
    server.home = tmp_path_factory.mktemp("hf_home")
    server.patch = {OFFICIAL: _sha(official), CORRUPT: _sha(server.repos[CORRUPT].files["sam2_hiera_tiny.pt"])}
    yield server
    server.stop()


def run_client(server, ops, **env):
    """Run ops in a fresh process configured like a user's: returns one result per op."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    clean.update(HF_HOME=str(server.home), HF_ENDPOINT=server.endpoint, PYTHONPATH=str(ROOT),
                 OMP_NUM_THREADS="1", **env)
    run = subprocess.run([sys.executable, str(ROOT / "test" / "helpers" / "hub_server.py"),
                          json.dumps({"ops": ops, "patch": server.patch})],
                         capture_output=True, text=True, env=clean, timeout=300)
    line = next((x for x in run.stdout.splitlines() if x.startswith(RESULT)), None)
    assert line is not None, run.stdout + run.stderr
    return json.loads(line[len(RESULT):])


def _requests(server, path_part):
    return [r for r in server.requests if path_part in r.path]


@pytest.fixture(scope="module")
def first_use(hub):
    """The first run on a machine with an empty cache and the Hub reachable."""
    results = run_client(hub, [["resolve", None, "tiny"], ["resolve", OFFICIAL],
                               ["tracker", OFFICIAL, 128], ["tracker", FINETUNE, 128]])
    return results, list(hub.requests)


def test_first_use_downloads_into_the_hub_cache(hub, first_use, weights):
    (default, by_id, tracker, finetuned), requests = first_use
    assert "error" not in default, default
    commit = hub.repos[OFFICIAL].commit
    expected = hub.home / "hub" / "models--facebook--sam2.1-hiera-tiny" / "snapshots" / commit / "sam2.1_hiera_tiny.pt"
    assert Path(default["path"]) == expected and expected.read_bytes() == weights[0]
    assert Path(os.path.realpath(expected)).name == hashlib.sha256(weights[0]).hexdigest()  # the Hub's blob
    assert by_id == default  # the Hub id and "no checkpoint" are the same file
    # HEAD on the Hub (302 to the CDN), GET on the CDN; the second use made no request at all
    asked = [(r.server, r.method) for r in requests if "sam2.1_hiera_tiny.pt" in r.path or f"repo={OFFICIAL}" in r.path]
    assert asked == [("hub", "HEAD"), ("cdn", "GET")], asked
    loaded = {"model": "tiny", "version": "2.1", "finite": True, "transformers_imported": False}
    assert tracker == loaded and finetuned == loaded, (tracker, finetuned)  # transformers' format, not its code
    assert [r.method for r in requests if r.path.startswith(f"/{FINETUNE}/")] == ["HEAD", "GET", "HEAD"]


def test_a_corrupted_download_is_refused_by_the_sha256_check(hub):
    (result,) = run_client(hub, [["resolve", CORRUPT]])
    sha, size = hub.patch[CORRUPT]
    assert result["error"] == "CheckpointDownloadError", result
    message = result["message"]
    assert "sam2_hiera_tiny.pt of facebook/sam2-hiera-tiny" in message and "is not Meta's official file" in message
    assert f"the official one is {sha}" in message and "It was deleted from the Hub cache" in message
    assert "Traceback" not in message
    repo = hub.home / "hub" / "models--facebook--sam2-hiera-tiny"
    assert not [p for p in (repo / "blobs").iterdir() if p.is_file()]  # nothing kept to be trusted later
    assert not list((repo / "snapshots").rglob("sam2_hiera_tiny.pt"))


def test_a_private_repository_needs_a_token(hub):
    (refused,) = run_client(hub, [["resolve", PRIVATE]])
    assert refused["error"] == "CheckpointDownloadError", refused
    message = refused["message"]
    assert "cannot get config.json of tester/private-weights" in message
    assert "HTTP 401" in message and "private" in message
    assert "hf auth login" in message and "HF_TOKEN" in message
    before = len(hub.requests)
    (allowed,) = run_client(hub, [["resolve", PRIVATE]], HF_TOKEN=TOKEN)
    # the token opens the repository: config.json is fetched, and then model.safetensors is missing
    assert allowed["error"] == "CheckpointDownloadError", allowed
    assert "repository tester/private-weights has no file model.safetensors" in allowed["message"]
    sent = [r for r in hub.requests[before:] if "/resolve/" in r.path]
    assert sent and all(r.authorization == f"Bearer {TOKEN}" for r in sent)
    assert all(r.authorization is None for r in hub.requests if r.server == "cdn")  # the token stays on the Hub


def test_offline_mode_uses_the_cache_and_names_what_is_missing(hub, first_use):
    before = len(hub.requests)
    cached, absent, finetuned = run_client(
        hub, [["resolve", None, "tiny"], ["resolve", ABSENT], ["tracker", FINETUNE, 128]], HF_HUB_OFFLINE="1")
    assert len(hub.requests) == before  # offline: not a single request
    assert cached == first_use[0][0]
    assert finetuned["model"] == "tiny", finetuned
    assert absent["error"] == "CheckpointDownloadError", absent
    message = absent["message"]
    assert message.startswith("cannot get sam2.1_hiera_large.pt of facebook/sam2.1-hiera-large from the "
                              f"Hugging Face Hub ({hub.endpoint}): offline mode is on (HF_HUB_OFFLINE=1) and "
                              f"the file is not in the Hub cache ({hub.home / 'hub'})")
    assert "`hf download facebook/sam2.1-hiera-large sam2.1_hiera_large.pt`" in message
    assert "models--facebook--sam2.1-hiera-large" in message and "HF_ENDPOINT" in message


def test_a_node_that_cannot_get_its_checkpoint_exits_1_with_one_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(tmp_path / "empty_home"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    node = subprocess.run([sys.executable, "-m", "sam2_ros", "--ros-args", "-r", "__ns:=/hubtest",
                           "-p", f"checkpoint:={OFFICIAL}", "-p", "device:=cpu", "-p", "image_size:=128"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert node.returncode == 1, node.stderr
    err = node.stderr
    assert ("cannot configure: CheckpointDownloadError: cannot get sam2.1_hiera_tiny.pt of "
            "facebook/sam2.1-hiera-tiny from the Hugging Face Hub") in err
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in err and "hf download" in err and "HF_ENDPOINT" in err
    assert "Traceback" not in err


def test_with_the_hub_down_the_cache_still_serves(hub, first_use):
    """Last in this file: it stops the module's server."""
    hub.stop()
    start = time.monotonic()
    cached, finetuned, absent = run_client(hub, [["resolve", OFFICIAL], ["tracker", FINETUNE, 128],
                                                 ["resolve", ABSENT]])
    assert cached == first_use[0][0]
    assert finetuned["model"] == "tiny", finetuned  # huggingface_hub falls back to its cache
    assert absent["error"] == "CheckpointDownloadError", absent
    assert "the Hub cannot be reached (ConnectError" in absent["message"], absent["message"]
    assert "hf download facebook/sam2.1-hiera-large sam2.1_hiera_large.pt" in absent["message"]
    assert time.monotonic() - start < 120

"""Tests of sam2_ros.model.checkpoint: official files, download, safe reading, strict loading.

Downloads run against a real HTTP server on 127.0.0.1 (http.server in a thread); nothing
touches the internet. Key matching is checked on the state dicts of Meta's official models
(package ``sam2``, test oracle only) built with random weights at image_size 256.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import pickle
import re
import socket
import threading
import urllib.error
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch

from sam2_ros.model import checkpoint as ck
from sam2_ros.model.checkpoint import (
    CheckpointDownloadError,
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
)

CONFIGS = {
    ("tiny", "2.1"): "configs/sam2.1/sam2.1_hiera_t.yaml",
    ("small", "2.1"): "configs/sam2.1/sam2.1_hiera_s.yaml",
    ("tiny", "2.0"): "configs/sam2/sam2_hiera_t.yaml",
    ("small", "2.0"): "configs/sam2/sam2_hiera_s.yaml",
}


@functools.lru_cache(maxsize=None)
def _build_official_cached(size: str, version: str, image_size: int = 256) -> torch.nn.Module:
    return build_official(size, version, image_size)


def build_official(size: str, version: str, image_size: int = 256) -> torch.nn.Module:
    """A fresh official SAM2Base (random weights) built by Meta's own code."""
    build_sam = pytest.importorskip("sam2.build_sam", reason="Meta's sam2 package (test oracle)")
    return build_sam.build_sam2(
        CONFIGS[(size, version)], None, device="cpu",
        hydra_overrides_extra=[f"++model.image_size={image_size}"],
    )


def official_sd(size: str, version: str) -> Dict[str, torch.Tensor]:
    """The state dict of the session's cached official model (do not modify its tensors)."""
    return _build_official_cached(size, version).state_dict()


def sam1_state_dict() -> Dict[str, torch.Tensor]:
    """A small dict with the key layout of a SAM (v1) ViT-B checkpoint."""
    sd = {
        "image_encoder.pos_embed": torch.zeros(1, 4, 4, 768),
        "image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
        "image_encoder.patch_embed.proj.bias": torch.zeros(768),
        "image_encoder.neck.0.weight": torch.zeros(256, 768, 1, 1),
        "image_encoder.neck.1.weight": torch.zeros(256),
        "prompt_encoder.point_embeddings.0.weight": torch.zeros(1, 256),
        "mask_decoder.iou_token.weight": torch.zeros(1, 256),
    }
    for i in range(12):
        sd[f"image_encoder.blocks.{i}.attn.qkv.weight"] = torch.zeros(3, 2)
    return sd


# --------------------------------------------------------------------------------------------
# the table of official files
# --------------------------------------------------------------------------------------------


def test_official_table():
    assert set(ck.OFFICIAL_CHECKPOINTS) == {"tiny", "small", "base_plus", "large"}
    for name, info in ck.OFFICIAL_CHECKPOINTS.items():
        assert info.model == name and info.version == "2.1"
        assert info.filename == f"sam2.1_hiera_{name}.pt"
        assert info.url == "https://dl.fbaipublicfiles.com/segment_anything_2/092824/" + info.filename
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256)
        assert 100_000_000 < info.size < 1_000_000_000
    for name, info in ck.SAM2_0_CHECKPOINTS.items():
        assert info.url == f"https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_{name}.pt"
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256)
    assert len(ck.KNOWN_CHECKPOINT_FILES) == 8
    assert ck.official_checkpoint("b+").filename == "sam2.1_hiera_base_plus.pt"
    assert ck.official_checkpoint("t", "2.0").filename == "sam2_hiera_tiny.pt"
    with pytest.raises(ValueError, match="tiny, small, base_plus, large"):
        ck.official_checkpoint("huge")
    with pytest.raises(ValueError, match="version"):
        ck.official_checkpoint("tiny", "3")


def test_sizes_agree_with_parameter_counts():
    """4 bytes per float32 parameter plus a small pickle overhead: a sanity check of the table."""
    sd = official_sd("tiny", "2.1")
    params = sum(t.numel() for t in sd.values())
    size = ck.OFFICIAL_CHECKPOINTS["tiny"].size
    assert 4 * params < size < 4 * params * 1.01


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SAM2_ROS_CACHE", str(tmp_path / "c"))
    assert ck.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SAM2_ROS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert ck.default_cache_dir() == tmp_path / "x" / "sam2_ros"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert ck.default_cache_dir() == tmp_path / "h" / ".cache" / "sam2_ros"


# --------------------------------------------------------------------------------------------
# resolve_checkpoint with a path
# --------------------------------------------------------------------------------------------


def test_resolve_existing_path(tmp_path, monkeypatch):
    f = tmp_path / "mine.pt"
    f.write_bytes(b"x")
    assert ck.resolve_checkpoint(f, "tiny") == f
    assert ck.resolve_checkpoint(str(f), "tiny") == f
    monkeypatch.setenv("MYDIR", str(tmp_path))
    assert ck.resolve_checkpoint("$MYDIR/mine.pt", "tiny") == f


def test_resolve_missing_path(tmp_path):
    missing = tmp_path / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointNotFoundError) as info:
        ck.resolve_checkpoint(missing, "tiny")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(missing) in message and "not found" in message
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in message


def test_resolve_folder(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"x")
    with pytest.raises(CheckpointNotFoundError, match=r"is a folder.*a\.pt"):
        ck.resolve_checkpoint(tmp_path, "tiny")


# --------------------------------------------------------------------------------------------
# downloads, against a real HTTP server on 127.0.0.1
# --------------------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 1200  # 307,200 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class FakeServer:
    """A local HTTP file server whose behaviour tests set.

    honor_range: answer Range requests with 206 (else 200 with the whole file).
    cut_after: on the next response only, send this many body bytes then close the connection
        (while announcing the full length).
    status: answer every request with this error status.
    """

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.honor_range = True
        self.cut_after: Optional[int] = None
        self.status: Optional[int] = None
        self.requests: List[Dict[str, str]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server.requests.append({"path": self.path, **dict(self.headers)})
                if server.status is not None:
                    self.send_error(server.status)
                    return
                body, start = server.payload, 0
                total = len(body)
                rng = self.headers.get("Range")
                if rng and server.honor_range:
                    start = int(re.match(r"bytes=(\d+)-", rng).group(1))
                    if start >= total:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{total}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
                else:
                    self.send_response(200)
                body = body[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)
                self.wfile.flush()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = FakeServer(PAYLOAD)
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(ck, "_RETRY_DELAY_S", 0.0)


def _no_leftovers(dest: Path) -> None:
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()


def test_download_full(server, tmp_path, capsys):
    dest = tmp_path / "f.pt"
    out = ck.download_file(server.base + "/f.pt", dest, expected_size=len(PAYLOAD), sha256=PAYLOAD_SHA)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert not dest.with_name("f.pt.part").exists()
    assert "Range" not in server.requests[0]
    err = capsys.readouterr().err
    assert "downloading f.pt" in err and "100%" in err


def test_download_without_known_size_uses_content_length(server, tmp_path):
    dest = tmp_path / "f.pt"
    ck.download_file(server.base + "/f.pt", dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_download_resumes_partial_file(server, tmp_path):
    dest = tmp_path / "f.pt"
    dest.with_name("f.pt.part").write_bytes(PAYLOAD[:100_000])
    ck.download_file(server.base + "/f.pt", dest, expected_size=len(PAYLOAD), sha256=PAYLOAD_SHA,
                     progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [r.get("Range") for r in server.requests] == ["bytes=100000-"]


def test_download_restarts_when_server_ignores_range(server, tmp_path, capsys):
    server.honor_range = False
    dest = tmp_path / "f.pt"
    dest.with_name("f.pt.part").write_bytes(PAYLOAD[:100_000])
    ck.download_file(server.base + "/f.pt", dest, expected_size=len(PAYLOAD), sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD  # restarted from zero, not appended
    assert server.requests[0].get("Range") == "bytes=100000-"
    assert "restarting" in capsys.readouterr().err


def test_download_retries_a_dropped_connection_by_resuming(server, tmp_path):
    server.cut_after = 50_000
    dest = tmp_path / "f.pt"
    ck.download_file(server.base + "/f.pt", dest, expected_size=len(PAYLOAD), sha256=PAYLOAD_SHA,
                     progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    assert server.requests[1].get("Range") == "bytes=50000-"


def test_download_complete_part_answered_416(server, tmp_path):
    dest = tmp_path / "f.pt"
    dest.with_name("f.pt.part").write_bytes(PAYLOAD)
    # no known size: the server's 416 tells the part is complete, the hash confirms it
    ck.download_file(server.base + "/f.pt", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_concurrent_downloads_fetch_once(server, tmp_path):
    dest = tmp_path / "f.pt"
    errors = []

    def fetch():
        try:
            ck.download_file(server.base + "/f.pt", dest, expected_size=len(PAYLOAD),
                             sha256=PAYLOAD_SHA, progress=False)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and dest.read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_download_size_mismatch_refused(server, tmp_path):
    dest = tmp_path / "f.pt"
    with pytest.raises(CheckpointDownloadError, match=r"announced 307200 bytes.*has 307201"):
        ck.download_file(server.base + "/f.pt", dest, expected_size=len(PAYLOAD) + 1, progress=False)
    _no_leftovers(dest)


def test_download_oversized_part_restarts(server, tmp_path):
    dest = tmp_path / "f.pt"
    dest.with_name("f.pt.part").write_bytes(PAYLOAD + b"junk")
    ck.download_file(server.base + "/f.pt", dest, expected_size=len(PAYLOAD), sha256=PAYLOAD_SHA,
                     progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_download_hash_mismatch_refused(server, tmp_path):
    dest = tmp_path / "f.pt"
    with pytest.raises(CheckpointDownloadError, match="SHA-256 mismatch") as info:
        ck.download_file(server.base + "/f.pt", dest, expected_size=len(PAYLOAD), sha256="0" * 64,
                         progress=False)
    assert PAYLOAD_SHA in str(info.value)
    _no_leftovers(dest)


def test_download_http_error(server, tmp_path):
    server.status = 404
    dest = tmp_path / "f.pt"
    with pytest.raises(CheckpointDownloadError, match="HTTP 404"):
        ck.download_file(server.base + "/f.pt", dest, progress=False)
    _no_leftovers(dest)


def test_unwritable_cache(server, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"")
    with pytest.raises(CheckpointDownloadError, match=r"cannot create the checkpoint cache.*SAM2_ROS_CACHE"):
        ck.resolve_checkpoint(None, "tiny", cache_dir=blocker / "cache", progress=False)
    with pytest.raises(CheckpointDownloadError, match="cannot write"):
        ck.download_file(server.base + "/f.pt", blocker / "f.pt", progress=False)
    assert not server.requests


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections are refused


def test_resolve_offline_error_is_actionable(tmp_path, monkeypatch):
    monkeypatch.setenv(ck.BASE_URL_ENV, f"http://127.0.0.1:{_dead_port()}/mirror")
    with pytest.raises(CheckpointDownloadError) as info:
        ck.resolve_checkpoint(None, "tiny", cache_dir=tmp_path, progress=False)
    message = str(info.value)
    assert message.startswith("could not download sam2.1_hiera_tiny.pt from http://127.0.0.1:")
    assert "/mirror/sam2.1_hiera_tiny.pt" in message
    assert "Connection" in message or "refused" in message
    assert "checkpoint:=/path/to/sam2.1_hiera_tiny.pt (ROS)" in message
    assert "checkpoint='/path/to/sam2.1_hiera_tiny.pt' (Python)" in message
    assert not (tmp_path / "sam2.1_hiera_tiny.pt").exists()


def test_resolve_uses_meta_url_and_one_network_function(tmp_path, monkeypatch):
    """Without a mirror the official URL is requested, through _open_url only."""
    monkeypatch.delenv(ck.BASE_URL_ENV, raising=False)
    seen = []

    def offline(url, headers, timeout):
        seen.append(url)
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(ck, "_open_url", offline)
    with pytest.raises(CheckpointDownloadError, match="name resolution") as info:
        ck.resolve_checkpoint("", "small", cache_dir=tmp_path, progress=False)
    assert seen == ["https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_small.pt"]
    assert "pass checkpoint:=/path/to/sam2.1_hiera_small.pt" in str(info.value)
    with pytest.raises(CheckpointDownloadError, match="sam2_hiera_large.pt"):
        ck.resolve_checkpoint(None, "l", cache_dir=tmp_path, version="2.0", progress=False)
    assert seen[-1] == "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_large.pt"


def test_resolve_downloads_once_then_uses_cache(server, tmp_path, monkeypatch):
    info = ck.OFFICIAL_CHECKPOINTS["tiny"]
    fake = ck.CheckpointInfo("tiny", "2.1", info.filename, info.url, len(PAYLOAD), PAYLOAD_SHA)
    monkeypatch.setitem(ck.OFFICIAL_CHECKPOINTS, "tiny", fake)
    monkeypatch.setenv(ck.BASE_URL_ENV, server.base + "/mirror/")
    monkeypatch.setenv("SAM2_ROS_CACHE", str(tmp_path / "cache"))
    path = ck.resolve_checkpoint(None, "t", progress=False)
    assert path == tmp_path / "cache" / "sam2.1_hiera_tiny.pt"
    assert path.read_bytes() == PAYLOAD
    assert server.requests[0]["path"] == "/mirror/sam2.1_hiera_tiny.pt"

    def no_network(*args, **kwargs):
        raise AssertionError("the cache hit must not touch the network")

    monkeypatch.setattr(ck, "_open_url", no_network)
    assert ck.resolve_checkpoint(None, "tiny", progress=False) == path


def test_resolve_replaces_cached_file_of_wrong_size(server, tmp_path, monkeypatch):
    info = ck.OFFICIAL_CHECKPOINTS["tiny"]
    fake = ck.CheckpointInfo("tiny", "2.1", info.filename, info.url, len(PAYLOAD), PAYLOAD_SHA)
    monkeypatch.setitem(ck.OFFICIAL_CHECKPOINTS, "tiny", fake)
    monkeypatch.setenv(ck.BASE_URL_ENV, server.base)
    (tmp_path / info.filename).write_bytes(b"short")
    path = ck.resolve_checkpoint(None, "tiny", cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD


# --------------------------------------------------------------------------------------------
# load_checkpoint_file
# --------------------------------------------------------------------------------------------


def small_sd() -> Dict[str, torch.Tensor]:
    return {"a.weight": torch.arange(2000.0).reshape(40, 50), "a.bias": torch.ones(40)}


def test_load_meta_format_and_bare(tmp_path):
    sd = small_sd()
    torch.save({"model": sd, "epoch": 3}, tmp_path / "meta.pt")
    torch.save(sd, tmp_path / "bare.pt")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("meta.pt", "bare.pt", "legacy.pt"):
        loaded = ck.load_checkpoint_file(tmp_path / name)
        assert loaded.keys() == sd.keys()
        assert all(torch.equal(loaded[k], sd[k]) for k in sd)
        assert all(t.device.type == "cpu" for t in loaded.values())


def test_load_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="not found"):
        ck.load_checkpoint_file(tmp_path / "nope.pt")


def test_load_empty_file(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty \(0 bytes\).*download it again"):
        ck.load_checkpoint_file(tmp_path / "e.pt")


@pytest.mark.parametrize("legacy", [False, True])
def test_load_truncated_file(tmp_path, legacy):
    torch.save({"model": small_sd()}, tmp_path / "ok.pt", _use_new_zipfile_serialization=not legacy)
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated.*download it again"):
        ck.load_checkpoint_file(tmp_path / "half.pt")


def test_load_truncated_official_name_says_expected_size(tmp_path):
    torch.save({"model": small_sd()}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "sam2.1_hiera_tiny.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"official sam2.1_hiera_tiny.pt has 156008466 bytes"):
        ck.load_checkpoint_file(tmp_path / "sam2.1_hiera_tiny.pt")


@pytest.mark.parametrize(
    "content, pattern",
    [
        (bytes(range(1, 128)) * 32, "not a PyTorch checkpoint"),
        (b"\x80\x02" + b"garbage" * 100, "corrupt"),
        (b"PK\x03\x04" + b"\x00garbage" * 100, "(corrupt|truncated)"),
        (b"<!DOCTYPE html><html><body>Access denied</body></html>", "error or login page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 1\n", "git lfs pull"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"a":{"dtype":"F32"}}', "safetensors"),
    ],
    ids=["random", "bad-pickle", "bad-zip", "html", "lfs-pointer", "safetensors"],
)
def test_load_corrupt_or_foreign_files(tmp_path, content, pattern):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern):
        ck.load_checkpoint_file(tmp_path / "x.pt")


def test_load_not_a_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        ck.load_checkpoint_file(tmp_path / "list.pt")
    torch.save(torch.zeros(2), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        ck.load_checkpoint_file(tmp_path / "tensor.pt")


def test_load_dict_without_tensors(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match=r"dict without tensors.*'epoch'"):
        ck.load_checkpoint_file(tmp_path / "d.pt")
    torch.save({"model": {}}, tmp_path / "e.pt")
    with pytest.raises(CheckpointError, match="empty dict"):
        ck.load_checkpoint_file(tmp_path / "e.pt")
    torch.save({"w": torch.zeros(1), "step": 7}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"mixes tensors with 1 other.*'step' \(int\)"):
        ck.load_checkpoint_file(tmp_path / "m.pt")


class _RunsCode:
    """Unpickling this calls os.system (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CustomClass:
    pass


def test_load_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {"w": torch.zeros(1), "x": _RunsCode(marker)}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refusing to load.*system.*weights_only=True"):
        ck.load_checkpoint_file(tmp_path / "evil.pt")
    assert not marker.exists()

    # a raw pickle (torch's legacy format starts as a pickle stream) is refused the same way
    (tmp_path / "evil_legacy.pt").write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    with pytest.raises(CheckpointError, match="refusing to load"):
        ck.load_checkpoint_file(tmp_path / "evil_legacy.pt")
    assert not marker.exists()  # os.system never ran


def test_load_refuses_custom_classes(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": _CustomClass()}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"refusing to load.*_CustomClass"):
        ck.load_checkpoint_file(tmp_path / "c.pt")


# --------------------------------------------------------------------------------------------
# variants and strict loading, on Meta's own models
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["tiny", "small"])
@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_detect_official_variants(size, version):
    assert ck.detect_checkpoint_variant(official_sd(size, version)) == (size, version)


def test_detect_from_shapes_and_synthetic_layouts():
    shapes = {k: tuple(v.shape) for k, v in official_sd("small", "2.1").items()}
    assert ck.detect_checkpoint_variant(shapes) == ("small", "2.1")
    for size, blocks, dim in [("base_plus", 24, 112), ("large", 48, 144)]:
        sd = {f"image_encoder.trunk.blocks.{i}.norm1.weight": (dim,) for i in range(blocks)}
        sd["image_encoder.trunk.patch_embed.proj.weight"] = (dim, 3, 7, 7)
        sd["maskmem_tpos_enc"] = (7, 1, 1, 64)
        assert ck.detect_checkpoint_variant(sd) == (size, "2.0")
    assert ck.detect_checkpoint_variant(sam1_state_dict()) == ("vit_b", "1")
    assert ck.detect_checkpoint_variant({"foo": torch.zeros(1)}) == (None, None)


def test_state_dict_does_not_depend_on_image_size():
    small = {k: tuple(v.shape) for k, v in official_sd("tiny", "2.1").items()}
    large = {k: tuple(v.shape) for k, v in build_official("tiny", "2.1", 1024).state_dict().items()}
    assert small == large


def test_sam21_adds_exactly_three_keys():
    sd20, sd21 = official_sd("tiny", "2.0"), official_sd("tiny", "2.1")
    assert set(sd21) - set(sd20) == {"no_obj_embed_spatial", "obj_ptr_tpos_proj.weight",
                                     "obj_ptr_tpos_proj.bias"}
    assert set(sd20) <= set(sd21)


def test_strict_load_roundtrip_through_a_file(tmp_path):
    source = official_sd("tiny", "2.1")
    torch.save({"model": source}, tmp_path / "ckpt.pt")  # Meta's file layout
    target = build_official("tiny", "2.1")
    ck.load_state_dict_strict(target, ck.load_checkpoint_file(tmp_path / "ckpt.pt"), model_name="tiny")
    loaded = target.state_dict()
    assert all(torch.equal(loaded[k], source[k]) for k in source)


def test_strict_load_sam20_with_meta_wrapper():
    source = official_sd("small", "2.0")
    target = build_official("small", "2.0")
    ck.load_state_dict_strict(target, {"model": source}, model_name="s")
    loaded = target.state_dict()
    assert all(torch.equal(loaded[k], source[k]) for k in source)


def _mismatch(module: torch.nn.Module, sd, model_name: str) -> CheckpointMismatchError:
    # every in-place write (load_state_dict's copy_) bumps a tensor's version counter
    before = {k: v._version for k, v in module.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        ck.load_state_dict_strict(module, sd, model_name=model_name)
    after = {k: v._version for k, v in module.state_dict().items()}
    assert before == after, "nothing may be loaded on error"
    return info.value


def test_wrong_model_size():
    error = _mismatch(_build_official_cached("tiny", "2.1"), official_sd("small", "2.1"), "tiny")
    message = str(error)
    assert "checkpoint is hiera 'small' but model='tiny' was requested" in message
    assert "pass model:=small or the tiny checkpoint (sam2.1_hiera_tiny.pt)" in message
    assert "unexpected key(s)" in message and "image_encoder.trunk.blocks.12." in message
    # small has 4 more blocks (12..15), and the stage-4 blocks of tiny are stage-3 blocks in small
    assert error.unexpected and all(k.startswith("image_encoder.trunk.blocks.1") for k in error.unexpected)
    assert error.mismatched


def test_wrong_model_size_other_direction():
    message = str(_mismatch(_build_official_cached("small", "2.0"), official_sd("tiny", "2.0"), "small"))
    assert "checkpoint is hiera 'tiny' but model='small' was requested: pass model:=tiny" in message
    assert "sam2_hiera_small.pt" in message
    assert "missing key(s)" in message


def test_sam20_checkpoint_into_sam21_model():
    error = _mismatch(_build_official_cached("tiny", "2.1"), official_sd("tiny", "2.0"), "tiny")
    message = str(error)
    assert "checkpoint is SAM 2.0 but the model is built for SAM 2.1" in message
    assert "version='2.0'" in message and "sam2.1_hiera_tiny.pt" in message
    assert sorted(error.missing) == ["no_obj_embed_spatial", "obj_ptr_tpos_proj.bias",
                                     "obj_ptr_tpos_proj.weight"]
    assert not error.unexpected and not error.mismatched
    assert "checkpoint is hiera" not in message  # same size: no size advice


def test_sam21_checkpoint_into_sam20_model():
    error = _mismatch(_build_official_cached("small", "2.0"), official_sd("small", "2.1"), "small")
    assert "checkpoint is SAM 2.1 but the model is built for SAM 2.0" in str(error)
    assert len(error.unexpected) == 3


def test_sam1_checkpoint():
    message = str(_mismatch(_build_official_cached("tiny", "2.1"), sam1_state_dict(), "tiny"))
    assert ("this is a SAM (v1) checkpoint (vit_b); sam2_ros needs a SAM 2 / 2.1 checkpoint "
            "such as sam2.1_hiera_tiny.pt") in message


def test_module_prefix_and_foreign_checkpoints():
    model = _build_official_cached("tiny", "2.1")
    prefixed = {"module." + k: v for k, v in official_sd("tiny", "2.1").items()}
    assert "starts with 'module.'" in str(_mismatch(model, prefixed, "tiny"))
    hf = {"vision_encoder.backbone.patch_embed.projection.weight": torch.zeros(1)}
    assert "Hugging Face transformers" in str(_mismatch(model, hf, "tiny"))
    assert "not a SAM 2 checkpoint" in str(_mismatch(model, {"fc.weight": torch.zeros(1)}, "tiny"))


def test_generic_mismatch_lists_keys():
    model = _build_official_cached("tiny", "2.1")
    sd = dict(official_sd("tiny", "2.1"))
    del sd["sam_mask_decoder.iou_token.weight"]
    sd["extra.weight"] = torch.zeros(2)
    sd["no_mem_embed"] = torch.zeros(1, 1, 128)
    error = _mismatch(model, sd, "tiny")
    message = str(error)
    assert "1 missing key(s) (in the model, not the checkpoint): sam_mask_decoder.iou_token.weight" in message
    assert "1 unexpected key(s) (in the checkpoint, not the model): extra.weight" in message
    assert "no_mem_embed model [1, 1, 256] vs checkpoint [1, 1, 128]" in message
    assert "Loading is strict" in message
    assert error.missing == ["sam_mask_decoder.iou_token.weight"]
    assert error.unexpected == ["extra.weight"]
    assert error.mismatched == [("no_mem_embed", (1, 1, 256), (1, 1, 128))]


def test_many_keys_are_summarised():
    model = _build_official_cached("tiny", "2.1")
    sd = {k: v for k, v in official_sd("tiny", "2.1").items() if not k.startswith("memory_attention.")}
    error = _mismatch(model, sd, "tiny")
    assert len(error.missing) > 20
    assert f"({len(error.missing) - 5} more)" in str(error)

"""A Hugging Face Hub on loopback, for tests (``HF_ENDPOINT=server.endpoint``), and the client
the tests run in a process of its own (``python test/hub_server.py OPS``).

The server answers ``HEAD`` / ``GET /{namespace}/{name}/resolve/{revision}/{file}`` the way
huggingface.co does for ``huggingface_hub.hf_hub_download``:

* a small file (``config.json``) is served directly: 200, ``ETag`` (its git blob SHA-1),
  ``X-Repo-Commit``, ``Content-Length``;
* a large (LFS) file redirects to a CDN on another origin (a second server): 302 with
  ``Location`` (a signed URL), ``X-Linked-Etag`` (its SHA-256), ``X-Linked-Size`` and
  ``X-Repo-Commit``; the CDN serves the bytes, with ``Range`` for resumed downloads, and never
  needs (nor should get) the ``Authorization`` header;
* errors carry the Hub's ``X-Error-Code``: ``RepoNotFound`` (401: unknown repository, or a
  private one without a valid ``Authorization: Bearer <token>``), ``RevisionNotFound`` and
  ``EntryNotFound`` (404).

Every request is recorded (which server, method, path, Authorization header) so that tests see
what the client asked. ``corrupt=True`` makes the CDN flip one byte of a repository's large
files (same length): a download corrupted in transit.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sys
import threading
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional
from urllib.parse import parse_qs, urlparse

LFS_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin")
_SECRET = b"loopback-cdn"


@dataclass
class Repo:
    files: Dict[str, bytes]
    token: Optional[str] = None  # private: requests need "Authorization: Bearer <token>"
    corrupt: bool = False
    commit: str = ""


@dataclass
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    authorization: Optional[str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.server.owner._connections.add(self.connection)

    def log_message(self, *args):  # keep test output clean
        pass

    def do_HEAD(self):
        self.server.handle(self, head=True)

    def do_GET(self):
        self.server.handle(self, head=False)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: "HubServer", handle):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner, self.handle = owner, handle
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _send(handler: BaseHTTPRequestHandler, status: int, headers: Dict[str, str], body: bytes, head: bool) -> None:
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if not head:
        handler.wfile.write(body)


class HubServer:
    """The Hub (``endpoint``) and its CDN, both on 127.0.0.1."""

    def __init__(self) -> None:
        self.repos: Dict[str, Repo] = {}
        self.requests: List[Request] = []
        self._connections: set = set()
        self._lock = threading.Lock()
        self.hub = _Server(self, self._hub)
        self.cdn = _Server(self, self._cdn)
        self.endpoint = self.hub.origin

    def add(self, repo_id: str, files: Dict[str, bytes], *, token: Optional[str] = None,
            corrupt: bool = False) -> Repo:
        repo = Repo(dict(files), token, corrupt, hashlib.sha1(repo_id.encode()).hexdigest())
        self.repos[repo_id] = repo
        return repo

    def stop(self) -> None:
        """Stop both servers and drop every open connection (kept-alive ones too)."""
        for server in (self.hub, self.cdn):
            server.shutdown()
            server.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _record(self, server: str, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(Request(server, handler.command, handler.path,
                                         handler.headers.get("Authorization")))

    def _hub(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        self._record("hub", handler)
        match = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", urlparse(handler.path).path)
        if match is None:  # e.g. huggingface_hub's /api/agent-harnesses: not served here
            _send(handler, 404, {}, b"Not Found", head)
            return
        repo = self.repos.get(match["repo"])
        if repo is None or (repo.token is not None
                            and handler.headers.get("Authorization") != f"Bearer {repo.token}"):
            # the Hub does not tell an unknown repository from a private one
            _send(handler, 401, {"X-Error-Code": "RepoNotFound",
                                 "X-Error-Message": "Repository not found"}, b"Repository not found", head)
            return
        if match["rev"] not in ("main", repo.commit):
            _send(handler, 404, {"X-Error-Code": "RevisionNotFound",
                                 "X-Error-Message": "Invalid rev id"}, b"Invalid rev id", head)
            return
        name, common = match["file"], {"X-Repo-Commit": repo.commit}
        data = repo.files.get(name)
        if data is None:
            _send(handler, 404, {**common, "X-Error-Code": "EntryNotFound",
                                 "X-Error-Message": "Entry not found"}, b"Entry not found", head)
            return
        if not name.endswith(LFS_SUFFIXES):
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            _send(handler, 200, {**common, "ETag": f'"{blob}"', "Content-Type": "application/json"}, data, head)
            return
        sha = hashlib.sha256(data).hexdigest()
        signature = hashlib.sha256(_SECRET + sha.encode()).hexdigest()[:16]
        location = f"{self.cdn.origin}/lfs/{sha}?Signature={signature}&repo={match['repo']}"
        _send(handler, 302, {**common, "Location": location, "X-Linked-Etag": f'"{sha}"',
                             "X-Linked-Size": str(len(data)), "ETag": f'"{sha}"'},
              b"Found. Redirecting to " + location.encode(), head)

    def _cdn(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        self._record("cdn", handler)
        url = urlparse(handler.path)
        query = parse_qs(url.query)
        sha = url.path.rsplit("/", 1)[-1]
        repo = self.repos.get(query.get("repo", [""])[0])
        data = next((d for d in (repo.files.values() if repo else ()) if hashlib.sha256(d).hexdigest() == sha), None)
        if data is None or query.get("Signature") != [hashlib.sha256(_SECRET + sha.encode()).hexdigest()[:16]]:
            _send(handler, 403, {}, b"<Error><Code>AccessDenied</Code></Error>", head)
            return
        if repo.corrupt:  # one byte flipped in transit, the length unchanged
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
        start = 0
        wanted = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")
        if wanted:
            start = int(wanted[1])
            _send(handler, 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                                 "ETag": f'"{sha}"'}, data[start:], head)
        else:
            _send(handler, 200, {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"}, data, head)


# --------------------------------------------------------------------------------------------
# The client: runs in its own process, with the environment (HF_ENDPOINT, HF_HOME,
# HF_HUB_OFFLINE, HF_TOKEN) the test sets, as a user's process would
# --------------------------------------------------------------------------------------------

RESULT = "HUB-CLIENT-RESULT:"


def _patch_official(patch: Dict[str, List]) -> None:
    """Test-only: official rows whose (SHA-256, size) are those of the bytes the server holds."""
    import dataclasses

    from sam2_ros.model import official

    for repo_id, (sha, size) in patch.items():
        info = dataclasses.replace(official.HUB_CHECKPOINTS[repo_id.lower()], sha256=sha, size=size)
        official.HUB_CHECKPOINTS[repo_id.lower()] = info
        table = official.OFFICIAL_CHECKPOINTS if info.version == "2.1" else official.SAM2_0_CHECKPOINTS
        if table.get(info.model, info).repo_id == info.repo_id:
            table[info.model] = info


def _run(op: List) -> Dict:
    kind, args = op[0], op[1:]
    if kind == "resolve":
        from sam2_ros.model.checkpoint import resolve_checkpoint

        return {"path": str(resolve_checkpoint(*args))}
    if kind in ("tracker", "predictor"):
        import numpy as np

        from sam2_ros import ImagePredictor, Prompt, Tracker

        checkpoint, image_size = args
        frame = np.full((image_size, image_size, 3), 120, np.uint8)
        if kind == "tracker":
            tracker = Tracker.from_pretrained(checkpoint, image_size=image_size, device="cpu")
            result = tracker.track(frame, [Prompt(1, points=[[image_size / 2, image_size / 2]], labels=[1])])
            net = tracker.model
        else:
            predictor = ImagePredictor.from_pretrained(checkpoint, image_size=image_size, device="cpu")
            result = predictor.segment(frame, points=[[image_size / 2, image_size / 2]], labels=[1])
            net = predictor.model
        return {"model": net.cfg.name, "version": net.cfg.version, "finite": bool(result.logits.isfinite().all()),
                "transformers_imported": "transformers" in sys.modules}
    raise ValueError(f"unknown op {kind!r}")


def client_main(argv: List[str]) -> int:
    """``argv``: a JSON object {"ops": [[op, args...], ...], "patch": {repo: [sha256, size]}};
    prints one line RESULT + JSON list: {"path"...} / {"model"...} or {"error", "message"}."""
    request = json.loads(argv[0])
    _patch_official(request.get("patch", {}))
    results = []
    for op in request["ops"]:
        try:
            results.append(_run(op))
        except Exception as error:  # noqa: BLE001 - reported to the test
            results.append({"error": type(error).__name__, "message": str(error),
                            "traceback": traceback.format_exc()})
    print(RESULT + json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(client_main(sys.argv[1:]))

"""A real HTTP/1.1 file server for the fetch tests, run as a separate process on 127.0.0.1.

Usage: ``python tests/fetch/http_server.py --dir FOLDER`` prints ``PORT <n>`` once listening.

The first path segment chooses a behaviour, the rest names a file under ``FOLDER``:

=================  ==============================================================================
``/plain/F``       serve ``F``; honours ``Range: bytes=N-`` with ``206`` + ``Content-Range``
``/drop/F``        first request for this path: announce the full length, send half, close
``/flaky/F``       first two requests for this path: ``503``; then as ``plain``
``/always503/F``   always ``503``
``/norange/F``     ignores ``Range``: always ``200`` with the whole file
``/dropnorange/F`` first request dropped half way, and ``Range`` is always ignored
``/corrupt/F``     the whole file with one byte in the middle flipped
``/stall/F``       first request for this path: headers and half the body, then silence
``/forbidden/F``   ``403``
``/changing/F``    first request for this path: ``F``, dropped half way; later ones: ``F.v2`` (the file
                   changed on the server, and its ``ETag`` and ``Last-Modified`` with it)
``/changinglm/F``  as ``changing``, with ``Last-Modified`` only (no ``ETag``)
``/changingnoifrange/F``  as ``changing``, but ``If-Range`` is ignored (a broken server)
``/gone/F``        ``404`` for every request: a mirror that lacks the file
``/_log``          JSON list of requests so far: path, range header, status, body bytes sent
``/_reset``        clear the log and the per-path counters
=================  ==============================================================================

A file that does not exist is a ``404``. Each request is logged just before its last bytes are
sent, so a client that has its answer always finds it in ``/_log``.

Like a real server, every file is sent with an ``ETag`` (a hash of its bytes) and a
``Last-Modified`` (its mtime), and ``If-Range`` is honoured: a ``Range`` request whose ``If-Range``
does not match the current validator gets the whole current file with ``200``.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STALL_S = 60.0


class _State:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        self.log: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}

    def count(self, path: str) -> int:
        """How many earlier requests this path had (0 for the first)."""
        with self.lock:
            n = self.counts.get(path, 0)
            self.counts[path] = n + 1
            return n


class Handler(BaseHTTPRequestHandler):
    """Serves files with the misbehaviours in the module docstring."""

    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        """Quiet: the JSON log is the record."""

    def _record(self, status: int, sent: int) -> None:
        with self.state.lock:
            self.state.log.append(
                {"path": self.path, "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range"),
                 "status": status, "body_bytes": sent}
            )

    def _simple(self, status: int, body: bytes = b"", ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        """Dispatch on the first path segment."""
        if self.path == "/_log":
            with self.state.lock:
                body = json.dumps(self.state.log).encode()
            self._simple(200, body, "application/json")
            return
        if self.path == "/_reset":
            with self.state.lock:
                self.state.log.clear()
                self.state.counts.clear()
            self._simple(200, b"ok")
            return
        mode, _, name = self.path.lstrip("/").partition("/")
        nth = self.state.count(self.path)
        file = (self.state.folder / name).resolve()
        if mode == "forbidden":
            self._record(403, 0)
            self._simple(403, b"forbidden")
            return
        if mode == "gone":
            self._record(404, 0)
            self._simple(404, b"not found")
            return
        changing = mode in ("changing", "changinglm", "changingnoifrange")
        if changing and nth > 0 and file.with_name(file.name + ".v2").is_file():
            file = file.with_name(file.name + ".v2")
        if mode == "always503" or (mode == "flaky" and nth < 2):
            self._record(503, 0)
            self._simple(503, b"busy")
            return
        if not name or self.state.folder.resolve() not in file.parents or not file.is_file():
            self._record(404, 0)
            self._simple(404, b"not found")
            return
        data = file.read_bytes()
        if mode == "corrupt":
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
        etag = None if mode == "changinglm" else '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        last_modified = email.utils.formatdate(file.stat().st_mtime, usegmt=True)
        start = 0
        rng = self.headers.get("Range")
        honour_range = mode not in ("norange", "dropnorange")
        if_range = self.headers.get("If-Range")
        if if_range and mode != "changingnoifrange":
            # RFC 9110 13.1.5: an entity tag must match strongly, a date exactly; otherwise send it all.
            current = etag if if_range.startswith(('"', "W/")) else last_modified
            if if_range.startswith("W/") or if_range != current:
                rng = None
        if rng and honour_range and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes=") : -1])
            if start >= len(data):
                self._record(416, 0)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes" if honour_range else "none")
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if (mode in ("drop", "dropnorange", "stall") or changing) and nth == 0:
            half = len(body) // 2
            self._record(206 if start else 200, half)
            self.wfile.write(body[:half])
            self.wfile.flush()
            if mode == "stall":
                time.sleep(STALL_S)
            return  # closing the socket with the rest unsent
        self._record(206 if start else 200, len(body))
        self.wfile.write(body)


def main(argv: list[str] | None = None) -> None:
    """Serve ``--dir`` on 127.0.0.1 until killed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    Handler.state = _State(args.dir)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main(sys.argv[1:])

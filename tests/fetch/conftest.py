"""Fixtures of the fetch tests: the misbehaving HTTP server in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


@dataclass
class Server:
    """Handle on the server process: where it serves from and what it saw."""

    base: str
    folder: Path
    process: subprocess.Popen[str]

    def url(self, mode: str, name: str) -> str:
        """URL of file ``name`` served with behaviour ``mode`` (see ``http_server.py``)."""
        return f"{self.base}/{mode}/{name}"

    def put(self, name: str, data: bytes) -> Path:
        """Make ``data`` available as ``name``."""
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def log(self) -> list[dict[str, Any]]:
        """Requests served so far (log requests themselves excluded)."""
        with urllib.request.urlopen(f"{self.base}/_log", timeout=10) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        """Clear the log and the per-path counters."""
        with urllib.request.urlopen(f"{self.base}/_reset", timeout=10) as r:
            r.read()


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server process for the session, serving a temporary folder on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("served")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "http_server.py"), "--dir", str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PORT "):
        proc.kill()
        pytest.fail(f"test HTTP server did not start: {line!r}")
    server = Server(f"http://127.0.0.1:{int(line.split()[1])}", folder, proc)
    try:
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def server(http_server: Server) -> Server:
    """The session's server with an empty log."""
    http_server.reset()
    return http_server

"""The CLI as a user runs it, against real processes: a Dask scheduler and worker started
separately (``--dask-address``), and a rebuild killed with SIGKILL half way."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks.synthetic import write_synthetic_coco
from tests.helpers import build_version
from tests.ports import free_port

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING", DO_NOT_TRACK="1")
    env.pop("PREFECT_API_URL", None)  # the CLI starts its own ephemeral API, like a user's shell
    return env


def _wait_port(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


def test_rebuild_on_an_existing_dask_scheduler(shared_data, tmp_path):
    port = free_port()
    logs = tmp_path / "scheduler.log"
    with open(logs, "w") as log, open(tmp_path / "worker.log", "w") as worker_log:
        scheduler = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT, env=_env())
        worker = None
        try:
            _wait_port(port)
            # INFO: a worker that starts a throwaway Prefect server of its own says so in its log
            worker = subprocess.Popen(
                [str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
                stdout=worker_log, stderr=subprocess.STDOUT, env={**_env(), "PREFECT_LOGGING_LEVEL": "INFO"},
            )  # fmt: skip
            root = tmp_path / "root"
            out = subprocess.run(
                [str(BIN / "posepipe"), "rebuild", "coco", "--source", str(shared_data / "coco/coco_mini_val2017"), "--root", str(root),
                 "--dask-address", f"tcp://127.0.0.1:{port}", "--shard-size", "32", "--json"],
                capture_output=True, text=True, env=_env(), timeout=600,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr[-3000:]
            summary = json.loads(out.stdout[out.stdout.index("{") :])
            assert summary["counts"] == {"val": 68} and summary["rejected"] == 50 and summary["validation"] == "passed"
        finally:
            for proc in (worker, scheduler):
                if proc is not None:
                    proc.terminate()
                    proc.wait(30)
    # the work went through that scheduler: it logged the flow's client connecting
    assert "Receive client connection" in logs.read_text()
    # the external worker (no PREFECT_API_URL of its own) used the CLI's Prefect API: before, it
    # started a throwaway server silently and its task runs went to a database that died with it
    worker_text = (tmp_path / "worker.log").read_text()
    assert "Task run '" in worker_text and "Finished in state Completed" in worker_text, worker_text[-3000:]  # it ran tasks
    assert "Starting temporary server" not in worker_text, worker_text[-3000:]
    assert "cannot reach this run's temporary Prefect API" not in out.stderr


def test_killed_rebuild_leaves_nothing_half_written(tmp_path):
    source = write_synthetic_coco(tmp_path / "src", {"train": 40, "val": 4}, seed=5)
    root = tmp_path / "root"
    proc = subprocess.Popen(
        [str(BIN / "posepipe"), "rebuild", "coco", "--source", str(source), "--root", str(root), "--workers", "1", "--shard-size", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(list(root.glob("datasets/coco/*/train/part-*.parquet"))) < 2:
            assert proc.poll() is None, "rebuild finished before it could be killed"
            time.sleep(0.05)
        assert list(root.glob("datasets/coco/*/train/part-*.parquet")), "no shard appeared in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    (version_dir,) = root.glob("datasets/coco/v-*")
    assert not (root / "datasets/coco/LATEST").exists()
    assert not (version_dir / "_manifest.json").exists()
    # every visible file is whole: only hidden temporary names may be partial
    for path in version_dir.rglob("*.parquet"):
        if not path.name.startswith("."):
            pq.read_table(path)
    # the next rebuild starts clean (the lock died with its holder) and commits the same counts
    summary = build_version(str(root), str(source), shard_size=2)
    clean = build_version(str(tmp_path / "clean"), str(source), shard_size=2)
    assert summary["version"] == clean["version"] and summary["counts"] == clean["counts"]
    assert (root / "datasets/coco/LATEST").read_text().strip() == summary["version"]
    assert not list(version_dir.rglob(".*tmp-*"))

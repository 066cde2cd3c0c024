"""What a rebuild does before (and instead of) starting Prefect and Dask, and what it leaves behind.

Real ``posepipe`` CLI subprocesses in a shell without ``PREFECT_API_URL``, like a user's:

* a mistake (dataset name, ``-p`` key, ``--source``) is a two-line error, rc 2, no traceback, no
  Prefect server (first hour 2a: 14-18 s and ~100 lines before);
* an unchanged rebuild is decided before the orchestrator starts (first hour 2c: 15 s before);
* a held dataset lock refuses a second rebuild before Prefect starts (fault #6 keeps holding);
* a SIGKILLed run takes its temporary Prefect server with it (fault #5: it was orphaned forever);
* a ``PosepipeError`` raised inside a task prints no Prefect traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from storage.fs import filesystem
from storage.manifest import dataset_lock
from tasks.synthetic import write_synthetic_coco
from tests.helpers import build_version

BIN = Path(sys.executable).parent
SERVER_MARK = "prefect.server.api.server"


def _env() -> dict[str, str]:
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="INFO", DO_NOT_TRACK="1")
    for key in ("PREFECT_API_URL", "POSEPIPE_ROOT", "POSEPIPE_DASK_ADDRESS"):
        env.pop(key, None)
    return env


def _posepipe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "posepipe"), *args], capture_output=True, text=True, env=_env(), timeout=timeout)


def _no_orchestrator(out: str) -> None:
    assert "Traceback" not in out, out
    assert "Starting temporary server" not in out, out  # Prefect's INFO line when it starts its server
    assert "Creating a new Dask cluster" not in out, out


@pytest.mark.parametrize(
    ("args", "error", "hint"),
    [
        (["nosuch"], "error: no dataset adapter named 'nosuch'", "hint: known: coco"),
        (["coco", "-p", "keep_crowds=1"], "error: invalid parameters for coco", "hint: accepted: keep_crowd"),
        (["coco", "--source", "{tmp}/missing"], "error: source {tmp}/missing does not exist", "hint: pass --source the coco folder"),
    ],
    ids=["dataset", "param", "source"],
)
def test_a_mistake_is_two_lines_before_anything_starts(tmp_path, args, error, hint):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--source" not in args:
        args += ["--source", str(tmp_path)]
    res = _posepipe("rebuild", *args, "--root", str(tmp_path / "root"))
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert error.replace("{tmp}", str(tmp_path)) in out and hint in out, out
    _no_orchestrator(out)
    assert len(out.strip().splitlines()) <= 4, out


def test_an_unchanged_rebuild_is_decided_before_the_orchestrator_starts(shared_data, tmp_path):
    source, root = str(shared_data / "coco/coco_mini_val2017"), str(tmp_path / "root")
    built = build_version(root, source, shard_size=32)
    (tmp_path / "root/datasets/coco/LATEST").unlink()  # reuse moves LATEST back
    res = _posepipe("rebuild", "coco", "--source", source, "--root", root, "--shard-size", "32", "--json")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    _no_orchestrator(out)
    again = json.loads(res.stdout[res.stdout.index("{") :])
    assert again["reused"] is True and not built["reused"]
    assert {**again, "reused": False} == built
    assert again["written"] == 68 and again["rejected"] == 50
    assert (tmp_path / "root/datasets/coco/LATEST").read_text().strip() == built["version"]


def test_a_held_lock_refuses_before_prefect_starts(tmp_path):
    source = write_synthetic_coco(tmp_path / "src", {"train": 2}, seed=1)
    root = str(tmp_path / "root")
    fs, path = filesystem(root)
    with dataset_lock(fs, path, "coco"):  # this test process is "the other rebuild"
        res = _posepipe("rebuild", "coco", "--source", str(source), "--root", root)
    out = res.stdout + res.stderr
    assert res.returncode == 2 and "another rebuild of 'coco' is running" in out and f"(pid {os.getpid()})" in out, out
    _no_orchestrator(out)


def _wait_for_server_child(pid: int, timeout_s: float = 120) -> psutil.Process:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if SERVER_MARK in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.1)
    raise TimeoutError("no Prefect server child appeared")


def _kill_and_expect_server_gone(proc: subprocess.Popen) -> None:
    try:
        server = _wait_for_server_child(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the run only, as `kill -9 PID` does
        proc.wait(30)
        gone, alive = psutil.wait_procs([server], timeout=15)
        assert not alive, f"Prefect server {server.pid} outlived its SIGKILLed parent"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever else is left of the group
        except ProcessLookupError:
            pass
        proc.wait(30)


@pytest.mark.slow
def test_a_sigkilled_rebuild_takes_its_prefect_server_with_it(tmp_path):
    source = write_synthetic_coco(tmp_path / "src", {"train": 6}, seed=2)
    proc = subprocess.Popen(
        [str(BIN / "posepipe"), "rebuild", "coco", "--source", str(source), "--root", str(tmp_path / "root"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), start_new_session=True,
    )  # fmt: skip
    _kill_and_expect_server_gone(proc)


@pytest.mark.slow
def test_a_server_prefect_s_own_client_starts_dies_with_its_process(tmp_path):
    code = (
        "import time\n"
        "from flows.runtime import ephemeral_servers_exit_with_parent\n"
        "ephemeral_servers_exit_with_parent()\n"
        "from prefect.client.orchestration import get_client\n"
        "get_client(sync_client=True)\n"  # Prefect's client starts its temporary server here
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), start_new_session=True, cwd=tmp_path)
    _kill_and_expect_server_gone(proc)


@pytest.mark.slow
def test_a_domain_error_inside_a_task_prints_no_prefect_traceback(tmp_path):
    source = write_synthetic_coco(tmp_path / "src", {"train": 4}, seed=3)
    first = sorted((source / "images").rglob("*.jpg"))[0] if (source / "images").is_dir() else sorted(source.rglob("*.jpg"))[0]
    first.unlink()  # its people become image_missing rejects (a data error) in process-shard
    res = _posepipe("rebuild", "coco", "--source", str(source), "--root", str(tmp_path / "root"), "--workers", "1", "--max-reject-ratio", "0")
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "error:" in out and "Traceback" not in out, out
    assert "Task run 'commit" in out or "Flow run" in out, out  # it did fail inside the orchestrated run

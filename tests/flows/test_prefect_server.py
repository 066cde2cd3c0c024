"""The deployments in prefect.yaml against a real ``prefect server start``, as an operator runs them.

One test, every step a real process on 127.0.0.1: server, work pool, ``prefect deploy --all`` from the
real prefect.yaml, the list endpoints (which FastAPI 0.151-0.154 answered with 422), a process worker,
a ``rebuild-on-demand`` run on COCO mini to Completed, and its artifact read back; the version it
committed emits ``posepipe.dataset.committed``, whose deployment trigger runs ``coco-pose-retrain``
(tiny preset from the worker's environment) to Completed, and its decision is read back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SHARED_DATA
from tests.ports import free_port

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout_s} s")


def _stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM the process group, SIGKILL what is left after 20 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def _wait_for_run(api: str, deployment_name: str, timeout_s: float) -> dict:
    """The first flow run of ``deployment_name`` once it reaches a final state (polling the REST API)."""
    def post(path: str, body: dict) -> list | dict:
        req = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.loads(response.read())

    deadline = time.monotonic() + timeout_s
    runs: list = []
    while time.monotonic() < deadline:
        deployments = post("/deployments/filter", {"deployments": {"name": {"any_": [deployment_name]}}})
        if deployments:
            runs = post("/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployments[0]["id"]]}}})  # type: ignore[index]
            final = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]  # type: ignore[index]
            if final:
                return final[0]
        time.sleep(2)
    raise TimeoutError(f"no finished run of {deployment_name} after {timeout_s} s (runs: {[(r['name'], r['state_type']) for r in runs]})")  # type: ignore[index]


def test_deploy_all_worker_run_and_artifact_on_a_real_server(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect_home"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_CLI_PROMPT="false",
        COLUMNS="250",  # rich tables of the prefect CLI: full names
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_WORKER_QUERY_SECONDS="1",
        POSEPIPE_HOME=str(REPO_ROOT),
        POSEPIPE_WORKERS="1",  # the worker's environment drives execution: one LocalCluster worker
        POSEPIPE_TRAIN_PRESET="tiny",  # the triggered retrain trains the CPU preset for one epoch
        POSEPIPE_TRAIN_EPOCHS="1",
    )
    for key in ("POSEPIPE_DASK_ADDRESS", "POSEPIPE_ROOT"):
        env.pop(key, None)

    def prefect(*args: str, timeout: float = 120) -> str:
        res = subprocess.run([str(BIN / "prefect"), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        out = res.stdout + res.stderr
        assert res.returncode == 0, f"prefect {' '.join(args)} -> rc {res.returncode}\n{out[-4000:]}"
        return out

    server = worker = None
    server_log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed in finally)
    worker_log = open(tmp_path / "worker.log", "w")  # noqa: SIM115
    try:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        _wait_healthy(api, server)
        prefect("work-pool", "create", "posepipe", "--type", "process")
        deployed = prefect("--no-prompt", "deploy", "--all")
        listed = prefect("deployment", "ls")
        for name in ("mpii-nightly", "coco-nightly", "rebuild-on-demand", "ucf101-keypoints", "mpii-activity-retrain", "coco-pose-retrain"):
            assert name in deployed and name in listed, (name, listed)
        crons = {}
        for name in ("scheduled-rebuild/mpii-nightly", "scheduled-rebuild/coco-nightly", "rebuild-on-demand/rebuild-on-demand"):
            info = json.loads(prefect("deployment", "inspect", name, "--output", "json"))
            crons[name] = [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in info["schedules"]]
            assert info["work_pool_name"] == "posepipe"
        assert crons == {
            "scheduled-rebuild/mpii-nightly": [("0 2 * * *", "UTC", True)],
            "scheduled-rebuild/coco-nightly": [("30 2 * * *", "UTC", True)],
            "rebuild-on-demand/rebuild-on-demand": [],
        }

        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "posepipe", "--type", "process"],
            cwd=tmp_path, env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        root = tmp_path / "root"
        source = SHARED_DATA / "coco/coco_mini_val2017"
        prefect(
            "deployment", "run", "rebuild-on-demand/rebuild-on-demand",
            "-p", "dataset=coco", "-p", f"source={source}", "-p", f"root={root}",
            "--watch", "--watch-interval", "1", "--watch-timeout", "400",
            timeout=420,
        )  # fmt: skip
        runs = prefect("flow-run", "ls")
        assert "rebuild-on-demand" in runs and "COMPLETED" in runs.upper(), runs

        assert "rebuild-coco" in prefect("artifact", "ls")
        (artifact,) = json.loads(prefect("artifact", "inspect", "rebuild-coco", "--output", "json"))
        table = artifact["data"]
        assert "| written | 68 |" in table and "| rejected | 50 |" in table and "| validation | passed |" in table, table
        # the deployment ran on Dask, sized by the worker's POSEPIPE_WORKERS, like the CLI
        assert "| executed on | Dask tcp://127.0.0.1:" in table and ", 1 worker |" in table, table
        # same version id as the plain functions name for the same request
        from tasks.rebuild import RebuildRequest, plan_version

        version = plan_version(RebuildRequest("coco", str(tmp_path / "plan_root"), str(source))).version
        assert table.startswith(f"# coco {version}"), table
        assert (root / "datasets/coco/LATEST").read_text().strip() == version

        # the commit's event fired the retrain deployment's trigger: wait for that run, read its decision back
        retrain = _wait_for_run(api, "coco-pose-retrain", timeout_s=480)
        assert retrain["state_type"] == "COMPLETED", retrain
        assert retrain["parameters"]["committed_version"] == version and retrain["parameters"]["root"] == str(root)
        (decision_artifact,) = json.loads(prefect("artifact", "inspect", "retrain-pose-heatmap", "--output", "json"))
        page = decision_artifact["data"]
        assert page.startswith("# pose-heatmap: first_model (exit 0)") and f"coco@{version}" in page, page
        decisions = list((root / "models/pose-heatmap/_decisions").glob("*.json"))
        assert len(decisions) == 1 and json.loads(decisions[0].read_text())["status"] == "first_model"
        assert (root / "models/pose-heatmap/champion").read_text().strip() == json.loads(decisions[0].read_text())["candidate"]
    finally:
        _stop(worker)
        _stop(server)
        server_log.close()
        worker_log.close()
    assert "Creating a new Dask cluster" in (tmp_path / "worker.log").read_text()

"""The deployments in prefect.yaml against a real ``prefect server start``, as an operator runs them.

One test, every step a real process on 127.0.0.1: server, work pool, ``prefect deploy --all`` from the
real prefect.yaml, the list endpoints (which FastAPI 0.151-0.154 answered with 422), a process worker,
a ``rebuild-on-demand`` run on COCO mini to Completed, and its artifact read back; the version it
committed emits ``posepipe.dataset.committed``, whose deployment trigger runs ``coco-pose-retrain``
(tiny preset from the worker's environment) to Completed, and its decision is read back.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_DATA
from tests.flows.servers import prefect_server, wait_for_run

pytestmark = pytest.mark.slow


def test_deploy_all_worker_run_and_artifact_on_a_real_server(tmp_path):
    env = {
        "POSEPIPE_WORKERS": "1",  # the worker's environment drives execution: one LocalCluster worker
        "POSEPIPE_TRAIN_PRESET": "tiny",  # the triggered retrain trains the CPU preset for one epoch
        "POSEPIPE_TRAIN_EPOCHS": "1",
    }
    with prefect_server(tmp_path, **env) as stack:
        prefect = stack.cli
        deployed = stack.deploy_all()
        listed = prefect("deployment", "ls")
        for name in ("mpii-nightly", "coco-nightly", "rebuild-on-demand", "ucf101-keypoints", "mpii-activity-retrain", "coco-pose-retrain",
                     "retrain-on-demand", "train-on-demand"):  # fmt: skip
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

        stack.start_worker()
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
        retrain = wait_for_run(stack.api, "coco-pose-retrain", timeout_s=480)
        assert retrain["state_type"] == "COMPLETED", retrain
        assert retrain["parameters"]["committed_version"] == version and retrain["parameters"]["root"] == str(root)
        (decision_artifact,) = json.loads(prefect("artifact", "inspect", "retrain-pose-heatmap", "--output", "json"))
        page = decision_artifact["data"]
        assert page.startswith("# pose-heatmap: first_model (exit 0)") and f"coco@{version}" in page, page
        decisions = list((root / "models/pose-heatmap/_decisions").glob("*.json"))
        assert len(decisions) == 1 and json.loads(decisions[0].read_text())["status"] == "first_model"
        assert (root / "models/pose-heatmap/champion").read_text().strip() == json.loads(decisions[0].read_text())["candidate"]
    assert "Creating a new Dask cluster" in (tmp_path / "worker.log").read_text()

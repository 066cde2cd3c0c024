"""kill -9 during deployment training: the process worker and the flow-run process die mid-epoch; a
new run of the same deployment resumes from the last checkpoint, and the registry never lists a
half-written model.

Real processes on 127.0.0.1: ``prefect server start`` (SQLite), ``prefect deploy --all`` from
prefect.yaml, a process worker running ``train/train-on-demand``. Prefect's flow ``retries`` happen
inside the flow-run process when the flow raises, so a SIGKILLed run cannot retry itself: the retry
is a new run of the deployment with the same parameters (what an operator or a schedule does), and
``train()`` resumes it from the staging folder's newest checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from tasks.training import registry
from tests.flows.servers import flow_run, prefect_server, wait_until
from tests.training.fakes import build_activity_version, write_activity_source

pytestmark = pytest.mark.slow
TASK = "mpii-activity"
EPOCHS = 24
PARAMS = {"learning_rate": "1e-3"}


def _checkpoint_epochs(root: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (root / "models" / TASK / "_staging").glob("*/checkpoints/epoch-*.npz"))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_kill_9_during_deployment_training_then_a_new_run_resumes(tmp_path: Path) -> None:
    from tasks.training.train import TrainRequest, train

    src = write_activity_source(tmp_path / "src", train_per_class=12, valid_per_class=6, seed=4)
    root = tmp_path / "root"
    assert build_activity_version(root, src)["validation"] == "passed"
    reference_root = tmp_path / "reference"
    shutil.copytree(root, reference_root)  # the same dataset version (same manifest): the same model version
    reference = train(TrainRequest(TASK, str(reference_root), "mpii", params=PARAMS, epochs=EPOCHS, seed=0))

    listed: list[list[str]] = []
    watching = threading.Event()
    watching.set()

    def watch_registry() -> None:  # what `posepipe models ls` would show, every 50 ms, all along
        while watching.is_set():
            listed.append([m.model_version for m in registry.list_models(str(root), TASK)])
            time.sleep(0.05)

    parameters = {"task_name": TASK, "dataset": "mpii", "root": str(root), "params": PARAMS, "epochs": EPOCHS, "seed": 0}
    with prefect_server(tmp_path, POSEPIPE_WORKERS="1") as stack:
        assert "train-on-demand" in stack.deploy_all()
        watcher = threading.Thread(target=watch_registry, daemon=True)
        watcher.start()
        worker = stack.start_worker()
        first = stack.run_deployment("train/train-on-demand", parameters)
        # wait until at least two epochs are checkpointed, then kill -9 the worker and the flow-run process
        wait_until("epoch 2 checkpointed", lambda: len(_checkpoint_epochs(root)) and _checkpoint_epochs(root)[-1] >= 2, 300, 0.05, (stack.server, worker))
        run = flow_run(stack.api, first)
        pid = int(str(run["infrastructure_pid"]).rsplit(":", 1)[-1])
        _kill_group(pid)
        _kill_group(worker.pid)
        worker.wait(30)
        killed_at = _checkpoint_epochs(root)[-1]
        assert killed_at < EPOCHS, "training finished before the kill: raise EPOCHS"
        time.sleep(1.0)
        assert registry.list_models(str(root), TASK) == []
        assert flow_run(stack.api, first)["state_type"] not in ("COMPLETED",)

        # the retry: a new worker and a new run of the same deployment with the same parameters
        stack.start_worker(log_name="worker2.log")
        second = stack.run_deployment("train/train-on-demand", parameters)
        final = stack.wait_final(second, 400)
        assert final["state_type"] == "COMPLETED", final
        watching.clear()
        watcher.join(5)

    models = registry.list_models(str(root), TASK)
    assert [m.model_version for m in models] == [reference.model_version]
    # never a half-written model: the registry listed nothing, then the one complete model
    assert listed and all(seen in ([], [reference.model_version]) for seen in listed)
    assert [] in listed
    lineage = models[0].lineage
    print(f"killed after epoch {killed_at} of {EPOCHS}; resumed {lineage['resumes']}; registry polled {len(listed)} times")
    assert lineage["resumes"] and lineage["resumes"][0]["from_epoch"] >= killed_at >= 2
    history = json.loads(Path(models[0].file("history.json")).read_text())
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    # the resumed model is the uninterrupted one: per-epoch seeds make the runs replay the same steps
    metrics = models[0].metrics
    assert metrics["accuracy"] == pytest.approx(reference.metrics["accuracy"], abs=0.05)
    assert history[-1]["loss"] == pytest.approx(reference.history[-1]["loss"], rel=0.05, abs=0.02)
    assert not (root / "models" / TASK / "_staging" / reference.model_version).exists()

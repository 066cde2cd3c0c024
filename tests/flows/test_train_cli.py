"""``posepipe train`` killed with SIGKILL mid-epoch and run again (real processes), the registry and
evaluation commands through the CLI app, and the Prefect ``train`` flow under the shared harness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows import cli
from tests.training.test_train import copy_datasets, reference_run, synthetic_coco, weights_of

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
TASK = "pose-heatmap"
EPOCHS = 2


def _env() -> dict[str, str]:
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PREFECT_API_URL", None)
    return env


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return synthetic_coco(tmp_path_factory) / "src"


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    return synthetic_coco(tmp_path_factory) / "root"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    if not any(g.name == "models" for g in cli.app.registered_groups):
        cli._register_commands()
    return CliRunner(env={"COLUMNS": "400"})


def _ok(runner: CliRunner, args: list[str]) -> str:
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def _staged_checkpoints(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob(f"models/{TASK}/_staging/m-*/checkpoints/epoch-*.npz"))


@pytest.fixture(scope="module")
def killed_and_resumed(coco_root, tmp_path_factory):
    """``posepipe train`` SIGKILLed once epoch 1's checkpoint exists and epoch 2 has started, then run
    again to the end; and the same request uninterrupted, in this process."""
    clean, _, _ = reference_run(tmp_path_factory)  # train_request: 2 epochs, seed 0
    root = copy_datasets(coco_root, tmp_path_factory.mktemp("killed"))
    cmd = [str(BIN / "posepipe"), "train", TASK, "--dataset", "coco", "--root", str(root), "--epochs", str(EPOCHS), "--seed", "0"]
    log_path = root / "first.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not ("epoch 2 started" in log_path.read_text() and _staged_checkpoints(root)):
                assert proc.poll() is None, log_path.read_text()[-3000:]
                time.sleep(0.05)
            time.sleep(0.3)  # inside epoch 2
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    at_kill = _staged_checkpoints(root)
    first_log = log_path.read_text()
    again = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=_env(), timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    return clean, root, at_kill, first_log, json.loads(again.stdout), again.stderr


def test_resume_after_kill_9_ends_with_the_uninterrupted_weights(killed_and_resumed):
    clean, root, at_kill, first_log, resumed, stderr = killed_and_resumed
    assert at_kill == ["epoch-0001.npz"], (at_kill, first_log[-2000:])  # killed inside epoch 2
    assert "epoch 1/2" in first_log and "epoch 2/2" not in first_log
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs_trained"] == 1 and "resuming after epoch 1" in stderr
    assert resumed["model_version"] == clean.model_version
    wa, wb = weights_of(clean.dir), weights_of(resumed["dir"])
    assert wa.keys() == wb.keys()
    for name in wa:
        assert np.array_equal(wa[name], wb[name]), name
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in clean.history]
    assert not _staged_checkpoints(root)


@pytest.fixture(scope="module")
def flow_run(prefect_harness, killed_and_resumed):
    """The Prefect ``train`` flow, in the killed-and-resumed run's root: a second model there."""
    from flows.train import train_flow

    root = killed_and_resumed[1]
    return train_flow(task_name=TASK, dataset="coco", root=str(root), epochs=1, seed=5), root


def test_train_flow_reports_epochs_as_artifacts(flow_run):
    import asyncio

    from prefect.client.orchestration import get_client

    result, _ = flow_run
    assert not result["reused"] and len(result["history"]) == 1 and Path(result["dir"], "_manifest.json").exists()

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts()

    found = {a.key: a for a in asyncio.run(artifacts()) if a.key and a.key.startswith("train-pose-heatmap")}
    assert {"train-pose-heatmap-progress", "train-pose-heatmap"} <= set(found)
    progress = found["train-pose-heatmap-progress"].data
    rows = json.loads(progress) if isinstance(progress, str) else progress
    assert [r["epoch"] for r in rows] == [1] and all("steps_per_s" in r and "loss" in r for r in rows)
    assert result["model_version"] in found["train-pose-heatmap"].data


def test_models_and_evaluate_commands(killed_and_resumed, flow_run, runner, source, tmp_path):
    _, root, _, _, resumed, _ = killed_and_resumed
    a = f"{TASK}@{resumed['model_version']}"
    b = f"{TASK}@{flow_run[0]['model_version']}"
    listed = json.loads(_ok(runner, ["models", "ls", "--root", str(root), "--json"]))
    assert [f"{r['task']}@{r['model_version']}" for r in listed] == [a, b]
    assert b in _ok(runner, ["models", "ls", TASK, "--root", str(root)])
    shown = json.loads(_ok(runner, ["models", "show", a, "--root", str(root), "--json"]))
    assert shown["lineage"]["seed"] == 0 and shown["lineage"]["resumes"][0]["from_epoch"] == 1
    assert "manifest sha256" in _ok(runner, ["models", "show", TASK, "--root", str(root)])  # TASK alone: the latest
    compared = json.loads(_ok(runner, ["models", "compare", a, b, "--root", str(root), "--json"]))
    rows = {r["metric"]: r for r in compared["rows"]}
    assert rows and all(r["delta"] is None or r["delta"] == pytest.approx(r["b"] - r["a"]) for r in rows.values())
    assert "delta" in _ok(runner, ["models", "compare", a, b, "--root", str(root)])
    # metrics recomputed from the stored predictions, and predicted again on a version
    stored = json.loads((Path(resumed["dir"]) / "metrics.json").read_text())
    again = json.loads(_ok(runner, ["evaluate", "model", a, "--root", str(root), "--json"]))
    assert again["source"] == "stored predictions" and again["metrics"] == stored
    version = resumed["dataset_version"]
    fresh = json.loads(_ok(runner, ["evaluate", "model", a, "--root", str(root), "--dataset", f"coco@{version}", "--json"]))
    assert fresh["source"] == "predicted now" and fresh["dataset_version"] == version
    for key, value in stored.items():
        if isinstance(value, float):
            assert fresh["metrics"][key] == pytest.approx(value, abs=1e-6), key
    # predictions drawn on whole images
    images = sorted((source / "val2017").glob("*.jpg"))[:2]
    out = tmp_path / "drawn"
    printed = _ok(runner, ["predict", a, "--root", str(root), "--out", str(out), *[f"--images={p}" for p in images]])
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{p.stem}.png" for p in images) and "predictions.json" in printed
    doc = json.loads((out / "predictions.json").read_text())
    assert len(doc["images"]) == 2 and np.asarray(doc["images"][0]["keypoints_xy_px"]).shape == (17, 2)


def test_domain_errors_print_error_and_hint_and_exit_2(coco_root, tmp_path):
    missing = subprocess.run([str(BIN / "posepipe"), "models", "show", f"{TASK}@m-000000000000", "--root", str(coco_root)], capture_output=True, text=True, env=_env(), timeout=120)
    assert missing.returncode == 2 and "error: no registered model" in missing.stderr and "hint:" in missing.stderr
    refused = subprocess.run([str(BIN / "posepipe"), "train", "flic-regression", "--dataset", "coco", "--root", str(coco_root)], capture_output=True, text=True, env=_env(), timeout=300)
    assert refused.returncode == 2 and "error:" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr[-2000:]

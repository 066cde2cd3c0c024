"""Multi-worker training on loopback: two real processes with ``TF_CONFIG`` train the tiny config in
lock-step; only the chief registers; the model matches one worker's within a stated tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.errors import ConfigError
from tasks.training import registry
from tasks.training.multiworker import Cluster, cluster_from_env
from tests.ports import free_port
from tests.training.fakes import build_activity_version, write_activity_source

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 20
#: The evaluation split has 24 samples (4 classes x 6): one sample is 0.042 of accuracy. Two workers
#: normalise batch statistics over 8 samples each instead of 16, so the runs are close, not equal.
ACCURACY_TOLERANCE = 0.15

_WORKER = """
import json, sys
from tasks.training.train import TrainRequest, train
r = train(TrainRequest("mpii-activity", sys.argv[1], "mpii", params={"learning_rate": "1e-3"}, epochs=int(sys.argv[2]), seed=0))
print("RESULT " + json.dumps({"model_version": r.model_version, "dir": r.dir, "metrics": r.metrics, "history": r.history}), flush=True)
"""


def test_tf_config_parsing() -> None:
    assert cluster_from_env({}) == Cluster()
    assert Cluster().is_chief and not Cluster().distributed
    two = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    c = cluster_from_env({"TF_CONFIG": json.dumps(two)})
    assert (c.num_workers, c.task_index, c.is_chief, c.distributed) == (2, 1, False, True)
    assert cluster_from_env({"TF_CONFIG": json.dumps({**two, "task": {"type": "worker", "index": 0}})}).is_chief
    with_chief = {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker", "index": 0}}
    c = cluster_from_env({"TF_CONFIG": json.dumps(with_chief)})
    assert (c.num_workers, c.is_chief) == (2, False)
    assert cluster_from_env({"TF_CONFIG": json.dumps({**with_chief, "task": {"type": "chief", "index": 0}})}).is_chief
    for bad in ("{not json", json.dumps({"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 3}}),
                json.dumps({"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}})):  # fmt: skip
        with pytest.raises(ConfigError):
            cluster_from_env({"TF_CONFIG": bad})


def _run_workers(root: Path, n: int) -> list[dict]:
    ports = [free_port() for _ in range(n)]
    procs = []
    for i in range(n):
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3",
               "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": i}})}  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, "-c", _WORKER, str(root), str(EPOCHS)], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    return results


def test_two_workers_train_in_lock_step_and_match_one_worker(tmp_path: Path) -> None:
    from tasks.training.train import TrainRequest, train

    src = write_activity_source(tmp_path / "src", train_per_class=12, valid_per_class=6, seed=4)
    for name in ("one", "two"):
        assert build_activity_version(tmp_path / name, src)["validation"] == "passed"
    single = train(TrainRequest("mpii-activity", str(tmp_path / "one"), "mpii", params={"learning_rate": "1e-3"}, epochs=EPOCHS, seed=0))
    chief, worker = _run_workers(tmp_path / "two", 2)

    # both workers ran every epoch with the same (all-reduced) loss, each on half of every global batch
    assert [h["loss"] for h in chief["history"]] == pytest.approx([h["loss"] for h in worker["history"]], rel=1e-5)
    assert [h["steps"] for h in chief["history"]] == [h["steps"] for h in single.history]
    # one registered model, the chief's; the lineage says how it was trained; the name differs from one worker's
    models = registry.list_models(str(tmp_path / "two"), "mpii-activity")
    assert [m.model_version for m in models] == [chief["model_version"]] == [worker["model_version"]]
    assert chief["model_version"] != single.model_version
    lineage = models[0].lineage
    assert lineage["strategy"] in ("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy")  # TF's class behind the alias
    assert (lineage["workers"], lineage["replicas"]) == (2, 2)
    assert not list((tmp_path / "two" / "models" / "mpii-activity").glob("_staging/*/checkpoints/*.npz"))
    print(f"accuracy: one worker {single.metrics['accuracy']:.3f}, two workers {chief['metrics']['accuracy']:.3f}; "
          f"final loss {single.history[-1]['loss']:.3f} vs {chief['history'][-1]['loss']:.3f}")
    # it learns as one worker does: far above chance (4 classes: 0.25) and within the tolerance
    assert single.metrics["accuracy"] >= 0.7, single.metrics
    assert abs(chief["metrics"]["accuracy"] - single.metrics["accuracy"]) <= ACCURACY_TOLERANCE, (chief["metrics"], single.metrics)
    assert chief["history"][-1]["loss"] == pytest.approx(single.history[-1]["loss"], abs=0.25)

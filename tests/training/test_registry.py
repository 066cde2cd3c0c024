"""The model registry on hand-written model folders (no TensorFlow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from schemas.errors import ModelNotFoundError
from tasks.training import registry


def _model(root: Path, task: str, version: str, end: str, metrics: dict, manifest: bool = True, dataset_version: str = "v-1") -> Path:
    d = root / "models" / task / version
    d.mkdir(parents=True)
    (d / "lineage.json").write_text(json.dumps({"task": task, "model_version": version, "end_time_utc": end, "epochs": 2, "seed": 0,
                                                "dataset": {"name": "coco", "version": dataset_version}}))  # fmt: skip
    (d / "metrics.json").write_text(json.dumps(metrics))
    if manifest:
        (d / "_manifest.json").write_text(json.dumps({"files": {"metrics.json": "ab"}}))
    return d


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _model(tmp_path, "pose-heatmap", "m-aaaaaaaaaaaa", "2026-12-01T10:00:00Z", {"pck@0.2": 0.5, "per_joint": {"nose": 0.4}, "n": 10, "ok": True})
    _model(tmp_path, "pose-heatmap", "m-bbbbbbbbbbbb", "2026-12-01T12:00:00Z", {"pck@0.2": 0.75, "per_joint": {"nose": 0.5}, "rmse_px": 3.0}, dataset_version="v-2")
    _model(tmp_path, "pose-heatmap", "m-cccccccccccc", "2026-12-01T13:00:00Z", {"pck@0.2": 0.9}, manifest=False)  # half-written
    _model(tmp_path, "pose-mlp", "m-dddddddddddd", "2026-12-01T09:00:00Z", {"f1_macro": 0.3})
    (tmp_path / "models" / "pose-heatmap" / "_staging" / "m-eeeeeeeeeeee").mkdir(parents=True)
    return tmp_path


def test_list_skips_unmanifested_and_staging(root):
    assert [r.ref for r in registry.list_models(str(root), "pose-heatmap")] == ["pose-heatmap@m-aaaaaaaaaaaa", "pose-heatmap@m-bbbbbbbbbbbb"]
    assert [r.task for r in registry.list_models(str(root))] == ["pose-heatmap", "pose-heatmap", "pose-mlp"]
    row = registry.list_models(str(root), "pose-heatmap")[0].summary()
    assert row["dataset"] == "coco" and row["dataset_version"] == "v-1" and row["metrics"] == {"pck@0.2": 0.5, "n": 10.0}
    assert registry.list_models(str(root), "flic-regression") == []
    assert registry.list_models(str(root / "nothing")) == []


def test_resolve_latest_and_exact(root):
    assert registry.resolve(str(root), "pose-heatmap").model_version == "m-bbbbbbbbbbbb"  # latest by end time
    assert registry.resolve(str(root), "pose-heatmap@m-aaaaaaaaaaaa").metrics["pck@0.2"] == 0.5
    with pytest.raises(ModelNotFoundError, match="no registered model pose-heatmap@m-cccccccccccc") as exc:
        registry.resolve(str(root), "pose-heatmap@m-cccccccccccc")  # no manifest: not a model
    assert "m-aaaaaaaaaaaa" in exc.value.hint
    with pytest.raises(ModelNotFoundError, match="no registered flic-regression model") as exc:
        registry.resolve(str(root), "flic-regression")
    assert "posepipe train flic-regression" in exc.value.hint and "pose-mlp" in exc.value.hint
    with pytest.raises(ModelNotFoundError, match="does not name a model"):
        registry.resolve(str(root), "pose-heatmap@")


def test_show_and_compare(root):
    shown = registry.show(str(root), "pose-heatmap@m-aaaaaaaaaaaa")
    assert shown["lineage"]["dataset"]["version"] == "v-1" and shown["files"] == {"metrics.json": "ab"}
    table = registry.compare(str(root), "pose-heatmap@m-aaaaaaaaaaaa", "pose-heatmap@m-bbbbbbbbbbbb")
    rows = {r["metric"]: r for r in table["rows"]}
    assert [r["metric"] for r in table["rows"]] == ["n", "pck@0.2", "rmse_px", "per_joint/nose"]  # top level first, booleans left out
    assert rows["pck@0.2"]["delta"] == pytest.approx(0.25) and rows["per_joint/nose"]["delta"] == pytest.approx(0.1)
    assert rows["rmse_px"] == {"metric": "rmse_px", "a": None, "b": 3.0, "delta": None}
    assert table["a_dataset"] == "v-1" and table["b_dataset"] == "v-2"


def test_registry_imports_no_tensorflow():
    import subprocess

    code = "import sys, tasks.training.registry; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

"""The model registry: registered models under ``{root}/models/{task}/{model_version}`` (no TensorFlow).

A model folder is trusted only once its ``_manifest.json`` exists (:mod:`tasks.training.train` writes
it last, inside the staging folder, and then renames the whole folder into place in one step), so a
listing never shows a half-trained or half-written model. Everything here reads small JSON files:
``lineage.json`` (where the model came from), ``metrics.json`` (how good it is) and the manifest.

References name a model as ``TASK`` (the latest registered model of the task by training end time)
or ``TASK@MODEL_VERSION`` (``pose-heatmap@m-0123456789ab``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.errors import ModelNotFoundError
from storage.fs import filesystem, join
from storage.layout import MANIFEST, STAGING, ModelPaths, model_dir
from storage.manifest import read_json

LINEAGE = "lineage.json"
METRICS = "metrics.json"
HISTORY = "history.json"
PREDICTIONS = "predictions.parquet"
WEIGHTS = "model.weights.h5"
MODEL = "model.keras"


@dataclass(frozen=True)
class ModelRecord:
    """One registered model.

    Attributes:
        root: Storage root (as given: a path or fsspec URL).
        task: Training task name.
        model_version: ``m-`` + 12 hex.
        dir: The model folder on its filesystem.
        lineage: ``lineage.json``.
        metrics: ``metrics.json``.
        manifest: ``_manifest.json`` (files and their sha256).
    """

    root: str
    task: str
    model_version: str
    dir: str
    lineage: dict[str, Any]
    metrics: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        """``TASK@MODEL_VERSION``."""
        return f"{self.task}@{self.model_version}"

    @property
    def end_time(self) -> str:
        """Training end time (ISO 8601 UTC), ``""`` when unknown."""
        return str(self.lineage.get("end_time_utc") or "")

    def file(self, name: str) -> str:
        """A file inside the model folder."""
        return join(self.dir, name)

    def summary(self) -> dict[str, Any]:
        """One row of ``models ls``: identity, data, time and the top-level numeric metrics."""
        dataset = self.lineage.get("dataset", {})
        return {
            "task": self.task,
            "model_version": self.model_version,
            "dataset": dataset.get("name"),
            "dataset_version": dataset.get("version"),
            "epochs": self.lineage.get("epochs"),
            "seed": self.lineage.get("seed"),
            "end_time_utc": self.end_time,
            "metrics": {k: v for k, v in flat_metrics(self.metrics).items() if "/" not in k},
            "dir": self.dir,
        }


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """``"pose-heatmap@m-0123"`` → ``("pose-heatmap", "m-0123")``; ``"pose-heatmap"`` → ``(..., None)``."""
    task, sep, version = ref.strip().partition("@")
    if not task or (sep and not version):
        raise ModelNotFoundError(f"{ref!r} does not name a model", hint="write TASK or TASK@MODEL_VERSION, e.g. pose-heatmap@m-0123456789ab")
    return task, version or None


def _read(fs: Any, path: str) -> dict[str, Any]:
    try:
        data = read_json(fs, path)
    except Exception:  # noqa: BLE001 - a missing or unreadable side file is an empty one here
        return {}
    return data if isinstance(data, dict) else {}


def _load(root: str, fs: Any, rpath: str, task: str, model_version: str) -> ModelRecord | None:
    paths = ModelPaths(rpath, task, model_version)
    if not fs.exists(paths.file(MANIFEST)):
        return None
    return ModelRecord(
        root=root,
        task=task,
        model_version=model_version,
        dir=paths.dir,
        lineage=_read(fs, paths.file(LINEAGE)),
        metrics=_read(fs, paths.file(METRICS)),
        manifest=_read(fs, paths.file(MANIFEST)),
    )


def task_names_with_models(root: str) -> list[str]:
    """Tasks that have a folder under ``{root}/models``."""
    fs, rpath = filesystem(root)
    base = join(rpath, "models")
    if not fs.exists(base):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False) if fs.isdir(p))


def list_models(root: str, task: str | None = None) -> list[ModelRecord]:
    """Registered models of ``task`` (or of every task), oldest first by training end time.

    Folders without a manifest (``_staging``, a copy in progress) are not models and are skipped.

    Args:
        root: Storage root (path or fsspec URL).
        task: Task name, or None for all tasks.

    Returns:
        The records, sorted by (task, end time, model version).
    """
    fs, rpath = filesystem(root)
    out: list[ModelRecord] = []
    for name in [task] if task else task_names_with_models(root):
        base = model_dir(rpath, name)
        if not fs.exists(base):
            continue
        for p in fs.ls(base, detail=False):
            version = p.rstrip("/").rsplit("/", 1)[-1]
            if version.startswith((".", "_")) or version == STAGING or not fs.isdir(p):
                continue
            record = _load(root, fs, rpath, name, version)
            if record is not None:
                out.append(record)
    return sorted(out, key=lambda r: (r.task, r.end_time, r.model_version))


def find_model(root: str, task: str, model_version: str) -> ModelRecord | None:
    """The registered model ``task@model_version``, or None (no error: the trainer asks this)."""
    fs, rpath = filesystem(root)
    return _load(root, fs, rpath, task, model_version)


def resolve(root: str, ref: str) -> ModelRecord:
    """The model a reference names: ``TASK@VERSION``, or ``TASK`` for the latest by end time.

    Raises:
        ModelNotFoundError: No such task, version, or no registered model of the task.
    """
    task, version = parse_model_ref(ref)
    if version is not None:
        record = find_model(root, task, version)
        if record is None:
            known = [r.model_version for r in list_models(root, task)]
            raise ModelNotFoundError(
                f"no registered model {task}@{version} under {root}",
                hint=(f"registered {task} models: {', '.join(known)}" if known else f"train one: `posepipe train {task} --dataset NAME --root {root}`"),
            )
        return record
    models = list_models(root, task)
    if not models:
        tasks = task_names_with_models(root)
        raise ModelNotFoundError(
            f"no registered {task} model under {root}",
            hint=f"train one with `posepipe train {task} --dataset NAME --root {root}`" + (f" (tasks with models: {', '.join(tasks)})" if tasks else ""),
        )
    return models[-1]


def show(root: str, ref: str) -> dict[str, Any]:
    """Everything ``models show`` prints: the reference, folder, lineage, metrics and files."""
    record = resolve(root, ref)
    return {
        "ref": record.ref,
        "dir": record.dir,
        "lineage": record.lineage,
        "metrics": record.metrics,
        "files": record.manifest.get("files", {}),
    }


def flat_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics document as ``{"pck@0.2": 0.8, "per_joint/nose": 0.9, ...}``.

    Booleans, strings and lists are left out (a confusion matrix is not a metric to compare).
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, Mapping):
            out.update(flat_metrics(value, prefix=f"{name}/"))
    return out


def compare(root: str, ref_a: str, ref_b: str) -> dict[str, Any]:
    """Metric deltas between two registered models (``b - a``), metric by metric.

    Returns:
        ``{"a": ref, "b": ref, "rows": [{"metric", "a", "b", "delta"}, ...]}``: every numeric metric
        either model has (``None`` where one lacks it), top-level metrics first, then nested ones.
    """
    a, b = resolve(root, ref_a), resolve(root, ref_b)
    fa, fb = flat_metrics(a.metrics), flat_metrics(b.metrics)
    names = sorted(set(fa) | set(fb), key=lambda n: ("/" in n, n))
    rows = []
    for name in names:
        va, vb = fa.get(name), fb.get(name)
        delta = vb - va if va is not None and vb is not None and math.isfinite(va) and math.isfinite(vb) else None
        rows.append({"metric": name, "a": va, "b": vb, "delta": delta})
    return {"a": a.ref, "b": b.ref, "a_dataset": a.summary()["dataset_version"], "b_dataset": b.summary()["dataset_version"], "rows": rows}

"""The ``train`` flow: one Prefect task that trains (or reuses, or resumes) a model and registers it.

Wiring only: the task calls :func:`tasks.training.train.train` in the flow's own process (the
default task runner, never a Dask ingest worker: TensorFlow is imported only where training runs).
Progress becomes Prefect artifacts: a table of finished epochs, updated after every epoch (key
``train-{task}-progress``), and a markdown summary with the metrics at the end (``train-{task}``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.report import link_report
from flows.runtime import quiet_domain_tracebacks
from schemas.settings import Settings


def artifact_key(name: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in name.lower())


@task(name="train-model", cache_policy=NO_CACHE, task_run_name="train-{task_name}")
def train_task(task_name: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`tasks.training.train.train` here, reporting each epoch as a table artifact."""
    from prefect.artifacts import create_table_artifact

    from tasks.training.train import TrainRequest, train

    quiet_domain_tracebacks()
    epochs: list[dict[str, Any]] = []

    def progress(event: dict[str, Any]) -> None:
        if event.get("event") != "epoch":
            return
        row = {k: v for k, v in event.items() if k != "event"}
        epochs.append(row)
        print(f"epoch {row['epoch']}/{row['epochs']}: loss {row.get('loss')}, {row.get('steps_per_s')} steps/s")
        create_table_artifact(epochs, key=artifact_key(f"train-{task_name}-progress"), description=f"{task_name}: finished epochs (loss, metrics, steps/s)")

    result = train(TrainRequest(**request), progress)
    return result.to_dict()


def _summary_markdown(result: dict[str, Any]) -> str:
    from tasks.training.registry import flat_metrics

    state = "reused (already registered)" if result["reused"] else (f"resumed after epoch {result['resumed_from_epoch']}" if result["resumed_from_epoch"] else "trained")
    lines = [f"# {result['task']}@{result['model_version']}", "", f"{state} on {result['dataset']}@{result['dataset_version']}; folder `{result['dir']}`", "",
             "| metric | value |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v:.4g} |" for k, v in flat_metrics(result["metrics"]).items()]
    return "\n".join(lines)


@flow(name="train", log_prints=True)
def train_flow(
    task_name: str,
    dataset: str,
    root: str | None = None,
    version: str | None = None,
    params: dict[str, str] | None = None,
    preset: str = "tiny",
    epochs: int | None = None,
    seed: int = 0,
    weights: str | None = None,
) -> dict[str, Any]:
    """Train ``task_name`` on ``dataset`` (``version``, default LATEST) under ``root`` and register it.

    Args:
        task_name: Training task (``pose-heatmap``...).
        dataset: Dataset name.
        root: Storage root (local path; default ``POSEPIPE_ROOT`` from the worker's environment).
        version: Dataset version; None for LATEST.
        params: Task parameter overrides (``key: value`` strings).
        preset: ``tiny`` or ``full``.
        epochs: Epochs (None: the preset's).
        seed: Run seed.
        weights: Initial weights file.

    Returns:
        :meth:`tasks.training.train.TrainResult.to_dict`.
    """
    from prefect.artifacts import create_markdown_artifact

    quiet_domain_tracebacks()
    root = root or Settings().root
    request = {"task": task_name, "root": root, "dataset": dataset, "version": version, "params": dict(params or {}), "preset": preset, "epochs": epochs, "seed": seed, "weights": weights}
    result = train_task(task_name, request)  # called, not submitted: runs in this process
    create_markdown_artifact(_summary_markdown(result), key=artifact_key(f"train-{task_name}"), description="training run: model, data, metrics")
    link_report("model", root, f"{result['task']}@{result['model_version']}", f"train-{task_name}-card", "model card (HTML)")
    print(f"{task_name}: {result['model_version']} {'reused' if result['reused'] else 'registered'} in {result['dir']}")
    return result

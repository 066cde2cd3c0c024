"""The ``retrain`` flow: train on the latest validated version, decide against the champion, report.

Wiring only: one Prefect task calls :func:`tasks.training.retrain.retrain` in the flow's process
(TensorFlow never runs on Dask ingest workers). The decision becomes a markdown artifact (status,
reasons, the metric table candidate vs champion with deltas and intervals, key
``retrain-{task}``). ``prefect.yaml``'s retrain deployments run this flow when a dataset version is
committed (event ``posepipe.dataset.committed``, see :mod:`flows.rebuild`); a rebuild that reuses
its version emits no event and so starts no retrain. Root and seed come from the worker's
environment (``POSEPIPE_ROOT``, ``POSEPIPE_SEED``, ``POSEPIPE_TRAIN_PRESET``, ``POSEPIPE_TRAIN_EPOCHS``) when
not given; the trigger passes the root the event names.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.report import link_report
from flows.runtime import quiet_domain_tracebacks
from flows.train import artifact_key
from schemas.settings import Settings
from tasks.training.retrain import decision_markdown


@task(name="retrain-model", cache_policy=NO_CACHE, task_run_name="retrain-{task_name}")
def retrain_task(task_name: str, request: dict[str, Any], force: bool, thresholds: dict[str, Any] | None, actor: str | None) -> dict[str, Any]:
    """Run :func:`tasks.training.retrain.retrain` here."""
    from tasks.training.retrain import RetrainRequest, retrain
    from tasks.training.train import TrainRequest

    quiet_domain_tracebacks()
    result = retrain(RetrainRequest(TrainRequest(**request), force=force, actor=actor, thresholds=thresholds))
    return result.to_dict()


@flow(name="retrain", log_prints=True)
def retrain_flow(
    task_name: str,
    dataset: str,
    root: str | None = None,
    params: dict[str, str] | None = None,
    preset: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    force: bool = False,
    thresholds: dict[str, Any] | None = None,
    actor: str | None = None,
    committed_version: str | None = None,
) -> dict[str, Any]:
    """Retrain ``task_name`` on ``dataset``'s latest validated version and decide against the champion.

    Args:
        task_name: Training task.
        dataset: Dataset name.
        root: Storage root (default ``POSEPIPE_ROOT``).
        params: Task parameter overrides.
        preset: ``tiny`` or ``full`` (default ``POSEPIPE_TRAIN_PRESET``, else ``full``).
        epochs: Epochs (default ``POSEPIPE_TRAIN_EPOCHS``, else the preset's).
        seed: Run seed (default ``POSEPIPE_SEED``).
        force: Promote whatever the gate says.
        thresholds: The gate's thresholds (None: the task's defaults).
        actor: Who asked (recorded with a forced promotion).
        committed_version: The version the triggering event announced (recorded; the flow always
            uses the dataset's LATEST, which that commit moved).

    Returns:
        :meth:`tasks.training.retrain.RetrainResult.to_dict`.
    """
    from prefect.artifacts import create_markdown_artifact

    quiet_domain_tracebacks()
    settings = Settings()
    request = {"task": task_name, "root": root or settings.root, "dataset": dataset, "version": None, "params": dict(params or {}),
               "preset": preset or settings.train_preset, "epochs": epochs if epochs is not None else settings.train_epochs,
               "seed": settings.seed if seed is None else seed}  # fmt: skip
    if committed_version:
        print(f"triggered by {dataset} {committed_version}")
    result = retrain_task(task_name, request, force, thresholds, actor)
    create_markdown_artifact(decision_markdown(result), key=artifact_key(f"retrain-{task_name}"), description="retrain decision: candidate vs champion")
    link_report("model", request["root"], f"{task_name}@{result['candidate']}", f"retrain-{task_name}-card", "candidate's model card with the decision (HTML)")
    print(f"{task_name}: {result['decision']['status']}; champion {result['champion_before']} -> {result['champion_after']}")
    return result

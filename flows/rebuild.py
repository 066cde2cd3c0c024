"""The ``rebuild`` flow: (fetch) → parse → plan shards → process shards on Dask → validate → commit.

Wiring only: each task wraps a plain function from tasks/. One task per shard, never per sample;
only specs, paths and small summaries cross tasks. The dataset lock is held by the flow process
for the whole run.

Every entry point (the CLI, ``posepipe demo``, the deployments in prefect.yaml) goes through
:func:`flows.runtime.rebuild_unless_built` (the CLI directly, the others via :func:`run_rebuild`):
it checks the request, takes the dataset lock and names the version *before* Prefect or a cluster
starts, so a mistake or an unchanged rebuild costs a parse, not an orchestrator start; only then
does :func:`start_rebuild_flow` run :func:`rebuild_flow` on Dask.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.report import link_report
from flows.runtime import (
    dask_task_runner,
    held_dataset_lock,
    quiet_domain_tracebacks,
    rebuild_unless_built,
    speed_up_prefect_task_runs,
    workers_share_prefect_api,
)
from schemas.settings import DEFAULT_MAX_REJECT_RATIO, DEFAULT_SEED, Settings
from tasks import rebuild as stages
from tasks.kinds import ShardResult, ShardSpec
from tasks.transforms.geometry import CropConfig

speed_up_prefect_task_runs()  # this module's tasks run on Dask workers: one TLS context and settings validation per worker, not per task


@task(name="shard", cache_policy=NO_CACHE, task_run_name="shard-{spec.split}-{spec.index}")
def shard_task(fn: Callable[[ShardSpec], ShardResult], spec: ShardSpec) -> ShardResult:
    """One shard's work on a Dask worker (build + gate, :func:`tasks.kinds.build_and_validate`)."""
    quiet_domain_tracebacks()
    return fn(spec)


def map_on_prefect(fn: Callable[[ShardSpec], ShardResult], specs: list[ShardSpec]) -> list[ShardResult]:
    """``map_shards`` for :func:`tasks.rebuild.run`: one Prefect task per shard on the flow's task
    runner (Dask), results in order."""
    futures = [shard_task.submit(fn, spec) for spec in specs]
    return [f.result() for f in futures]


def _fetch(request: stages.RebuildRequest) -> str:
    """``fetch`` for :func:`tasks.rebuild.run`: download and unpack the dataset as a Prefect task."""
    from flows.fetch import fetch_source_task

    return str(fetch_source_task(request.dataset, request.root, mirror=request.mirror, manual_dir=request.manual_dir))


@flow(name="rebuild", log_prints=True)
def rebuild_flow(
    dataset: str,
    root: str,
    source: str | None = None,
    adapter_params: dict[str, Any] | None = None,
    crop: dict[str, Any] | None = None,
    seed: int = DEFAULT_SEED,
    shard_size: int | None = None,
    max_reject_ratio: float = DEFAULT_MAX_REJECT_RATIO,
    mirror: str | None = None,
    manual_dir: str | None = None,
) -> dict[str, Any]:
    """Build (or reuse) a validated dataset version and move ``LATEST`` to it.

    The Prefect shell around :func:`tasks.rebuild.run`: it passes :func:`map_on_prefect` as the
    shard mapper and the fetch task; the sequence itself lives in ``tasks/``.

    Args:
        dataset: Adapter name.
        root: Storage root (local path or fsspec URL).
        source: Local folder in the dataset's published layout; None fetches the dataset.
        adapter_params: Parse policy overrides.
        crop: :class:`CropConfig` overrides (converted once, here).
        seed: Run seed.
        shard_size: Records per shard (None: the record kind chooses, by crop bytes for samples).
        max_reject_ratio: Fail past this share of data-error rejects.
        mirror: Download mirror prefix (fetch only).
        manual_dir: Folder of manually downloaded files (fetch only).

    Returns:
        The summary: version, reused, counts per split, rejects by reason, validation, location.
    """
    quiet_domain_tracebacks()
    request = _request(dataset, root, source, adapter_params, crop, seed, shard_size, max_reject_ratio, mirror, manual_dir)
    summary = stages.run(request, map_on_prefect, fetch=_fetch, lock=held_dataset_lock)
    executed_on = _executed_on()
    print(f"{dataset}: {summary['version']} {'reused' if summary['reused'] else 'built'} on {executed_on}")
    _report_artifact(summary, executed_on)
    link_report("dataset", root, f"{summary['dataset']}@{summary['version']}", f"rebuild-{summary['dataset']}-card", "dataset card (HTML)")
    if not summary["reused"]:
        from prefect.events import emit_event

        emit_event(**committed_event(summary, root))
    return summary


COMMITTED_EVENT = "posepipe.dataset.committed"
"""The Prefect event a newly committed dataset version emits (a reused version emits nothing)."""


def committed_event(summary: dict[str, Any], root: str) -> dict[str, Any]:
    """The :func:`prefect.events.emit_event` arguments announcing a newly committed version.

    The resource is the dataset (``posepipe.dataset.{name}``) with the version as a label, so a
    deployment trigger can match every new version of one dataset (``prefect.yaml``'s retrain
    deployments) and pass the version on as ``{{ event.resource['posepipe.version'] }}``.

    Args:
        summary: The rebuild summary (:func:`tasks.rebuild.summary`).
        root: The storage root the version was committed under.

    Returns:
        ``{"event", "resource", "payload"}`` (resource labels are strings, as Prefect requires).
    """
    dataset, version = summary["dataset"], summary["version"]
    return {
        "event": COMMITTED_EVENT,
        "resource": {
            "prefect.resource.id": f"posepipe.dataset.{dataset}",
            "prefect.resource.name": dataset,
            "posepipe.dataset": dataset,
            "posepipe.version": version,
            "posepipe.root": str(root),
        },
        "payload": {k: summary[k] for k in ("counts", "parsed", "written", "rejected", "validation", "location") if k in summary},
    }


def _executed_on() -> str:
    """What this flow run's tasks ran on, e.g. ``Dask tcp://127.0.0.1:40123, 2 workers``."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx else None
    client = getattr(runner, "_client", None)
    if client is None:
        return type(runner).__name__ if runner is not None else "unknown"
    workers = len(client.nthreads())
    return f"Dask {client.scheduler.address}, {workers} worker{'s' if workers != 1 else ''}"


def _report_artifact(summary: dict[str, Any], executed_on: str) -> None:
    """The end-of-run report as a Prefect markdown artifact (visible in the UI and ``prefect artifact``)."""
    from prefect.artifacts import create_markdown_artifact

    lines = [f"# {summary['dataset']} {summary['version']}", "", "| item | value |", "|---|---|"]
    lines += [f"| samples ({split}) | {n} |" for split, n in summary["counts"].items()]
    lines += [f"| {k} | {summary[k]} |" for k in ("parsed", "written", "rejected", "validation", "location")]
    lines += [f"| rejected: {r} | {n} |" for r, n in summary["rejects_by_reason"].items()]
    lines += [f"| reused | {summary['reused']} |", f"| executed on | {executed_on} |"]
    create_markdown_artifact("\n".join(lines), key=f"rebuild-{summary['dataset']}", description="rebuild summary")


def _request(
    dataset: str,
    root: str,
    source: str | None,
    adapter_params: dict[str, Any] | None,
    crop: dict[str, Any] | None,
    seed: int,
    shard_size: int | None,
    max_reject_ratio: float,
    mirror: str | None,
    manual_dir: str | None,
) -> stages.RebuildRequest:
    """:func:`rebuild_flow`'s parameters (JSON-able, as Prefect passes them) as one request."""
    return stages.RebuildRequest(dataset, root, source, dict(adapter_params or {}), CropConfig(**(crop or {})), seed, shard_size, max_reject_ratio, mirror, manual_dir)


def _flow_parameters(request: stages.RebuildRequest) -> dict[str, Any]:
    """The inverse of :func:`_request`: the request as :func:`rebuild_flow`'s parameters."""
    params = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    return {**params, "crop": dataclasses.asdict(request.crop)}


def start_rebuild_flow(request: stages.RebuildRequest, workers: int | None = None, dask_address: str | None = None, threads_per_worker: int = 1) -> dict[str, Any]:
    """Start the orchestrator and run :func:`rebuild_flow` on a LocalCluster (``workers``) or an
    existing scheduler (no pre-checks: see :func:`run_rebuild`)."""
    runner = dask_task_runner(workers=workers, dask_address=dask_address, threads_per_worker=threads_per_worker)
    with workers_share_prefect_api(dask_address):
        return rebuild_flow.with_options(task_runner=runner)(**_flow_parameters(request))


def run_rebuild(workers: int | None = None, dask_address: str | None = None, threads_per_worker: int = 1, **kwargs: Any) -> dict[str, Any]:
    """Rebuild on a LocalCluster (``workers``) or an existing scheduler.

    Before anything starts (:func:`flows.runtime.rebuild_unless_built`): the request is checked, the
    dataset lock is taken (held for the whole run) and, when ``source`` is given, the version is
    named; an existing validated version is returned (and LATEST moved to it) without starting
    Prefect or Dask. ``kwargs`` are :func:`rebuild_flow`'s parameters (a wrong name fails here).
    """
    quiet_domain_tracebacks()
    bound = inspect.signature(rebuild_flow.fn).bind(**kwargs)
    bound.apply_defaults()
    request = _request(**bound.arguments)
    return rebuild_unless_built(request, lambda: start_rebuild_flow(request, workers, dask_address, threads_per_worker))


def rebuild_with_settings(settings: Settings, **kwargs: Any) -> dict[str, Any]:
    """:func:`run_rebuild` with execution, root, seed and limits taken from ``settings``."""
    return run_rebuild(
        workers=settings.workers,
        dask_address=settings.dask_address,
        threads_per_worker=settings.threads_per_worker,
        root=settings.root,
        seed=settings.seed,
        shard_size=settings.shard_size,
        max_reject_ratio=settings.max_reject_ratio,
        **kwargs,
    )


@flow(name="scheduled-rebuild", log_prints=True)
def scheduled_rebuild(dataset: str, source: str | None = None, adapter_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Deployment entry point (prefect.yaml): settings come from the worker's environment.

    ``POSEPIPE_ROOT``, ``POSEPIPE_DASK_ADDRESS`` (or ``POSEPIPE_WORKERS``), ``POSEPIPE_SEED``...
    are read here, at run time, so one deployment runs on a laptop or a cluster unchanged. A rebuild
    with unchanged inputs reuses its version, so a nightly schedule costs a parse when nothing moved.
    """
    summary = rebuild_with_settings(Settings(), dataset=dataset, source=source, adapter_params=adapter_params or {})
    _report_deployment_run(summary)
    return summary


@flow(name="rebuild-on-demand", log_prints=True)
def on_demand_rebuild(
    dataset: str,
    source: str | None = None,
    root: str | None = None,
    adapter_params: dict[str, Any] | None = None,
    crop: dict[str, Any] | None = None,
    seed: int | None = None,
    shard_size: int | None = None,
    max_reject_ratio: float | None = None,
    mirror: str | None = None,
    manual_dir: str | None = None,
) -> dict[str, Any]:
    """Deployment entry point for a rebuild triggered by hand or by CI (prefect.yaml).

    The same path as the CLI: :func:`rebuild_with_settings` on Dask. Parameters left unset come from
    the worker's environment (``POSEPIPE_ROOT``, ``POSEPIPE_SEED``, ``POSEPIPE_SHARD_SIZE``,
    ``POSEPIPE_MAX_REJECT_RATIO``); execution always does (``POSEPIPE_DASK_ADDRESS`` or
    ``POSEPIPE_WORKERS``, ``POSEPIPE_THREADS_PER_WORKER``).

    Args:
        dataset: Adapter name.
        source: Local folder in the dataset's published layout; None fetches the dataset.
        root: Storage root (default ``POSEPIPE_ROOT``).
        adapter_params: Parse policy overrides.
        crop: :class:`CropConfig` overrides.
        seed: Run seed (default ``POSEPIPE_SEED``).
        shard_size: Samples per shard (default ``POSEPIPE_SHARD_SIZE``).
        max_reject_ratio: Fail past this share of data-error rejects (default ``POSEPIPE_MAX_REJECT_RATIO``).
        mirror: Download mirror prefix (fetch only).
        manual_dir: Folder of manually downloaded files (fetch only).

    Returns:
        The rebuild summary.
    """
    overrides = {"root": root, "seed": seed, "shard_size": shard_size, "max_reject_ratio": max_reject_ratio}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    summary = rebuild_with_settings(
        settings, dataset=dataset, source=source, adapter_params=adapter_params or {}, crop=crop, mirror=mirror, manual_dir=manual_dir
    )
    _report_deployment_run(summary)
    return summary


def _report_deployment_run(summary: dict[str, Any]) -> None:
    """Log a deployment run's outcome; a reused version gets its artifact here (no inner flow ran)."""
    print(f"{summary['dataset']}: {summary['version']} ({'reused' if summary['reused'] else 'built'}), counts {summary['counts']}")
    if summary["reused"]:
        _report_artifact(summary, "nothing to run: the version already existed")

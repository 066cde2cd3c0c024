"""The ``rebuild`` flow: (fetch) → parse → plan shards → process shards on Dask → validate → commit.

Wiring only: each task wraps a plain function from tasks/. One task per shard, never per sample;
only specs, paths and small summaries cross tasks. The dataset lock is held by the flow process
for the whole run.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import dask_task_runner, workers_share_prefect_api
from schemas.settings import Settings
from storage.fs import filesystem
from storage.manifest import dataset_lock
from tasks import rebuild as stages
from tasks.shards import ShardSpec, process_shard
from tasks.transforms.geometry import CropConfig
from tasks.validate import validate_shard


@task(name="parse-and-plan", cache_policy=NO_CACHE)
def prepare_task(dataset: str, source: str, root: str, adapter_params: dict[str, Any], crop: dict[str, Any], seed: int, shard_size: int) -> stages.Prepared:
    """Parse the source and plan shards (or find the version already built)."""
    return stages.prepare(dataset, source, root, adapter_params, CropConfig(**crop), seed, shard_size)


@task(name="process-shard", cache_policy=NO_CACHE, task_run_name="process-{spec.split}-{spec.index}")
def process_shard_task(spec: ShardSpec) -> dict[str, Any]:
    """Decode, crop, resize and write one shard."""
    return process_shard(spec)


@task(name="validate-shard", cache_policy=NO_CACHE)
def validate_shard_task(root: str, dataset: str, version: str, shard: dict[str, Any], splits: tuple[str, ...], skeleton: str | None, out_hw: tuple[int, int]) -> dict[str, Any]:
    """Run the expectation suite and semantic checks on one shard."""
    return validate_shard(root, dataset, version, shard, splits, skeleton, out_hw)


@task(name="commit", cache_policy=NO_CACHE)
def commit_task(root: str, prepared: stages.Prepared, shards: list[dict[str, Any]], reports: list[dict[str, Any]], max_reject_ratio: float, run_info: dict[str, Any]) -> dict[str, Any]:
    """Write rejects, validation report, manifest; move LATEST."""
    return stages.commit(root, prepared, shards, reports, max_reject_ratio, run_info)


@flow(name="rebuild", log_prints=True)
def rebuild_flow(
    dataset: str,
    root: str,
    source: str | None = None,
    adapter_params: dict[str, Any] | None = None,
    crop: dict[str, Any] | None = None,
    seed: int = 0,
    shard_size: int = 512,
    max_reject_ratio: float = 0.5,
    mirror: str | None = None,
    manual_dir: str | None = None,
) -> dict[str, Any]:
    """Build (or reuse) a validated dataset version and move ``LATEST`` to it.

    Args:
        dataset: Adapter name.
        root: Storage root (local path or fsspec URL).
        source: Local folder in the dataset's published layout; None fetches the dataset.
        adapter_params: Parse policy overrides.
        crop: :class:`CropConfig` overrides.
        seed: Run seed.
        shard_size: Samples per shard.
        max_reject_ratio: Fail past this share of data-error rejects.
        mirror: Download mirror prefix (fetch only).
        manual_dir: Folder of manually downloaded files (fetch only).

    Returns:
        The summary: version, reused, counts per split, rejects by reason, validation, location.
    """
    started = time.time()
    crop_cfg = asdict(CropConfig(**(crop or {})))
    fs, _ = filesystem(root)
    with dataset_lock(fs, filesystem(root)[1], dataset):
        if source is None:
            from flows.fetch import fetch_source_task

            source = fetch_source_task(dataset, root, mirror=mirror, manual_dir=manual_dir)
        prepared = prepare_task.submit(dataset, str(source), root, adapter_params or {}, crop_cfg, seed, shard_size).result()
        if prepared.reused:
            return stages.reused_summary(root, prepared)
        # image datasets: one task per shard decodes/crops/writes; clip datasets were written by prepare
        shard_futures = [process_shard_task.submit(spec) for spec in prepared.specs] or prepared.clip_shards
        out_hw = (crop_cfg["out_height_px"], crop_cfg["out_width_px"])
        report_futures = [
            validate_shard_task.submit(root, dataset, prepared.version, f, prepared.splits, prepared.skeleton, out_hw) for f in shard_futures
        ]
        shards = [f.result() if hasattr(f, "result") else f for f in shard_futures]
        reports = [f.result() for f in report_futures]
        run_info = {"seconds": round(time.time() - started, 3), "shards": len(shards), "pid": os.getpid()}
        summary = commit_task.submit(root, prepared, shards, reports, max_reject_ratio, run_info).result()
        _report_artifact(summary)
        return summary


def _report_artifact(summary: dict[str, Any]) -> None:
    """The end-of-run report as a Prefect markdown artifact (visible in the UI)."""
    from prefect.artifacts import create_markdown_artifact

    lines = [f"# {summary['dataset']} {summary['version']}", "", "| item | value |", "|---|---|"]
    lines += [f"| samples ({split}) | {n} |" for split, n in summary["counts"].items()]
    lines += [f"| {k} | {summary[k]} |" for k in ("parsed", "written", "rejected", "validation", "location")]
    lines += [f"| rejected: {r} | {n} |" for r, n in summary["rejects_by_reason"].items()]
    create_markdown_artifact("\n".join(lines), key=f"rebuild-{summary['dataset']}", description="rebuild summary")


def run_rebuild(workers: int | None = None, dask_address: str | None = None, threads_per_worker: int = 1, **kwargs: Any) -> dict[str, Any]:
    """Run :func:`rebuild_flow` on a LocalCluster (``workers``) or an existing scheduler."""
    runner = dask_task_runner(workers=workers, dask_address=dask_address, threads_per_worker=threads_per_worker)
    with workers_share_prefect_api(dask_address):
        return rebuild_flow.with_options(task_runner=runner)(**kwargs)


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
    print(f"{dataset}: {summary['version']} ({'reused' if summary['reused'] else 'built'}), counts {summary['counts']}")
    return summary

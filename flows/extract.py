"""Keypoint extraction flow: one Prefect task per shard of clips, run on Dask.

Wiring only: the work is :func:`tasks.extract.worker.extract_shard`. Tasks receive a
:class:`~tasks.extract.plan.ExtractShardSpec` (clip ids and paths) and return a small summary dict; frames
and keypoints never pass through Prefect or the Dask scheduler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.runtime import dask_task_runner, speed_up_prefect_task_runs, workers_share_prefect_api
from schemas.settings import Settings
from tasks.extract.plan import BackendSpec, ExtractShardSpec, plan_dataset
from tasks.extract.worker import extract_shard, write_run_manifest

speed_up_prefect_task_runs()  # this module's tasks run on Dask workers: one TLS context and settings validation per worker, not per task


@task(name="extract-shard", retries=0)
def extract_shard_task(spec: ExtractShardSpec) -> dict[str, Any]:
    """Extract one shard (resumable per clip) and return its summary."""
    return extract_shard(spec).to_dict()


@flow(name="extract", log_prints=False)
def extract_flow(shards: list[ExtractShardSpec], run_dir: str, request: dict[str, Any]) -> dict[str, Any]:
    """Submit every shard, wait, then write the run manifest.

    Args:
        shards: Planned shards (:func:`tasks.extract.plan.plan_extract_shards`).
        run_dir: The run folder.
        request: What was asked, stored in the manifest.

    Returns:
        The manifest.
    """
    futures = [extract_shard_task.submit(spec) for spec in shards]
    summaries = [f.result() for f in futures]
    return write_run_manifest(run_dir, summaries, request)


def run_extract(
    shards: list[ExtractShardSpec],
    run_dir: str,
    request: dict[str, Any],
    workers: int | None = None,
    dask_address: str | None = None,
    threads_per_worker: int = 1,
) -> dict[str, Any]:
    """Run :func:`extract_flow` on a LocalCluster of ``workers`` processes or at ``dask_address``."""
    runner = dask_task_runner(workers, dask_address, threads_per_worker)
    with workers_share_prefect_api(dask_address):
        return extract_flow.with_options(task_runner=runner)(shards, run_dir, request)


@flow(name="scheduled-extract", log_prints=True)
def scheduled_extract(
    dataset: str,
    source: str,
    fold: str | None = None,
    part: str = "all",
    backend: str = "tf-openpose",
    model: str | None = None,
    sampling: dict[str, Any] | None = None,
    adapter_params: dict[str, Any] | None = None,
    shard_size: int = 100,
    batch: int | None = None,
) -> dict[str, Any]:
    """Deployment entry point (prefect.yaml): extract a clip dataset, resuming whatever is done.

    Root and execution (``POSEPIPE_ROOT``, ``POSEPIPE_DASK_ADDRESS`` or ``POSEPIPE_WORKERS`` and
    ``POSEPIPE_THREADS_PER_WORKER``) come from the worker's environment at run time. ``sampling`` holds
    :class:`~tasks.video.sampling.SamplingSpec` fields (``{"mode": "every_k", "k": 5}``); ``batch``
    is the frames per network call (None: the backend's default; results do not depend on it).
    """
    from tasks.video.sampling import SamplingSpec

    settings = Settings()
    plan = plan_dataset(dataset, Path(source), settings.root, BackendSpec.create(backend, model), SamplingSpec(**(sampling or {})), fold, part, adapter_params, shard_size, batch=batch)
    print(f"{dataset}: {plan.clips} clips in {len(plan.shards)} shards -> {plan.run_dir}")
    manifest = run_extract(plan.shards, plan.run_dir, plan.request, settings.workers, settings.dask_address, settings.threads_per_worker)
    print(f"{dataset}: {manifest['totals']['extracted']} of {manifest['totals']['clips']} clips extracted, rejects {manifest['totals'].get('rejected') or {}}")
    return manifest

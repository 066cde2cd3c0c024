"""Keypoint extraction flow: one Prefect task per shard of clips, run on Dask.

Wiring only: the work is :func:`tasks.extract.worker.extract_shard`. Tasks receive a
:class:`~tasks.extract.plan.ShardSpec` (clip ids and paths) and return a small summary dict; frames
and keypoints never pass through Prefect or the Dask scheduler.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows.runtime import dask_task_runner
from tasks.extract.plan import ShardSpec
from tasks.extract.worker import extract_shard, write_run_manifest


@task(name="extract-shard", retries=0)
def extract_shard_task(spec: ShardSpec) -> dict[str, Any]:
    """Extract one shard (resumable per clip) and return its summary."""
    return extract_shard(spec).to_dict()


@flow(name="extract", log_prints=False)
def extract_flow(shards: list[ShardSpec], run_dir: str, request: dict[str, Any]) -> dict[str, Any]:
    """Submit every shard, wait, then write ``_manifest.json``.

    Args:
        shards: Planned shards (:func:`tasks.extract.plan.plan_shards`).
        run_dir: The run folder.
        request: What was asked, stored in the manifest.

    Returns:
        The manifest.
    """
    futures = [extract_shard_task.submit(spec) for spec in shards]
    summaries = [f.result() for f in futures]
    return write_run_manifest(run_dir, summaries, request)


def run_extract(
    shards: list[ShardSpec],
    run_dir: str,
    request: dict[str, Any],
    workers: int | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Run :func:`extract_flow` on a LocalCluster of ``workers`` processes or at ``dask_address``."""
    runner = dask_task_runner(workers, dask_address)
    return extract_flow.with_options(task_runner=runner)(shards, run_dir, request)

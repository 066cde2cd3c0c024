"""Execution back-ends for flows: a LocalCluster by default, an existing scheduler on request.

Prefect could be swapped out here without touching tasks/: flows only submit shard-level tasks.
"""

from __future__ import annotations

import logging
import os
from typing import Any


def tune_worker_environment() -> None:
    """Stop Dask's nanny from exporting ``MALLOC_TRIM_THRESHOLD_=65536`` to the workers it spawns.

    Any explicit trim threshold turns off glibc's dynamic mmap threshold, so every buffer over
    128 KiB (each decoded image or video frame) is mmap'd and unmapped again: measured here, JPEG
    decoding runs ~45 % slower in such a worker than in a plain process. Shard memory is bounded by
    the shard size, so the default allocator behaviour is the better trade. Applies to clusters
    this process starts; an external cluster's workers keep their operator's environment.
    """
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    if env.pop("MALLOC_TRIM_THRESHOLD_", None) is not None:
        dask.config.set({"distributed.nanny.pre-spawn-environ": env})


def dask_task_runner(workers: int | None = None, dask_address: str | None = None, threads_per_worker: int = 1) -> Any:
    """A Prefect ``DaskTaskRunner``: connect to ``dask_address`` or start a LocalCluster.

    Args:
        workers: Worker processes for the LocalCluster (None: one per core).
        dask_address: ``tcp://host:port`` of a running scheduler; overrides ``workers``.
        threads_per_worker: Threads per LocalCluster worker.

    Returns:
        A ``prefect_dask.DaskTaskRunner``.
    """
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    tune_worker_environment()
    n = workers or max(1, os.cpu_count() or 1)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": n,
            "threads_per_worker": threads_per_worker,
            "processes": True,
            "dashboard_address": ":0",
            "silence_logs": logging.ERROR,
        },
    )

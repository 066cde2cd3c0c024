"""Execution back-ends for flows: a LocalCluster by default, an existing scheduler on request.

Prefect could be swapped out here without touching tasks/: flows only submit shard-level tasks.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any


def tune_worker_environment() -> None:
    """Configure the Dask workers this process starts for long CPU-bound shard tasks.

    * Stop the nanny from exporting ``MALLOC_TRIM_THRESHOLD_=65536``: any explicit trim threshold
      turns off glibc's dynamic mmap threshold, so every buffer over 128 KiB (each decoded image or
      video frame) is mmap'd and unmapped again; measured here, JPEG decoding ran ~45 % slower in
      such a worker than in a plain process. Shard memory is bounded by the shard size, so the
      default allocator behaviour is the better trade.
    * Switch off the worker's statistical profiler (it samples every thread's stack every 10 ms,
      taking the GIL): measured here it made ``process_shard`` ~10 % slower (1.48 s vs 1.33 s for
      the same 8 shards on one worker). It only feeds the dashboard's Profile tab; set
      ``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=true`` to keep it.

    Applies to clusters this process starts; an external cluster's workers keep their operator's
    environment and configuration.
    """
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    if env.pop("MALLOC_TRIM_THRESHOLD_", None) is not None:
        dask.config.set({"distributed.nanny.pre-spawn-environ": env})
    if "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED" not in os.environ:
        dask.config.set({"distributed.worker.profile.enabled": False})



@contextlib.contextmanager
def workers_share_prefect_api(dask_address: str | None = None) -> Iterator[str | None]:
    """Point the Dask workers this process starts at this process's Prefect API.

    Without it, a worker process has no ``PREFECT_API_URL`` and starts an ephemeral API server of its
    own on its first task (~5 s of a worker's CPU per flow run, and the task runs land in a database
    that dies with the worker, invisible from the flow's API). Here the flow's API (the configured
    one, a test harness's, or this process's ephemeral server, started now) is exported as
    ``PREFECT_API_URL`` for the workers the LocalCluster spawns while the block runs. An external
    cluster (``dask_address``) keeps its operator's configuration.

    Yields:
        The API URL the workers get, or None for an external cluster.
    """
    if dask_address:
        yield None
        return
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the singleton Prefect's own client would start in this process
        server.start()
        url = server.api_url
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


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

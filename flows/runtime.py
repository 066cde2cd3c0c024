"""Execution back-ends for flows: a LocalCluster by default, an existing scheduler on request.

Prefect could be swapped out here without touching tasks/: flows only submit shard-level tasks.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from schemas.errors import PosepipeError

logger = logging.getLogger("posepipe.runtime")

# Run in place of ``python -m uvicorn ...`` for Prefect's temporary API server: a daemon thread
# polls the parent pid and shuts the server down (SIGTERM, then exit) once the parent is gone, so a
# SIGKILLed run cannot leave its server behind. The parent pid comes first in argv.
_EXIT_WITH_PARENT = """# Prefect temporary API server (uvicorn) that exits with its parent process
import os, runpy, signal, sys, threading, time
parent = int(sys.argv.pop(1))
def _watch():
    while os.getppid() == parent:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    os._exit(1)
threading.Thread(target=_watch, name="exit-with-parent", daemon=True).start()
sys.argv[0] = "uvicorn"
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


# (filesystem class, root path, dataset) of the dataset locks this context holds: the CLI and
# flows.rebuild.run_rebuild take the lock before the orchestrator starts, and the flow, running in the
# same context, keeps it instead of trying to take it a second time. A context variable, so another
# thread or process rebuilding the same dataset still meets the lock.
_HELD_LOCKS: contextvars.ContextVar[frozenset[tuple[str, str, str]]] = contextvars.ContextVar("posepipe_held_dataset_locks", default=frozenset())


@contextlib.contextmanager
def held_dataset_lock(fs: Any, path: str, dataset: str) -> Iterator[None]:
    """:func:`storage.manifest.dataset_lock`, unless this context already holds it.

    Args:
        fs: The root's filesystem.
        path: The root's path on it.
        dataset: Dataset name.

    Raises:
        LockError: If another process holds the lock.
    """
    from storage.manifest import dataset_lock

    key = (type(fs).__name__, str(path), dataset)
    held = _HELD_LOCKS.get()
    if key in held:
        yield
        return
    with dataset_lock(fs, path, dataset):
        token = _HELD_LOCKS.set(held | {key})
        try:
            yield
        finally:
            _HELD_LOCKS.reset(token)


def rebuild_unless_built(request: Any, start: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Check ``request`` (a ``tasks.rebuild.RebuildRequest``), hold the dataset lock, and call
    ``start`` (which starts the orchestrator and runs the flow) only when there is something to build.

    Everything before ``start`` imports neither Prefect nor Dask: a mistake in the request, a held
    lock or an unchanged version (named from a local ``source``) costs a parse, about 1-2 s, instead
    of an orchestrator start (about 11-15 s). The lock stays held while ``start`` runs; the flow,
    in the same context, keeps it (:func:`held_dataset_lock`).

    Returns:
        The summary of the existing validated version (``reused`` True; LATEST moved to it), or
        what ``start`` returns.
    """
    from storage.fs import filesystem
    from tasks import rebuild as stages

    stages.check(request)
    fs, path = filesystem(request.root)
    with held_dataset_lock(fs, path, request.dataset):
        if request.source is not None:
            prepared = stages.plan_version(request)
            if prepared.reused:
                return stages.reused_summary(request.root, prepared)
        return start()


class _SharedVerifiedContexts:
    """Stands in for the :mod:`ssl` module inside ``prefect.client.orchestration``: the same calls,
    except that ``create_default_context(cafile=...)`` hands back one context per CA file instead of
    building a new one (see :func:`share_prefect_tls_contexts`)."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self._lock = threading.Lock()
        self._contexts: dict[tuple[Any, ...], Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def create_default_context(self, purpose: Any = None, *, cafile: str | None = None, capath: str | None = None, cadata: Any = None) -> Any:
        """:func:`ssl.create_default_context`; cached when a CA file is named (Prefect's verified client)."""
        purpose = self._module.Purpose.SERVER_AUTH if purpose is None else purpose
        if cafile is None or capath is not None or cadata is not None:  # not the call Prefect's verified client makes: no cache
            return self._module.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
        key = (purpose, cafile)
        with self._lock:
            if key not in self._contexts:
                self._contexts[key] = self._module.create_default_context(purpose, cafile=cafile)
            return self._contexts[key]


def share_prefect_tls_contexts() -> None:
    """Let every Prefect API client of this process share one verified TLS context per CA file.

    Prefect 3.8's ``SyncPrefectClient`` and ``PrefectClient`` build a fresh
    ``ssl.create_default_context(cafile=certifi.where())`` whenever they are created, even for an
    ``http://`` API, and a task run on a Dask worker creates one per task: loading the CA bundle
    cost ~67 ms of CPU per shard task here (2.6 s of a 31 s worker in a 78-shard rebuild). An
    :class:`ssl.SSLContext` is meant to be shared by many connections, and the one Prefect builds is
    never modified after creation on this path, so one per CA file serves every client. The
    insecure-skip-verify path (which modifies its context) is not cached. Idempotent; called where
    the flows' tasks are defined, so it runs in every worker that imports them. Re-check this when
    Prefect moves: it replaces the module's ``ssl`` reference, nothing else.
    """
    import ssl

    from prefect.client import orchestration

    if not isinstance(orchestration.ssl, _SharedVerifiedContexts):
        orchestration.ssl = _SharedVerifiedContexts(ssl)


def reuse_prefect_settings_contexts() -> None:
    """Validate each distinct set of Prefect settings a task run brings once per process, not per task run.

    A task run on a Dask worker restores its flow's context with ``prefect.context.hydrated_context``,
    which rebuilds ``SettingsContext(**serialized)`` every time: pydantic-settings validates the whole
    ``Settings`` tree again (environment, profiles file), ~90 ms of CPU per shard task here (0.9 s of
    a worker's 17 s in a 20-shard rebuild). The wrapper installed here keeps one validated context per
    distinct serialized settings (keyed by their canonical JSON; at most 8 kept) and enters a copy of
    it (a :class:`prefect.context.ContextModel` copy has its own token, so copies nest and run in
    parallel threads), then lets Prefect's own ``hydrated_context`` restore everything else. Logging is
    set up first, as Prefect does. Idempotent; installed where the flows' tasks are defined, beside
    :func:`share_prefect_tls_contexts`. Re-check this when Prefect moves: it replaces the name
    ``hydrated_context`` in ``prefect.context``, ``prefect.task_engine`` and ``prefect.flow_engine``.
    """
    import json

    from prefect import context, flow_engine, task_engine

    if getattr(context.hydrated_context, "_posepipe_reuses_settings", False):
        return
    original = context.hydrated_context
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    @contextlib.contextmanager
    def hydrated_context(serialized_context: dict[str, Any] | None = None, client: Any = None) -> Iterator[None]:
        settings = (serialized_context or {}).get("settings_context")
        if not settings:
            with original(serialized_context, client):
                yield
            return
        key = json.dumps(settings, sort_keys=True, default=str)
        with lock:
            validated = cache.get(key)
            if validated is None:
                if len(cache) >= 8:
                    cache.clear()
                validated = cache[key] = context.SettingsContext(**settings)
        context.ensure_logging_setup()
        rest = {k: v for k, v in (serialized_context or {}).items() if k != "settings_context"}
        with validated.model_copy(), original(rest, client):
            yield

    hydrated_context._posepipe_reuses_settings = True  # type: ignore[attr-defined]
    hydrated_context.__wrapped__ = original  # type: ignore[attr-defined]
    for module in (context, task_engine, flow_engine):
        module.hydrated_context = hydrated_context  # type: ignore[attr-defined]


def speed_up_prefect_task_runs() -> None:
    """:func:`share_prefect_tls_contexts` and :func:`reuse_prefect_settings_contexts` (a task run's fixed costs on a worker)."""
    share_prefect_tls_contexts()
    reuse_prefect_settings_contexts()


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


def share_inference_threads(workers: int, threads_per_worker: int = 1, cores: int | None = None) -> dict[str, str]:
    """Give each LocalCluster worker this process starts its share of the cores for inference.

    TensorFlow and OpenCV size their thread pools to the whole machine by default: two extraction
    workers on 2 cores then run 2 x 2 compute threads and oversubscribe (measured: 2 workers
    0.56 x one). Each worker gets ``POSEPIPE_INTRA_OP_THREADS = POSEPIPE_INTER_OP_THREADS =
    max(1, cores // (workers x threads_per_worker))`` (:func:`tasks.keypoints.api.inference_threads`
    reads them), unless this process's environment already sets them (then the workers inherit
    those). Inter-op threads as many as intra-op ones, as TensorFlow's own default is for a whole
    machine: the OpenPose graphs run branches side by side (the two PAF/heatmap branches, and the
    per-sample batch norms of the batch-exact tf-openpose graph), and one worker on 2 cores with one
    inter-op thread ran 20.4 frames/s at batch 1 and 29.3 at batch 8, with two 23.5 and 33.0. An
    external cluster's workers keep their operator's environment.

    Args:
        workers: Worker processes of the cluster.
        threads_per_worker: Dask threads per worker (tasks running at once in one worker).
        cores: CPU cores to share (default: ``os.cpu_count()``).

    Returns:
        The variables set for the workers.
    """
    import dask

    from tasks.keypoints.api import INTER_OP_ENV, INTRA_OP_ENV

    global _USER_THREADS
    if _USER_THREADS is None:  # before any nanny copied its pre-spawn variables into os.environ
        _USER_THREADS = {k: os.environ[k] for k in (INTRA_OP_ENV, INTER_OP_ENV) if k in os.environ}
    cores = cores or os.cpu_count() or 1
    per_worker = str(max(1, cores // max(1, workers * threads_per_worker)))
    share = {INTRA_OP_ENV: per_worker, INTER_OP_ENV: per_worker}
    wanted = {k: v for k, v in share.items() if k not in _USER_THREADS}
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.update(wanted)
    for k in share:
        if k in wanted:
            # a nanny copies pre-spawn variables into this process's os.environ, and the next one
            # prefers os.environ over its config: drop the copy so this cluster's share applies
            os.environ.pop(k, None)
        else:
            env.pop(k, None)  # the user's own setting is inherited
    dask.config.set({"distributed.nanny.pre-spawn-environ": env})
    return wanted


_USER_THREADS: dict[str, str] | None = None


class _ExitWithParentSubprocess:
    """Stands in for the ``subprocess`` module inside ``prefect.server.api.server``.

    Everything is the real module except ``Popen``: a ``python -m uvicorn`` command (Prefect's
    temporary API server, however it is started: by Prefect's own client or by
    :func:`workers_share_prefect_api`) runs under :data:`_EXIT_WITH_PARENT` instead, keeping its
    arguments and environment. Before, a SIGKILLed CLI run left its server running forever
    (about 230 MB each).
    """

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def Popen(self, args: Any, *rest: Any, **kwargs: Any) -> Any:  # noqa: N802 (the module's name)
        """``subprocess.Popen``, with a uvicorn server tied to this process's lifetime."""
        argv = list(args) if isinstance(args, list | tuple) else args
        if isinstance(argv, list) and argv[1:3] == ["-m", "uvicorn"]:
            argv = [argv[0], "-c", _EXIT_WITH_PARENT, str(os.getpid()), *argv[3:]]
        return self._module.Popen(argv, *rest, **kwargs)


def ephemeral_servers_exit_with_parent() -> None:
    """Make every temporary Prefect API server this process starts die with this process.

    Idempotent; call it before anything may start the server (the CLI's runs call it through
    :func:`dask_task_runner`, :func:`workers_share_prefect_api` and ``flows.rebuild.run_rebuild``).
    """
    from prefect.server.api import server as prefect_server

    if not isinstance(prefect_server.subprocess, _ExitWithParentSubprocess):
        prefect_server.subprocess = _ExitWithParentSubprocess(prefect_server.subprocess)


class _DomainErrorTraceback(logging.Filter):
    """Drop the traceback from Prefect's "task/flow run failed" records when the error is a
    :class:`~schemas.errors.PosepipeError`: its message (still logged) says what to do, and the CLI
    prints it with its hint. Other exceptions keep their tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        seen = 0
        while exc is not None and seen < 8:
            if isinstance(exc, PosepipeError):
                record.exc_info = None
                record.exc_text = None
                break
            exc, seen = exc.__cause__, seen + 1
        return True


_DOMAIN_FILTER = _DomainErrorTraceback()
_ENGINE_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine", "prefect.flow_engine")


def quiet_domain_tracebacks() -> None:
    """Install :class:`_DomainErrorTraceback` on Prefect's run loggers in this process (idempotent).

    Call it in the flow process and at the start of tasks (Dask worker processes log their own task
    failures).
    """
    for name in _ENGINE_LOGGERS:
        log = logging.getLogger(name)
        if _DOMAIN_FILTER not in log.filters:
            log.addFilter(_DOMAIN_FILTER)


def _api_reachable(url: str) -> bool:
    """Runs on each Dask worker: does this Prefect API answer from here?"""
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=5) as response:  # noqa: S310 (http URL we built)
            return response.status == 200
    except (OSError, ValueError):
        return False


def _external_workers_reach(dask_address: str, url: str) -> dict[str, bool]:
    """Ask every worker of the scheduler at ``dask_address`` whether it can reach ``url``."""
    from distributed import Client

    with Client(dask_address, timeout="20s") as client:
        return client.run(_api_reachable, url)


@contextlib.contextmanager
def workers_share_prefect_api(dask_address: str | None = None) -> Iterator[str | None]:
    """Point the Dask workers this process starts at this process's Prefect API.

    Without it, a worker process has no ``PREFECT_API_URL`` and starts an ephemeral API server of its
    own on its first task (~5 s of a worker's CPU per flow run, and the task runs land in a database
    that dies with the worker, invisible from the flow's API). Here the flow's API (the configured
    one, a test harness's, or this process's ephemeral server, started now) is exported as
    ``PREFECT_API_URL`` for the workers the LocalCluster spawns while the block runs.

    An external cluster (``dask_address``) is told the API through the flow's settings, which
    Prefect sends with every task: with a configured ``PREFECT_API_URL`` that already happens; with
    none, this process's temporary server is passed on when every worker can reach it (workers on
    this host), and otherwise a warning says what to set (each such worker starts a throwaway
    server of its own and its task runs are not recorded with the flow run).

    Yields:
        The API URL the workers get, or None when they keep their own.
    """
    ephemeral_servers_exit_with_parent()
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    configured = bool(url)
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the singleton Prefect's own client would start in this process
        server.start()
        url = server.api_url
    if dask_address:
        if configured:
            yield url
            return
        yield from _share_with_external_workers(dask_address, url)
        return
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


def _share_with_external_workers(dask_address: str, url: str) -> Iterator[str | None]:
    """Body of :func:`workers_share_prefect_api` for an external cluster and a temporary server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        reach = _external_workers_reach(dask_address, url)
    except (OSError, TimeoutError) as exc:
        logger.warning("could not ask the Dask workers at %s whether they reach the Prefect API at %s: %s", dask_address, url, exc)
        reach = {}
    unreachable = sorted(w for w, ok in reach.items() if not ok)
    if reach and not unreachable:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
        return
    logger.warning(
        "the Dask workers %s cannot reach this run's temporary Prefect API at %s: each starts a throwaway "
        "Prefect server and their task runs are not recorded with the flow run. Start a Prefect server "
        "(prefect server start --host 0.0.0.0) and set PREFECT_API_URL for this command and for the workers.",
        ", ".join(unreachable) or "(none answered)",
        url,
    )
    yield None


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

    ephemeral_servers_exit_with_parent()
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    tune_worker_environment()
    n = workers or max(1, os.cpu_count() or 1)
    share_inference_threads(n, threads_per_worker)
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

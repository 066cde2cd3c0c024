import os
import subprocess
import sys
from pathlib import Path

import dask
import pytest
from distributed import Client, LocalCluster

from flows.runtime import (
    _SharedVerifiedContexts,
    reuse_prefect_settings_contexts,
    share_inference_threads,
    share_prefect_tls_contexts,
    tune_worker_environment,
)


class _CountingSsl:
    """The ssl module, counting the contexts it creates."""

    def __init__(self) -> None:
        import ssl

        self.real, self.created = ssl, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def create_default_context(self, *args, **kwargs):
        self.created += 1
        return self.real.create_default_context(*args, **kwargs)


def test_prefect_clients_build_one_verified_tls_context_per_process(monkeypatch):
    from prefect.client import orchestration
    from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, temporary_settings

    share_prefect_tls_contexts()
    share_prefect_tls_contexts()  # idempotent: still one layer
    assert isinstance(orchestration.ssl, _SharedVerifiedContexts) and not isinstance(orchestration.ssl._module, _SharedVerifiedContexts)
    counting = _CountingSsl()
    monkeypatch.setattr(orchestration, "ssl", _SharedVerifiedContexts(counting))
    clients = [orchestration.SyncPrefectClient("http://127.0.0.1:9/api") for _ in range(3)]
    clients += [orchestration.PrefectClient("http://127.0.0.1:9/api") for _ in range(2)]
    assert counting.created == 1  # one CA bundle load for five clients (it was one per client)
    assert orchestration.ssl.SSLContext is counting.real.SSLContext  # the rest of the module is the real one
    with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):  # modifies its context: never shared
        orchestration.SyncPrefectClient("http://127.0.0.1:9/api")
        orchestration.SyncPrefectClient("http://127.0.0.1:9/api")
    assert counting.created == 3


def test_task_runs_validate_the_same_prefect_settings_once_per_process(monkeypatch):
    from prefect import context, flow_engine, task_engine
    from prefect.settings import PREFECT_LOGGING_LEVEL, get_current_settings, temporary_settings

    reuse_prefect_settings_contexts()
    reuse_prefect_settings_contexts()  # idempotent: one wrapper
    wrapper = context.hydrated_context
    assert wrapper is task_engine.hydrated_context is flow_engine.hydrated_context
    assert not getattr(wrapper.__wrapped__, "_posepipe_reuses_settings", False)
    built = []
    real = context.SettingsContext

    class Counting(real):
        def __init__(self, **kwargs):
            built.append(kwargs)
            super().__init__(**kwargs)

    with temporary_settings({PREFECT_LOGGING_LEVEL: "ERROR"}):
        serialized = context.serialize_context()
    with temporary_settings({PREFECT_LOGGING_LEVEL: "CRITICAL"}):
        other = context.serialize_context()
    monkeypatch.setattr(context, "SettingsContext", Counting)
    assert get_current_settings().logging.level != "ERROR"
    client = object()  # no flow run to restore: a stand-in, so that no API server is started for one
    for _ in range(3):
        with task_engine.hydrated_context(serialized, client):  # what a task run on a worker does
            assert get_current_settings().logging.level == "ERROR"  # the flow's settings are in effect
            with wrapper(serialized, client):  # a copy nests inside another
                assert get_current_settings().logging.level == "ERROR"
        assert get_current_settings().logging.level != "ERROR"  # and are left on exit
    assert len(built) == 1  # validated once (it was once per task run)
    with wrapper(other, client):
        assert get_current_settings().logging.level == "CRITICAL"  # other settings: their own context
    assert len(built) == 2
    with wrapper({}):  # nothing to restore: Prefect's own code path
        pass


def _worker_view() -> tuple[bool, str | None]:
    import os

    import dask as worker_dask

    return worker_dask.config.get("distributed.worker.profile.enabled"), os.environ.get("MALLOC_TRIM_THRESHOLD_")


@pytest.mark.slow
def test_started_workers_have_no_profiler_and_glibc_default_trimming(monkeypatch):
    monkeypatch.delenv("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED", raising=False)
    with dask.config.set({"distributed.worker.profile.enabled": True, "distributed.nanny.pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": 65536, "OMP_NUM_THREADS": 1}}):
        tune_worker_environment()
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
            (view,) = client.run(_worker_view).values()
        assert view == (False, None)
        assert dask.config.get("distributed.nanny.pre-spawn-environ") == {"OMP_NUM_THREADS": 1}  # the rest is kept


def _worker_threads() -> tuple[int | None, int | None]:
    from tasks.keypoints.api import inference_threads

    return inference_threads()


@pytest.mark.slow
def test_each_started_worker_gets_its_share_of_the_cores_for_inference(monkeypatch):
    import flows.runtime

    monkeypatch.delenv("POSEPIPE_INTRA_OP_THREADS", raising=False)
    monkeypatch.delenv("POSEPIPE_INTER_OP_THREADS", raising=False)
    monkeypatch.setattr(flows.runtime, "_USER_THREADS", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {}}):
        assert share_inference_threads(2, 1, cores=4) == {"POSEPIPE_INTRA_OP_THREADS": "2", "POSEPIPE_INTER_OP_THREADS": "2"}
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
            views = list(client.run(_worker_threads).values())
        assert views == [(2, 2), (2, 2)]
        assert share_inference_threads(3, 2, cores=2) == {"POSEPIPE_INTRA_OP_THREADS": "1", "POSEPIPE_INTER_OP_THREADS": "1"}
        # a user's own setting wins: it is inherited, not overwritten
        monkeypatch.setenv("POSEPIPE_INTRA_OP_THREADS", "3")
        monkeypatch.setattr(flows.runtime, "_USER_THREADS", None)
        assert share_inference_threads(2, 1, cores=4) == {"POSEPIPE_INTER_OP_THREADS": "2"}
        assert "POSEPIPE_INTRA_OP_THREADS" not in dask.config.get("distributed.nanny.pre-spawn-environ")
    monkeypatch.setenv("POSEPIPE_INTRA_OP_THREADS", "zero")
    from schemas.errors import ConfigError
    from tasks.keypoints.api import inference_threads

    with pytest.raises(ConfigError, match="not a positive integer"):
        inference_threads()


def test_an_explicit_profiler_setting_is_respected(monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED", "true")
    with dask.config.set({"distributed.worker.profile.enabled": True}):
        tune_worker_environment()
        assert dask.config.get("distributed.worker.profile.enabled") is True


@pytest.mark.slow
def test_cli_workers_use_the_cli_s_ephemeral_api(tmp_path):
    """A user's shell has no PREFECT_API_URL: the CLI starts one ephemeral API and its workers use it.

    Before, every worker process started an ephemeral server of its own on its first task (~5 s
    of CPU each, and their task runs went to databases that died with the workers).
    """
    from tasks.synthetic import write_synthetic_coco

    src = write_synthetic_coco(tmp_path / "src", {"train": 3}, seed=4)
    env = dict(os.environ, PREFECT_LOGGING_LEVEL="INFO", PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.pop("PREFECT_API_URL", None)
    args = [str(Path(sys.executable).parent / "posepipe"), "rebuild", "coco", "--source", str(src), "--root", str(tmp_path / "root"), "--workers", "2", "--shard-size", "2"]
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert out.count("Starting temporary server") == 1, out
    assert "Task run 'shard-train-" in out  # the workers did run tasks

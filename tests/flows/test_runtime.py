import dask
import pytest
from distributed import Client, LocalCluster

from flows.runtime import tune_worker_environment


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


def test_an_explicit_profiler_setting_is_respected(monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED", "true")
    with dask.config.set({"distributed.worker.profile.enabled": True}):
        tune_worker_environment()
        assert dask.config.get("distributed.worker.profile.enabled") is True

"""The rebuild flow end to end under Prefect's test harness with a real Dask LocalCluster."""

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

from flows.rebuild import run_rebuild
from storage.fs import filesystem
from storage.hdf5 import read_hdf5_rows

pytestmark = pytest.mark.slow


def _files(version_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(version_dir)) for p in version_dir.rglob("*") if p.is_file() and p.name != "_run.json")


def test_rebuild_real_coco_mini_is_deterministic_across_worker_counts(prefect_harness, shared_data, tmp_path):
    source = str(shared_data / "coco/coco_mini_val2017")
    kw = {"dataset": "coco", "source": source, "shard_size": 16}
    two = run_rebuild(workers=2, root=str(tmp_path / "two"), **kw)
    assert two["counts"] == {"val": 68} and two["rejected"] == 50 and two["parsed"] == 118
    assert two["rejects_by_reason"] == {"crowd": 1, "zero_keypoints": 49} and two["validation"] == "passed"
    one = run_rebuild(workers=1, root=str(tmp_path / "one"), **kw)
    assert one["version"] == two["version"]
    d1, d2 = Path(one["location"]), Path(two["location"])
    assert _files(d1) == _files(d2) and "val/part-00004.parquet" in _files(d1) and "_pixels/val/part-00004.h5" in _files(d1)
    assert (d1 / "_manifest.json").read_bytes() == (d2 / "_manifest.json").read_bytes()
    for name in _files(d1):
        if name.endswith(".parquet"):
            assert filecmp.cmp(d1 / name, d2 / name, shallow=False), name
        elif name.endswith(".h5"):
            fs, _ = filesystem(str(tmp_path))
            ids1, px1 = read_hdf5_rows(fs, str(d1 / name))
            ids2, px2 = read_hdf5_rows(fs, str(d2 / name))
            assert ids1 == ids2 and np.array_equal(px1, px2), name
    assert (tmp_path / "two/datasets/coco/LATEST").read_text().strip() == two["version"]
    # an unchanged rebuild reuses the version without reprocessing
    mtime = (d2 / "_pixels/val/part-00000.h5").stat().st_mtime_ns
    again = run_rebuild(workers=2, root=str(tmp_path / "two"), **kw)
    assert again["reused"] and again["version"] == two["version"]
    assert (d2 / "_pixels/val/part-00000.h5").stat().st_mtime_ns == mtime
    manifest = json.loads((d2 / "_manifest.json").read_text())
    assert manifest["validation"]["success"] and len(manifest["shards"]) == 5
    # every newly committed version announced itself once as a Prefect event; the reused one did not
    events = _committed_events(two["version"])
    roots = sorted(e["resource"]["posepipe.root"] for e in events)
    assert roots == sorted([str(tmp_path / "one"), str(tmp_path / "two")]), events
    assert {e["resource"]["prefect.resource.id"] for e in events} == {"posepipe.dataset.coco"}
    assert all(e["payload"]["written"] == 68 for e in events)


def _committed_events(version: str, wait_s: float = 30.0) -> list[dict]:
    """``posepipe.dataset.committed`` events of ``version`` read back through the API (they arrive asynchronously)."""
    import time

    from prefect.client.orchestration import get_client

    from flows.rebuild import COMMITTED_EVENT

    body = {"filter": {"event": {"name": [COMMITTED_EVENT]}, "any_resource": {"labels": {"posepipe.version": [version]}}}, "limit": 50}
    def read() -> list[dict]:
        with get_client(sync_client=True) as client:
            return client.request("POST", "/events/filter", json=body).json()["events"]

    deadline = time.monotonic() + wait_s
    while len(read()) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2.0)  # a (wrong) event from the reused rebuild, sent last, would have arrived by now
    return read()

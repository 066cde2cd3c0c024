"""Extraction flow end to end: Prefect test harness + a real 2-process LocalCluster (slow, ~30 s)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks.extract.plan import BackendSpec, ClipTask, plan_extract_shards, run_key
from tasks.extract.worker import extract_shard
from tasks.video.sampling import SamplingSpec
from tests.extract.doubles import BLOB
from tests.video.fakes import write_video

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_extract_flow_on_local_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.extract import run_extract

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # worker processes import the test-double backend
    clips = [ClipTask(f"c{i:03d}", str(write_video(tmp_path / f"v{i}.avi", 4 + i % 3, people=1 + i % 2)), {"label": "x", "label_index": 0})
             for i in range(6)]  # fmt: skip
    clips.append(ClipTask("c999", str(tmp_path / "missing.avi")))
    backend, sampling = BackendSpec.create(BLOB), SamplingSpec(mode="every_k", k=2)
    run_dir = str(tmp_path / "keypoints" / "fake" / run_key(backend, sampling))
    shards = plan_extract_shards(clips, run_dir, "fake", backend, sampling, shard_size=3, enforce_bounds=False)
    with prefect_test_harness():
        manifest = run_extract(shards, run_dir, {"dataset": "fake"}, workers=2)
    assert manifest["totals"]["clips"] == 7 and manifest["totals"]["extracted"] == 6
    assert manifest["totals"]["rejected"] == {"video_missing": 1}
    assert [s["index"] for s in manifest["shards"]] == [0, 1, 2]
    assert json.loads(Path(run_dir, "_manifest.json").read_text()) == manifest
    # same bytes as the plain function run in this process, shard by shard
    for spec in shards:
        ref_dir = str(tmp_path / "ref")
        ref = extract_shard(type(spec)(**{**spec.__dict__, "run_dir": ref_dir}))
        assert ref.part_sha256 == manifest["shards"][spec.index]["part_sha256"]
    rows = sum(pq.read_table(f"{run_dir}/part-{i:05d}.parquet").num_rows for i in range(3))
    assert rows == manifest["totals"]["people"] > 0

"""Shard worker: rows, rejects, batching, resume (including after a real kill -9), bounded chunks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from schemas.records import CLIPS_SCHEMA, KEYPOINTS_SCHEMA
from tasks.extract.plan import BackendSpec, ClipTask, plan_extract_shards, run_key
from tasks.extract.worker import extract_clip, extract_shard
from tasks.keypoints.api import FramePoses
from tasks.video.sampling import SamplingSpec
from tests.extract.doubles import BLOB, BlobBackend
from tests.video.fakes import blob_centres, write_video

REPO = Path(__file__).resolve().parents[2]


def _assert_same_rows(a, b) -> None:  # noqa: ANN001
    """Equal tables, NaN (unknown joints) equal to NaN."""
    assert a.drop_columns(["keypoints"]).equals(b.drop_columns(["keypoints"]))
    np.testing.assert_array_equal(np.asarray(a["keypoints"].to_pylist()), np.asarray(b["keypoints"].to_pylist()))


def _clips(tmp_path: Path, n: int = 4, frames: int = 12) -> list[ClipTask]:
    out = []
    for i in range(n):
        path = write_video(tmp_path / "videos" / f"v{i}.avi", frames + i, people=i % 3)
        out.append(ClipTask(f"clip{i:02d}", str(path), {"label": f"L{i % 2}", "label_index": i % 2, "group": "g01"}))
    return out


def _shard(tmp_path: Path, clips: list[ClipTask], backend: BackendSpec | None = None, sampling: SamplingSpec | None = None,
           out: str = "out"):  # fmt: skip
    backend = backend or BackendSpec.create(BLOB)
    sampling = sampling or SamplingSpec()
    run_dir = str(tmp_path / out / run_key(backend, sampling))
    return plan_extract_shards(clips, run_dir, "fake", backend, sampling, shard_size=100)[0], run_dir


def test_rows_match_the_drawn_squares(tmp_path: Path) -> None:
    clips = _clips(tmp_path, n=3)
    spec, run_dir = _shard(tmp_path, clips)
    summary = extract_shard(spec)
    assert (summary.clips, summary.extracted, summary.rejected) == (3, 3, {})
    # clip0: no squares (0 people), clip1: 1 per frame (13 frames), clip2: 2 per frame (14 frames)
    assert summary.frames == 12 + 13 + 14 and summary.people == 13 + 2 * 14 == summary.rows
    table = pq.read_table(f"{run_dir}/part-00000.parquet")
    assert table.schema.equals(KEYPOINTS_SCHEMA, check_metadata=False)
    row = table.filter(pc.equal(table["clip_id"], "clip01")).slice(5, 1).to_pylist()[0]
    ((x, y),) = blob_centres(5, 64, 48, 1)
    assert row["frame_index"] == 5 and row["keypoints"][0] == pytest.approx([x, y, 1.0], abs=0.6)
    assert np.isnan(row["keypoints"][2][0]) and row["keypoints"][2][2] == 0.0
    clips_t = pq.read_table(f"{run_dir}/clips-00000.parquet")
    assert clips_t.schema.equals(CLIPS_SCHEMA, check_metadata=False)
    c0 = clips_t.to_pylist()[0]
    # zero detections are valid: clip00 is extracted with all its frames sampled and no keypoint rows
    assert c0["clip_id"] == "clip00" and c0["frames_decoded"] == 12 and c0["sampled_frame_indices"] == list(range(12))
    assert c0["fps"] == 25.0 and c0["frames_declared"] == 12 and c0["decoder"].startswith("pyav-")
    assert c0["label"] == "L0" and c0["dataset"] == "fake"


def test_bad_clips_are_rejected_and_the_shard_goes_on(tmp_path: Path) -> None:
    clips = _clips(tmp_path, n=2)
    (tmp_path / "empty.avi").write_bytes(b"")
    (tmp_path / "junk.avi").write_bytes(b"RIFF" + bytes(300))
    data = write_video(tmp_path / "full.avi", 30).read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    clips += [ClipTask("bad_empty", str(tmp_path / "empty.avi")), ClipTask("bad_junk", str(tmp_path / "junk.avi")),
              ClipTask("bad_missing", str(tmp_path / "nope.avi")), ClipTask("bad_cut", str(tmp_path / "cut.avi")),
              ClipTask("crowd", str(write_video(tmp_path / "crowd.avi", 5, people=3)))]  # fmt: skip
    backend = BackendSpec.create(BLOB, fail_above_people=2)
    spec, run_dir = _shard(tmp_path, clips, backend)
    summary = extract_shard(spec)
    assert summary.rejected == {"inference_failed": 1, "video_empty": 1, "video_missing": 1, "video_truncated": 1,
                                "video_unreadable": 1}  # fmt: skip
    assert summary.extracted == 2
    rejects = pq.read_table(f"{run_dir}/rejects-00000.parquet").to_pylist()
    written = pq.read_table(f"{run_dir}/clips-00000.parquet").num_rows
    assert written + len(rejects) == len(clips)  # written + rejected = parsed
    assert {r["source_key"] for r in rejects} == {"bad_empty", "bad_junk", "bad_missing", "bad_cut", "crowd"}
    assert all(r["stage"] == "extract" and r["detail"] for r in rejects)
    # the truncated clip's partial frames did not leak into the keypoints
    assert "bad_cut" not in set(pq.read_table(f"{run_dir}/part-00000.parquet")["clip_id"].to_pylist())


def test_batches_respect_max_batch_and_do_not_change_results(tmp_path: Path) -> None:
    clip = _clips(tmp_path, n=2, frames=19)[1]
    results = {}
    for batch in (1, 8):
        backend = BlobBackend(batch=batch)
        res = extract_clip(backend, clip, SamplingSpec(), chunk_frames=5)
        assert max(backend.calls) <= batch and sum(backend.calls) == 20
        results[batch] = res.keypoints
    _assert_same_rows(results[1], results[8])


def test_a_requested_batch_reaches_the_backend_and_changes_no_result_or_key(tmp_path: Path) -> None:
    import dataclasses

    clips = _clips(tmp_path, n=2, frames=19)
    spec, run_dir = _shard(tmp_path, clips)
    backend = BlobBackend(batch=64)
    default = extract_shard(spec, estimator=backend)
    assert backend.calls == [19, 20] and default.extracted == 2  # default: the backend's max_batch (64), within a 32-frame chunk
    part = pq.read_table(Path(run_dir, "part-00000.parquet"))
    three = dataclasses.replace(spec, batch=3, run_dir=str(tmp_path / "b3"), cache_dir=str(tmp_path / "b3-cache"))
    backend.calls.clear()
    extract_shard(three, estimator=backend)
    assert max(backend.calls) == 3
    _assert_same_rows(part, pq.read_table(tmp_path / "b3" / "part-00000.parquet"))
    # the batch is not part of the clip keys: a run at another batch resumes this one's clips
    resumed = extract_shard(dataclasses.replace(spec, batch=5), estimator=backend)
    assert resumed.resumed == 2


def test_a_batch_the_model_cannot_run_is_refused_naming_why(tmp_path: Path) -> None:
    import dataclasses

    from schemas.errors import ConfigError

    class BatchDependent(BlobBackend):
        batch_invariant = False
        batch_dependent_nodes = ("net/bn1/FusedBatchNorm", "net/bn2/FusedBatchNorm")

    clips = _clips(tmp_path, n=1)
    spec, _ = _shard(tmp_path, clips)
    backend = BatchDependent(batch=1)
    with pytest.raises(ConfigError, match=r"cannot run batch 4.*2 node\(s\).*net/bn1/FusedBatchNorm"):
        extract_shard(dataclasses.replace(spec, batch=4), estimator=backend)
    with pytest.raises(ConfigError, match="batch must be >= 1"):
        backend.choose_batch(0)
    assert backend.choose_batch(None) == 1 and backend.choose_batch(1) == 1


def test_sampling_recorded(tmp_path: Path) -> None:
    clip = _clips(tmp_path, n=2, frames=20)[1]
    res = extract_clip(BlobBackend(), clip, SamplingSpec(mode="every_k", k=7))
    assert res.clip_row is not None and res.clip_row["sampled_frame_indices"] == [0, 7, 14]
    assert res.clip_row["frames_decoded"] == 21 and sorted(set(res.keypoints["frame_index"].to_pylist())) == [0, 7, 14]
    uni = extract_clip(BlobBackend(), clip, SamplingSpec(mode="uniform", num_frames=30, seed=1))
    seq = uni.clip_row["sampled_frame_indices"]  # type: ignore[index]
    assert len(seq) == 30 and sorted(set(uni.keypoints["frame_index"].to_pylist())) == sorted(set(seq))


def test_resume_skips_marked_clips_and_gives_identical_bytes(tmp_path: Path) -> None:
    clips = _clips(tmp_path, n=4)
    spec, run_dir = _shard(tmp_path, clips)
    first = extract_shard(spec)
    part = Path(run_dir, "part-00000.parquet").read_bytes()
    # drop one clip's marker: only that clip is redone
    markers = sorted(Path(run_dir, "_done").glob("*.json"))
    markers[0].unlink()
    again = extract_shard(spec)
    assert again.resumed == 3 and again.rows == first.rows
    assert Path(run_dir, "part-00000.parquet").read_bytes() == part
    # a different sampling is a different run folder and different clip keys
    other, other_dir = _shard(tmp_path, clips, sampling=SamplingSpec(mode="every_k", k=2))
    assert other_dir != run_dir and extract_shard(other).resumed == 0


def test_resume_after_kill_minus_9(tmp_path: Path) -> None:
    """A real worker process killed mid-shard, rerun: same rows as an uninterrupted run."""
    clips = _clips(tmp_path, n=6, frames=10)
    slow = BackendSpec.create(BLOB, sleep_s=0.03)
    spec, run_dir = _shard(tmp_path, clips, slow, out="killed")
    script = (
        "import pickle, sys; from tasks.extract.worker import extract_shard; "
        "extract_shard(pickle.loads(sys.stdin.buffer.read()))"
    )
    import pickle

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, cwd=REPO, env=env)
    assert proc.stdin is not None
    proc.stdin.write(pickle.dumps(spec))
    proc.stdin.close()
    done_dir = Path(run_dir, "_done")
    deadline = time.monotonic() + 120
    while len(list(done_dir.glob("*.json"))) < 2:
        assert proc.poll() is None, "worker finished before it could be killed"
        assert time.monotonic() < deadline, "no clip finished in time"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(done_dir.glob("*.json")))
    assert 2 <= finished < 6 and not Path(run_dir, "part-00000.parquet").exists()
    resumed = extract_shard(spec)
    assert resumed.resumed == finished and resumed.extracted == 6
    ref_spec, ref_dir = _shard(tmp_path, clips, slow, out="reference")
    extract_shard(ref_spec)
    killed_t = pq.read_table(f"{run_dir}/part-00000.parquet")
    ref_t = pq.read_table(f"{ref_dir}/part-00000.parquet")
    _assert_same_rows(killed_t, ref_t)
    keys = list(
        zip(
            killed_t["clip_id"].to_pylist(),
            killed_t["frame_index"].to_pylist(),
            killed_t["person_index"].to_pylist(),
            strict=True,
        )
    )
    assert len(keys) == len(set(keys))  # no duplicate frame/person
    frames = pq.read_table(f"{run_dir}/clips-00000.parquet").to_pylist()
    assert [len(c["sampled_frame_indices"]) for c in frames] == [10 + i for i in range(6)]  # no missing frame
    assert Path(run_dir, "part-00000.parquet").read_bytes() == Path(ref_dir, "part-00000.parquet").read_bytes()
    assert json.loads(Path(run_dir, "_shards/00000.json").read_text())["resumed"] == finished


def test_poses_table_round_trip() -> None:
    from tasks.extract.worker import poses_table

    kp = np.arange(2 * 18 * 3, dtype=np.float32).reshape(2, 18, 3)
    poses = [
        FramePoses(kp, np.array([0.5, 0.25], np.float32)),
        FramePoses(np.zeros((0, 18, 3), np.float32), np.zeros(0, np.float32)),
    ]
    t = poses_table("c", [3, 4], poses, "openpose18", "b", "m")
    assert t.num_rows == 2 and t["frame_index"].to_pylist() == [3, 3] and t["person_index"].to_pylist() == [0, 1]
    assert np.asarray(t["keypoints"].to_pylist()[1], np.float32).tolist() == kp[1].tolist()
    assert t["person_score"].to_pylist() == [0.5, 0.25]

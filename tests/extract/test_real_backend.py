"""Integration with the real tf-openpose backend on the real UCF101 clip (slow: TensorFlow import)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.extract.plan import BackendSpec, ClipTask, load_estimator, plan_extract_shards, run_key
from tasks.extract.worker import extract_shard
from tasks.video.decode import VideoReader
from tasks.video.sampling import SamplingSpec


@pytest.mark.slow
def test_tf_openpose_on_real_ucf101_clip(shared_data: Path, tmp_path: Path) -> None:
    model = shared_data / "models/tf_pose_mobilenet_v2_small/graph_opt.pb"
    video = shared_data / "media/videos/mmaction2_tests_test.avi"
    spec = BackendSpec.create("tf-openpose", model)
    sampling = SamplingSpec(mode="uniform", num_frames=4, seed=0)
    clip = ClipTask("v_ApplyEyeMakeup_g01_c01", str(video), {"label": "ApplyEyeMakeup", "label_index": 0})
    run_dir = str(tmp_path / run_key(spec, sampling))
    shard = plan_extract_shards([clip], run_dir, "ucf101", spec, sampling, shard_size=1, enforce_bounds=False)[0]
    summary = extract_shard(shard)
    est = load_estimator(spec)
    assert summary.extracted == 1 and summary.rejected == {} and summary.frames == 4
    row = pq.read_table(f"{run_dir}/clips-00000.parquet").to_pylist()[0]
    assert row["frames_decoded"] <= 164 and row["frames_declared"] == 164 and row["fps"] == 25.0
    assert len(row["sampled_frame_indices"]) == 4
    table = pq.read_table(f"{run_dir}/part-00000.parquet")
    assert set(table["backend"].to_pylist()) <= {"tf-openpose"} and set(table["skeleton"].to_pylist()) <= {"openpose18"}
    assert set(table["model_sha256"].to_pylist()) <= {est.model_sha256}
    # the pipeline's rows equal the backend's own predict() on the same decoded frames
    wanted = sorted(set(row["sampled_frame_indices"]))
    frames = [f for c in VideoReader(video).chunks() for i, f in zip(c.indices, c.frames, strict=True) if i in wanted]
    direct = est.predict(frames)
    assert table.num_rows == sum(p.num_people for p in direct)
    if table.num_rows:
        got = np.asarray(table["keypoints"].to_pylist(), np.float32)
        want = np.concatenate([p.keypoints for p in direct if p.num_people])
        np.testing.assert_array_equal(got, want)
        finite = got[np.isfinite(got[..., 0])]
        assert (finite[:, 0] >= 0).all() and (finite[:, 0] < 320).all() and (finite[:, 1] < 240).all()

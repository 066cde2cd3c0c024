"""The real videos of ``../shared/data/media`` end to end with the real tf-openpose backend:
UCF101-layout extraction -> sequence dataset -> gate -> PYSKL annotations, then ``posepipe train
action-gru`` and ``posepipe evaluate model`` on it as commands (slow: TensorFlow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tasks import rebuild as stages
from tasks.extract.plan import BackendSpec
from tasks.sequences.pyskl import pyskl_payload
from tasks.sequences.read import open_sequences
from tasks.video.sampling import SamplingSpec
from tests.sequences.fakes import extract, write_ucf101

#: The six real clips, as a two-class UCF101 layout (groups 1 and 8: both sides of splits 1 and 2).
REAL = {
    ("ApplyEyeMakeup", 1, 1): "media/videos/mmaction2_tests_test.avi",
    ("ApplyEyeMakeup", 8, 1): "media/videos/mmpose_demo.mp4",
    ("ApplyEyeMakeup", 8, 2): "media/openpose_examples/video.avi",
    ("Punch", 1, 1): "media/videos/mmaction2_demo.mp4",
    ("Punch", 1, 2): "media/videos/pyskl_ntu_sample.avi",
    ("Punch", 8, 1): "media/videos/mmaction2_demo_skeleton.mp4",
}


@pytest.mark.slow
def test_real_videos_extract_to_a_gated_sequence_dataset(shared_data: Path, tmp_path: Path) -> None:
    t0 = time.perf_counter()

    def link(path: Path, *_: int) -> Path:
        cls, g, c = path.parent.name, int(path.stem.split("_g")[1][:2]), int(path.stem.split("_c")[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(shared_data / REAL[(cls, g, c)])
        return path

    src = write_ucf101(tmp_path / "ucf101", [(cls, g, c, 0, 0) for cls, g, c in REAL], video=link)
    model = shared_data / "models/tf_pose_mobilenet_v2_small/graph_opt.pb"
    run = extract(src, tmp_path / "root", SamplingSpec(mode="uniform", num_frames=4, seed=0), BackendSpec.create("tf-openpose", model))
    s = stages.run(stages.RebuildRequest("ucf101-keypoints", str(tmp_path / "root"), str(run)), map)
    assert s["validation"] == "passed" and s["parsed"] == 6
    assert s["written"] + s["rejected"] == 6 and set(s["rejects_by_reason"]) <= {"no_person"}
    v = open_sequences(str(tmp_path / "root"), "ucf101-keypoints")
    clips = {c.clip_id: c for c in v.clips()}
    assert s["written"] >= 4  # people are found in most of these clips
    two = clips.get("v_Punch_g01_c01")  # mmaction2's arm-wrestling demo: two people
    if two is not None:
        assert two.sequence.shape[1] == 2 and two.frame_hw == (256, 340)
    for c in clips.values():
        t, m, j, _ = c.sequence.shape
        assert t == len(c.frame_indices) <= 4 and 1 <= m <= 2 and j == 18 and c.skeleton == "openpose18"
        assert (np.diff(c.frame_indices) > 0).all()
    payload = pyskl_payload(v.clips())
    assert len(payload["annotations"]) == s["written"] and set(payload["split"]) >= {"train1", "test1"}
    _train_and_evaluate_action_gru(tmp_path / "root", set(clips))
    print(f"real videos end to end: {time.perf_counter() - t0:.1f} s, {s['written']} sequences, rejects {s['rejects_by_reason']}")


def _train_and_evaluate_action_gru(root: Path, clip_ids: set[str]) -> None:
    """``posepipe train action-gru`` (tiny, 2 epochs, split1) then ``posepipe evaluate model``: metrics and per-clip predictions."""
    import pyarrow.parquet as pq

    repo = Path(__file__).resolve().parents[2]
    posepipe = str(Path(sys.executable).parent / "posepipe")
    env = {**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "200"}

    def cli(*args: str) -> dict:
        done = subprocess.run([posepipe, *args, "--root", str(root), "--json"], env=env, capture_output=True, text=True, timeout=600, cwd=repo)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout[done.stdout.index("{") :])

    trained = cli("train", "action-gru", "--dataset", "ucf101-keypoints", "--epochs", "2", "-p", "num_frames=4")
    metrics = trained["metrics"]
    assert metrics["split"] == "split1:test" and {"top1", "top5", "macro_f1", "mean_class_accuracy", "confusion_matrix"} <= set(metrics)
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["num_samples"] > 0
    folder = Path(trained["dir"])
    predicted = pq.read_table(folder / "predictions.parquet").column("sample_id").to_pylist()
    assert set(predicted) <= clip_ids and len(predicted) == metrics["num_samples"]
    assert (folder / "logreg.npz").is_file() and (folder / "plots" / "confusion_matrix.png").is_file()
    evaluated = cli("evaluate", "model", f"action-gru@{trained['model_version']}", "--dataset", "ucf101-keypoints")
    assert evaluated["metrics"]["top1"] == metrics["top1"] and evaluated["metrics"]["macro_f1"] == metrics["macro_f1"]

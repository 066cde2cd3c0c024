"""``posepipe rebuild NAME-keypoints --from-extract RUN`` and ``posepipe export pyskl``, run as the installed
command in its own process (neither starts Prefect here: the version exists, so the rebuild is answered first)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

from tasks import rebuild as stages
from tests.sequences.fakes import extract, write_ucf101

REPO = Path(__file__).resolve().parents[2]
POSEPIPE = str(Path(sys.executable).parent / "posepipe")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([POSEPIPE, *args], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def pyskl_split(data: dict, split: str) -> list[dict]:
    """What PYSKL's ``PoseDataset.load_annotations`` does with ``split=...`` (pyskl/datasets/pose_dataset.py)."""
    split_ids, annotations = data["split"], data["annotations"]
    identifier = "filename" if "filename" in annotations[0] else "frame_dir"
    wanted = set(split_ids[split])
    return [x for x in annotations if x[identifier] in wanted]


def test_rebuild_from_extract_and_export_pyskl(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run = extract(write_ucf101(tmp_path / "ucf101"), root)
    built = stages.run(stages.RebuildRequest("ucf101-keypoints", str(root), str(run)), map)
    # --from-extract takes the run key (or the folder); an existing version is answered before Prefect starts
    done = _cli("rebuild", "ucf101-keypoints", "--from-extract", run.name, "--root", str(root), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["reused"] is True and summary["version"] == built["version"]
    out = tmp_path / "ucf101_2d.pkl"
    done = _cli("export", "pyskl", f"ucf101-keypoints@{built['version']}", "--out", str(out), "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert "4 clips" in done.stdout and "train1 2" in done.stdout
    with open(out, "rb") as fh:
        data = pickle.load(fh)
    # groups 1 and 8: tested in splits 1 and 2 (split k tests groups 7(k-1)+1..7k), trained on everywhere else
    assert {k: len(v) for k, v in data["split"].items()} == {"test1": 2, "test2": 2, "train1": 2, "train2": 2, "train3": 4}
    test1 = pyskl_split(data, "test1")
    assert sorted(a["frame_dir"] for a in test1) == ["v_ApplyEyeMakeup_g01_c01", "v_Basketball_g01_c01"]
    for a in data["annotations"]:
        m, t, v, c = a["keypoint"].shape
        assert (v, c) == (18, 2) and t == a["total_frames"] and a["keypoint"].dtype == np.float32
        assert a["keypoint_score"].shape == (m, t, v) and a["keypoint_score"].dtype == np.float32
        assert a["img_shape"] == a["original_shape"] == (48, 64) and a["label"] in (0, 1)
        assert np.isfinite(a["keypoint"]).all() and ((a["keypoint_score"] >= 0) & (a["keypoint_score"] <= 1)).all()
    two = next(a for a in data["annotations"] if a["frame_dir"] == "v_ApplyEyeMakeup_g08_c01")
    assert two["keypoint"].shape == (2, 10, 18, 2)
    missing = _cli("export", "pyskl", "ucf101-keypoints@v-nope", "--out", str(out), "--root", str(root))
    assert missing.returncode == 2 and "error:" in missing.stderr

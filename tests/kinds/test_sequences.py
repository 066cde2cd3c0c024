"""The ``sequences`` kind end to end: an extraction run (generated videos, test-double backend) becomes a
gated, content-addressed sequence dataset; every refused class is a real corrupted run file."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from schemas.errors import ConfigError, SourceError, ValidationFailedError
from storage.fs import filesystem
from storage.manifest import read_latest
from storage.reader import open_version
from tasks import rebuild as stages
from tasks.sequences.read import open_sequences
from tests.sequences.fakes import extract, rewrite, write_ucf101

DATASET = "ucf101-keypoints"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One UCF101-layout source and its extraction run, copied by each test."""
    base = tmp_path_factory.mktemp("seq")
    src = write_ucf101(base / "ucf101")
    extract(src, base / "root")
    return base


@pytest.fixture
def run(template: Path, tmp_path: Path) -> Path:
    """A private copy of the template's root; returns its extraction run folder."""
    shutil.copytree(template / "root", tmp_path / "root")
    (run_dir,) = (tmp_path / "root" / "keypoints" / "ucf101").iterdir()
    return run_dir


def rebuild(run_dir: Path, **params: Any) -> dict[str, Any]:
    return stages.run(stages.RebuildRequest(DATASET, str(run_dir.parents[2]), str(run_dir), adapter_params=params), map)


def test_a_run_becomes_a_gated_sequence_version(run: Path) -> None:
    s = rebuild(run)
    assert s["validation"] == "passed" and s["counts"] == {"sequences": 4}
    assert s["parsed"] == 5 and s["rejects_by_reason"] == {"no_person": 1}  # the clip with nobody: a reject, not zeros
    root = str(run.parents[2])
    v = open_sequences(root, DATASET)
    clips = {c.clip_id: c for c in v.clips()}
    assert "v_Basketball_g08_c02" not in clips
    c = clips["v_ApplyEyeMakeup_g08_c01"]
    assert c.sequence.shape == (10, 2, 18, 3) and c.frame_hw == (48, 64) and c.label == "ApplyEyeMakeup"
    assert c.folds == {"split1": "train", "split2": "test", "split3": "train"} and c.frame_indices.tolist() == list(range(10))
    np.testing.assert_allclose(clips["v_Basketball_g01_c01"].sequence[0, 0, :2], [[8, 8, 1], [8, 18, 0.5]])  # the double's nose + neck
    x, y, ids = v.arrays(num_frames=6, max_people=2)
    assert x.shape == (4, 6, 2, 18, 3) and y.tolist() == [0, 0, 1, 1] and np.isfinite(x).all()
    assert len(list(v.clips("split1", "test"))) == 2
    # skeleton images: the composite is each row's crop (image versions' layout), per-frame images beside it
    fs, rpath = filesystem(root)
    m = v.manifest
    assert m["record"] == "sequences" and set(m["input_checksums"]) == {"clips-00000.parquet", "clip_keys", "keypoint_files"}
    version_dir = Path(rpath) / "datasets" / DATASET / s["version"]
    with h5py.File(version_dir / "_pixels" / "sequences" / "part-00000.h5") as h5:
        assert h5["images"].shape == (4, 64, 64, 3) and h5["frames"].shape == (8 + 10 + 9 + 8, 64, 64, 3)
    rows = pq.read_table(version_dir / "sequences" / "part-00000.parquet").to_pylist()
    assert [r["frames_offset"] for r in rows] == [0, 8, 18, 27]
    crops = open_version(root, DATASET).crops("sequences", [0, 1])
    assert crops.shape == (2, 64, 64, 3) and crops.any()
    # content-addressed: unchanged -> reused; a changed keypoint file -> a new version
    assert rebuild(run)["reused"] is True
    rewrite(run / "part-00000.parquet", lambda rs: [{**r, "person_score": 0.5} for r in rs])
    assert rebuild(run)["version"] != s["version"]
    assert rebuild(run, max_people=1)["version"] != s["version"]


def _first_clip(rows: list[dict[str, Any]], clip_id: str = "v_ApplyEyeMakeup_g01_c01") -> dict[str, Any]:
    return next(r for r in rows if r["clip_id"] == clip_id)


def _edit_keypoint(fn: Any) -> Any:
    def edit(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        r = _first_clip(rows)
        kp = [list(j) for j in r["keypoints"]]
        fn(kp)
        r["keypoints"] = kp
        return rows

    return edit


def _edit_clip(clip_id: str = "v_ApplyEyeMakeup_g01_c01", **changes: Any) -> Any:
    def edit(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _first_clip(rows, clip_id).update(changes)
        return rows

    return edit


def _set(j: int, k: int, value: float) -> Any:
    def fn(kp: list[list[float]]) -> None:
        kp[j][k] = value

    return fn


def _subjects(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        r["subject"] = "S01" if r["clip_id"] in ("v_ApplyEyeMakeup_g01_c01", "v_Basketball_g08_c01") else "S02"
    return rows


SPLIT1_BOTH = [("split1", "train"), ("split1", "test"), ("split2", "train"), ("split3", "train")]
REFUSED = {
    "score_above_one": ("part", _edit_keypoint(_set(0, 2, 1.5)), "scores_in_unit_interval"),
    "outside_frame": ("part", _edit_keypoint(_set(1, 0, 500.0)), "keypoints_inside_frame"),
    "frames_not_increasing": ("clips", _edit_clip(sampled_frame_indices=[0, 2, 1, 3, 4, 5, 6, 7]), "frame_indices_strictly_increasing"),
    "frames_past_decoded": ("clips", _edit_clip(frames_decoded=4), "frame_indices_within_frames_decoded"),
    "clip_in_two_splits_of_a_fold": ("clips", _edit_clip(folds=SPLIT1_BOTH), "one_side_per_fold"),
    "group_cut_by_a_fold": ("clips", _edit_clip("v_Basketball_g08_c01", folds=[("split1", "test"), ("split2", "test"), ("split3", "train")]), "folds_never_cut_a_group"),
    "subject_cut_by_a_fold": ("clips", _subjects, "folds_never_cut_a_subject"),
    "label_unknown": ("clips", _edit_clip(label="", label_index=-1), "labels_known"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_gate_refuses_each_bad_class(run: Path, case: str) -> None:
    which, edit, check = REFUSED[case]
    rewrite(run / f"{which}-00000.parquet", edit)
    with pytest.raises(ValidationFailedError, match=check) as err:
        rebuild(run)
    assert "LATEST was not moved" in err.value.message
    fs, rpath = filesystem(str(run.parents[2]))
    assert read_latest(fs, rpath, DATASET) is None


def test_refusals_before_anything_is_built(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="extraction run of 'ucf101'"):
        stages.run(stages.RebuildRequest("mhad-keypoints", str(run.parents[2]), str(run)), map)
    with pytest.raises(SourceError, match="not a finished extraction run"):
        stages.run(stages.RebuildRequest(DATASET, str(tmp_path / "r2"), str(tmp_path)), map)
    summary = run / "_shards" / "00000.json"
    summary.write_text(summary.read_text().replace('"clip_frame_hw"', '"old_field"'))
    with pytest.raises(SourceError, match="rerun the same `posepipe extract` command"):
        rebuild(run)

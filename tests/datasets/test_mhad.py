"""Berkeley MHAD adapter on generated frame folders (and video files) in the published layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from schemas.errors import ConfigError, SourceError
from tasks.datasets import get_adapter
from tasks.datasets.mhad import MHADParams, frame_glob, sequence_dir
from tests.video.fakes import write_frame_folder, write_video


def test_paths_follow_the_published_names() -> None:
    p = MHADParams(modality="camera", cluster=2, camera=3)
    assert sequence_dir(p, 4, 8, 5) == "Camera/Cluster02/Cam03/S04/A08/R05"
    assert frame_glob(p, 4, 8, 5) == "img_l02_c03_s04_a08_r05_*.pgm"
    k = MHADParams(modality="kinect", camera=2)
    assert sequence_dir(k, 12, 11, 1) == "Kinect/Kin02/S12/A11/R01"
    assert frame_glob(k, 12, 11, 1) == "kin_k02_s12_a11_r01_color_*.ppm"


def test_full_enumeration_with_frames_videos_and_missing(tmp_path: Path) -> None:
    p = MHADParams()
    write_frame_folder(tmp_path / sequence_dir(p, 1, 1, 1), "img_l01_c01_s01_a01_r01_{:05d}.pgm", 3)
    write_frame_folder(tmp_path / sequence_dir(p, 8, 11, 2), "img_l01_c01_s08_a11_r02_{:05d}.pgm", 2)
    write_video(tmp_path / (sequence_dir(p, 2, 3, 4) + ".avi"), 2)
    (tmp_path / sequence_dir(p, 3, 1, 1)).mkdir(parents=True)  # an empty sequence folder
    adapter = get_adapter("mhad")
    result = adapter.parse(tmp_path, adapter.make_params({}))
    assert result.parsed == 660  # 12 subjects x 11 actions x 5 repetitions
    rows = {r["clip_id"]: r for r in result.records.to_pylist()}
    assert sorted(rows) == [
        "camera_cluster01_cam01_s01_a01_r01", "camera_cluster01_cam01_s02_a03_r04", "camera_cluster01_cam01_s08_a11_r02",
    ]  # fmt: skip
    first = rows["camera_cluster01_cam01_s01_a01_r01"]
    assert first["video_path"] == "Camera/Cluster01/Cam01/S01/A01/R01/img_l01_c01_s01_a01_r01_*.pgm"
    assert first["label"] == "jumping_in_place" and first["label_index"] == 0  # A01 -> 0
    assert dict(first["folds"]) == {"subject": "train"} and first["subject"] == "S01"
    last = rows["camera_cluster01_cam01_s08_a11_r02"]
    assert last["label"] == "stand_up" and last["label_index"] == 10 and dict(last["folds"]) == {"subject": "test"}
    assert rows["camera_cluster01_cam01_s02_a03_r04"]["video_path"] == "Camera/Cluster01/Cam01/S02/A03/R04.avi"
    assert Counter(result.rejects.column("reason").to_pylist()) == {"video_missing": 657}
    known = [r for r in result.rejects.to_pylist() if r["source_key"].endswith("s04_a08_r05")]
    assert "known absent" in known[0]["detail"] and known[0]["split"] == "train"
    assert result.stats["frame_files"] == 5


def test_kinect_takes_colour_frames_only(tmp_path: Path) -> None:
    seq = tmp_path / "Kinect/Kin01/S09/A02/R03"
    write_frame_folder(seq, "kin_k01_s09_a02_r03_color_{:05d}.ppm", 2)
    write_frame_folder(seq, "kin_k01_s09_a02_r03_depth_{:05d}.pgm", 2)
    adapter = get_adapter("mhad")
    result = adapter.parse(tmp_path, adapter.make_params({"modality": "kinect"}))
    assert result.records.num_rows == 1 and result.stats["frame_files"] == 2
    assert result.records.column("fps").to_pylist() == [30.0]


def test_bad_view_and_missing_folder(tmp_path: Path) -> None:
    adapter = get_adapter("mhad")
    with pytest.raises(ConfigError, match="no camera 3 in cluster 4"):
        adapter.parse(tmp_path, adapter.make_params({"cluster": 4, "camera": 3}))
    with pytest.raises(SourceError, match="Cluster01/Cam01"):
        adapter.parse(tmp_path, adapter.make_params({}))

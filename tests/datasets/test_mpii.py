"""MPII adapter: RELEASE .mat fakes (v5, v7.3, full-size single-person split), real HRNet and CPM JSON, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from schemas.errors import AnnotationFormatError, ConfigError, SourceError
from tasks.datasets import get_adapter
from tasks.datasets.base import ParseResult
from tasks.datasets.mpii import center_scale_box, release_points
from tests.datasets.fakes_mpii import (
    hg_scale_release,
    small_release,
    write_mat5,
    write_mat73,
    write_valid_persons,
)

MAT = "mpii_human_pose_v1_u12_1.mat"


def _parse(source: Path, **params) -> ParseResult:
    adapter = get_adapter("mpii")
    return adapter.parse(source, adapter.make_params(params))


# --- pure functions ------------------------------------------------------------------------------


def test_release_points_one_based_to_zero_based_and_visibility() -> None:
    points = {
        "point": [
            {"id": np.asarray(0.0), "x": np.asarray(11.0), "y": np.asarray(21.0), "is_visible": np.asarray(1.0)},
            {"id": np.asarray(9.0), "x": np.asarray(1.0), "y": np.asarray(1.0), "is_visible": "0"},
            {"id": np.asarray(15.0), "x": np.asarray(5.5), "y": np.asarray(6.5), "is_visible": None},
        ]
    }
    xy, vis, no_flag = release_points(points)
    assert xy[0].tolist() == [10.0, 20.0] and xy[9].tolist() == [0.0, 0.0] and xy[15].tolist() == [4.5, 5.5]
    assert vis[0] == 2 and vis[9] == 1 and vis[15] == 2 and no_flag == 1
    assert np.isnan(xy[1]).all() and vis[1] == 0
    assert release_points(None)[1].tolist() == [0] * 16


def test_center_scale_box_is_200_scale_square() -> None:
    assert center_scale_box(np.array([100.0, 50.0]), 1.5) == [-50.0, -100.0, 250.0, 200.0]


# --- fake RELEASE ----------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", [write_mat5, write_mat73])
def test_fake_release_official_split(tmp_path: Path, writer) -> None:
    tree = small_release()
    writer(tmp_path / MAT, {"RELEASE": tree})
    result = _parse(tmp_path)
    recs = {r["source_key"]: r for r in result.records.to_pylist()}
    rejects = {r["source_key"]: r["reason"] for r in result.rejects.to_pylist()}
    assert rejects == {"000000011.jpg:1": "no_annotation"}
    assert set(recs) == {"000000011.jpg:0", "000000022.jpg:0", "000000022.jpg:1", "000000033.jpg:0",
                         "000000033.jpg:1", "000000055.jpg:0"}  # fmt: skip
    assert result.parsed == 7
    first = recs["000000011.jpg:0"]
    assert first["sample_id"] == "mpii-000000011-p0" and first["split"] == "train"
    assert (first["category"], first["activity"], first["activity_id"]) == ("sports", "running", 5)
    pts = tree["annolist"][0]["annorect"][0]["annopoints"]["point"]
    np.testing.assert_allclose(first["keypoints_xy_px"][0], [pts[0]["x"] - 1, pts[0]["y"] - 1], atol=1e-3)
    assert first["keypoints_visibility"] == [2, 2, 2, 2, 1, 1] + [2] * 8 + [0, 0]
    rect = tree["annolist"][0]["annorect"][0]
    assert first["center_xy_px"] == [rect["objpos"]["x"] - 1, rect["objpos"]["y"] - 1]
    np.testing.assert_allclose(first["head_box_xyxy_px"], [rect["x1"] - 1, rect["y1"] - 1, rect["x2"] - 1, rect["y2"] - 1], atol=1e-3)
    np.testing.assert_allclose(first["bbox_xyxy_px"], center_scale_box(np.array(first["center_xy_px"]), rect["scale"]), atol=1e-3)
    assert json.loads(first["extra"]) == {"annolist_index": 1, "ridx": 1, "frame_sec": 12, "video_id": "aaaaaaaaaaa",
                                          "single_person": True}  # fmt: skip
    test_rec = recs["000000033.jpg:0"]
    assert test_rec["split"] == "test" and test_rec["activity"] is None and test_rec["activity_id"] is None
    assert test_rec["keypoints_visibility"] == [0] * 16 and test_rec["bbox_xyxy_px"] is not None
    no_box = recs["000000055.jpg:0"]
    xy = np.array(no_box["keypoints_xy_px"])
    np.testing.assert_allclose(no_box["bbox_xyxy_px"], [*xy.min(0), *xy.max(0)], atol=1e-3)
    assert result.stats["points_without_is_visible"] == 1
    assert result.stats["per_split"] == {"test": 2, "train": 4}


def test_fake_release_single_person_split(tmp_path: Path) -> None:
    write_mat5(tmp_path / MAT, {"RELEASE": small_release()})
    write_valid_persons(tmp_path / "detections.mat", [2], [2])
    result = _parse(tmp_path, split_protocol="single_person", valid_persons_file="detections.mat")
    splits = {r["source_key"]: r["split"] for r in result.records.to_pylist()}
    rejects = {r["source_key"]: r["reason"] for r in result.rejects.to_pylist()}
    assert splits == {"000000011.jpg:0": "train", "000000022.jpg:1": "valid", "000000033.jpg:0": "test",
                      "000000055.jpg:0": "train"}  # fmt: skip
    assert rejects == {"000000011.jpg:1": "no_annotation", "000000022.jpg:0": "not_in_split",
                       "000000033.jpg:1": "not_in_split"}  # fmt: skip
    assert set(result.input_checksums) == {MAT, "detections.mat"}


def test_release_under_the_published_subfolder(tmp_path: Path) -> None:
    (tmp_path / "mpii_human_pose_v1_u12_2").mkdir()
    write_mat5(tmp_path / "mpii_human_pose_v1_u12_2" / MAT, {"RELEASE": small_release()})
    result = _parse(tmp_path)
    assert result.records.num_rows == 6
    assert result.records.column("image_path")[0].as_py() == "images/000000011.jpg"


@pytest.mark.slow
def test_full_size_single_person_split_reproduces_hourglass_lists(tmp_path: Path, shared_data: Path) -> None:
    """22,246 / 2,958 / 11,731 persons on 14,679 / 2,729 / 6,619 images, in the lists' order (~80 s)."""
    import scipy.io

    lists = shared_data / "mpii" / "hg_split_lists"
    detections = shared_data / "mpii" / "pckh_tompson_valid" / "detections.mat"
    d = scipy.io.loadmat(str(detections), variable_names=["RELEASE_img_index", "RELEASE_person_index"])
    tree = hg_scale_release(lists, d["RELEASE_img_index"].ravel(), d["RELEASE_person_index"].ravel())
    write_mat5(tmp_path / MAT, {"RELEASE": tree})
    result = _parse(tmp_path, split_protocol="single_person", valid_persons_file=str(detections))
    assert result.stats["per_split"] == {"train": 22246, "valid": 2958, "test": 11731}
    assert result.stats["images_per_split"] == {"train": 14679, "valid": 2729, "test": 6619}
    table = result.records
    for split, name in (("train", "train_images.txt"), ("valid", "valid_images.txt"), ("test", "test_images.txt")):
        paths = [p for p, s in zip(table.column("image_path").to_pylist(), table.column("split").to_pylist(), strict=True)
                 if s == split]  # fmt: skip
        assert [Path(p).name for p in paths] == (lists / name).read_text().split()
    assert result.parsed == sum(len(as_rects) for as_rects in (e["annorect"] or [] for e in tree["annolist"]))


# --- real converted formats --------------------------------------------------------------------------


def test_real_hrnet_json_five_validation_entries(shared_data: Path) -> None:
    path = shared_data / "mpii" / "mmpose_tests" / "test_mpii.json"
    result = _parse(path, json_split="valid")
    assert result.records.num_rows == 5 and result.rejects.num_rows == 0
    recs = result.records.to_pylist()
    assert [r["image_path"] for r in recs] == [
        "images/005808361.jpg", "images/052475643.jpg", "images/051423444.jpg", "images/004645041.jpg",
        "images/060754485.jpg",
    ]  # fmt: skip
    assert all((path.parent / Path(r["image_path"]).name).is_file() for r in recs)
    first = recs[0]
    assert first["keypoints_xy_px"][0] == [803.0, 710.0]  # (804, 711) 1-based
    assert first["center_xy_px"] == [965.0, 339.0] and first["scale"] == pytest.approx(4.718488)
    # 051423444: joints 0 and 5 are (-1, -1) with joints_vis 0.
    assert recs[2]["keypoints_visibility"][0] == 0 and np.isnan(recs[2]["keypoints_xy_px"][0]).all()
    # valid.h5's centre/scale are derived from these: (cx, cy + 15 s), 1.25 s (README §2).
    s = first["scale"]
    assert [first["center_xy_px"][0] + 1, first["center_xy_px"][1] + 1 + 15 * s] == pytest.approx([966.0, 340 + 15 * s])


def test_hrnet_json_split_from_file_name(tmp_path: Path, shared_data: Path) -> None:
    data = (shared_data / "mpii" / "mmpose_tests" / "test_mpii.json").read_text()
    (tmp_path / "mpii_val.json").write_text(data)
    assert _parse(tmp_path / "mpii_val.json").stats["per_split"] == {"valid": 5}
    (tmp_path / "mpii_whatever.json").write_text(data)
    with pytest.raises(ConfigError, match="json_split"):
        _parse(tmp_path / "mpii_whatever.json")


def test_real_cpm_json_168_entries(shared_data: Path) -> None:
    result = _parse(shared_data / "mpii" / "cpm_json" / "mpii_annotations_first168.json")
    assert result.records.num_rows == 168 and result.rejects.num_rows == 0
    assert result.stats["per_split"] == {"train": 152, "valid": 16}
    assert len(set(result.records.column("image_path").to_pylist())) == 100
    assert result.stats["jsonlab_empty_fields"] > 0
    recs = {r["sample_id"]: r for r in result.records.to_pylist()}
    # 015601864.jpg person 1: joint 3 is (647, 188, vis 0) -> occluded; image 1280x720.
    r = recs["mpii-015601864-p0"]
    assert r["keypoints_xy_px"][3] == [646.0, 187.0] and r["keypoints_visibility"][3] == 1
    assert (r["image_width_px"], r["image_height_px"]) == (1280, 720)
    # 015599452.jpg: joints 0, 1, 4, 5 are (0, 0, 0) padding -> not labelled.
    assert [recs["mpii-015599452-p0"]["keypoints_visibility"][j] for j in (0, 1, 4, 5)] == [0, 0, 0, 0]


def test_cpm_and_hrnet_agree_on_the_shared_validation_person(shared_data: Path) -> None:
    cpm = _parse(shared_data / "mpii" / "cpm_json" / "mpii_annotations_first168.json").records.to_pylist()
    hrnet = _parse(shared_data / "mpii" / "mmpose_tests" / "test_mpii.json", json_split="valid").records.to_pylist()
    a = next(r for r in cpm if r["sample_id"] == "mpii-005808361-p0")
    b = hrnet[0]
    assert a["split"] == b["split"] == "valid"
    np.testing.assert_allclose(np.array(a["keypoints_xy_px"]), np.array(b["keypoints_xy_px"]), atol=1.0)


# --- bad input -------------------------------------------------------------------------------------


def test_no_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="mpii_human_pose_v1_u12_1.mat"):
        _parse(tmp_path)


def test_mat_without_release(tmp_path: Path) -> None:
    write_mat5(tmp_path / MAT, {"annolist": np.zeros(2)})
    with pytest.raises(AnnotationFormatError, match=r"no variable 'RELEASE' \(found: \['annolist'\]\)"):
        _parse(tmp_path)


def test_truncated_v73_release(tmp_path: Path) -> None:
    write_mat73(tmp_path / "full.mat", {"RELEASE": small_release()})
    data = (tmp_path / "full.mat").read_bytes()
    (tmp_path / MAT).write_bytes(data[: len(data) // 3])
    with pytest.raises(AnnotationFormatError, match=r"cannot read MATLAB v7\.3 \(HDF5\) file .*u12_1\.mat"):
        _parse(tmp_path)


def test_single_person_needs_valid_persons_file(tmp_path: Path) -> None:
    write_mat5(tmp_path / MAT, {"RELEASE": small_release()})
    with pytest.raises(SourceError, match="detections.mat"):
        _parse(tmp_path, split_protocol="single_person")


def test_truncated_json(tmp_path: Path, shared_data: Path) -> None:
    data = (shared_data / "mpii" / "cpm_json" / "mpii_annotations_first168.json").read_bytes()
    (tmp_path / "mpii_annotations.json").write_bytes(data[:5000])
    with pytest.raises(AnnotationFormatError, match="not valid JSON"):
        _parse(tmp_path / "mpii_annotations.json")


def test_malformed_json_entries_are_rejects(tmp_path: Path) -> None:
    entries = [
        {"image": "a.jpg", "center": [10, 10], "scale": 1.0, "joints": [[1, 1]] * 16, "joints_vis": [1] * 16},
        {"image": "b.jpg", "center": [10, 10], "scale": 1.0, "joints": [[1, 1]] * 14, "joints_vis": [1] * 14},
        {"image": "c.jpg", "center": [10, 10], "scale": 1.0, "joints_vis": [1] * 16},
        {"image": "../d.jpg", "center": [10, 10], "scale": 1.0, "joints": [[1, 1]] * 16, "joints_vis": [1] * 16},
        {"image": "e.jpg", "center": [-1, -1], "scale": -1, "joints": [[-1, -1]] * 16, "joints_vis": [0] * 16},
    ]
    (tmp_path / "mpii_train.json").write_text(json.dumps(entries))
    result = _parse(tmp_path / "mpii_train.json")
    assert [r["reason"] for r in result.rejects.to_pylist()] == [
        "malformed_annotation", "malformed_annotation", "path_escapes_source", "invalid_box",
    ]  # fmt: skip
    assert result.records.num_rows == 1 and result.parsed == 5

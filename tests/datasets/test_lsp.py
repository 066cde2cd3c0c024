"""LSP / LSPET adapter: pure decoding, fake files in both layouts (v5 and v7.3), the real LSPET subset, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from schemas.errors import AnnotationFormatError, ConfigError, SourceError
from tasks.datasets import get_adapter
from tasks.datasets.lsp import decode_joints, detect_layout
from tests.datasets.fakes_lsp import write_fake_leeds
from tests.datasets.fakes_mpii import write_mat5, write_mat73


def _parse(name: str, source: Path, **params):
    adapter = get_adapter(name)
    return adapter.parse(source, adapter.make_params(params))


# --- pure functions ------------------------------------------------------------------------------


def test_lsp_flag_row_means_occluded_and_coordinates_become_zero_based() -> None:
    raw = np.zeros((3, 14, 1))
    raw[0, :, 0] = np.arange(1, 15)  # x, 1-based
    raw[1, :, 0] = 100.0
    raw[2, 4, 0] = 1.0  # LSP: 1 = occluded
    xy, vis, dropped = decode_joints(raw, "lsp")
    assert xy.shape == (1, 14, 2) and xy.dtype == np.float32
    assert xy[0, 0].tolist() == [0.0, 99.0]  # (1, 100) in MATLAB -> (0, 99) 0-based
    assert xy[0, 13].tolist() == [13.0, 99.0]
    assert vis[0, 4] == 1 and vis[0, 0] == 2
    assert (vis[0] > 0).all() and not dropped.any()


def test_lspet_flag_means_visible_and_negative_positions_are_never_used() -> None:
    raw = np.zeros((14, 3, 1))
    raw[:, 0, 0] = 11.0
    raw[:, 1, 0] = 21.0
    raw[:, 2, 0] = 1.0
    raw[0, :, 0] = [0.0, -26.1, 0.0]  # LSPET: flag 0 = not labelled, junk position
    raw[5, :, 0] = [12.0, -1.17, 1.0]  # flagged visible, but above the image
    raw[6, :, 0] = [np.nan, 5.0, 1.0]
    xy, vis, dropped = decode_joints(raw, "lspet")
    assert xy[0, 1].tolist() == [10.0, 20.0]
    assert vis[0].tolist() == [0, 2, 2, 2, 2, 0, 0, 2, 2, 2, 2, 2, 2, 2]
    assert np.isnan(xy[0, [0, 5, 6]]).all()
    assert np.flatnonzero(dropped[0]).tolist() == [5, 6]


@pytest.mark.parametrize(("shape", "layout"), [((3, 14, 7), "lsp"), ((14, 3, 7), "lspet"), ((3, 14), "lsp")])
def test_detect_layout(shape: tuple[int, ...], layout: str) -> None:
    assert detect_layout(np.zeros(shape), Path("joints.mat")) == layout


def test_detect_layout_rejects_other_shapes_naming_the_file() -> None:
    with pytest.raises(AnnotationFormatError, match=r"x/joints\.mat.*\(16, 3, 5\).*3×14×N"):
        detect_layout(np.zeros((16, 3, 5)), Path("x/joints.mat"))


# --- fake data in the real layouts ---------------------------------------------------------------


@pytest.mark.parametrize("v73", [False, True])
def test_lsp_fake_2000_images_split_1000_1000(tmp_path: Path, v73: bool) -> None:
    fake = write_fake_leeds(tmp_path / "lsp", "lsp", 2000, v73=v73)
    result = _parse("lsp", fake.root)
    recs = result.records.to_pydict()
    assert result.records.num_rows == 2000 and result.rejects.num_rows == 0
    assert recs["split"].count("train") == 1000 and recs["split"].count("test") == 1000
    assert recs["image_path"][0] == "images/im0001.jpg" and recs["split"][999] == "train"
    assert recs["image_path"][1000] == "images/im1001.jpg" and recs["split"][1000] == "test"
    xy = np.array(recs["keypoints_xy_px"], dtype=np.float32)
    np.testing.assert_allclose(xy, fake.xy, rtol=0, atol=1e-4)
    assert np.array(recs["keypoints_visibility"]).tolist() == fake.vis.tolist()
    assert result.stats["layout"] == "lsp" and result.stats["dropped_positions"] == 1
    assert set(result.input_checksums) == {"joints.mat"}


def test_lspet_fake_rejects_image_without_labels_and_boxes_labelled_joints(tmp_path: Path) -> None:
    fake = write_fake_leeds(tmp_path / "lspet", "lspet", 9)
    result = _parse("lspet", fake.root)
    assert result.records.num_rows == 8 and result.rejects.num_rows == 1
    assert result.parsed == 9
    reject = result.rejects.to_pylist()[0]
    assert reject["source_key"] == "im00009" and reject["reason"] == "zero_keypoints" and reject["split"] == "train"
    rec = result.records.to_pylist()[0]
    assert rec["sample_id"] == "lspet-im00001" and rec["image_path"] == "images/im00001.jpg"
    assert np.isnan(rec["keypoints_xy_px"][3]).all() and rec["keypoints_visibility"][3] == 0
    labelled = fake.xy[0][fake.vis[0] > 0]
    np.testing.assert_allclose(rec["bbox_xyxy_px"], [*labelled.min(0), *labelled.max(0)], atol=1e-4)
    third = result.records.to_pylist()[2]
    assert json.loads(third["extra"])["dropped_joints"] == [13]


def test_sample_ids_are_unique_and_independent_of_row_order(tmp_path: Path) -> None:
    fake = write_fake_leeds(tmp_path / "lspet", "lspet", 12)
    ids = _parse("lspet", fake.root).records.column("sample_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert ids[4] == "lspet-im00005"


def test_source_may_be_the_annotation_file(tmp_path: Path) -> None:
    fake = write_fake_leeds(tmp_path / "lspet", "lspet", 4)
    assert _parse("lspet", fake.root / "joints.mat").records.num_rows == 3


# --- real fixture: the first 400 LSPET images -------------------------------------------------------


def test_real_lspet_subset400(shared_data: Path) -> None:
    root = shared_data / "lspet_subset400"
    result = _parse("lspet", root)
    assert result.records.num_rows == 400 and result.rejects.num_rows == 0
    assert result.stats["layout"] == "lspet"
    vis = np.array(result.records.column("keypoints_visibility").to_pylist())
    # 4866 joints flagged visible, 734 flagged 0; one flagged joint lies above the image (y = -1.17).
    assert int((vis == 2).sum()) == 4865 and int((vis == 0).sum()) == 735
    assert result.stats["dropped_positions"] == 1
    rec24 = result.records.to_pylist()[23]
    assert rec24["image_path"] == "images/im00024.jpg" and rec24["keypoints_visibility"][13] == 0
    first = result.records.to_pylist()[0]
    assert first["keypoints_visibility"][0] == 0  # raw (0, -26.1, flag 0)
    np.testing.assert_allclose(first["keypoints_xy_px"][1], [25.03094352, 85.41022512], atol=1e-4)
    # The 20 images present: every labelled joint lies inside the image.
    for rec in result.records.to_pylist()[:20]:
        image = cv2.imread(str(root / rec["image_path"]))
        assert image is not None
        h, w = image.shape[:2]
        xy = np.array(rec["keypoints_xy_px"])[np.array(rec["keypoints_visibility"]) > 0]
        assert (xy >= -0.5).all() and (xy[:, 0] <= w - 0.5).all() and (xy[:, 1] <= h - 0.5).all()


def test_real_lspet_file_refused_by_the_lsp_adapter(shared_data: Path) -> None:
    with pytest.raises(AnnotationFormatError, match=r"LSPET layout \(14, 3, 400\).*lsp adapter"):
        _parse("lsp", shared_data / "lspet_subset400")


# --- bad input -------------------------------------------------------------------------------------


def test_missing_joints_mat(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="joints.mat"):
        _parse("lspet", tmp_path)


def test_mat_without_joints_variable(tmp_path: Path) -> None:
    write_mat5(tmp_path / "joints.mat", {"points": np.zeros((14, 3, 2))})
    with pytest.raises(AnnotationFormatError, match=r"joints\.mat has no variable 'joints' \(found: \['points'\]\)"):
        _parse("lspet", tmp_path)


def test_truncated_mat(tmp_path: Path, shared_data: Path) -> None:
    data = (shared_data / "lspet_subset400" / "joints.mat").read_bytes()
    (tmp_path / "joints.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(AnnotationFormatError, match=r"cannot read MATLAB file .*joints\.mat"):
        _parse("lspet", tmp_path)


def test_html_error_page_instead_of_mat(tmp_path: Path) -> None:
    (tmp_path / "joints.mat").write_bytes(b"<html><body>404 Not Found</body></html>")
    with pytest.raises(AnnotationFormatError, match="not a MATLAB .mat file"):
        _parse("lspet", tmp_path)


def test_v73_file_with_wrong_variable(tmp_path: Path) -> None:
    write_mat73(tmp_path / "joints.mat", {"RELEASE": {"a": 1.0}})
    with pytest.raises(AnnotationFormatError, match=r"joints\.mat has no variable 'joints' \(found: \['RELEASE'\]\)"):
        _parse("lspet", tmp_path)


def test_non_numeric_joints(tmp_path: Path) -> None:
    write_mat5(tmp_path / "joints.mat", {"joints": "oops"})
    with pytest.raises(AnnotationFormatError, match="not a numeric array"):
        _parse("lspet", tmp_path)


def test_unknown_param_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="layuot"):
        get_adapter("lsp").make_params({"layuot": "lsp"})

"""FLIC / FLIC-full adapter: pure decoding, fake examples.mat (v5 and v7.3), FLIC-plus indices, real FLIC, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from schemas.errors import AnnotationFormatError, SourceError
from schemas.skeletons import convert_keypoints, get_skeleton
from tasks.datasets import get_adapter
from tasks.datasets.base import ParseResult
from tasks.datasets.flic import backwards_facing, decode_coords, read_plus_indices
from tests.datasets.fakes_flic import LABELLED_SLOTS_0BASED, write_fake_flic, write_plus_indices
from tests.datasets.fakes_mpii import write_mat5, write_mat73


def _parse(source: Path, name: str = "flic", **params) -> ParseResult:
    adapter = get_adapter(name)
    return adapter.parse(source, adapter.make_params(params))


# --- pure functions ------------------------------------------------------------------------------


def test_decode_coords_converts_matlab_one_based_to_zero_based() -> None:
    coords = np.full((2, 29), np.nan)
    coords[:, 0] = [1.0, 1.0]  # MATLAB pixel (1, 1) is the top-left pixel centre -> (0, 0)
    coords[:, 16] = [300.5, 160.25]
    coords[:, 5] = [-4.0, 100.0]  # left of the frame: labelled but outside -> visibility 1
    xy, vis = decode_coords(coords, width_px=720, height_px=480)
    assert xy.shape == (29, 2) and xy.dtype == np.float32 and vis.dtype == np.int8
    assert xy[0].tolist() == [0.0, 0.0]
    assert xy[16].tolist() == [299.5, 159.25]
    assert xy[5].tolist() == [-5.0, 99.0] and vis[5] == 1
    assert vis[0] == 2 and vis[16] == 2
    assert vis[1] == 0 and np.isnan(xy[1]).all()


def test_decode_coords_without_image_size_never_marks_off_image() -> None:
    coords = np.full((2, 29), np.nan)
    coords[:, 5] = [-4.0, 100.0]
    assert decode_coords(coords, None, None)[1][5] == 2


def test_decode_coords_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"\(2, 14\).*2×29"):
        decode_coords(np.zeros((2, 14)), 720, 480)


def test_backwards_facing_is_modec_left_of_right_test() -> None:
    xy = np.full((29, 2), np.nan, dtype=np.float32)
    xy[[0, 1, 2], 0] = [100, 110, 120]  # lsho, lelb, lwri
    xy[[3, 4, 5], 0] = [200, 210, 220]  # rsho, relb, rwri: all left joints left of right ones
    assert backwards_facing(xy) is True
    xy[2, 0] = 230  # one left wrist right of the right wrist
    assert backwards_facing(xy) is False
    xy[4, 0] = np.nan
    assert backwards_facing(xy) is None


# --- fake FLIC / FLIC-full -----------------------------------------------------------------------


def test_fake_flic_official_split(tmp_path: Path) -> None:
    fake = write_fake_flic(tmp_path / "FLIC", n=12)
    result = _parse(fake.root)
    recs = result.records.to_pylist()
    assert result.records.num_rows == 12 and result.rejects.num_rows == 0
    assert [r["split"] for r in recs] == ["train" if t else "test" for t in fake.istrain]
    assert result.stats["per_split"] == {"test": 3, "train": 9} and result.stats["movies"] == 3
    # Two people in one frame: same image, person_index 0 and 1, distinct ids.
    assert recs[0]["image_path"] == recs[1]["image_path"] == f"images/{fake.filepaths[0]}"
    assert (recs[0]["person_index"], recs[1]["person_index"]) == (0, 1)
    assert recs[1]["sample_id"] == f"flic-{Path(fake.filepaths[0]).stem}-p1"
    assert len({r["sample_id"] for r in recs}) == 12
    xy = np.array([r["keypoints_xy_px"] for r in recs], dtype=np.float32)
    np.testing.assert_allclose(xy, np.transpose(fake.coords, (0, 2, 1)) - 1.0, atol=1e-4)
    vis = np.array([r["keypoints_visibility"] for r in recs])
    assert sorted(np.flatnonzero(vis[0]).tolist()) == list(LABELLED_SLOTS_0BASED)
    assert vis[fake.off_image] == 1 and result.stats["labelled_off_image"] == 1
    assert [i for i, r in enumerate(recs) if r["is_backwards_facing"]] == fake.backwards
    np.testing.assert_allclose(recs[0]["torso_box_xyxy_px"], [199.5, 209.25, 309.0, 359.75])
    assert (recs[0]["image_width_px"], recs[0]["image_height_px"]) == (720, 480)
    labelled = xy[0][vis[0] > 0]
    np.testing.assert_allclose(recs[0]["bbox_xyxy_px"], [*labelled.min(0), *labelled.max(0)], atol=1e-4)
    assert json.loads(recs[2]["extra"])["example_index"] == 3
    assert set(result.input_checksums) == {"examples.mat"}


def test_source_folder_may_hold_the_published_flic_subfolder(tmp_path: Path) -> None:
    write_fake_flic(tmp_path / "FLIC", n=6)
    result = _parse(tmp_path)
    assert result.records.num_rows == 6
    assert result.records.column("image_path")[0].as_py().startswith("images/")


def test_fake_flic_full_rejects_bad_and_unchecked_by_default(tmp_path: Path) -> None:
    fake = write_fake_flic(tmp_path / "FLIC-full", n=12, full=True)
    result = _parse(tmp_path, "flic_full")
    rejects = {r["reason"]: r for r in result.rejects.to_pylist()}
    assert set(rejects) == {"flagged_bad", "unchecked"}
    assert rejects["flagged_bad"]["source_key"] == f"{fake.filepaths[4]}:0"
    assert result.records.num_rows == 10 and result.parsed == 12
    assert result.records.column("dataset").to_pylist() == ["flic_full"] * 10
    kept = _parse(tmp_path, "flic_full", reject_bad=False, reject_unchecked=False)
    assert kept.records.num_rows == 12 and kept.rejects.num_rows == 0
    assert json.loads(kept.records.to_pylist()[4]["extra"])["isbad"] == 1


def test_fake_flic_plus_split_with_both_index_files(tmp_path: Path) -> None:
    fake = write_fake_flic(tmp_path, n=12, full=True)
    write_plus_indices(tmp_path / "plus", train_1based=[1, 2, 3, 5, 6, 7], test_1based=[4, 8])
    result = _parse(fake.root, "flic_full", split_protocol="plus", plus_indices_dir="plus", reject_bad=False)
    by_index = {json.loads(r["extra"])["example_index"]: r["split"] for r in result.records.to_pylist()}
    unchecked = {r["source_key"] for r in result.rejects.to_pylist() if r["reason"] == "unchecked"}
    assert unchecked == {f"{fake.filepaths[5]}:0"}  # example 6 (1-based) is plus-train but unchecked
    assert by_index == {1: "train", 2: "train", 3: "train", 5: "train", 7: "train", 4: "test", 8: "test"}
    not_in = [r for r in result.rejects.to_pylist() if r["reason"] == "not_in_split"]
    assert len(not_in) == 4  # examples 9..12
    assert result.parsed == 12
    assert set(result.input_checksums) == {"examples.mat", "plus/tr_plus_indices.mat", "plus/ts_plus_indices.mat"}


def test_fake_flic_plus_without_test_indices_uses_istest(tmp_path: Path) -> None:
    fake = write_fake_flic(tmp_path, n=12)
    write_plus_indices(tmp_path, train_1based=[1, 2, 3], test_1based=None)
    result = _parse(fake.root, split_protocol="plus")
    splits = result.stats["per_split"]
    assert splits == {"train": 3, "test": 3}  # examples 4, 8, 12 have istest = 1
    assert result.rejects.num_rows == 6


def test_plus_indices_out_of_range_name_the_file(tmp_path: Path) -> None:
    write_fake_flic(tmp_path, n=6)
    write_plus_indices(tmp_path, train_1based=[1, 7], test_1based=None)
    with pytest.raises(AnnotationFormatError, match=r"tr_plus_indices\.mat.*examples 1\.\.7.*has 6 \(valid: 1\.\.6\)"):
        _parse(tmp_path, split_protocol="plus")


def test_plus_indices_overlap_and_zero_are_errors(tmp_path: Path) -> None:
    write_fake_flic(tmp_path, n=6)
    write_plus_indices(tmp_path, train_1based=[1, 2], test_1based=[2, 3])
    with pytest.raises(AnnotationFormatError, match="in both FLIC-plus lists"):
        _parse(tmp_path, split_protocol="plus")
    write_plus_indices(tmp_path, train_1based=[0, 2], test_1based=None)
    (tmp_path / "ts_plus_indices.mat").unlink()
    with pytest.raises(AnnotationFormatError, match=r"examples 0\.\.2"):
        _parse(tmp_path, split_protocol="plus")


def test_plus_protocol_without_index_file(tmp_path: Path) -> None:
    write_fake_flic(tmp_path, n=6)
    with pytest.raises(SourceError, match="tr_plus_indices.mat"):
        _parse(tmp_path, split_protocol="plus")


def test_v73_examples_parse_like_v5(tmp_path: Path) -> None:
    import scipy.io

    fake = write_fake_flic(tmp_path / "v5", n=6)
    raw = scipy.io.loadmat(str(fake.root / "examples.mat"), squeeze_me=True, struct_as_record=False)["examples"]
    examples = [{f: getattr(e, f) for f in e._fieldnames} for e in raw]
    (tmp_path / "v73").mkdir()
    write_mat73(tmp_path / "v73" / "examples.mat", {"examples": examples})
    a = _parse(fake.root).records
    b = _parse(tmp_path / "v73").records
    for name in a.column_names:
        if name == "keypoints_xy_px":
            np.testing.assert_array_equal(np.array(a[name].to_pylist()), np.array(b[name].to_pylist()))
        else:
            assert a[name].to_pylist() == b[name].to_pylist(), name


def test_broken_examples_become_rejects_not_crashes(tmp_path: Path) -> None:
    nan = np.full((2, 29), np.nan)
    good = np.full((2, 29), np.nan)
    good[:, 0] = [10.0, 20.0]
    base = {"filepath": "m-00000001.jpg", "imgdims": np.array([480, 720, 3]), "istrain": 1.0, "istest": 0.0}
    examples = [
        {**base, "coords": good},
        {**base, "coords": nan},  # nothing labelled
        {**base, "coords": np.zeros((2, 14))},  # wrong shape
        {**base, "coords": good, "istrain": 1.0, "istest": 1.0},  # both splits
        {**base, "coords": good, "filepath": "../../etc/passwd"},
    ]
    write_mat5(tmp_path / "examples.mat", {"examples": examples})
    result = _parse(tmp_path)
    reasons = [r["reason"] for r in result.rejects.to_pylist()]
    assert reasons == ["zero_keypoints", "malformed_annotation", "malformed_annotation", "path_escapes_source"]
    assert result.records.num_rows == 1 and result.parsed == 5


# --- real FLIC -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_flic(shared_data: Path) -> ParseResult:
    return _parse(shared_data / "flic")


def test_real_flic_counts(real_flic: ParseResult) -> None:
    assert real_flic.records.num_rows == 5003 and real_flic.rejects.num_rows == 0
    assert real_flic.stats["per_split"] == {"train": 3987, "test": 1016}
    assert real_flic.stats["movies"] == 30
    ids = real_flic.records.column("sample_id").to_pylist()
    assert len(set(ids)) == 5003
    # 5003 examples on 4552 distinct frames: the extra people get person_index >= 1.
    assert len(set(real_flic.records.column("image_path").to_pylist())) == 4552
    vis = np.array(real_flic.records.column("keypoints_visibility").to_pylist())
    labelled_slots_1based = (np.flatnonzero((vis > 0).all(axis=0)) + 1).tolist()
    assert labelled_slots_1based == [1, 2, 3, 4, 5, 6, 7, 10, 13, 14, 17]
    assert not (vis[:, [7, 8, 10, 11, 14, 15, *range(17, 29)]] > 0).any()
    assert real_flic.stats["backwards_facing"] == 247
    assert real_flic.input_checksums["examples.mat"] == (
        "d514fd5897868d27329f0303d6fa19e7bcde01c3c2feb4e1deaa916e9e35ed13"
    )


def test_real_flic_first_example_values(real_flic: ParseResult) -> None:
    first = real_flic.records.slice(0, 1).to_pylist()[0]
    assert first["image_path"] == "images/12-oclock-high-special-edition-00006361.jpg"
    assert first["split"] == "train" and first["is_backwards_facing"] is False
    # lsho in the file is (327.87756348, 213.3125) 1-based -> 0-based
    np.testing.assert_allclose(first["keypoints_xy_px"][0], [326.87756348, 212.3125], atol=1e-4)
    np.testing.assert_allclose(first["torso_box_xyxy_px"], [217.7541, 215.80336, 313.80557, 359.88055], atol=1e-4)
    assert json.loads(first["extra"])["currframe"] == 6361


def test_real_flic_head_for_the_7_joint_target(real_flic: ParseResult) -> None:
    first = real_flic.records.slice(0, 1).to_pylist()[0]
    xy = np.array(first["keypoints_xy_px"], dtype=np.float32)
    vis = np.array(first["keypoints_visibility"], dtype=np.int8)
    out_xy, out_vis = convert_keypoints(xy, vis, "flic29", "flic7")
    flic29 = get_skeleton("flic29")
    face = [flic29.index("leye"), flic29.index("reye"), flic29.index("nose")]
    # leye (303.12, 150.80), reye (289.27, 150.80), nose (297.18, 160.72), 0-based.
    np.testing.assert_allclose(out_xy[3], xy[face].mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(out_xy[3], [296.52381, 154.10416], atol=1e-3)
    assert out_vis.tolist() == [2] * 7
    np.testing.assert_allclose(out_xy[0], xy[flic29.index("lwri")])


def test_real_plus_indices_index_flic_full(shared_data: Path) -> None:
    train = read_plus_indices(shared_data / "flic" / "tr_plus_indices.mat", "tr_plus_indices", 20928)
    test = read_plus_indices(shared_data / "flic" / "ts_plus_indices.mat", "ts_plus_indices", 20928)
    assert train.shape == (17380,) and (train.min(), train.max()) == (0, 20895)
    assert test.shape == (3548,) and (test.min(), test.max()) == (778, 20927)


def test_real_plus_indices_refused_on_plain_flic(shared_data: Path) -> None:
    with pytest.raises(AnnotationFormatError, match=r"tr_plus_indices\.mat.*1\.\.20896.*5003"):
        _parse(shared_data / "flic", split_protocol="plus")


# --- bad input -------------------------------------------------------------------------------------


def test_missing_examples_mat(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="examples.mat"):
        _parse(tmp_path)


def test_mat_without_examples(tmp_path: Path) -> None:
    write_mat5(tmp_path / "examples.mat", {"exemples": np.zeros(3)})
    with pytest.raises(AnnotationFormatError, match=r"no variable 'examples' \(found: \['exemples'\]\)"):
        _parse(tmp_path)


def test_truncated_examples_mat(tmp_path: Path, shared_data: Path) -> None:
    data = (shared_data / "flic" / "examples.mat").read_bytes()
    (tmp_path / "examples.mat").write_bytes(data[:50_000])
    with pytest.raises(AnnotationFormatError, match=r"cannot read MATLAB file .*examples\.mat"):
        _parse(tmp_path)


def test_examples_without_coords(tmp_path: Path) -> None:
    write_mat5(tmp_path / "examples.mat", {"examples": [{"filepath": "a.jpg"}, {"filepath": "b.jpg"}]})
    with pytest.raises(AnnotationFormatError, match=r"lacks the field\(s\) \['coords'\]"):
        _parse(tmp_path)

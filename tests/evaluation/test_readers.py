"""Evaluation readers: generated files in the real formats, bad inputs, and the real fixtures."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from schemas.errors import EvaluationInputError
from schemas.skeletons import FLIC29
from tasks.datasets._matlab import load_mat, mat_version
from tasks.evaluation import metrics as M
from tasks.evaluation import readers as R
from tests.evaluation.fakes_eval import (
    fake_flic_coords,
    truncate,
    write_fake_flic_examples,
    write_fake_mpii_gt,
    write_mat73_numeric,
)

# --------------------------------------------------------------------------------------------------
# Generic .mat access
# --------------------------------------------------------------------------------------------------


def test_mat_version_tells_v5_from_v73(tmp_path: Path) -> None:
    v5 = tmp_path / "a.mat"
    scipy.io.savemat(v5, {"x": np.ones(3)})
    v73 = write_mat73_numeric(tmp_path / "b.mat", {"x": np.ones((2, 3))})
    assert mat_version(v5) == "5" and mat_version(v73) == "7.3"
    not_mat = tmp_path / "c.mat"
    not_mat.write_bytes(b"<html>" + b"\x00" * 200)
    with pytest.raises(EvaluationInputError, match=r"c\.mat is not a MATLAB \.mat file"):
        R.read_mpii_gt(not_mat)
    bare_hdf5 = tmp_path / "d.mat"  # an HDF5 signature and nothing else: read as v7.3, which fails by name
    bare_hdf5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 200)
    with pytest.raises(EvaluationInputError, match=r"cannot read MATLAB v7\.3 \(HDF5\) file .*d\.mat"):
        R.read_mpii_gt(bare_hdf5)


def test_mat_reads_v73_numeric_arrays_in_matlab_axis_order(tmp_path: Path) -> None:
    arr = np.arange(24.0).reshape(2, 3, 4)
    path = write_mat73_numeric(tmp_path / "p.mat", {"pos": arr, "one": np.ones((16, 2, 1))})
    got = load_mat(path, optional=["pos", "one", "absent"], squeeze=False)
    np.testing.assert_array_equal(got["pos"], arr)
    assert got["one"].shape == (16, 2, 1) and "absent" not in got  # MATLAB's shape, N = 1 kept


def test_flic_gt_v73_reads_like_v5(tmp_path: Path) -> None:
    from tests.datasets.fakes_mpii import write_mat73

    coords = fake_flic_coords(3, backwards=(1,))
    fake = write_fake_flic_examples(tmp_path / "e5.mat", coords, np.array([1, 0, 1], bool))
    raw = scipy.io.loadmat(str(fake.path), squeeze_me=True, struct_as_record=False)["examples"]
    write_mat73(tmp_path / "e73.mat", {"examples": [{f: getattr(e, f) for f in e._fieldnames} for e in raw]})
    a, b = R.read_flic_gt(fake.path), R.read_flic_gt(tmp_path / "e73.mat")
    np.testing.assert_array_equal(a.coords_xy, b.coords_xy)
    assert a.is_test.tolist() == b.is_test.tolist() == [True, False, True] and a.filepaths == b.filepaths


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(EvaluationInputError, match=r"nope\.mat' does not exist"):
        R.read_mpii_gt(tmp_path / "nope.mat")


# --------------------------------------------------------------------------------------------------
# MPII
# --------------------------------------------------------------------------------------------------


def test_mpii_gt_round_trip_from_matlab_layout(tmp_path: Path) -> None:
    fake = write_fake_mpii_gt(tmp_path / "gt.mat", n=7)
    gt = R.read_mpii_gt(fake.path)
    assert gt.num_people == 7 and gt.stored_pred_xy is None
    np.testing.assert_allclose(gt.gt_xy, fake.gt_xy)
    np.testing.assert_array_equal(gt.visible, fake.visible)
    np.testing.assert_allclose(gt.head_boxes_xyxy, fake.head_boxes_xyxy)


def test_mpii_gt_v73_numeric_file_reads_like_v5(tmp_path: Path) -> None:
    fake = write_fake_mpii_gt(tmp_path / "gt5.mat", n=4)
    v5 = scipy.io.loadmat(fake.path)
    path = write_mat73_numeric(
        tmp_path / "gt73.mat", {k: v5[k] for k in ("pos_gt_src", "jnt_missing", "headboxes_src")}
    )
    gt = R.read_mpii_gt(path)
    np.testing.assert_allclose(gt.gt_xy, fake.gt_xy)
    np.testing.assert_array_equal(gt.visible, fake.visible)


def test_mpii_gt_missing_top_level_key(tmp_path: Path) -> None:
    fake = write_fake_mpii_gt(tmp_path / "gt.mat", drop=("headboxes_src",))
    with pytest.raises(EvaluationInputError, match=r"gt\.mat' lacks \['headboxes_src'\]"):
        R.read_mpii_gt(fake.path)


def test_mpii_gt_truncated(tmp_path: Path) -> None:
    fake = write_fake_mpii_gt(tmp_path / "gt.mat", n=50)
    cut = truncate(fake.path, tmp_path / "cut.mat", 0.6)
    with pytest.raises(EvaluationInputError, match=r"cannot read MATLAB file .*cut\.mat"):
        R.read_mpii_gt(cut)


def test_mpii_gt_wrong_joint_order(tmp_path: Path) -> None:
    names = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head",
             "lwri", "lelb", "lsho", "rsho", "relb", "rwri")  # fmt: skip
    fake = write_fake_mpii_gt(tmp_path / "gt.mat", joint_names=names)
    with pytest.raises(EvaluationInputError, match="expected MPII order"):
        R.read_mpii_gt(fake.path)


def test_mpii_gt_nan_on_a_present_joint(tmp_path: Path) -> None:
    fake = write_fake_mpii_gt(tmp_path / "gt.mat", n=3)
    data = scipy.io.loadmat(fake.path)
    data["pos_gt_src"][0, 0, 0] = np.nan  # joint 0 of person 0 is visible by construction
    scipy.io.savemat(fake.path, {k: v for k, v in data.items() if not k.startswith("__")})
    with pytest.raises(EvaluationInputError, match="not finite at 1 joints marked present"):
        R.read_mpii_gt(fake.path)


@pytest.mark.parametrize("suffix", [".mat", ".h5", ".npy"])
def test_mpii_predictions_in_every_format(tmp_path: Path, suffix: str) -> None:
    preds = np.random.default_rng(1).uniform(0, 500, size=(6, 16, 2))
    path = tmp_path / f"pred{suffix}"
    if suffix == ".mat":
        scipy.io.savemat(path, {"preds": preds})
    elif suffix == ".h5":
        with h5py.File(path, "w") as fh:
            fh.create_dataset("preds", data=preds)
    else:
        np.save(path, preds)
    np.testing.assert_allclose(R.read_mpii_predictions(path, 6), preds)


def test_mpii_predictions_with_scores_are_cut_to_xy(tmp_path: Path) -> None:
    preds = np.random.default_rng(2).uniform(0, 500, size=(3, 16, 3))
    np.save(tmp_path / "p.npy", preds)
    np.testing.assert_allclose(R.read_mpii_predictions(tmp_path / "p.npy", 3), preds[..., :2])


def test_mpii_predictions_bad_inputs(tmp_path: Path) -> None:
    np.save(tmp_path / "short.npy", np.zeros((5, 16, 2)))
    with pytest.raises(EvaluationInputError, match=r"short\.npy' have shape \(5, 16, 2\); expected \(6, 16, 2\)"):
        R.read_mpii_predictions(tmp_path / "short.npy", 6)
    np.save(tmp_path / "joints14.npy", np.zeros((6, 14, 2)))
    with pytest.raises(EvaluationInputError, match=r"expected \(6, 16, 2\)"):
        R.read_mpii_predictions(tmp_path / "joints14.npy", 6)
    scipy.io.savemat(tmp_path / "other.mat", {"poses": np.zeros((6, 16, 2))})
    with pytest.raises(EvaluationInputError, match=r"other\.mat' has none of the variables \['preds'"):
        R.read_mpii_predictions(tmp_path / "other.mat", 6)
    (tmp_path / "p.csv").write_text("1,2\n")
    with pytest.raises(EvaluationInputError, match="expected one of .mat, .h5"):
        R.read_mpii_predictions(tmp_path / "p.csv", 6)
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 10)
    with pytest.raises(EvaluationInputError, match=r"cannot read HDF5 file .*broken\.h5"):
        R.read_mpii_predictions(tmp_path / "broken.h5", 6)


def test_mpii_predictions_nan_needs_allow_missing(tmp_path: Path) -> None:
    preds = np.ones((2, 16, 2))
    preds[1, 3] = np.nan
    np.save(tmp_path / "nan.npy", preds)
    with pytest.raises(EvaluationInputError, match=r"nan\.npy' hold 2 non-finite coordinates"):
        R.read_mpii_predictions(tmp_path / "nan.npy", 2)
    assert np.isnan(R.read_mpii_predictions(tmp_path / "nan.npy", 2, allow_missing=True)).sum() == 2


def test_mpii_fake_end_to_end_perfect_and_shifted(tmp_path: Path) -> None:
    fake = write_fake_mpii_gt(tmp_path / "gt.mat", n=6)
    gt = R.read_mpii_gt(fake.path)
    head = M.head_norm_from_boxes(gt.head_boxes_xyxy)
    perfect = M.mpii_pckh_report(gt.gt_xy, gt.gt_xy, gt.visible, head)
    assert perfect.parts_05["Mean"] == pytest.approx(100.0) and perfect.auc == pytest.approx(100.0)
    shifted = gt.gt_xy + np.stack([0.295 * head, np.zeros_like(head)], axis=1)[:, None, :]  # 0.295 head sizes
    r = M.mpii_pckh_report(shifted, gt.gt_xy, gt.visible, head)
    assert r.parts_05["Mean"] == pytest.approx(100.0) and r.parts_01["Mean"] == 0.0
    assert r.auc == pytest.approx(100.0 * 21 / 51)  # thresholds 0.30 .. 0.50


# --------------------------------------------------------------------------------------------------
# FLIC
# --------------------------------------------------------------------------------------------------


def test_flic_gt_round_trip(tmp_path: Path) -> None:
    coords = fake_flic_coords(5, backwards=(3,))
    fake = write_fake_flic_examples(tmp_path / "examples.mat", coords, np.array([0, 1, 0, 1, 1], bool))
    gt = R.read_flic_gt(fake.path)
    np.testing.assert_array_equal(gt.is_test, [False, True, False, True, True])
    np.testing.assert_allclose(gt.coords_xy, coords)  # NaN where unlabelled, in both
    assert gt.filepaths[0] == "fake-movie-00000001.jpg"
    # MATLAB slot 7 (1-based) is lhip -> joint 6 here.
    np.testing.assert_allclose(gt.coords_xy[:, 6], coords[:, FLIC29.index("lhip")])
    assert gt.test_coords_xy.shape == (3, 29, 2)


def test_flic_gt_bad_files(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "nokey.mat", {"poses": np.zeros((2, 29))})
    with pytest.raises(EvaluationInputError, match=r"nokey\.mat' has no struct array 'examples'"):
        R.read_flic_gt(tmp_path / "nokey.mat")
    fake = write_fake_flic_examples(tmp_path / "nofield.mat", fake_flic_coords(2), np.ones(2, bool), "istest")
    with pytest.raises(EvaluationInputError, match="has no field 'istest'"):
        R.read_flic_gt(fake.path)
    full = write_fake_flic_examples(tmp_path / "ok.mat", fake_flic_coords(40), np.ones(40, bool))
    with pytest.raises(EvaluationInputError, match=r"cannot read MATLAB file .*cut\.mat"):
        R.read_flic_gt(truncate(full.path, tmp_path / "cut.mat", 0.5))
    v73 = write_mat73_numeric(tmp_path / "v73.mat", {}, struct_name="examples")  # a struct with no fields
    with pytest.raises(EvaluationInputError, match=r"'examples' in .*v73\.mat' has no field 'coords'"):
        R.read_flic_gt(v73)


def test_flic_gt_malformed_coords(tmp_path: Path) -> None:
    fake = write_fake_flic_examples(tmp_path / "e.mat", fake_flic_coords(3), np.ones(3, bool))
    data = scipy.io.loadmat(fake.path)
    data["examples"][0, 1]["coords"] = np.zeros((2, 14))
    scipy.io.savemat(fake.path, {"examples": data["examples"]})
    with pytest.raises(EvaluationInputError, match=r"example 1 \(1-based 2\).*coords has shape \(2, 14\)"):
        R.read_flic_gt(fake.path)


def test_flic_predictions_modec_and_our_layout(tmp_path: Path) -> None:
    ours = np.random.default_rng(3).uniform(0, 500, size=(4, 6, 2))
    scipy.io.savemat(tmp_path / "results.mat", {"pred_coords": np.transpose(ours, (2, 1, 0))})  # (2, 6, N)
    np.testing.assert_allclose(R.read_flic_predictions(tmp_path / "results.mat", 4), ours)
    np.save(tmp_path / "p.npy", ours)
    np.testing.assert_allclose(R.read_flic_predictions(tmp_path / "p.npy", 4), ours)
    # N = 2: both layouts fit; a .mat is MODEC's (2, 6, N), an .npy is (N, 6, 2).
    two = np.arange(24.0).reshape(2, 6, 2)
    scipy.io.savemat(tmp_path / "two.mat", {"pred_coords": two})
    np.testing.assert_allclose(R.read_flic_predictions(tmp_path / "two.mat", 2), np.transpose(two, (2, 1, 0)))
    np.save(tmp_path / "two.npy", two)
    np.testing.assert_allclose(R.read_flic_predictions(tmp_path / "two.npy", 2), two)


def test_flic_predictions_wrong_shape_and_nan(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.zeros((4, 7, 2)))
    with pytest.raises(EvaluationInputError, match=r"p\.npy' have shape \(4, 7, 2\); expected \(2, 6, 4\).*or \(4, 6, 2\)"):
        R.read_flic_predictions(tmp_path / "p.npy", 4)
    bad = np.zeros((2, 6, 4))
    bad[0, 0, 0] = np.nan
    scipy.io.savemat(tmp_path / "nan.mat", {"pred_coords": bad})
    with pytest.raises(EvaluationInputError, match="non-finite"):
        R.read_flic_predictions(tmp_path / "nan.mat", 4)


def test_flic_fake_end_to_end_flip_is_applied(tmp_path: Path) -> None:
    coords = fake_flic_coords(4, backwards=(1,))
    fake = write_fake_flic_examples(tmp_path / "examples.mat", coords, np.ones(4, bool))
    gt = R.read_flic_gt(fake.path).test_coords_xy
    flipped, back = M.modec_flip_backwards_facing(gt)
    assert back.tolist() == [False, True, False, False]
    perfect = M.flic_report(flipped[:, :6], gt)
    assert (perfect.elbow_auc, perfect.wrist_auc) == (1.0, 1.0)
    anatomical = M.flic_report(gt[:, :6], gt)  # the backwards person's arms left as labelled: 2 of 8 wrong
    assert anatomical.pck02 == {"elbow": 0.75, "wrist": 0.75}


# --------------------------------------------------------------------------------------------------
# Real fixtures
# --------------------------------------------------------------------------------------------------


def test_real_mpii_tompson_pckh(shared_data: Path) -> None:
    gt = R.read_mpii_gt(shared_data / "mpii/pckh_tompson_valid/detections_our_format.mat")
    assert gt.num_people == 2958
    assert int((~gt.visible).sum()) == 3088  # jnt_missing ones
    assert gt.stored_pred_xy is not None
    # The official evaluator's pos_pred_src read through the prediction reader gives the same array.
    preds = R.read_mpii_predictions(shared_data / "mpii/pckh_tompson_valid/detections_our_format.mat", 2958)
    np.testing.assert_array_equal(preds, gt.stored_pred_xy)
    r = M.mpii_pckh_report(preds, gt.gt_xy, gt.visible, M.head_norm_from_boxes(gt.head_boxes_xyxy))
    published = {"Head": 95.60, "Shoulder": 92.71, "Elbow": 83.36, "Wrist": 76.74, "Hip": 81.93, "Knee": 73.36,
                 "Ankle": 65.45, "Mean": 82.34, "Mean_unweighted": 81.46}  # fmt: skip
    for part, value in published.items():
        assert round(r.parts_05[part], 2) == value, part
    assert round(r.parts_01["Mean"], 2) == 28.97
    assert round(r.auc, 2) == 55.49  # mean of the weighted PCKh curve at 0, 0.01, ..., 0.50


def test_real_flic_examples(shared_data: Path) -> None:
    gt = R.read_flic_gt(shared_data / "flic/examples.mat")
    assert gt.coords_xy.shape == (5003, 29, 2)
    assert int(gt.is_test.sum()) == 1016
    labelled = [FLIC29.index(n) for n in ("lsho", "lelb", "lwri", "rsho", "relb", "rwri", "lhip", "rhip",
                                          "leye", "reye", "nose")]  # fmt: skip
    unlabelled = sorted(set(range(29)) - set(labelled))
    assert np.isnan(gt.coords_xy[:, unlabelled]).all()
    assert int(M.modec_backwards_facing(gt.coords_xy).sum()) == 247
    assert int(M.modec_backwards_facing(gt.test_coords_xy).sum()) == 48


def test_real_flic_protocol_gt_flip_and_controlled_shift(shared_data: Path) -> None:
    test = R.read_flic_gt(shared_data / "flic/examples.mat").test_coords_xy
    flipped, _ = M.modec_flip_backwards_facing(test)
    perfect = M.flic_report(flipped[:, :6], test)
    assert perfect.to_dict() == {"elbow_auc": 1.0, "wrist_auc": 1.0, "pck@0.2": {"elbow": 1.0, "wrist": 1.0}}
    # The stored (anatomical) labels as predictions: the 48 backwards-facing people lose both elbows and
    # both wrists (their left and right are far apart), everything else is exact.
    raw = M.flic_report(test[:, :6], test)
    assert raw.num_flipped == 48
    assert raw.elbow_auc == pytest.approx(968 / 1016) and raw.pck02["wrist"] == pytest.approx(968 / 1016)
    # Every prediction 9.5 % of that example's torso to the right: misses for r <= 9, hits from r = 10.
    torso = M.torso_norm(flipped, FLIC29, "lsho", "rhip")
    shifted = flipped[:, :6] + np.stack([0.095 * torso, np.zeros_like(torso)], axis=1)[:, None, :]
    r = M.flic_report(shifted, test)
    np.testing.assert_allclose(r.elbow_curve, [0.0] * 9 + [1.0] * 11)
    assert r.wrist_auc == pytest.approx(10.5 / 19)
    assert r.pck02 == {"elbow": 1.0, "wrist": 1.0}

"""Pure-numpy pose metrics: tiny inline inputs with explicit expected values."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from schemas.errors import EvaluationInputError, SkeletonError
from schemas.skeletons import FLIC7, FLIC29, LSP14, MPII16
from tasks.evaluation import metrics as M


def _xy(*points: tuple[float, float]) -> np.ndarray:
    return np.array([points], dtype=np.float64)  # (1, J, 2)


# --------------------------------------------------------------------------------------------------
# Generic PCK family
# --------------------------------------------------------------------------------------------------


def test_module_never_imports_tensorflow() -> None:
    tree = ast.parse(Path(M.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] in ("tensorflow", "keras")]


def test_keypoint_distances_px_is_euclidean() -> None:
    d = M.keypoint_distances_px(_xy((3.0, 4.0), (1.0, 1.0)), _xy((0.0, 0.0), (1.0, 1.0)))
    np.testing.assert_allclose(d, [[5.0, 0.0]])


def test_pck_counts_hits_per_joint_and_skips_invisible() -> None:
    gt = np.zeros((2, 3, 2))
    pred = np.array(
        [
            [[1.0, 0.0], [3.0, 0.0], [0.0, 0.0]],  # person 0: size 10 -> 0.1, 0.3, 0
            [[0.0, 4.0], [0.0, 0.0], [9.0, 0.0]],  # person 1: size 20 -> 0.2, 0, 0.45
        ]
    )
    visible = np.array([[True, True, False], [True, True, False]])
    out = M.pck(pred, gt, visible, np.array([10.0, 20.0]), thr=0.2)
    # joint 0: 0.1 and 0.2 (<= 0.2: both); joint 1: 0.3 miss, 0 hit; joint 2: never visible.
    np.testing.assert_allclose(out, [1.0, 0.5, np.nan])


def test_pck_nan_prediction_is_a_miss_not_skipped() -> None:
    out = M.pck(_xy((np.nan, np.nan), (0.0, 0.0)), _xy((0.0, 0.0), (0.0, 0.0)), np.ones((1, 2), bool), [5.0], 0.5)
    np.testing.assert_allclose(out, [0.0, 1.0])


def test_pck_rejects_zero_norm_and_nan_ground_truth() -> None:
    with pytest.raises(EvaluationInputError, match="zero, negative or not finite"):
        M.pck(_xy((0.0, 0.0)), _xy((0.0, 0.0)), np.ones((1, 1), bool), [0.0], 0.5)
    with pytest.raises(EvaluationInputError, match="ground truth is not finite"):
        M.pck(_xy((0.0, 0.0)), _xy((np.nan, 0.0)), np.ones((1, 1), bool), [1.0], 0.5)


def test_pck_rejects_mismatched_shapes() -> None:
    with pytest.raises(EvaluationInputError, match=r"expected the same \(N, J, 2\)"):
        M.pck(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)), np.ones((2, 4), bool), np.ones(2), 0.5)
    with pytest.raises(EvaluationInputError, match=r"expected \(N, J, 2\)"):
        M.pck(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 3), bool), np.ones(2), 0.5)
    with pytest.raises(EvaluationInputError, match=r"one size per person"):
        M.pck(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), np.ones((2, 3), bool), np.ones(3), 0.5)


def test_pckh_is_pck_with_head_size() -> None:
    pred, gt = _xy((6.0, 8.0)), _xy((0.0, 0.0))  # error 10
    vis = np.ones((1, 1), bool)
    np.testing.assert_allclose(M.pckh(pred, gt, vis, np.array([20.0]), 0.5), [1.0])
    np.testing.assert_allclose(M.pckh(pred, gt, vis, np.array([19.0]), 0.5), [0.0])


def test_bbox_norm_is_longer_side() -> None:
    np.testing.assert_allclose(M.bbox_norm(np.array([[0.0, 0.0, 10.0, 4.0], [5.0, 5.0, 8.0, 25.0]])), [10.0, 20.0])
    with pytest.raises(EvaluationInputError, match=r"\(N, 4\)"):
        M.bbox_norm(np.zeros((2, 3)))


def test_keypoints_bbox_uses_visible_joints_only() -> None:
    gt = np.array([[[1.0, 2.0], [5.0, 9.0], [100.0, 100.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    vis = np.array([[True, True, False], [False, False, False]])
    out = M.keypoints_bbox_xyxy(gt, vis)
    np.testing.assert_allclose(out[0], [1.0, 2.0, 5.0, 9.0])
    assert np.isnan(out[1]).all()


def test_torso_norm_left_shoulder_to_right_hip() -> None:
    gt = np.zeros((1, MPII16.num_joints, 2))
    gt[0, MPII16.index("left_shoulder")] = (3.0, 0.0)
    gt[0, MPII16.index("right_hip")] = (0.0, 4.0)
    np.testing.assert_allclose(M.torso_norm(gt, MPII16), [5.0])
    with pytest.raises(SkeletonError, match="no joint 'right_hip'"):
        M.torso_norm(np.zeros((1, FLIC7.num_joints, 2)), FLIC7)


def test_head_norms() -> None:
    np.testing.assert_allclose(M.head_norm_from_boxes(np.array([[10.0, 10.0, 40.0, 50.0]])), [0.6 * 50.0])
    gt = np.zeros((1, LSP14.num_joints, 2))
    gt[0, LSP14.index("head_top")] = (0.0, 0.0)
    gt[0, LSP14.index("upper_neck")] = (0.0, 12.0)
    np.testing.assert_allclose(M.head_norm_from_joints(gt, LSP14), [12.0])


def test_rmse_px_over_visible_coordinates() -> None:
    pred = np.array([[[3.0, 4.0], [0.0, 0.0], [50.0, 50.0]]])
    gt = np.zeros((1, 3, 2))
    vis = np.array([[True, True, False]])
    # squared coordinate errors 9, 16, 0, 0 -> mean 6.25 -> 2.5 px
    assert M.rmse_px(pred, gt, vis) == pytest.approx(2.5)
    assert M.rmse_px(pred[:, :1], gt[:, :1], vis[:, :1]) == pytest.approx(np.sqrt(12.5))
    with pytest.raises(EvaluationInputError, match="no visible joint"):
        M.rmse_px(pred, gt, np.zeros((1, 3), bool))
    with pytest.raises(EvaluationInputError, match="not finite"):
        M.rmse_px(np.full((1, 3, 2), np.nan), gt, vis)


# --------------------------------------------------------------------------------------------------
# MPII report
# --------------------------------------------------------------------------------------------------


def _mpii_toy() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two people, head size 30 px. Person 0 exact except lwri (20 px), rwri (3 px) and a pelvis 1000 px off;
    person 1 every joint 6 px off (0.2 head sizes) and ankles invisible."""
    n, j = 2, MPII16.num_joints
    gt = np.tile(np.arange(j, dtype=np.float64)[None, :, None] * 10.0, (n, 1, 2))
    pred = gt.copy()
    pred[0, MPII16.index("left_wrist"), 0] += 20.0
    pred[0, MPII16.index("right_wrist"), 1] += 3.0
    pred[0, MPII16.index("pelvis"), 0] += 1000.0
    pred[1, :, 0] += 6.0
    vis = np.ones((n, j), dtype=bool)
    vis[1, [MPII16.index("left_ankle"), MPII16.index("right_ankle")]] = False
    head = M.head_norm_from_boxes(np.array([[0.0, 0.0, 30.0, 40.0]] * n))  # 0.6 * 50 = 30
    return pred, gt, vis, head


def test_mpii_report_parts_means_and_curve_by_hand() -> None:
    pred, gt, vis, head = _mpii_toy()
    r = M.mpii_pckh_report(pred, gt, vis, head)
    # @0.5: every joint 100 except lwri (1 of 2) and pelvis (1 of 2, excluded from the Mean).
    assert r.parts_05["Head"] == 100.0
    assert r.parts_05["Wrist"] == pytest.approx(75.0)
    assert r.per_joint_05[MPII16.index("pelvis")] == 50.0
    assert r.parts_05["Mean"] == pytest.approx(100.0 * 25 / 26)  # 26 visible joints among the 14
    assert r.parts_05["Mean_unweighted"] == pytest.approx((13 * 100.0 + 50.0) / 14)
    # @0.1: person 0 hits 13 of 14 (rwri exactly 0.1 counts), person 1 (0.2) misses everything.
    assert r.parts_01["Ankle"] == 100.0 and r.parts_01["Head"] == 50.0 and r.per_joint_01[15] == 0.0
    assert r.parts_01["Mean"] == pytest.approx(100.0 * 13 / 26)
    assert r.parts_01["Mean_unweighted"] == pytest.approx((2 * 100.0 + 0.0 + 11 * 50.0) / 14)
    # Curve: 12 hits for t < 0.1 (10 points), 13 for 0.1 <= t < 0.2 (10), 25 for t >= 0.2 (31).
    assert r.thresholds.shape == (51,) and r.thresholds[10] == 0.1
    np.testing.assert_allclose(r.curve[[0, 9, 10, 19, 20, 50]], 100.0 * np.array([12, 12, 13, 13, 25, 25]) / 26)
    assert r.auc == pytest.approx(100.0 * (10 * 12 + 10 * 13 + 31 * 25) / (51 * 26))
    assert list(r.to_dict()) == ["pckh@0.5", "pckh@0.1", "auc"]
    assert list(r.to_dict()["pckh@0.5"]) == [  # type: ignore[arg-type]
        "Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean_unweighted",
    ]  # fmt: skip


def test_mpii_report_needs_16_joints_and_every_joint_visible_somewhere() -> None:
    pred, gt, vis, head = _mpii_toy()
    with pytest.raises(EvaluationInputError, match="16 joints"):
        M.mpii_pckh_report(pred[:, :14], gt[:, :14], vis[:, :14], head)
    vis[:, 0] = False
    with pytest.raises(EvaluationInputError, match=r"joints \[0\] are never visible"):
        M.mpii_pckh_report(pred, gt, vis, head)


# --------------------------------------------------------------------------------------------------
# FLIC / MODEC
# --------------------------------------------------------------------------------------------------


def _flic_person(facing_camera: bool = True) -> np.ndarray:
    """(29, 2): torso lsho (100, 0) .. rhip (40, 80) -> scale 100 px. Facing the camera, left joints are on
    the image right (larger x)."""
    c = np.full((FLIC29.num_joints, 2), np.nan)
    sign = 1.0 if facing_camera else -1.0
    for name, (x, y) in {
        "lsho": (40.0, 0.0), "lelb": (50.0, 30.0), "lwri": (55.0, 60.0),
        "rsho": (-40.0, 0.0), "relb": (-50.0, 30.0), "rwri": (-55.0, 60.0),
        "lhip": (20.0, 80.0), "rhip": (-20.0, 80.0),
    }.items():  # fmt: skip
        c[FLIC29.index(name)] = (100.0 + sign * x, y)
    return c


def test_modec_backwards_facing_needs_all_three_arm_joints_crossed() -> None:
    front, back = _flic_person(True), _flic_person(False)
    partial = back.copy()
    partial[FLIC29.index("lwri"), 0] = 300.0  # one arm joint on the "right" side: not backwards
    with_nan = back.copy()
    with_nan[FLIC29.index("lelb")] = np.nan  # NaN comparison is false, as in MATLAB
    np.testing.assert_array_equal(
        M.modec_backwards_facing(np.stack([front, back, partial, with_nan])), [False, True, False, False]
    )


def test_modec_flip_swaps_arms_but_not_hips() -> None:
    back = _flic_person(False)
    flipped, mask = M.modec_flip_backwards_facing(np.stack([back, _flic_person(True)]))
    assert mask.tolist() == [True, False]
    for left, right in (("lsho", "rsho"), ("lelb", "relb"), ("lwri", "rwri")):
        np.testing.assert_array_equal(flipped[0, FLIC29.index(left)], back[FLIC29.index(right)])
        np.testing.assert_array_equal(flipped[0, FLIC29.index(right)], back[FLIC29.index(left)])
    np.testing.assert_array_equal(flipped[0, FLIC29.index("lhip")], back[FLIC29.index("lhip")])
    np.testing.assert_array_equal(flipped[0, FLIC29.index("rhip")], back[FLIC29.index("rhip")])
    np.testing.assert_array_equal(flipped[1], _flic_person(True))


def test_modec_errors_in_percent_of_torso() -> None:
    gt = _flic_person(True)[None]  # lsho (140, 0), rhip (80, 80): torso 100 px
    pred = gt[:, :6].copy()
    pred[0, 1, 0] += 5.0  # lelb 5 px = 5 %
    pred[0, 4] = np.nan  # relb missing -> inf
    err = M.modec_errors(pred, gt, ("lelb", "relb"))
    np.testing.assert_allclose(err, [[5.0, np.inf]])
    with pytest.raises(EvaluationInputError, match="not among the predicted"):
        M.modec_errors(pred, gt, ("lhip",))
    with pytest.raises(EvaluationInputError, match=r"expected \(1, 6, 2\)"):
        M.modec_errors(pred[:, :5], gt, ("lelb",))
    bad = gt.copy()
    bad[0, FLIC29.index("rhip")] = np.nan
    with pytest.raises(EvaluationInputError, match="lack a finite torso"):
        M.modec_errors(pred, bad, ("lelb",))


def test_accuracy_curve_pools_values_and_counts_nan_as_miss() -> None:
    errs = np.array([[0.5, 1.0], [2.5, np.nan], [np.inf, 3.0]])
    np.testing.assert_allclose(M.accuracy_curve(errs, np.array([1.0, 2.0, 3.0])), [2 / 6, 2 / 6, 4 / 6])
    with pytest.raises(EvaluationInputError, match="no errors"):
        M.accuracy_curve(np.array([]), np.array([1.0]))


def test_curve_auc_trapezoid_over_rescaled_thresholds() -> None:
    assert M.curve_auc(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 1.0])) == pytest.approx(0.75)
    radii = np.arange(1.0, 21.0)
    assert M.curve_auc(radii, np.ones(20)) == pytest.approx(1.0)
    assert M.curve_auc(radii, (radii - 1) / 19) == pytest.approx(0.5)
    with pytest.raises(EvaluationInputError, match="increasing"):
        M.curve_auc(np.array([2.0, 1.0]), np.array([0.0, 1.0]))


def test_flic_report_by_hand_with_a_backwards_person() -> None:
    front, back = _flic_person(True), _flic_person(False)
    gt = np.stack([front, back])
    flipped, _ = M.modec_flip_backwards_facing(gt)
    pred = flipped[:, :6].copy()
    # person 0: left elbow 4.5 % off, right wrist 12.5 % off; person 1 predicted as relabelled (exact).
    pred[0, 1, 1] += 4.5
    pred[0, 5, 0] += 12.5
    r = M.flic_report(pred, gt)
    assert (r.num_examples, r.num_flipped) == (2, 1)
    elbow = np.array([3 / 4] * 4 + [1.0] * 16)  # 4.5 % is a hit from r = 5
    wrist = np.array([3 / 4] * 12 + [1.0] * 8)  # 12.5 % from r = 13
    np.testing.assert_allclose(r.elbow_curve, elbow)
    np.testing.assert_allclose(r.wrist_curve, wrist)
    # AUC: 1 - (area missing) where the curve is 3/4 up to r0 - 1 then ramps to 1 over one step.
    assert r.elbow_auc == pytest.approx(1 - 0.25 * (3 + 0.5) / 19)
    assert r.wrist_auc == pytest.approx(1 - 0.25 * (11 + 0.5) / 19)
    assert r.pck02 == {"elbow": 1.0, "wrist": 1.0}
    # Predicting the *anatomical* (unflipped) joints of the backwards person costs both its elbows.
    raw = M.flic_report(gt[:, :6], gt)
    assert raw.pck02["elbow"] == pytest.approx(0.5) and raw.pck02["wrist"] == pytest.approx(0.5)

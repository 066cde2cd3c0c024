"""Pose metrics in pure numpy: PCK / PCKh, the MPII PCKh report, MODEC's FLIC protocol, RMSE.

No TensorFlow here (and none may be added): these functions score arrays, whoever produced them.
Training code wraps them; ``posepipe evaluate`` calls them on files read by
:mod:`tasks.evaluation.readers`.

Conventions:
    * Coordinates are ``(N, J, 2)`` arrays (x, y) in whatever pixel frame the ground truth uses;
      the metrics only compare them, so prediction and ground truth must share the frame.
    * ``visible`` is an ``(N, J) bool`` mask of the ground-truth joints that count. Joints that are
      not visible are left out of numerators *and* denominators.
    * Per-joint results are fractions in ``[0, 1]`` (NaN for a joint never visible) unless a
      function says it reproduces a protocol that reports percentages.
    * A prediction that is NaN where the ground truth is visible counts as a miss (never as a hit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.errors import EvaluationInputError
from schemas.skeletons import FLIC29, MPII16, Skeleton

__all__ = [
    "FLIC_EVAL_PARTS",
    "MODEC_FLIP_LEFT",
    "MODEC_FLIP_RIGHT",
    "MPII_PARTS",
    "MPII_PCKH_THRESHOLDS",
    "FlicReport",
    "MpiiPckhReport",
    "accuracy_curve",
    "bbox_norm",
    "curve_auc",
    "flic_report",
    "head_norm_from_boxes",
    "head_norm_from_joints",
    "keypoint_distances_px",
    "keypoints_bbox_xyxy",
    "modec_backwards_facing",
    "modec_errors",
    "modec_flip_backwards_facing",
    "mpii_pckh_report",
    "normalized_distances",
    "pck",
    "pckh",
    "rmse_px",
    "torso_norm",
]


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def _check_xy(name: str, xy: np.ndarray) -> np.ndarray:
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise EvaluationInputError(
            f"{name} has shape {arr.shape}; expected (N, J, 2) x/y coordinates",
            hint="stack one (J, 2) array per person along the first axis",
        )
    return arr


def _check_pair(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = _check_xy("pred", pred)
    g = _check_xy("gt", gt)
    if p.shape != g.shape:
        raise EvaluationInputError(
            f"pred has shape {p.shape} but gt has shape {g.shape}; expected the same (N, J, 2)",
            hint="predictions must list the same people and joints, in the same order, as the ground truth",
        )
    v = np.asarray(visible)
    if v.shape != g.shape[:2]:
        raise EvaluationInputError(f"visible has shape {v.shape}; expected {g.shape[:2]} (N, J)")
    v = v.astype(bool)
    bad = v & ~np.all(np.isfinite(g), axis=-1)
    if bad.any():
        n, j = np.argwhere(bad)[0]
        raise EvaluationInputError(
            f"ground truth is not finite at {int(bad.sum())} visible joints (first: person {n}, joint {j})",
            hint="mark unknown ground-truth joints as not visible instead of giving them NaN coordinates",
        )
    return p, g, v


def _check_norm(norm: np.ndarray, n: int, what: str) -> np.ndarray:
    arr = np.asarray(norm, dtype=np.float64)
    if arr.shape != (n,):
        raise EvaluationInputError(f"{what} has shape {arr.shape}; expected ({n},), one size per person")
    return arr


# --------------------------------------------------------------------------------------------------
# Generic PCK family
# --------------------------------------------------------------------------------------------------


def keypoint_distances_px(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance between predicted and true joints.

    Args:
        pred: ``(N, J, 2)`` predicted x, y in pixels.
        gt: ``(N, J, 2)`` true x, y in pixels.

    Returns:
        ``(N, J) float64`` distances in pixels (NaN where either point is NaN).
    """
    p = _check_xy("pred", pred)
    g = _check_xy("gt", gt)
    if p.shape != g.shape:
        raise EvaluationInputError(f"pred has shape {p.shape} but gt has shape {g.shape}; expected the same (N, J, 2)")
    return np.sqrt(np.sum((p - g) ** 2, axis=-1))


def normalized_distances(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Distances divided by a per-person size.

    Args:
        pred: ``(N, J, 2)`` predicted coordinates (px).
        gt: ``(N, J, 2)`` true coordinates (px).
        visible: ``(N, J) bool`` joints that count.
        norm: ``(N,)`` per-person normalising length (px), strictly positive for every person
            with a visible joint.

    Returns:
        ``(N, J) float64``: distance / norm where visible, NaN elsewhere. A NaN prediction on a
        visible joint gives ``inf`` (always a miss).
    """
    p, g, v = _check_pair(pred, gt, visible)
    s = _check_norm(norm, g.shape[0], "norm")
    used = v.any(axis=1)
    bad = used & ~(np.isfinite(s) & (s > 0))
    if bad.any():
        raise EvaluationInputError(
            f"normalising size is zero, negative or not finite for {int(bad.sum())} people "
            f"(first: person {int(np.argmax(bad))})",
            hint="check the boxes or reference joints the size comes from",
        )
    dist = np.sqrt(np.sum((p - g) ** 2, axis=-1))
    dist = np.where(np.isnan(dist), np.inf, dist)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = dist / np.where(used, s, 1.0)[:, None]
    return np.where(v, out, np.nan)


def pck(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, norm: np.ndarray, thr: float
) -> np.ndarray:
    """Percentage of Correct Keypoints per joint: ``distance / norm <= thr``.

    Args:
        pred: ``(N, J, 2)`` predicted coordinates (px).
        gt: ``(N, J, 2)`` true coordinates (px).
        visible: ``(N, J) bool`` joints that count.
        norm: ``(N,)`` per-person normalising length (px) (see :func:`bbox_norm`,
            :func:`torso_norm`, :func:`head_norm_from_boxes`).
        thr: Threshold as a fraction of ``norm``.

    Returns:
        ``(J,) float64`` fraction of visible joints within the threshold; NaN for a joint that is
        never visible.
    """
    d = normalized_distances(pred, gt, visible, norm)
    v = np.asarray(visible, dtype=bool)
    hits = np.sum((d <= thr) & v, axis=0).astype(np.float64)
    count = v.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, hits / np.maximum(count, 1), np.nan)


def pckh(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray, thr: float) -> np.ndarray:
    """PCKh: PCK normalised by head size (MPII: 0.6 x head-box diagonal, see :func:`head_norm_from_boxes`).

    Args:
        pred: ``(N, J, 2)`` predicted coordinates (px).
        gt: ``(N, J, 2)`` true coordinates (px).
        visible: ``(N, J) bool`` joints that count.
        head_size: ``(N,)`` head size (px).
        thr: Threshold as a fraction of the head size (0.5 for PCKh@0.5).

    Returns:
        ``(J,) float64`` per-joint fraction correct (NaN where a joint is never visible).
    """
    return pck(pred, gt, visible, head_size, thr)


def keypoints_bbox_xyxy(gt: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Tight box around each person's visible ground-truth joints.

    Args:
        gt: ``(N, J, 2)`` true coordinates (px).
        visible: ``(N, J) bool``.

    Returns:
        ``(N, 4) float64`` ``[x1, y1, x2, y2]``; NaN for a person with no visible joint.
    """
    g = _check_xy("gt", gt)
    v = np.asarray(visible, dtype=bool)
    if v.shape != g.shape[:2]:
        raise EvaluationInputError(f"visible has shape {v.shape}; expected {g.shape[:2]} (N, J)")
    masked = np.where(v[..., None], g, np.nan)
    out = np.full((g.shape[0], 4), np.nan)
    any_vis = v.any(axis=1)
    if any_vis.any():
        out[any_vis, :2] = np.nanmin(masked[any_vis], axis=1)
        out[any_vis, 2:] = np.nanmax(masked[any_vis], axis=1)
    return out


def bbox_norm(bboxes_xyxy: np.ndarray) -> np.ndarray:
    """MMPose's ``bbox`` normalisation: the longer side of each person's box.

    Args:
        bboxes_xyxy: ``(N, 4)`` boxes ``[x1, y1, x2, y2]`` in pixels.

    Returns:
        ``(N,) float64`` ``max(x2 - x1, y2 - y1)``.
    """
    b = np.asarray(bboxes_xyxy, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise EvaluationInputError(f"boxes have shape {b.shape}; expected (N, 4) [x1, y1, x2, y2]")
    return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def torso_norm(
    gt: np.ndarray, skeleton: Skeleton, joint_a: str = "left_shoulder", joint_b: str = "right_hip"
) -> np.ndarray:
    """Torso diameter: distance between two ground-truth joints (FLIC/DeepPose: left shoulder to right hip).

    Args:
        gt: ``(N, J, 2)`` true coordinates (px) in ``skeleton``'s joint order.
        skeleton: Skeleton naming the joints (any skeleton with both joints).
        joint_a: First joint name.
        joint_b: Second joint name.

    Returns:
        ``(N,) float64`` lengths in pixels (NaN where either joint is unknown).

    Raises:
        SkeletonError: If the skeleton lacks one of the joints or ``gt`` does not fit it.
    """
    g = _check_xy("gt", gt)
    skeleton.check(g)
    a, b = skeleton.index(joint_a), skeleton.index(joint_b)
    return np.sqrt(np.sum((g[:, a] - g[:, b]) ** 2, axis=-1))


def head_norm_from_boxes(head_boxes_xyxy: np.ndarray, sc_bias: float = 0.6) -> np.ndarray:
    """MPII head size: ``sc_bias`` x the diagonal of the head box (``SC_BIAS = 0.6`` in ``eval_PCKh``).

    Args:
        head_boxes_xyxy: ``(N, 4)`` head boxes ``[x1, y1, x2, y2]`` (px).
        sc_bias: Factor on the diagonal.

    Returns:
        ``(N,) float64`` head sizes in pixels.
    """
    b = np.asarray(head_boxes_xyxy, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise EvaluationInputError(f"head boxes have shape {b.shape}; expected (N, 4) [x1, y1, x2, y2]")
    return sc_bias * np.sqrt((b[:, 2] - b[:, 0]) ** 2 + (b[:, 3] - b[:, 1]) ** 2)


def head_norm_from_joints(
    gt: np.ndarray, skeleton: Skeleton, joint_a: str = "head_top", joint_b: str = "upper_neck"
) -> np.ndarray:
    """Head size from two joints (head top to upper neck), for skeletons without head boxes (LSP).

    Args:
        gt: ``(N, J, 2)`` true coordinates (px).
        skeleton: Skeleton with both joints (``mpii16``, ``lsp14``).
        joint_a: First joint name.
        joint_b: Second joint name.

    Returns:
        ``(N,) float64`` head sizes in pixels.
    """
    return torso_norm(gt, skeleton, joint_a, joint_b)


def rmse_px(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray) -> float:
    """Root-mean-square coordinate error, as the FLIC regression notebooks report it.

    ``sqrt(mean((pred - gt) ** 2))`` over the x and the y of every visible joint (the notebooks'
    ``mean_squared_error`` on flattened coordinates), so a joint off by (3, 4) px alone gives
    ``sqrt((9 + 16) / 2)``.

    Args:
        pred: ``(N, J, 2)`` predicted coordinates (px).
        gt: ``(N, J, 2)`` true coordinates (px).
        visible: ``(N, J) bool`` joints that count.

    Returns:
        RMSE in pixels.

    Raises:
        EvaluationInputError: If no joint is visible, or a visible joint's prediction is NaN.
    """
    p, g, v = _check_pair(pred, gt, visible)
    if not v.any():
        raise EvaluationInputError("no visible joint to compute an RMSE over", hint="check the visibility mask")
    diff = (p - g)[v]
    if not np.all(np.isfinite(diff)):
        raise EvaluationInputError(
            f"{int((~np.isfinite(diff)).any(axis=-1).sum())} predictions of visible joints are not finite",
            hint="RMSE needs a prediction for every visible joint",
        )
    return float(np.sqrt(np.mean(diff**2)))


# --------------------------------------------------------------------------------------------------
# MPII PCKh report (eval_PCKh.m / pytorch-pose / HRNet / MMPose)
# --------------------------------------------------------------------------------------------------

#: Reported parts and their MPII joint ids (0-based, ``mpii16`` order); pairs are averaged.
MPII_PARTS: dict[str, tuple[int, ...]] = {
    "Head": (MPII16.index("head_top"),),
    "Shoulder": (MPII16.index("left_shoulder"), MPII16.index("right_shoulder")),
    "Elbow": (MPII16.index("left_elbow"), MPII16.index("right_elbow")),
    "Wrist": (MPII16.index("left_wrist"), MPII16.index("right_wrist")),
    "Hip": (MPII16.index("left_hip"), MPII16.index("right_hip")),
    "Knee": (MPII16.index("left_knee"), MPII16.index("right_knee")),
    "Ankle": (MPII16.index("left_ankle"), MPII16.index("right_ankle")),
}
#: Joints left out of the Mean (pelvis and thorax), as every MPII evaluator does.
_MPII_MEAN_EXCLUDED = (MPII16.index("pelvis"), MPII16.index("thorax"))
#: PCKh curve thresholds: 0, 0.01, ..., 0.50 (HRNet's ``np.arange(0, 0.5 + 0.01, 0.01)``), exact decimals.
MPII_PCKH_THRESHOLDS: np.ndarray = np.round(np.arange(51) * 0.01, 2)


@dataclass(frozen=True)
class MpiiPckhReport:
    """The MPII PCKh numbers, in percent like every MPII table.

    Attributes:
        per_joint_05: ``(16,)`` PCKh@0.5 per joint (percent, ``mpii16`` order).
        per_joint_01: ``(16,)`` PCKh@0.1 per joint (percent).
        parts_05: Part name -> PCKh@0.5 (Head .. Ankle, ``Mean`` weighted by joint counts over the 14
            joints other than pelvis and thorax as HRNet/MMPose, ``Mean_unweighted`` the plain mean of
            those 14 per-joint values as pytorch-pose).
        parts_01: The same at threshold 0.1.
        thresholds: ``(51,)`` curve thresholds 0..0.5.
        curve: ``(51,)`` weighted Mean PCKh (percent) at each threshold.
        auc: Mean of ``curve`` over its 51 points (percent): MMPose/HRNet-style area under the
            PCKh curve on [0, 0.5], normalised by the number of thresholds.
        joint_count: ``(16,)`` number of visible joints per joint id.
    """

    per_joint_05: np.ndarray
    per_joint_01: np.ndarray
    parts_05: dict[str, float]
    parts_01: dict[str, float]
    thresholds: np.ndarray
    curve: np.ndarray
    auc: float
    joint_count: np.ndarray

    def to_dict(self) -> dict[str, object]:
        """JSON-ready ``{"pckh@0.5": {...}, "pckh@0.1": {...}, "auc": ..}`` (percent)."""
        return {"pckh@0.5": dict(self.parts_05), "pckh@0.1": dict(self.parts_01), "auc": self.auc}


def _mpii_parts(per_joint_pct: np.ndarray, weights: np.ndarray, mean_mask: np.ndarray) -> dict[str, float]:
    parts = {name: float(np.mean(per_joint_pct[list(ids)])) for name, ids in MPII_PARTS.items()}
    parts["Mean"] = float(np.sum(per_joint_pct[mean_mask] * weights[mean_mask]))
    parts["Mean_unweighted"] = float(np.mean(per_joint_pct[mean_mask]))
    return parts


def mpii_pckh_report(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray
) -> MpiiPckhReport:
    """The official MPII single-person PCKh evaluation.

    A joint is correct when ``distance / head_size <= thr`` (the Python ports' ``<=``; no ground
    truth in the standard file sits exactly on a threshold); joints not visible are excluded.

    Args:
        pred: ``(N, 16, 2)`` predictions in MPII joint order, same pixel frame as ``gt``.
        gt: ``(N, 16, 2)`` ground truth.
        visible: ``(N, 16) bool`` (``jnt_missing == 0``).
        head_size: ``(N,)`` head sizes (px), see :func:`head_norm_from_boxes`.

    Returns:
        The :class:`MpiiPckhReport`.
    """
    p, g, v = _check_pair(pred, gt, visible)
    if g.shape[1] != MPII16.num_joints:
        raise EvaluationInputError(
            f"MPII PCKh needs 16 joints in MPII order; got {g.shape[1]}",
            hint="joint order: " + ", ".join(MPII16.source_names or ()),
        )
    d = normalized_distances(p, g, v, head_size)
    count = v.sum(axis=0)
    if np.any(count == 0):
        raise EvaluationInputError(f"joints {np.flatnonzero(count == 0).tolist()} are never visible in the ground truth")
    mean_mask = np.ones(16, dtype=bool)
    mean_mask[list(_MPII_MEAN_EXCLUDED)] = False
    weights = np.where(mean_mask, count, 0) / np.sum(count[mean_mask])

    def per_joint(thr: float) -> np.ndarray:
        return 100.0 * np.sum((d <= thr) & v, axis=0) / count

    curve_joints = np.stack([per_joint(float(t)) for t in MPII_PCKH_THRESHOLDS])  # (51, 16)
    curve = np.sum(curve_joints * weights, axis=1)
    pj05, pj01 = per_joint(0.5), per_joint(0.1)
    return MpiiPckhReport(
        per_joint_05=pj05,
        per_joint_01=pj01,
        parts_05=_mpii_parts(pj05, weights, mean_mask),
        parts_01=_mpii_parts(pj01, weights, mean_mask),
        thresholds=MPII_PCKH_THRESHOLDS.copy(),
        curve=curve,
        auc=float(np.mean(curve)),
        joint_count=count,
    )


# --------------------------------------------------------------------------------------------------
# FLIC: MODEC's evaluation (eval_dataset.m, score_predictions.m, accuracyCurve.m)
# --------------------------------------------------------------------------------------------------

#: The six arm joints of MODEC's predictions, in ``pred_coords`` column order (= FLIC slots 1..6).
FLIC_EVAL_PARTS: tuple[str, ...] = ("lsho", "lelb", "lwri", "rsho", "relb", "rwri")
#: Joints MODEC swaps for backwards-facing people (shoulders, elbows, wrists; hips stay).
MODEC_FLIP_LEFT: tuple[int, ...] = tuple(FLIC29.index(n) for n in ("lsho", "lelb", "lwri"))
MODEC_FLIP_RIGHT: tuple[int, ...] = tuple(FLIC29.index(n) for n in ("rsho", "relb", "rwri"))


def modec_backwards_facing(coords_xy: np.ndarray) -> np.ndarray:
    """MODEC's test for a backwards-facing person: every left arm joint left of its right twin.

    ``x(lsho) < x(rsho)`` and ``x(lelb) < x(relb)`` and ``x(lwri) < x(rwri)``; a NaN comparison is
    false, as in MATLAB.

    Args:
        coords_xy: ``(N, 29, 2)`` FLIC coordinates in ``flic29`` (MODEC ``lookupPart``) order.

    Returns:
        ``(N,) bool``.
    """
    c = _check_xy("coords", coords_xy)
    FLIC29.check(c)
    with np.errstate(invalid="ignore"):
        return np.all(c[:, MODEC_FLIP_LEFT, 0] < c[:, MODEC_FLIP_RIGHT, 0], axis=1)


def modec_flip_backwards_facing(coords_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``flip_backwards_facing_groundtruth.m``: swap left/right shoulders, elbows, wrists of backwards people.

    Hips (and every other joint) are left where they are.

    Args:
        coords_xy: ``(N, 29, 2)`` FLIC coordinates.

    Returns:
        ``(N, 29, 2) float64`` relabelled coordinates and the ``(N,) bool`` backwards mask.
    """
    c = _check_xy("coords", coords_xy).copy()
    back = modec_backwards_facing(c)
    left, right = list(MODEC_FLIP_LEFT), list(MODEC_FLIP_RIGHT)
    swapped = c[back][:, left + right]
    c[np.ix_(back, left + right)] = swapped[:, list(range(3, 6)) + list(range(3))]
    return c, back


def modec_errors(
    pred6_xy: np.ndarray,
    gt29_xy: np.ndarray,
    parts: tuple[str, ...],
    scale_by: tuple[str, str] = ("lsho", "rhip"),
) -> np.ndarray:
    """``score_predictions.m``: joint error in percent of the ground-truth torso (``lsho``-``rhip``).

    ``100 * ||gt - pred|| / ||gt[lsho] - gt[rhip]||``, computed on ground truth *after*
    :func:`modec_flip_backwards_facing` (so for backwards people the scale is taken from the
    relabelled left shoulder, as MODEC does).

    Args:
        pred6_xy: ``(N, 6, 2)`` predictions in :data:`FLIC_EVAL_PARTS` order.
        gt29_xy: ``(N, 29, 2)`` ground truth in ``flic29`` order.
        parts: Names among :data:`FLIC_EVAL_PARTS` to score (for example ``("lelb", "relb")``).
        scale_by: The two ground-truth joints whose distance is the scale.

    Returns:
        ``(N, len(parts)) float64`` errors in percent of the torso size; ``inf`` where the
        prediction is NaN (a miss at every radius).
    """
    p = _check_xy("pred", pred6_xy)
    g = _check_xy("gt", gt29_xy)
    if p.shape[1] != len(FLIC_EVAL_PARTS) or p.shape[0] != g.shape[0]:
        raise EvaluationInputError(
            f"FLIC predictions have shape {p.shape}; expected ({g.shape[0]}, 6, 2) in order {FLIC_EVAL_PARTS}"
        )
    FLIC29.check(g)
    unknown = [n for n in parts if n not in FLIC_EVAL_PARTS]
    if unknown:
        raise EvaluationInputError(f"parts {unknown} are not among the predicted {FLIC_EVAL_PARTS}")
    scale = np.sqrt(np.sum((g[:, FLIC29.index(scale_by[0])] - g[:, FLIC29.index(scale_by[1])]) ** 2, axis=-1))
    cols_pred = [FLIC_EVAL_PARTS.index(n) for n in parts]
    cols_gt = [FLIC29.index(n) for n in parts]
    gt_parts = g[:, cols_gt]
    bad = ~(np.isfinite(scale) & (scale > 0)) | ~np.all(np.isfinite(gt_parts), axis=(1, 2))
    if bad.any():
        raise EvaluationInputError(
            f"{int(bad.sum())} ground-truth examples lack a finite torso or {parts} (first: example {int(np.argmax(bad))})",
            hint="FLIC test examples label shoulders, elbows, wrists and hips; check the file is FLIC's examples.mat",
        )
    dist = np.sqrt(np.sum((gt_parts - p[:, cols_pred]) ** 2, axis=-1))
    dist = np.where(np.isnan(dist), np.inf, dist)
    return 100.0 * dist / scale[:, None]


def accuracy_curve(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``accuracyCurve.m``: fraction of errors at or below each threshold (NaN errors are misses).

    Args:
        errors: Errors of any shape (all values pooled, as ``vals(:)``).
        thresholds: ``(T,)`` thresholds in the errors' unit.

    Returns:
        ``(T,) float64`` fractions in [0, 1].
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    if e.size == 0:
        raise EvaluationInputError("no errors to build an accuracy curve from")
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    with np.errstate(invalid="ignore"):
        return np.array([np.mean(e <= r) for r in t], dtype=np.float64)


def curve_auc(thresholds: np.ndarray, accuracy: np.ndarray) -> float:
    """Area under an accuracy curve with the thresholds rescaled to [0, 1] (MODEC's ``scale01``).

    Trapezoid rule over ``(t - t_min) / (t_max - t_min)`` (for r = 1..20: ``(r - 1) / 19``); this
    equals MATLAB's ``quadgk`` over the linear interpolation ``area_under_curve.m`` integrates.

    Args:
        thresholds: ``(T,)`` increasing thresholds, T >= 2.
        accuracy: ``(T,)`` accuracy at each threshold.

    Returns:
        The area, in the unit of ``accuracy`` (1.0 for a curve that is 1 everywhere).
    """
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    a = np.asarray(accuracy, dtype=np.float64).ravel()
    if t.shape != a.shape or t.size < 2 or not np.all(np.diff(t) > 0):
        raise EvaluationInputError(
            f"an AUC needs >= 2 increasing thresholds and one accuracy each; got {t.shape} and {a.shape}"
        )
    x = (t - t[0]) / (t[-1] - t[0])
    return float(np.sum((x[1:] - x[:-1]) * (a[1:] + a[:-1]) / 2.0))


@dataclass(frozen=True)
class FlicReport:
    """MODEC's FLIC numbers (fractions in [0, 1]).

    Attributes:
        radii: ``(20,)`` error radii 1..20 (percent of torso).
        elbow_curve: ``(20,)`` elbow accuracy at each radius (left and right pooled).
        wrist_curve: ``(20,)`` wrist accuracy at each radius.
        elbow_auc: Area under ``elbow_curve`` over ``(r - 1) / 19``.
        wrist_auc: Area under ``wrist_curve``.
        pck02: ``{"elbow": .., "wrist": ..}`` accuracy at 20 % of the torso (PCK@0.2).
        num_examples: Test examples scored.
        num_flipped: Of those, ground truths relabelled as backwards-facing.
    """

    radii: np.ndarray
    elbow_curve: np.ndarray
    wrist_curve: np.ndarray
    elbow_auc: float
    wrist_auc: float
    pck02: dict[str, float]
    num_examples: int
    num_flipped: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready ``{"elbow_auc": .., "wrist_auc": .., "pck@0.2": {"elbow": .., "wrist": ..}}``."""
        return {"elbow_auc": self.elbow_auc, "wrist_auc": self.wrist_auc, "pck@0.2": dict(self.pck02)}


def flic_report(pred6_xy: np.ndarray, gt29_xy: np.ndarray) -> FlicReport:
    """MODEC's ``eval_dataset.m`` on already-selected test examples.

    Flips backwards-facing ground truth, scores elbows and wrists in percent of the torso, builds
    the accuracy curves for radii 1..20 and their AUCs; PCK@0.2 is the curve at radius 20.

    Args:
        pred6_xy: ``(N, 6, 2)`` predictions (lsho, lelb, lwri, rsho, relb, rwri).
        gt29_xy: ``(N, 29, 2)`` ground truth of the same examples, as stored (not yet flipped).

    Returns:
        The :class:`FlicReport`.
    """
    gt_flipped, back = modec_flip_backwards_facing(gt29_xy)
    radii = np.arange(1, 21, dtype=np.float64)
    elbow = accuracy_curve(modec_errors(pred6_xy, gt_flipped, ("lelb", "relb")), radii)
    wrist = accuracy_curve(modec_errors(pred6_xy, gt_flipped, ("lwri", "rwri")), radii)
    return FlicReport(
        radii=radii,
        elbow_curve=elbow,
        wrist_curve=wrist,
        elbow_auc=curve_auc(radii, elbow),
        wrist_auc=curve_auc(radii, wrist),
        pck02={"elbow": float(elbow[-1]), "wrist": float(wrist[-1])},
        num_examples=int(gt_flipped.shape[0]),
        num_flipped=int(back.sum()),
    )

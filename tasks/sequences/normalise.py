"""Pose normalisation of a sequence: centre on the body, scale by the torso.

``normalise_sequence`` moves every person of frame ``t`` by the same offset, the main person's
(person 0, the highest-scoring track) body centre at ``t``, and divides by one length per clip,
the median of the main person's torso length (neck to hip midpoint) over the frames where both are
found. The body centre is the hip midpoint (``centre="hips"``, the neck where a hip is missing) or
the neck (``centre="neck"``). The neck is the skeleton's ``neck`` joint, else the shoulders'
midpoint (COCO-17, as OpenPose derives it); the hip midpoint is the mean of ``left_hip`` and
``right_hip``. Frames where the main person has no centre use the mean centre of the other frames;
a clip with no torso at all is scaled by the main person's median box diagonal. Scores are kept,
unknown joints stay NaN.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from schemas.errors import SkeletonError
from schemas.skeletons import Skeleton, get_skeleton
from tasks.sequences.tracking import found_joints


def _point(seq: np.ndarray, sk: Skeleton, names: tuple[str, ...]) -> np.ndarray:
    """``(T, M, 2)``: the mean of the named joints (NaN where any is not found)."""
    idx = [sk.index(n) for n in names]
    xy = np.where(found_joints(seq[..., idx, :])[..., None], seq[..., idx, :2], np.nan)
    return xy.mean(axis=-2)


def neck_xy(seq: np.ndarray, skeleton: Skeleton | str) -> np.ndarray:
    """``(T, M, 2)`` neck of every person of a ``(T, M, J, 3)`` sequence (NaN where not found)."""
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    return _point(seq, sk, ("neck",) if "neck" in sk.joints else ("left_shoulder", "right_shoulder"))


def hips_xy(seq: np.ndarray, skeleton: Skeleton | str) -> np.ndarray:
    """``(T, M, 2)`` hip midpoint of every person (NaN where a hip is not found)."""
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    return _point(seq, sk, ("left_hip", "right_hip"))


def normalise_sequence(
    sequence: np.ndarray, skeleton: Skeleton | str, centre: Literal["hips", "neck"] = "hips"
) -> np.ndarray:
    """Centre and scale a ``(T, M, J, 3)`` sequence (see the module docstring).

    Args:
        sequence: ``(T, M, J, 3)`` x_px, y_px, score.
        skeleton: Its skeleton (needs a neck or shoulders, and hips).
        centre: ``hips`` (hip midpoint, neck as fallback) or ``neck``.

    Returns:
        ``(T, M, J, 3) float32``: x, y in torso lengths from the body centre, score unchanged.

    Raises:
        SkeletonError: If the joint count does not match the skeleton, or it lacks the joints.

    Example:
        A person whose neck is at (100, 50) and hip midpoint at (100, 150) comes out with the hips at
        (0, 0) and the neck at (0, -1).
    """
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    seq = np.asarray(sequence, np.float32)
    if seq.ndim != 4 or seq.shape[2] != sk.num_joints or seq.shape[3] != 3:
        raise SkeletonError(f"sequence of shape {seq.shape} is not (T, M, {sk.num_joints}, 3) for {sk.name}")
    out = seq.copy()
    if seq.shape[0] == 0 or seq.shape[1] == 0:
        return out
    neck, hips = neck_xy(seq[:, :1], sk)[:, 0], hips_xy(seq[:, :1], sk)[:, 0]  # main person, (T, 2)
    c = neck.copy() if centre == "neck" else np.where(np.isfinite(hips), hips, neck)
    valid = np.isfinite(c).all(axis=1)
    if not valid.any():
        found = found_joints(seq[:, 0])
        c[:] = np.nanmean(np.where(found[..., None], seq[:, 0, :, :2], np.nan).reshape(-1, 2), axis=0) if found.any() else 0.0
    else:
        c[~valid] = c[valid].mean(axis=0)
    torso = np.hypot(*(neck - hips).T)
    torso = torso[np.isfinite(torso) & (torso > 0)]
    if torso.size:
        scale = float(np.median(torso))
    else:
        found = found_joints(seq[:, 0])
        diag = [float(np.hypot(*(p[f, :2].max(0) - p[f, :2].min(0)))) for p, f in zip(seq[:, 0], found, strict=True) if f.sum() > 1]
        scale = float(np.median(diag)) if diag and np.median(diag) > 0 else 1.0
    out[..., :2] = (seq[..., :2] - c[:, None, None, :]) / scale
    return out

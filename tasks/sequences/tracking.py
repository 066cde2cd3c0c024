"""Person handling as PYSKL does it: track people across frames, keep the main ones.

PYSKL's pose extraction (``tools/data/ntu_pose_extraction.py``) detects people per frame, links
them into tracks and keeps the ``M`` tracks with the highest summed keypoint score. Here:

* **Tracking** (:func:`track_people`): frame by frame, each live track predicts its pose at the
  current frame by moving its last pose with its velocity (the mean motion of the joints it saw in
  its last two observations, constant-velocity model); the cost of giving detection ``d`` to track
  ``k`` is the mean distance between the predicted and the detected joints that both have, divided
  by the larger of the two people's box diagonals (a keypoint distance, scale free). The
  assignment minimising the total cost (Hungarian, ``scipy.optimize.linear_sum_assignment``) is
  kept where a pair costs at most ``max_cost``; other detections start new tracks, and a track not
  matched for more than ``max_gap_frames`` frames ends. Because the prediction carries the motion,
  two people crossing each other keep their identities (the nearest-last-pose rule swaps them at
  the crossing; plain box IoU cannot tell two overlapping people apart at all).
* **Selection** (:func:`keep_main_people`): the ``M`` tracks with the highest summed score (sum
  over frames and joints of the joint scores), highest first.

Arrays: a frame's detections are ``(P, J, 3) float32`` (x_px, y_px, score; NaN x/y and score 0
for a joint not found); a track set is ``(K, T, J, 3)`` with NaN x/y and score 0 where the track
has nobody.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.errors import ConfigError

#: A match costing more than this (mean joint distance / person size) starts a new track.
DEFAULT_MAX_COST = 1.0
#: A track unmatched for more frames than this ends.
DEFAULT_MAX_GAP_FRAMES = 5


def found_joints(pose: np.ndarray) -> np.ndarray:
    """``(..., J) bool``: joints with finite coordinates and a positive score (``pose`` ``(..., J, 3)``)."""
    return np.isfinite(pose[..., 0]) & np.isfinite(pose[..., 1]) & (pose[..., 2] > 0)  # NaN > 0 is False


def is_person(pose: np.ndarray) -> bool:
    """Whether a ``(J, 3)`` detection has at least one found joint."""
    return bool(found_joints(pose).any())


def _diagonals_px(poses: np.ndarray, found: np.ndarray) -> np.ndarray:
    """``(N,)`` box diagonal of the found joints of ``(N, J, 3)`` poses (at least 1 px)."""
    xy = poses[..., :2]
    hi = np.where(found[..., None], xy, -np.inf).max(axis=1)
    lo = np.where(found[..., None], xy, np.inf).min(axis=1)
    ext = np.where(found.any(axis=1)[:, None], hi - lo, 0.0)
    return np.maximum(np.sqrt((ext * ext).sum(axis=1)), 1.0)


def cost_matrix(predicted: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """``(K, P)`` keypoint-distance costs of ``(K, J, 3)`` predicted poses against ``(P, J, 3)`` detections.

    Per pair: the mean distance of the joints both have, divided by the larger box diagonal of the
    two; with no joint in common, the distance between the means of their found joints (same scale);
    ``inf`` when either has no found joint.
    """
    a, b = found_joints(predicted), found_joints(detected)  # (K, J), (P, J)
    scale = np.maximum(_diagonals_px(predicted, a)[:, None], _diagonals_px(detected, b)[None])
    common = a[:, None] & b[None]  # (K, P, J)
    pa_, pb = np.where(a[..., None], predicted[..., :2], 0.0), np.where(b[..., None], detected[..., :2], 0.0)
    diff = pa_[:, None] - pb[None]
    d = np.where(common, np.sqrt((diff * diff).sum(-1)), 0.0)
    n = common.sum(-1)
    na, nb = np.maximum(a.sum(-1), 1)[:, None], np.maximum(b.sum(-1), 1)[:, None]
    dc = pa_.sum(1) / na  # (K, 2) centroids of the found joints
    dc = dc[:, None] - (pb.sum(1) / nb)[None]
    centroid = np.sqrt((dc * dc).sum(-1))
    cost = np.where(n > 0, d.sum(-1) / np.maximum(n, 1), centroid) / scale
    cost[~a.any(-1)] = np.inf
    cost[:, ~b.any(-1)] = np.inf
    return cost


@dataclass
class _Track:
    poses: dict[int, np.ndarray]  # time step -> (J, 3)
    last_t: int
    velocity_px: np.ndarray  # (2,) per time step

    def predict(self, t: int) -> np.ndarray:
        """``(J, 3)``: the last pose moved by the velocity to time step ``t``."""
        pose = self.poses[self.last_t].copy()
        pose[:, :2] += self.velocity_px * (t - self.last_t)
        return pose

    def add(self, t: int, pose: np.ndarray) -> None:
        last = self.poses[self.last_t]
        common = found_joints(last) & found_joints(pose)
        if common.any() and t > self.last_t:
            self.velocity_px = (pose[common, :2] - last[common, :2]).mean(axis=0) / (t - self.last_t)
        self.poses[t] = pose
        self.last_t = t


def match_cost(predicted: np.ndarray, detected: np.ndarray) -> float:
    """Keypoint-distance cost of giving ``detected`` ``(J, 3)`` to a track that predicts ``predicted`` (:func:`cost_matrix`).

    Example:
        Two identical poses cost 0; the same pose shifted by its own box diagonal costs 1.
    """
    return float(cost_matrix(predicted[None], detected[None])[0, 0])


def track_people(
    frames: Sequence[np.ndarray],
    max_cost: float = DEFAULT_MAX_COST,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
) -> np.ndarray:
    """Link per-frame detections into tracks (see the module docstring for the rule).

    Args:
        frames: ``T`` arrays ``(P_t, J, 3)`` (``P_t`` may be 0), in time order.
        max_cost: Largest accepted match cost (mean joint distance / person size).
        max_gap_frames: Frames a track may go unmatched before it ends.

    Returns:
        ``(K, T, J, 3) float32`` tracks in order of first appearance (NaN x/y, score 0 where a
        track has nobody); ``(0, T, J, 3)`` when nobody was detected.

    Raises:
        ConfigError: On a non-positive ``max_cost`` or negative ``max_gap_frames``, or frames with
            different joint counts.
    """
    from scipy.optimize import linear_sum_assignment  # imported here: adapter discovery imports this module

    if max_cost <= 0 or max_gap_frames < 0:
        raise ConfigError(f"tracking needs max_cost > 0 and max_gap_frames >= 0, got {max_cost}, {max_gap_frames}")
    joints = {f.shape[1] for f in frames if f.ndim == 3 and f.shape[0]}
    if len(joints) > 1:
        raise ConfigError(f"detections with different joint counts in one clip: {sorted(joints)}")
    num_joints = joints.pop() if joints else (frames[0].shape[1] if frames and frames[0].ndim == 3 else 0)
    tracks: list[_Track] = []
    for t, dets in enumerate(frames):
        dets = np.asarray(dets, np.float32)
        people = list(dets[found_joints(dets).any(-1)]) if len(dets) else []
        live = [k for k, tr in enumerate(tracks) if t - tr.last_t <= max_gap_frames + 1]
        unmatched = set(range(len(people)))
        if live and people:
            cost = cost_matrix(np.stack([tracks[k].predict(t) for k in live]), np.stack(people))
            finite = np.where(np.isfinite(cost), cost, 1e9)
            rows, cols = linear_sum_assignment(finite)
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] <= max_cost:
                    tracks[live[r]].add(t, people[c])
                    unmatched.discard(c)
        for c in sorted(unmatched):
            tracks.append(_Track({t: people[c]}, t, np.zeros(2, np.float32)))
    out = np.full((len(tracks), len(frames), num_joints, 3), np.nan, np.float32)
    out[..., 2] = 0.0
    for k, tr in enumerate(tracks):
        for t, pose in tr.poses.items():
            out[k, t] = pose
    return out


def track_scores(tracks: np.ndarray) -> np.ndarray:
    """``(K,) float32``: summed joint score of each ``(K, T, J, 3)`` track (unknown joints count 0)."""
    return np.nan_to_num(tracks[..., 2]).reshape(tracks.shape[0], -1).sum(axis=1).astype(np.float32)


def keep_main_people(tracks: np.ndarray, max_people: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``max_people`` tracks with the highest summed score, highest first (PYSKL's rule).

    Args:
        tracks: ``(K, T, J, 3)``.
        max_people: ``M``, most tracks kept.

    Returns:
        ``(T, M', J, 3) float32`` with ``M' = min(M, K)`` (time first, as a sequence row stores it)
        and the ``(M',)`` summed scores. Ties keep the earlier track.
    """
    if max_people < 1:
        raise ConfigError(f"max_people must be at least 1, got {max_people}")
    scores = track_scores(tracks)
    order = np.argsort(-scores, kind="stable")[:max_people]
    return np.ascontiguousarray(tracks[order].transpose(1, 0, 2, 3)), scores[order]

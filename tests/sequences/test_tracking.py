"""Tracking and person selection on generated sequences with known identities."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.errors import ConfigError
from tasks.sequences.tracking import keep_main_people, match_cost, track_people, track_scores

J = 18


def stick(x: float, y: float, arms_up: bool = False, score: float = 0.9) -> np.ndarray:
    """A ``(J, 3)`` person standing at (x, y) (neck), 60 px tall; 14 joints found."""
    kp = np.full((J, 3), np.nan, np.float32)
    kp[:, 2] = 0.0
    offsets = {0: (0, -10), 1: (0, 0), 2: (-8, 0), 5: (8, 0), 8: (-5, 30), 11: (5, 30), 9: (-5, 45), 12: (5, 45), 10: (-5, 60), 13: (5, 60)}
    offsets.update({3: (-10, -15), 4: (-10, -30), 6: (10, -15), 7: (10, -30)} if arms_up else {3: (-10, 15), 4: (-10, 28), 6: (10, 15), 7: (10, 28)})
    for j, (dx, dy) in offsets.items():
        kp[j] = (x + dx, y + dy, score)
    return kp


def crossing(frames: int = 30, same_pose: bool = True) -> list[np.ndarray]:
    """Two people walking past each other; each frame's detections are ordered by x (ids swap at the crossing)."""
    out = []
    for t in range(frames):
        a = stick(20 + 160 * t / (frames - 1), 50, arms_up=False, score=0.9)
        b = stick(180 - 160 * t / (frames - 1), 52, arms_up=not same_pose, score=0.6)
        out.append(np.stack(sorted([a, b], key=lambda p: p[1, 0])))
    return out


@pytest.mark.parametrize("same_pose", [True, False])
def test_identities_survive_a_crossing(same_pose: bool) -> None:
    tracks = track_people(crossing(same_pose=same_pose))
    assert tracks.shape == (2, 30, J, 3)
    neck_x = tracks[:, :, 1, 0]
    a = int(np.argmin(neck_x[:, 0]))  # the track that starts on the left
    assert (np.diff(neck_x[a]) > 0).all() and (np.diff(neck_x[1 - a]) < 0).all()  # never swapped
    np.testing.assert_allclose(tracks[a, :, 1, 2], 0.9)


def test_nearest_last_pose_would_swap_which_is_why_motion_is_predicted() -> None:
    """Without the velocity the crossing is ambiguous: at the frame after it the other person is nearer."""
    frames = crossing()
    before, after = frames[14], frames[15]
    left_before = before[0]  # person a (moving right), still on the left
    assert match_cost(left_before, after[0]) < match_cost(left_before, after[1])  # a's last pose is nearer b's new one


def test_keep_main_people_by_summed_score_and_gaps() -> None:
    frames = [np.stack([stick(30, 50, score=0.2), stick(120, 50, score=0.9)]) for _ in range(10)]
    frames[3] = frames[3][:1]  # the strong person is missed once: the track continues through the gap
    tracks = track_people(frames, max_gap_frames=2)
    assert tracks.shape[0] == 2
    seq, scores = keep_main_people(tracks, 1)
    assert seq.shape == (10, 1, J, 3) and scores.shape == (1,)
    assert np.isnan(seq[3, 0, 1, 0]) and seq[3, 0, 1, 2] == 0 and seq[4, 0, 1, 0] == 120
    np.testing.assert_allclose(scores, [9 * 14 * 0.9], rtol=1e-5)
    np.testing.assert_allclose(sorted(track_scores(tracks)), [10 * 14 * 0.2, 9 * 14 * 0.9], rtol=1e-5)


def test_a_jump_larger_than_max_cost_starts_a_new_track_and_nobody_gives_none() -> None:
    frames = [stick(20, 50)[None], stick(300, 50)[None]]
    assert track_people(frames).shape[0] == 2
    assert track_people([np.zeros((0, J, 3), np.float32)] * 3).shape == (0, 3, J, 3)
    with pytest.raises(ConfigError):
        track_people(frames, max_cost=0)

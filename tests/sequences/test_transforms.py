"""Normalisation, uniform sampling, skeleton images and the PYSKL annotation: tiny inputs, explicit outputs."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.errors import SkeletonError
from schemas.skeletons import get_skeleton
from tasks.sequences.normalise import normalise_sequence
from tasks.sequences.pyskl import annotation, split_name, splits_of
from tasks.sequences.sampling import pad_people, sample_positions, sample_sequence
from tasks.sequences.skeleton_images import canvas_transform, composite_image, frame_images

SK = get_skeleton("openpose18")


def person(neck: tuple[float, float], hips_y: float) -> np.ndarray:
    kp = np.full((SK.num_joints, 3), np.nan, np.float32)
    kp[:, 2] = 0
    kp[SK.index("neck")] = (*neck, 1)
    kp[SK.index("left_hip")] = (neck[0] + 10, hips_y, 1)
    kp[SK.index("right_hip")] = (neck[0] - 10, hips_y, 1)
    return kp


def test_normalise_centres_on_the_hips_and_scales_by_the_torso() -> None:
    seq = np.stack([np.stack([person((100, 50), 150), person((300, 60), 160)])])  # (1, 2, J, 3)
    out = normalise_sequence(seq, "openpose18")
    np.testing.assert_allclose(out[0, 0, SK.index("neck"), :2], [0, -1])
    np.testing.assert_allclose(out[0, 0, SK.index("left_hip"), :2], [0.1, 0])
    np.testing.assert_allclose(out[0, 1, SK.index("neck"), :2], [2, -0.9])  # same offset and scale for everyone
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 0, 2] == 0  # unknown joints stay unknown
    neck = normalise_sequence(seq, "openpose18", centre="neck")
    np.testing.assert_allclose(neck[0, 0, SK.index("neck"), :2], [0, 0])
    with pytest.raises(SkeletonError):
        normalise_sequence(seq[..., :10, :], "openpose18")


def test_uniform_sampling_is_seeded_per_clip() -> None:
    a = sample_positions(100, 8, seed=0, clip_id="a")
    assert a.shape == (8,) and (np.diff(a) > 0).all() and a.max() < 100
    np.testing.assert_array_equal(a, sample_positions(100, 8, seed=0, clip_id="a"))
    assert not np.array_equal(a, sample_positions(100, 8, seed=0, clip_id="b"))
    short = sample_positions(3, 8, seed=0, clip_id="a")
    assert short.shape == (8,) and set(short.tolist()) == {0, 1, 2}  # loops, as PYSKL pads short clips
    seq = np.arange(5 * 1 * 2 * 3, dtype=np.float32).reshape(5, 1, 2, 3)
    assert sample_sequence(seq, 4, 0, "x").shape == (4, 1, 2, 3)
    padded = pad_people(seq, 3)
    assert padded.shape == (5, 3, 2, 3) and (padded[:, 1:] == 0).all()


def test_skeleton_images_per_frame_and_over_time() -> None:
    scale, offset = canvas_transform((100, 200), (64, 64))
    assert scale == pytest.approx(0.32) and offset.tolist() == [0, 16]
    seq = np.stack([person((50 + 10 * t, 20), 80)[None] for t in range(4)])  # (4, 1, J, 3)
    seq[2] = np.nan
    seq[2, ..., 2] = 0  # nobody at t=2
    images = frame_images(seq, "openpose18", (100, 200))
    assert images.shape == (4, 64, 64, 3) and images.dtype == np.uint8
    assert images[0].any() and not images[2].any()
    comp = composite_image(seq, "openpose18", (100, 200))
    assert comp.shape == (64, 64, 3) and comp.any()
    ys, xs = np.nonzero(comp.any(axis=2))
    first, last = comp[ys[xs.argmin()], xs.min()], comp[ys[xs.argmax()], xs.max()]
    assert first[0] > first[2] and last[2] > last[0]  # BGR: the first step blue, the last red (JET)


def test_pyskl_annotation_and_split_names() -> None:
    seq = np.stack([person((100, 50), 150)[None]] * 3)  # (T=3, M=1, J, 3)
    ann = annotation("clip", 4, (240, 320), seq)
    assert ann["keypoint"].shape == (1, 3, SK.num_joints, 2) and ann["keypoint"].dtype == np.float32
    assert ann["keypoint_score"].shape == (1, 3, SK.num_joints) and ann["total_frames"] == 3
    assert ann["img_shape"] == ann["original_shape"] == (240, 320) and ann["label"] == 4
    assert np.isfinite(ann["keypoint"]).all() and ann["keypoint"][0, 0, 0].tolist() == [0, 0]  # unknown -> 0
    assert split_name("split3", "test") == "test3" and split_name("subject", "train") == "subject_train"
    assert splits_of([("a", [("split1", "train")]), ("b", {"split1": "test"})]) == {"test1": ["b"], "train1": ["a"]}

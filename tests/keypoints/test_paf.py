"""Tests of the vectorised OpenPose decoder (tasks/keypoints/paf.py): tiny inline maps, explicit answers."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.errors import ConfigError, ExtractionError
from tasks.keypoints.models import COCO18_LAYOUT
from tasks.keypoints.paf import (
    DecodeParams,
    Peaks,
    _quadratic_offset,
    assemble,
    connect,
    decode,
    find_peaks,
    match_limb,
    sample_bilinear,
    score_limb,
)
from tests.keypoints.synthetic import TEMPLATE_OPENPOSE18, render_maps


def _gauss(h: int, w: int, u: float, v: float, sigma: float = 1.0) -> np.ndarray:
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.exp(-((uu - u) ** 2 + (vv - v) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_quadratic_offset_explicit_values() -> None:
    off = _quadratic_offset([0.5, 0.0, 1.0, 0.2], [1.0, 1.0, 1.0, 1.0], [0.5, 1.0, 0.0, 0.6])
    # symmetric -> 0; equal right neighbour -> +0.5; equal left -> -0.5; (0.2, 1, 0.6): 0.5*(0.2-0.6)/(0.2-2+0.6)
    np.testing.assert_allclose(off, [0.0, 0.5, -0.5, 0.5 * (-0.4) / (-1.2)], atol=1e-6)
    # flat (no curvature) gives no offset rather than a division by zero
    assert _quadratic_offset([1.0], [1.0], [1.0]).tolist() == [0.0]


def test_find_peaks_single_bump_integer_position() -> None:
    hm = np.zeros((5, 6, 1), np.float32)
    hm[2, 3, 0] = 0.9
    hm[2, 2, 0] = 0.3
    hm[2, 4, 0] = 0.3
    hm[1, 3, 0] = 0.3
    hm[3, 3, 0] = 0.3
    peaks = find_peaks(hm, DecodeParams(upsample=1))
    assert peaks.joint.tolist() == [0]
    np.testing.assert_allclose(peaks.uv, [[3.0, 2.0]], atol=1e-6)
    np.testing.assert_allclose(peaks.score, [0.9], atol=1e-6)
    assert peaks.offsets.tolist() == [0, 1]


def test_find_peaks_threshold_sorting_and_offsets_per_joint() -> None:
    hm = np.zeros((8, 8, 3), np.float32)
    hm[1, 1, 0] = 0.5
    hm[6, 6, 0] = 0.8  # stronger peak of joint 0: listed first
    hm[4, 4, 2] = 0.04  # below the 0.05 threshold
    hm[3, 5, 2] = 0.2
    peaks = find_peaks(hm, DecodeParams(upsample=1, subpixel=False))
    assert peaks.joint.tolist() == [0, 0, 2]
    np.testing.assert_allclose(peaks.uv, [[6, 6], [1, 1], [5, 3]])
    assert peaks.offsets.tolist() == [0, 2, 2, 3]
    assert peaks.of(1) == slice(2, 2)


def test_find_peaks_max_peaks_keeps_the_strongest() -> None:
    hm = np.zeros((9, 9, 1), np.float32)
    for i, val in enumerate([0.3, 0.9, 0.6]):
        hm[1 + 3 * i, 1, 0] = val
    peaks = find_peaks(hm, DecodeParams(upsample=1, max_peaks=2))
    np.testing.assert_allclose(peaks.score, [0.9, 0.6])


@pytest.mark.parametrize("upsample", [1, 4])
def test_find_peaks_subpixel_recovers_off_grid_centre(upsample: int) -> None:
    hm = _gauss(12, 14, u=6.3, v=4.75, sigma=1.5)[..., None]
    peaks = find_peaks(hm, DecodeParams(upsample=upsample))
    assert peaks.uv.shape == (1, 2)
    np.testing.assert_allclose(peaks.uv[0], [6.3, 4.75], atol=0.08)
    # without refinement at network resolution the error is the rounding to the grid
    coarse = find_peaks(hm, DecodeParams(upsample=1, subpixel=False))
    np.testing.assert_allclose(coarse.uv[0], [6.0, 5.0])


def test_sample_bilinear_explicit() -> None:
    field = np.array([[[0.0], [1.0]], [[2.0], [3.0]]], np.float32)  # (2, 2, 1)
    uv = np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 1.0], [5.0, -3.0]], np.float32)
    np.testing.assert_allclose(sample_bilinear(field, uv)[:, 0], [1.5, 1.0, 2.25, 1.0])


def test_score_limb_aligned_opposite_and_too_long() -> None:
    paf = np.zeros((20, 40, 2), np.float32)
    paf[..., 0] = 1.0  # every vector points +x
    a = np.array([[2.0, 5.0]], np.float32)
    b = np.array([[8.0, 5.0], [2.0, 11.0], [38.0, 5.0]], np.float32)
    score, valid = score_limb(paf, a, b, map_height=20)
    # +x limb: mean projection 1, prior min(0, 0.5*20/6 - 1) = 0
    assert score[0, 0] == pytest.approx(1.0)
    # perpendicular limb: projection 0 -> invalid
    assert score[0, 1] == pytest.approx(0.0) and not valid[0, 1]
    # a 36-cell limb on a 20-cell-high map: prior 0.5*20/36 - 1
    assert score[0, 2] == pytest.approx(1.0 + 0.5 * 20 / 36 - 1.0)
    assert valid.tolist() == [[True, False, True]]
    reverse, rvalid = score_limb(paf, b[:1], a, map_height=20)
    assert reverse[0, 0] == pytest.approx(-1.0) and not rvalid[0, 0]


def test_score_limb_empty_candidates() -> None:
    score, valid = score_limb(np.zeros((4, 4, 2), np.float32), np.zeros((0, 2), np.float32), np.ones((3, 2)), 4)
    assert score.shape == (0, 3) and valid.shape == (0, 3)


def test_match_limb_greedy_explicit() -> None:
    score = np.array([[0.9, 0.8], [0.7, 0.1]], np.float32)
    assert match_limb(score, np.ones((2, 2), bool)).tolist() == [[0, 0], [1, 1]]
    # greedy, not optimal: 0.9 is taken first although (0,1)+(1,0) = 1.5 > 0.9 + 0.1
    valid = np.array([[True, True], [True, False]])
    assert match_limb(score, valid).tolist() == [[0, 0]]
    assert match_limb(score, np.zeros((2, 2), bool)).shape == (0, 2)


def _peaks(joints: list[int], scores: list[float]) -> Peaks:
    order = np.argsort(joints, kind="stable")
    j = np.asarray(joints)[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(j, minlength=18))])
    uv = np.zeros((len(j), 2), np.float32)
    return Peaks(joint=j, uv=uv, score=np.asarray(scores, np.float32)[order], offsets=offsets)


def test_assemble_merges_two_partial_people_through_a_redundant_limb() -> None:
    # global peak ids: 0 neck, 1 nose, 2 rsho, 3 reye, 4 rear (joint order keeps them sorted)
    peaks = _peaks([1, 0, 2, 14, 16], [0.9, 0.8, 0.7, 0.6, 0.5])
    # peaks sorted by joint: nose(0.8)=0, neck(0.9)=1, rsho(0.7)=2, reye(0.6)=3, rear(0.5)=4
    conns = [(np.zeros((0, 2), np.int64), np.zeros(0, np.float32)) for _ in COCO18_LAYOUT.pairs]
    k = {p: i for i, p in enumerate(COCO18_LAYOUT.pairs)}
    conns[k[(1, 2)]] = (np.array([[1, 2]]), np.array([0.5], np.float32))  # neck-rsho: person A
    conns[k[(1, 0)]] = (np.array([[1, 0]]), np.array([0.4], np.float32))  # neck-nose: A grows
    conns[k[(14, 16)]] = (np.array([[3, 4]]), np.array([0.3], np.float32))  # reye-rear: new person B
    conns[k[(2, 16)]] = (np.array([[2, 4]]), np.array([0.2], np.float32))  # rsho-rear joins A and B
    people = assemble(peaks, conns, COCO18_LAYOUT, DecodeParams(min_parts=4, min_mean_score=0.0))
    assert people.parts.shape == (1, 18)
    expected = np.full(18, -1)
    expected[[0, 1, 2, 14, 16]] = [0, 1, 2, 3, 4]
    assert people.parts[0].tolist() == expected.tolist()
    assert people.count.tolist() == [5]
    # A: 0.9 + 0.7 + 0.5 (+ nose 0.8 + 0.4); B: 0.6 + 0.5 + 0.3; merge adds the joining limb 0.2
    assert people.score[0] == pytest.approx(0.9 + 0.7 + 0.5 + 0.8 + 0.4 + 0.6 + 0.5 + 0.3 + 0.2, abs=1e-5)


def test_assemble_drops_small_and_weak_people() -> None:
    peaks = _peaks([1, 2], [0.9, 0.9])
    conns = [(np.zeros((0, 2), np.int64), np.zeros(0, np.float32)) for _ in COCO18_LAYOUT.pairs]
    conns[0] = (np.array([[0, 1]]), np.array([0.5], np.float32))
    assert assemble(peaks, conns, COCO18_LAYOUT, DecodeParams(min_parts=3)).parts.shape == (0, 18)
    kept = assemble(peaks, conns, COCO18_LAYOUT, DecodeParams(min_parts=2, min_mean_score=1.1))
    assert kept.count.tolist() == [2]  # (0.9 + 0.9 + 0.5) / 2 = 1.15 >= 1.1
    assert assemble(peaks, conns, COCO18_LAYOUT, DecodeParams(min_parts=2, min_mean_score=1.2)).parts.shape[0] == 0


def test_redundant_limbs_never_start_a_person() -> None:
    peaks = _peaks([5, 17, 0, 14], [0.9, 0.9, 0.9, 0.9])  # lsho, lear, nose, reye
    conns = [(np.zeros((0, 2), np.int64), np.zeros(0, np.float32)) for _ in COCO18_LAYOUT.pairs]
    k = {p: i for i, p in enumerate(COCO18_LAYOUT.pairs)}
    conns[k[(5, 17)]] = (np.array([[2, 3]]), np.array([0.9], np.float32))  # lsho-lear, pair 18 (redundant)
    people = assemble(peaks, conns, COCO18_LAYOUT, DecodeParams(min_parts=1, min_mean_score=0.0))
    assert people.parts.shape[0] == 0


def test_decode_two_synthetic_people_in_image_pixels() -> None:
    a = TEMPLATE_OPENPOSE18 + np.array([2.0, 2.0], np.float32)
    b = TEMPLATE_OPENPOSE18 + np.array([16.25, 3.5], np.float32)  # off-grid on purpose
    heat, pafs = render_maps(np.stack([a, b]), COCO18_LAYOUT, (26, 30))
    for params in (DecodeParams(), DecodeParams(upsample=1)):
        poses = decode(heat, pafs, COCO18_LAYOUT, image_hw=(26 * 8, 30 * 8), params=params)
        assert poses.num_people == 2
        assert poses.keypoints.shape == (2, 18, 3) and poses.person_scores.shape == (2,)
        order = np.argsort(poses.keypoints[:, 1, 0])  # left person first, by neck x
        for person, truth in zip(poses.keypoints[order], (a, b), strict=True):
            expected_px = (truth + 0.5) * 8 - 0.5  # cell centre -> pixel centre, 8 px per cell
            np.testing.assert_allclose(person[:, :2], expected_px, atol=1.0)
            assert np.all(person[:, 2] > 0.9)


def test_decode_missing_joint_and_empty_frame() -> None:
    a = TEMPLATE_OPENPOSE18.copy()
    a[10] = np.nan  # right ankle not visible
    heat, pafs = render_maps(a[None] + 1.0, COCO18_LAYOUT, (24, 14))
    poses = decode(heat, pafs, COCO18_LAYOUT, image_hw=(48, 28))  # 2 px per cell
    assert poses.num_people == 1
    assert np.isnan(poses.keypoints[0, 10, :2]).all() and poses.keypoints[0, 10, 2] == 0.0
    assert np.isfinite(poses.keypoints[0, np.arange(18) != 10, :2]).all()
    empty = decode(np.zeros((10, 10, 19), np.float32), np.zeros((10, 10, 38), np.float32), COCO18_LAYOUT, (80, 80))
    assert empty.keypoints.shape == (0, 18, 3) and empty.person_scores.shape == (0,)


def test_connect_uses_the_limb_channels_in_pair_order() -> None:
    a = TEMPLATE_OPENPOSE18 + 1.0
    heat, pafs = render_maps(a[None], COCO18_LAYOUT, (24, 14))
    peaks = find_peaks(heat[..., :18], DecodeParams(upsample=1))
    conns = connect(peaks, pafs, COCO18_LAYOUT)
    assert all(len(m) == 1 for m, _ in conns)
    # zeroing limb 0's PAF (neck -> right shoulder) removes exactly that connection
    pafs[..., 0:2] = 0.0
    conns = connect(peaks, pafs, COCO18_LAYOUT)
    assert [len(m) for m, _ in conns] == [0] + [1] * 18


def test_decode_rejects_wrong_shapes_and_params() -> None:
    with pytest.raises(ExtractionError, match="heatmaps of shape"):
        decode(np.zeros((4, 4, 5), np.float32), np.zeros((4, 4, 38), np.float32), COCO18_LAYOUT, (32, 32))
    with pytest.raises(ExtractionError, match="PAFs of shape"):
        decode(np.zeros((4, 4, 19), np.float32), np.zeros((4, 4, 36), np.float32), COCO18_LAYOUT, (32, 32))
    with pytest.raises(ConfigError, match="nms_window"):
        DecodeParams(nms_window=2)
    with pytest.raises(ConfigError, match="upsample"):
        DecodeParams(upsample=0)

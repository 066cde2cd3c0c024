import numpy as np
import pytest

from schemas.errors import ConfigError, SkeletonError
from schemas.skeletons import COCO17
from tasks.transforms.augment import (
    IDENTITY,
    AugmentConfig,
    AugmentParams,
    apply_image,
    apply_keypoints,
    augment_affine,
    make_params,
)

TOY_PERM = np.array([2, 1, 0])  # (left_hand, nose, right_hand)


def test_identity_params_are_the_identity():
    m = augment_affine(IDENTITY, (12, 8), (12, 8))
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 0]])
    image = np.arange(8 * 12 * 3, dtype=np.uint8).reshape(8, 12, 3)
    np.testing.assert_array_equal(apply_image(image, m, (12, 8)), image)
    kp = np.array([[1.0, 2.0], [5.5, 3.25], [11.0, 7.0]], np.float32)
    out, vis = apply_keypoints(kp, np.array([2, 1, 2], np.int8), m, False, TOY_PERM, (12, 8))
    np.testing.assert_array_equal(out, kp)
    assert vis.tolist() == [2, 1, 2]


def test_flip_of_a_toy_skeleton():
    m = augment_affine(AugmentParams(flip=True), (10, 6), (10, 6))
    np.testing.assert_array_equal(m, [[-1, 0, 9], [0, 1, 0]])
    kp = np.array([[1.0, 4.0], [5.0, 4.0], [7.0, 4.0]], np.float32)
    out, vis = apply_keypoints(kp, np.array([2, 2, 1], np.int8), m, True, TOY_PERM, (10, 6))
    # x' = 9 - x, then the left hand is the old right hand
    np.testing.assert_array_equal(out, [[2.0, 4.0], [4.0, 4.0], [8.0, 4.0]])
    assert vis.tolist() == [1, 2, 2]
    image = np.zeros((6, 10, 3), np.uint8)
    image[4, 1] = 255
    assert np.argwhere(apply_image(image, m, (10, 6))[:, :, 0] == 255).tolist() == [[4, 8]]


def test_rotation_by_90_degrees_turns_counter_clockwise():
    m = augment_affine(AugmentParams(rotation_deg=90.0), (11, 11), (11, 11))
    out, _ = apply_keypoints(np.array([[8.0, 5.0], [5.0, 2.0]], np.float32), np.array([2, 2], np.int8), m, False, np.arange(2), (11, 11))
    # 3 px right of the centre (5, 5) goes 3 px above it; 3 px above goes 3 px left
    np.testing.assert_allclose(out, [[5.0, 2.0], [2.0, 5.0]], atol=1e-5)


def test_resize_scale_and_translate():
    # 20x10 -> 10x5 halves coordinates about pixel edges: x_out = (x + 0.5) / 2 - 0.5
    m = augment_affine(IDENTITY, (20, 10), (10, 5))
    np.testing.assert_allclose(m, [[0.5, 0, -0.25], [0, 0.5, -0.25]])
    # scale 2 about the centre (4.5, 4.5) of a 10x10 output, then shift by 0.1 * 10 px right
    m = augment_affine(AugmentParams(scale=2.0, translate_xy_frac=(0.1, 0.0)), (10, 10), (10, 10))
    out, vis = apply_keypoints(np.array([[5.5, 4.5], [9.0, 4.5]], np.float32), np.array([2, 2], np.int8), m, False, np.arange(2), (10, 10))
    np.testing.assert_allclose(out, [[7.5, 4.5], [14.5, 4.5]])
    assert vis.tolist() == [2, 0]  # the second joint left the output


def test_nan_and_outside_joints_get_visibility_zero():
    m = augment_affine(IDENTITY, (10, 10), (10, 10))
    kp = np.array([[np.nan, np.nan], [-0.5, 9.49], [9.5, 0.0]], np.float32)
    _, vis = apply_keypoints(kp, np.array([2, 2, 2], np.int8), m, False, TOY_PERM, (10, 10))
    assert vis.tolist() == [0, 2, 0]


def test_image_and_joints_stay_consistent():
    rng = np.random.default_rng(3)
    cfg = AugmentConfig(flip_prob=0.5, rotation_prob=1.0)
    in_wh, out_wh = (48, 64), (40, 56)
    joints = np.array([[20.0, 30.0], [12.0, 20.0], [33.0, 41.0]], np.float32)
    checked = 0
    for _ in range(12):
        params = make_params(rng, cfg)
        m = augment_affine(params, in_wh, out_wh)
        out_kp, vis = apply_keypoints(joints, np.full(3, 2, np.int8), m, params.flip, TOY_PERM, out_wh)
        for j, (x, y) in enumerate(joints):
            yy, xx = np.mgrid[: in_wh[1], : in_wh[0]]
            dot = np.rint(255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))).astype(np.uint8)  # a soft dot on the joint
            image = np.dstack([dot, dot // 2, np.zeros_like(dot)])
            warped = apply_image(image, m, out_wh)[:, :, 0].astype(np.float64)
            jj = TOY_PERM[j] if params.flip else j  # where joint j went
            if not vis[jj]:
                continue
            by, bx = np.unravel_index(np.argmax(warped), warped.shape)
            assert abs(bx - out_kp[jj, 0]) <= 1.0 and abs(by - out_kp[jj, 1]) <= 1.0, (params, j)
            checked += 1
    assert checked >= 20


def test_make_params_draws_a_fixed_number_of_values_and_respects_ranges():
    cfg = AugmentConfig(flip_prob=0.5, scale_range=(0.8, 1.2), rotation_deg=10, rotation_prob=0.5, translate_frac=0.1)
    a = np.random.default_rng(7)
    ps = [make_params(a, cfg) for _ in range(200)]
    c, d = np.random.default_rng(1), np.random.default_rng(1)
    make_params(c, cfg)
    make_params(d, AugmentConfig(flip_prob=0.0, rotation_prob=0.0))
    assert c.random() == d.random()  # same number of draws whatever the config
    assert all(0.8 <= p.scale <= 1.2 and abs(p.rotation_deg) <= 10 and max(map(abs, p.translate_xy_frac)) <= 0.1 for p in ps)
    assert 60 < sum(p.flip for p in ps) < 140 and 60 < sum(p.rotation_deg != 0 for p in ps) < 140
    assert make_params(np.random.default_rng(5), cfg) == make_params(np.random.default_rng(5), cfg)


def test_coco_flip_swaps_left_and_right():
    m = augment_affine(AugmentParams(flip=True), (20, 20), (20, 20))
    kp = np.zeros((17, 2), np.float32)
    kp[COCO17.index("left_wrist")] = (3.0, 5.0)
    out, vis = apply_keypoints(kp, np.full(17, 2, np.int8), m, True, COCO17.flip_permutation, (20, 20))
    np.testing.assert_array_equal(out[COCO17.index("right_wrist")], [16.0, 5.0])


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError):
        AugmentConfig(scale_range=(1.2, 0.8))
    with pytest.raises(ConfigError):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(SkeletonError):
        apply_keypoints(np.zeros((3, 2)), np.zeros(3, np.int8), np.eye(2, 3), True, np.arange(2), (4, 4))
    with pytest.raises(ConfigError):
        apply_image(np.zeros((4, 4, 3), np.uint8), np.eye(2, 3), (4, 4), out=np.zeros((4, 5, 3), np.uint8))

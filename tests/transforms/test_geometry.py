import numpy as np
import pytest

from schemas.errors import ConfigError, SkeletonError
from schemas.skeletons import COCO17
from tasks.transforms.geometry import (
    CropConfig,
    CropParams,
    crop_affine,
    crop_box_xyxy,
    crop_sample,
    flip_keypoints,
    make_crop_params,
    sample_rng,
    warp_keypoints,
)


def test_crop_box_pads_and_fixes_aspect():
    cfg = CropConfig(out_height_px=256, out_width_px=192, min_box_px=0)
    box = crop_box_xyxy(np.array([0, 0, 100, 200]), CropParams(1.5, (0.0, 0.0), False), cfg)
    # height 300, width widened to 300*0.75 = 225, centred on (50, 100)
    np.testing.assert_allclose(box, [50 - 112.5, 100 - 150, 50 + 112.5, 100 + 150])


def test_min_box_and_shift():
    cfg = CropConfig(out_height_px=100, out_width_px=100, min_box_px=100)
    box = crop_box_xyxy(np.array([10, 10, 20, 20]), CropParams(1.0, (5.0, -5.0), False), cfg)
    np.testing.assert_allclose(box, [-30, -40, 70, 60])  # centre (15+5, 15-5), side 100


def test_identity_affine():
    m = crop_affine(np.array([-0.5, -0.5, 9.5, 4.5]), 10, 5, flip=False)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    mf = crop_affine(np.array([-0.5, -0.5, 9.5, 4.5]), 10, 5, flip=True)
    np.testing.assert_allclose(warp_keypoints(np.array([[2.0, 3.0]]), mf), [[7.0, 3.0]])


def test_keypoints_follow_pixels():
    image = np.zeros((120, 160, 3), np.uint8)
    image[40, 100] = 255  # a single bright pixel at x=100, y=40
    xy = np.full((17, 2), np.nan, np.float32)
    xy[0] = (100, 40)
    vis = np.zeros(17, np.int8)
    vis[0] = 2
    cfg = CropConfig(out_height_px=64, out_width_px=48, shift_px=0, min_box_px=0)
    res = crop_sample(image, np.array([80, 20, 120, 80]), xy, vis, COCO17, CropParams(1.5, (0, 0), False), cfg)
    y, x = np.unravel_index(np.argmax(res.image[..., 0]), res.image.shape[:2])
    assert abs(res.keypoints_xy_px[0, 0] - x) <= 1 and abs(res.keypoints_xy_px[0, 1] - y) <= 1


def test_flip_swaps_left_and_right():
    image = np.zeros((50, 50, 3), np.uint8)
    xy = np.full((17, 2), np.nan, np.float32)
    xy[5], xy[6] = (10, 20), (40, 20)
    vis = np.zeros(17, np.int8)
    vis[5], vis[6] = 2, 1
    cfg = CropConfig(out_height_px=50, out_width_px=50, min_box_px=0)
    res = crop_sample(image, np.array([-0.5, -0.5, 49.5, 49.5]), xy, vis, COCO17, CropParams(1.0, (0, 0), True), cfg)
    np.testing.assert_allclose(res.keypoints_xy_px[5], [49 - 40, 20], atol=1e-4)
    np.testing.assert_allclose(res.keypoints_xy_px[6], [49 - 10, 20], atol=1e-4)
    assert res.visibility[5] == 1 and res.visibility[6] == 2


def test_flip_keypoints_mirrors_and_swaps():
    xy = np.zeros((17, 2), np.float32)
    xy[5] = (2, 7)  # left shoulder
    xy[6] = (8, 7)  # right shoulder
    xy[0] = (np.nan, np.nan)  # nose unknown
    out, vis = flip_keypoints(xy, np.arange(17, dtype=np.int8), COCO17.flip_permutation, image_width_px=10)
    assert out.dtype == np.float32 and out.shape == (17, 2)
    np.testing.assert_array_equal(out[5], [1, 7])  # new left shoulder = mirrored old right (10 - 1 - 8)
    np.testing.assert_array_equal(out[6], [7, 7])
    assert np.isnan(out[0]).all() and vis[5] == 6 and vis[6] == 5 and vis[0] == 0
    assert xy[5].tolist() == [2, 7]  # the input is left alone


def test_flip_keypoints_batch_and_swap_only():
    xy = np.array([[[2.0, 1.0], [8.0, 3.0], [5.0, 5.0]]] * 2, np.float32)  # (2, 3, 2)
    vis = np.array([[2, 1, 0], [0, 2, 1]], np.int8)
    out, v = flip_keypoints(xy, vis, [1, 0, 2], image_width_px=None)  # already mirrored: swap only
    np.testing.assert_array_equal(out[1], [[8, 3], [2, 1], [5, 5]])
    np.testing.assert_array_equal(v, [[1, 2, 0], [2, 0, 1]])
    out, _ = flip_keypoints(xy, vis, [1, 0, 2], image_width_px=6)
    np.testing.assert_array_equal(out[0], [[-3, 3], [3, 1], [0, 5]])
    with pytest.raises(SkeletonError, match="do not fit a flip permutation of 2 joints"):
        flip_keypoints(xy, vis, [1, 0], image_width_px=6)


def test_params_are_reproducible_per_sample():
    cfg = CropConfig()
    a = make_crop_params(sample_rng(7, 12345), cfg)
    b = make_crop_params(sample_rng(7, 12345), cfg)
    c = make_crop_params(sample_rng(8, 12345), cfg)
    assert a == b and a != c
    assert 1.4 <= a.pad_ratio <= 1.6 and max(abs(v) for v in a.shift_xy_px) <= 5 and not a.flip


def test_bad_config():
    with pytest.raises(ConfigError):
        CropConfig(pad_min=2, pad_max=1)


def test_decode_reduction_picks_the_coarsest_safe_factor():
    from tasks.transforms.geometry import decode_reduction

    cfg = CropConfig(out_height_px=256, out_width_px=192)
    assert decode_reduction([np.array([0, 0, 600, 800])], cfg) == 2  # scale 3.1
    assert decode_reduction([np.array([0, 0, 1600, 2100])], cfg) == 8
    assert decode_reduction([np.array([0, 0, 1600, 2100]), np.array([0, 0, 300, 400])], cfg) == 1  # scale 1.56
    assert decode_reduction([], cfg) == 1
    assert decode_reduction(np.array([[0, 0, 1600, 2100], [0, 0, 800, 1100]], np.float32), cfg) == 4  # (N, 4) array form


def test_reduced_decode_gives_the_same_geometry():
    import cv2

    image = np.zeros((400, 400, 3), np.uint8)
    cv2.circle(image, (300, 100), 6, (255, 255, 255), -1)
    xy = np.full((17, 2), np.nan, np.float32)
    xy[0] = (300, 100)
    vis = np.zeros(17, np.int8)
    vis[0] = 2
    cfg = CropConfig(out_height_px=64, out_width_px=64, min_box_px=0)
    params = CropParams(1.0, (0.0, 0.0), False)
    full = crop_sample(image, np.array([-0.5, -0.5, 399.5, 399.5]), xy, vis, COCO17, params, cfg)
    half = crop_sample(cv2.resize(image, (100, 100), interpolation=cv2.INTER_AREA), np.array([-0.5, -0.5, 399.5, 399.5]), xy, vis, COCO17, params, cfg, reduction=4)
    np.testing.assert_allclose(full.keypoints_xy_px, half.keypoints_xy_px)
    for res in (full, half):
        y, x = np.unravel_index(np.argmax(res.image[..., 0]), res.image.shape[:2])
        assert abs(x - res.keypoints_xy_px[0, 0]) <= 1 and abs(y - res.keypoints_xy_px[0, 1]) <= 1


def test_batched_boxes_and_affines_equal_the_per_sample_ones():
    from tasks.transforms.geometry import crop_affines, crop_boxes_xyxy

    cfg = CropConfig(out_height_px=256, out_width_px=192)
    boxes = np.array([[0, 0, 100, 200], [10, 10, 20, 20], [5.5, 7.25, 300, 90]], dtype=np.float64)
    params = [CropParams(1.5, (0.0, 0.0), False), CropParams(1.4, (5.0, -5.0), True), CropParams(1.6, (-2.5, 1.0), True)]
    batch = crop_boxes_xyxy(boxes, np.array([p.pad_ratio for p in params]), np.array([p.shift_xy_px for p in params]), cfg)
    for b, p, got in zip(boxes, params, batch, strict=True):
        assert np.array_equal(got, crop_box_xyxy(b, p, cfg)) and got.dtype == np.float32
    np.testing.assert_allclose(batch[1], [-50, -83.333336, 90, 103.333336], rtol=1e-6)  # min box 100 → 140 wide, 186.67 high about (20, 10)
    affines = crop_affines(batch, 192, 256, np.array([p.flip for p in params]))
    assert affines.shape == (3, 2, 3)
    for box, p, a in zip(batch, params, affines, strict=True):
        assert np.array_equal(a, crop_affine(box, 192, 256, p.flip))
    assert affines[1, 0, 0] < 0 and not np.signbit(affines[1, 0, 1])  # mirrored x, and no negative zero


def test_per_point_affines():
    a = np.array([[[2.0, 0, 1], [0, 3, -1]], [[-1.0, 0, 9], [0, 1, 0]]])
    out = warp_keypoints(np.array([[1.0, 1.0], [2.0, np.nan]]), a)
    np.testing.assert_array_equal(out[0], [3.0, 2.0])
    assert out[1, 0] != out[1, 0] and np.isnan(out[1, 1])  # NaN stays NaN (the matrix form propagates it)

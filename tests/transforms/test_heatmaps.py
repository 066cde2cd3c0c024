import numpy as np
import pytest

from schemas.errors import ConfigError
from tasks.transforms.geometry import crop_affines, warp_keypoints
from tasks.transforms.heatmaps import (
    crop_to_image_px,
    decode_heatmaps,
    gaussian_heatmaps,
    heatmap_to_input_px,
    input_to_heatmap_px,
    normalise_pose,
)


def test_gaussian_target_values_and_weights():
    kp = np.array([[10.5, 6.5], [0.0, 0.0], [100.0, 4.0]], np.float32)
    hm, w = gaussian_heatmaps(kp, np.array([2, 0, 2], np.int8), (32, 16), stride=4, sigma=2.0)
    assert hm.shape == (4, 8, 3) and hm.dtype == np.float32
    assert w.tolist() == [1.0, 0.0, 0.0]  # unlabelled, outside
    # joint at heatmap (2.25, 1.25): cell (x=2, y=1) is 0.25 px away on each axis
    assert hm[1, 2, 0] == pytest.approx(np.exp(-(0.25**2 + 0.25**2) / 8), rel=1e-6)
    assert hm[1, 3, 0] == pytest.approx(np.exp(-(0.75**2 + 0.25**2) / 8), rel=1e-6)
    assert np.unravel_index(hm[:, :, 0].argmax(), (4, 8)) == (1, 2)
    assert not hm[:, :, 1:].any()


def test_pixel_centre_mapping_round_trips():
    assert heatmap_to_input_px(np.array([0.0, 1.5]), 4).tolist() == [1.5, 7.5]
    x = np.array([-0.5, 0.0, 13.25], np.float32)
    np.testing.assert_allclose(heatmap_to_input_px(input_to_heatmap_px(x, 4), 4), x, atol=1e-6)


@pytest.mark.parametrize("xy", [(7.3, 5.6), (12.81, 9.12), (3.5, 3.5), (8.0, 11.95), (1.7, 8.0), (21.6, 13.4)])  # the last two near a border
def test_round_trip_sub_pixel_joint(xy):
    stride = 4
    kp_in = heatmap_to_input_px(np.array([xy], np.float32), stride)
    hm, _ = gaussian_heatmaps(kp_in, np.array([2], np.int8), (96, 64), stride=stride)
    dark, maxv = decode_heatmaps(hm[None], "dark")
    quarter, _ = decode_heatmaps(hm[None], "quarter")
    assert np.abs(dark[0, 0] - xy).max() < 0.05
    assert np.abs(quarter[0, 0] - xy).max() < 0.25 + 1e-6
    assert 0.9 < maxv[0, 0] <= 1.0


def test_dark_is_better_than_quarter_on_average():
    rng = np.random.default_rng(0)
    xy = rng.uniform(3, 20, size=(5, 4, 2)).astype(np.float32)
    hms = np.stack([gaussian_heatmaps(heatmap_to_input_px(p, 4), np.full(4, 2), (96, 96))[0] for p in xy])
    err_dark = np.abs(decode_heatmaps(hms, "dark")[0] - xy).mean()
    err_quarter = np.abs(decode_heatmaps(hms, "quarter")[0] - xy).mean()
    assert err_dark < 0.02 < err_quarter


def test_decode_border_and_flat_maps_fall_back():
    hm = np.zeros((1, 4, 5, 2), np.float32)
    hm[0, 0, 0, 0] = 1.0  # peak at the corner
    coords, maxv = decode_heatmaps(hm, "dark")
    np.testing.assert_allclose(coords[0, 0], [0.0, 0.0])
    np.testing.assert_allclose(coords[0, 1], [0.0, 0.0])  # all-zero map: argmax 0, no offset
    assert maxv[0].tolist() == [1.0, 0.0]
    with pytest.raises(ConfigError):
        decode_heatmaps(hm, "soft-argmax")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        gaussian_heatmaps(np.zeros((1, 2)), np.ones(1), (30, 16), stride=4)


def test_crop_to_image_px_inverts_geometrys_crop_mapping():
    boxes = np.array([[10.0, 20.0, 110.0, 220.0], [-30.5, 4.25, 61.0, 126.25]], np.float32)
    crop_wh = (48, 64)
    img = np.array([[[10.0, 20.0], [60.0, 120.0], [11.0, 21.0]], [[0.0, 0.0], [30.0, 90.5], [-7.0, 100.0]]], np.float32)
    for flip in (False, True):
        flips = np.array([flip, flip])
        affines = crop_affines(boxes, crop_wh[0], crop_wh[1], flips)
        crop = np.stack([warp_keypoints(img[i], affines[i]) for i in range(2)])
        back = crop_to_image_px(crop, boxes, crop_wh, flip=flips if flip else None)
        np.testing.assert_allclose(back, img, atol=1e-3)
    # inline: 2 image px per crop px, edges to edges
    out = crop_to_image_px(np.array([[[-0.5, -0.5], [0.0, 0.0]]]), np.array([[10.0, 20.0, 110.0, 220.0]]), (50, 100))
    np.testing.assert_allclose(out, [[[10.0, 20.0], [11.0, 21.0]]])


def test_normalise_pose():
    kp = np.array([[[0.0, 0.0], [2.0, 0.0], [50.0, 50.0]], [[1.0, 1.0], [np.nan, np.nan], [1.0, 1.0]]], np.float32)
    vis = np.array([[2, 1, 0], [0, 2, 0]], np.int8)
    out = normalise_pose(kp, vis)
    np.testing.assert_allclose(out[0], [[-1, 0, 1], [1, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(out[1], np.zeros((3, 3)))  # nothing visible
    # translation and scale invariant
    np.testing.assert_allclose(normalise_pose(kp[:1] * 3 + 7, vis[:1]), out[:1], atol=1e-6)


def test_no_subnormal_values():
    hm, _ = gaussian_heatmaps(np.array([[1.0, 1.0]], np.float32), np.array([2]), (256, 256), stride=1, sigma=2.0)
    nonzero = hm[hm > 0]
    assert nonzero.min() >= np.finfo(np.float32).tiny and (hm == 0).any()

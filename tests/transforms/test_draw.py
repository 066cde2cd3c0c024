"""The one skeleton drawing: tiny canvases with explicit expected pixels."""

from __future__ import annotations

import numpy as np

from schemas.skeletons import COCO17
from tasks.transforms.draw import SIDE_COLOURS_BGR, draw_skeleton, stroke_px


def _shoulders(left_xy: tuple[float, float], right_xy: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    xy = np.full((17, 2), np.nan, np.float32)
    xy[COCO17.index("left_shoulder")], xy[COCO17.index("right_shoulder")] = left_xy, right_xy
    vis = np.zeros(17, np.int8)
    vis[COCO17.index("left_shoulder")], vis[COCO17.index("right_shoulder")] = 2, 1
    return xy, vis


def test_sides_palette_fills_visible_and_rings_occluded_on_a_copy() -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    xy = np.full((17, 2), np.nan, np.float32)
    vis = np.zeros(17, np.int8)
    xy[COCO17.index("left_shoulder")], vis[COCO17.index("left_shoulder")] = (5.0, 10.0), 2
    xy[COCO17.index("right_ankle")], vis[COCO17.index("right_ankle")] = (34.0, 10.0), 1  # no limb joins them
    out = draw_skeleton(image, xy, vis, COCO17, radius_px=3, thickness_px=1)
    assert image.max() == 0 and out.shape == (20, 40, 3)  # the input is left alone
    assert tuple(out[10, 5]) == SIDE_COLOURS_BGR["left"]  # filled dot: its centre is coloured
    assert out[10, 34].max() == 0 and out[10, 37].max() > 0  # ring: empty centre, drawn at the radius
    assert out[10, 20].max() == 0  # no limb between joints of different limbs


def test_sides_palette_limb_takes_its_second_joints_colour() -> None:
    xy, vis = _shoulders((5.0, 10.0), (34.0, 10.0))  # limb (left_shoulder, right_shoulder)
    out = draw_skeleton(np.zeros((20, 40, 3), np.uint8), xy, vis, COCO17, thickness_px=3)
    assert tuple(out[10, 20]) == SIDE_COLOURS_BGR["right"]
    assert out[2, 20].max() == 0  # away from the skeleton nothing is drawn


def test_limbs_palette_in_place_several_people_and_scale() -> None:
    canvas = np.zeros((20, 40, 3), np.uint8)
    a, va = _shoulders((10.0, 10.0), (70.0, 10.0))
    b, vb = _shoulders((10.0, 30.0), (70.0, 30.0))
    vb[:] = 0  # the second person is not drawn
    out = draw_skeleton(canvas, np.stack([a, b]), np.stack([va, vb]), "coco17", scale=0.5, palette="limbs", in_place=True)
    assert out is canvas
    assert tuple(canvas[5, 5]) == (255, 255, 255)  # joint (10, 10) * 0.5, white in the limbs palette
    assert canvas[5, 20].max() > 0 and canvas[15, 20].max() == 0


def test_stroke_px() -> None:
    assert (stroke_px(1.0), stroke_px(3.0), stroke_px(0.75), stroke_px(0.5), stroke_px(0.1)) == (2, 2, 2, 1, 1)

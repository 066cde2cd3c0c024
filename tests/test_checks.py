"""tasks/checks.py: geometry sanity of canonical samples, on tiny inline records."""

import math

import numpy as np
import pyarrow as pa
import pytest

from schemas.records import SAMPLES_SCHEMA, to_table
from tasks.checks import OVERHANG_TOLERANCE, geometry_rejects

NAN = math.nan


def _row(key: str, box, points, vis, width=640, height=480) -> dict:
    return {
        "sample_id": f"s-{key}", "dataset": "coco", "split": "val", "image_path": f"{key}.jpg", "image_width_px": width,
        "image_height_px": height, "person_index": 0, "source_key": key, "bbox_xyxy_px": box, "center_xy_px": None,
        "scale": None, "skeleton": "coco17", "keypoints_xy_px": points, "keypoints_visibility": vis, "extra": None,
    }  # fmt: skip


def _records(rows: list[dict]) -> pa.Table:
    return to_table(rows, SAMPLES_SCHEMA)


GOOD_POINTS = [[100.0, 100.0], [NAN, NAN]]
GOOD_VIS = [2, 0]


@pytest.mark.parametrize(
    ("key", "box", "points", "vis", "size", "reason"),
    [
        ("ok", [10, 10, 200, 300], GOOD_POINTS, GOOD_VIS, (640, 480), None),
        ("ok-overhang", [-300, 10, 200, 300], GOOD_POINTS, GOOD_VIS, (640, 480), None),  # 300 px = 47 % of 640: allowed
        ("huge-box", [0, 0, 1e30, 1e30], GOOD_POINTS, GOOD_VIS, (640, 480), "box_outside_image"),
        ("inf-box", [1e300] * 4, GOOD_POINTS, GOOD_VIS, (640, 480), "invalid_box"),  # float32 storage makes it inf
        ("far-box", [-1e9, -1e9, -1e9 + 50, -1e9 + 50], GOOD_POINTS, GOOD_VIS, (640, 480), "box_outside_image"),
        ("beside", [700, 10, 800, 100], GOOD_POINTS, GOOD_VIS, (640, 480), "box_outside_image"),  # misses the image
        ("nan-visible", [10, 10, 200, 300], [[NAN, 100.0], [NAN, NAN]], [2, 0], (640, 480), "nonfinite_keypoint"),
        ("nan-unlabelled", [10, 10, 200, 300], [[100.0, 100.0], [NAN, NAN]], [2, 0], (640, 480), None),
        ("far-joint", [10, 10, 200, 300], [[1e30, 100.0], [NAN, NAN]], [1, 0], (640, 480), "keypoints_out_of_image"),
        ("zero-size", [10, 10, 200, 300], GOOD_POINTS, GOOD_VIS, (0, 0), "image_size_invalid"),
        ("too-large", [10, 10, 200, 300], GOOD_POINTS, GOOD_VIS, (60000, 40000), "image_too_large"),
        ("unsized", [10, 10, 1e4, 300], GOOD_POINTS, GOOD_VIS, (None, None), None),  # no size: nothing to compare with
    ],
)
def test_geometry_rule(key, box, points, vis, size, reason):
    keep, rejects = geometry_rejects(_records([_row(key, box, points, vis, *size)]))
    if reason is None:
        assert keep.tolist() == [True] and rejects == []
    else:
        assert keep.tolist() == [False] and [str(r.reason) for r in rejects] == [reason]
        assert rejects[0].source_key == key and rejects[0].stage == "parse" and rejects[0].detail


def test_keeps_order_and_counts():
    rows = [_row("a", [10, 10, 20, 20], GOOD_POINTS, GOOD_VIS), _row("b", [0, 0, 1e30, 1e30], GOOD_POINTS, GOOD_VIS), _row("c", [5, 5, 9, 9], GOOD_POINTS, GOOD_VIS)]
    keep, rejects = geometry_rejects(_records(rows))
    assert keep.tolist() == [True, False, True] and [r.source_key for r in rejects] == ["b"]
    assert np.count_nonzero(keep) + len(rejects) == 3


def test_tolerance_is_stated_as_a_fraction():
    edge = OVERHANG_TOLERANCE * 640
    _, inside = geometry_rejects(_records([_row("x", [-edge + 1, 10, 100, 100], GOOD_POINTS, GOOD_VIS)]))
    _, outside = geometry_rejects(_records([_row("x", [-edge - 1, 10, 100, 100], GOOD_POINTS, GOOD_VIS)]))
    assert inside == [] and [str(r.reason) for r in outside] == ["box_outside_image"]

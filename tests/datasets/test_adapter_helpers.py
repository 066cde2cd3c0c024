"""The small helpers several adapters share (``tasks.common``): checksum keys, joint boxes, 1-based coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.common import joint_box, relative_name, zero_based_xy
from tasks.datasets.flic import PLUS_TRAIN_INDICES, FlicAdapter, FlicFullAdapter


def test_relative_name_inside_and_outside_the_root() -> None:
    assert relative_name(Path("/d/FLIC/examples.mat"), Path("/d")) == "FLIC/examples.mat"
    assert relative_name(Path("/d/joints.mat"), Path("/d")) == "joints.mat"
    assert relative_name(Path("/elsewhere/tr_plus_indices.mat"), Path("/d")) == "tr_plus_indices.mat"


def test_joint_box_spans_the_labelled_joints_only() -> None:
    xy = np.array([[10.0, 20.0], [np.nan, np.nan], [30.0, 5.0], [1000.0, 1000.0]], dtype=np.float32)
    labelled = np.array([True, False, True, False])
    box, center = joint_box(xy, labelled)
    assert box == [10.0, 5.0, 30.0, 20.0]
    assert center == [20.0, 12.5]
    assert all(type(v) is float for v in box + center)


def test_joint_box_centre_is_computed_in_float32() -> None:
    xy = np.array([[0.1, 0.3], [0.2, 0.7]], dtype=np.float32)
    _, center = joint_box(xy, np.array([True, True]))
    assert center == [float((np.float32(0.1) + np.float32(0.2)) / 2), float((np.float32(0.3) + np.float32(0.7)) / 2)]


def test_zero_based_xy_subtracts_one_and_blanks_unlabelled() -> None:
    one_based = np.array([[1.0, 2.0], [5.5, 0.0], [3.0, 4.0]])
    xy = zero_based_xy(one_based, np.array([True, False, True]))
    assert xy.dtype == np.float32
    np.testing.assert_array_equal(xy, np.array([[0.0, 1.0], [np.nan, np.nan], [2.0, 3.0]], dtype=np.float32))
    assert one_based[0, 0] == 1.0  # the input is left as it was


def test_zero_based_xy_keeps_leading_axes() -> None:
    one_based = np.ones((2, 3, 2))
    labelled = np.array([[True, False, True], [False, False, True]])
    xy = zero_based_xy(one_based, labelled)
    assert xy.shape == (2, 3, 2)
    assert np.isnan(xy[~labelled]).all() and (xy[labelled] == 0.0).all()


def test_flic_and_flic_full_list_the_same_flic_plus_source() -> None:
    assert PLUS_TRAIN_INDICES in FlicAdapter.sources and PLUS_TRAIN_INDICES in FlicFullAdapter.sources
    assert FlicAdapter.sources[0].filename == "FLIC.zip" and FlicFullAdapter.sources[0].filename == "FLIC-full.zip"

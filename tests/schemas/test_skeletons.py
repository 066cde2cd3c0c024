import numpy as np
import pytest

from schemas.errors import SkeletonError
from schemas.skeletons import (
    COCO17,
    FLIC29,
    LSP14,
    MPII16,
    OPENPOSE18,
    SKELETONS,
    conversion,
    convert_keypoints,
    get_skeleton,
)


def test_flip_pairs_are_derived_from_names():
    assert COCO17.flip_pairs == ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
    assert MPII16.flip_pairs == ((3, 2), (4, 1), (5, 0), (13, 12), (14, 11), (15, 10))
    # FLIC's mid-limb slots flip too: mid_left_upper_arm <-> mid_right_upper_arm
    assert (FLIC29.index("mluarm"), FLIC29.index("mruarm")) in FLIC29.flip_pairs


def test_every_skeleton_flip_permutation_is_an_involution():
    for sk in SKELETONS.values():
        perm = sk.flip_permutation
        assert (perm[perm] == np.arange(sk.num_joints)).all(), sk.name


def test_openpose_neck_is_mean_of_shoulders():
    xy = np.full((17, 2), np.nan, np.float32)
    vis = np.zeros(17, np.int8)
    xy[5], xy[6] = (10, 20), (30, 40)
    vis[5], vis[6] = 2, 1
    out, ov = convert_keypoints(xy, vis, "coco17", "openpose18")
    assert out.shape == (18, 2)
    np.testing.assert_allclose(out[OPENPOSE18.index("neck")], [20, 30])
    assert ov[OPENPOSE18.index("neck")] == 1  # min of the components
    np.testing.assert_allclose(out[OPENPOSE18.index("left_shoulder")], [10, 20])
    assert np.isnan(out[OPENPOSE18.index("nose")]).all() and ov[0] == 0


def test_derived_joint_unknown_when_a_component_is_missing():
    xy = np.zeros((17, 2), np.float32)
    vis = np.full(17, 2, np.int8)
    vis[6] = 0
    out, ov = convert_keypoints(xy, vis, "coco17", "openpose18")
    assert np.isnan(out[1]).all() and ov[1] == 0


def test_flic_head_is_mean_of_eyes_and_nose():
    xy = np.full((29, 2), np.nan, np.float32)
    vis = np.zeros(29, np.int8)
    for name, p in (("leye", (0, 0)), ("reye", (6, 0)), ("nose", (3, 9))):
        xy[FLIC29.index(name)] = p
        vis[FLIC29.index(name)] = 2
    out, _ = convert_keypoints(xy, vis, "flic29", "flic7")
    np.testing.assert_allclose(out[3], [3, 3])


def test_mpii_to_lsp_maps_names_and_batches():
    conv = conversion("mpii16", "lsp14")
    assert conv.recipe[LSP14.index("head_top")] == (9,)
    xy = np.arange(2 * 16 * 2, dtype=np.float32).reshape(2, 16, 2)
    out, _ = convert_keypoints(xy, np.full((2, 16), 2, np.int8), "mpii16", "lsp14")
    assert out.shape == (2, 14, 2)
    np.testing.assert_allclose(out[1, LSP14.index("upper_neck")], xy[1, 8])


def test_errors():
    with pytest.raises(SkeletonError, match="unknown skeleton"):
        get_skeleton("nope")
    with pytest.raises(SkeletonError, match="do not fit"):
        convert_keypoints(np.zeros((5, 2)), np.zeros(5), "coco17", "openpose18")
    with pytest.raises(SkeletonError, match="no joint"):
        COCO17.index("tail")

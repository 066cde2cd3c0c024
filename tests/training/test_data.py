"""The training input pipeline on a tiny synthetic COCO version (48x64 crops, shards of 8 rows)."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.errors import ConfigError, TaskDataError
from tasks.training.data import (
    TargetSpec,
    encode_sample,
    epoch_order,
    iterate_numpy,
    load_batch,
    make_dataset,
    plan_split,
    sample_rng,
)
from tasks.transforms.augment import AugmentConfig, AugmentParams, make_params

AUG = AugmentConfig(flip_prob=0.5, rotation_prob=1.0)
HEAT = TargetSpec("heatmaps", (32, 48), stride=4)


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    from storage.reader import open_version
    from tasks.synthetic import write_synthetic_coco
    from tasks.transforms.geometry import CropConfig
    from tests.helpers import build_version

    work = tmp_path_factory.mktemp("data")
    src = write_synthetic_coco(work / "src", {"train": 8, "val": 3}, seed=5)
    summary = build_version(str(work / "root"), str(src), crop=CropConfig(out_height_px=64, out_width_px=48), shard_size=8)
    v = open_version(str(work / "root"), "coco", summary["version"])
    assert len(v.shards("train")) >= 2
    return v


# --- pure -----------------------------------------------------------------------------------------


def test_epoch_order_is_a_deterministic_permutation_per_epoch():
    rows = [10, 7, 0, 13]
    a = epoch_order(rows, seed=3, epoch=0, block_size=4, buffer_size=5)
    assert sorted(a.tolist()) == list(range(30))
    assert np.array_equal(a, epoch_order(rows, seed=3, epoch=0, block_size=4, buffer_size=5))
    assert not np.array_equal(a, epoch_order(rows, seed=3, epoch=1, block_size=4, buffer_size=5))
    assert not np.array_equal(a, epoch_order(rows, seed=4, epoch=0, block_size=4, buffer_size=5))
    assert epoch_order(rows, 3, 0, shuffle=False).tolist() == list(range(30))
    assert epoch_order([], 0, 0).tolist() == []


def test_epoch_order_keeps_blocks_and_interleaves_shards():
    # no buffer: the stream is whole blocks of 3 consecutive rows, round robin over 2 shards
    order = epoch_order([6, 6, 6], seed=0, epoch=0, block_size=3, buffer_size=1, cycle_length=2).tolist()
    blocks = [order[i : i + 3] for i in range(0, 18, 3)]
    assert all(b == list(range(b[0], b[0] + 3)) and b[0] % 3 == 0 for b in blocks)
    shard_of = [b[0] // 6 for b in blocks]
    assert shard_of[0] != shard_of[1]  # two shards side by side
    # a buffer only moves rows a bounded distance
    mixed = epoch_order([200], seed=1, epoch=0, block_size=200, buffer_size=8)
    assert np.abs(mixed - np.arange(200)).max() < 200 and not np.array_equal(mixed, np.arange(200))


def test_target_spec_refusals():
    with pytest.raises(ConfigError):
        TargetSpec("boxes", (32, 32))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        TargetSpec("heatmaps", (30, 32), stride=4)
    with pytest.raises(ConfigError):
        TargetSpec("label", (32, 32))
    with pytest.raises(ConfigError):
        TargetSpec("label", (32, 32), label_column="activity", classes=("a", "b"), class_weights=(1.0,))


def test_encode_sample_coords_label_and_joints():
    crop = np.zeros((8, 16, 3), np.uint8)
    crop[2, 3] = (10, 20, 30)
    kp = np.array([[3.0, 2.0], [np.nan, np.nan], [15.0, 7.0]], np.float32)
    vis = np.array([2, 0, 1], np.int8)
    perm = np.array([2, 1, 0])
    spec = TargetSpec("coords", (16, 8))
    x, y = encode_sample(crop, kp, vis, None, spec, None, perm)
    assert x.dtype == np.float32 and x.shape == (8, 16, 3) and x[2, 3].tolist() == [10.0, 20.0, 30.0]
    np.testing.assert_allclose(y, [[3 / 16, 2 / 8, 1], [0, 0, 0], [15 / 16, 7 / 8, 1]])
    # mirrored: x' = 15 - x and joints 0, 2 swap
    _, yf = encode_sample(crop, kp, vis, None, spec, AugmentParams(flip=True), perm)
    np.testing.assert_allclose(yf, [[0, 7 / 8, 1], [0, 0, 0], [12 / 16, 2 / 8, 1]])
    lab = TargetSpec("label", (16, 8), label_column="activity", classes=("run", "sit"))
    assert encode_sample(crop, kp, vis, "sit", lab, None, perm)[1] == 1
    with pytest.raises(TaskDataError):
        encode_sample(crop, kp, vis, "swim", lab, None, perm)
    pose = TargetSpec("joints", (16, 8), label_column="activity", classes=("run", "sit"))
    xj, yj = encode_sample(None, kp, vis, "run", pose, None, perm, crop_wh=(16, 8))
    assert xj.shape == (9,) and yj == 0 and xj[3:6].tolist() == [0, 0, 0]


def test_heatmap_target_layout():
    kp = np.array([[10.5, 6.5], [0.0, 0.0]], np.float32)
    x, y = encode_sample(np.zeros((48, 32, 3), np.uint8), kp, np.array([2, 0], np.int8), None, HEAT, None, np.arange(2))
    assert y.shape == (12, 8, 4)
    assert np.unravel_index(y[:, :, 0].argmax(), (12, 8)) == (1, 2)
    assert (y[:, :, 2] == 1).all() and (y[:, :, 3] == 0).all() and not y[:, :, 1].any()


# --- on a version ---------------------------------------------------------------------------------


def test_batches_equal_encode_sample(version):
    plan = plan_split(version, "train", HEAT)
    assert plan.crop_wh == (48, 64) and len(plan) == version.num_rows("train")
    rows = epoch_order(plan.shard_rows, 1, 2)[:5]
    x, y = load_batch(plan, rows, 1, 2, AUG)
    crops = version.crops("train", plan.rows[rows])
    for k, r in enumerate(rows.tolist()):
        params = make_params(sample_rng(1, 2, plan.sample_ids[r]), AUG)
        xe, ye = encode_sample(crops[k], plan.keypoints[r], plan.visibility[r], None, HEAT, params, plan.flip_permutation)
        np.testing.assert_array_equal(x[k].astype(np.float32), xe)
        np.testing.assert_array_equal(y[k], ye)


def test_conversion_and_labels(version):
    plan = plan_split(version, "train", TargetSpec("coords", (48, 64), convert_to="openpose18"))
    assert plan.keypoints.shape[1:] == (18, 2)
    lab = TargetSpec("label", (48, 64), label_column="dataset", classes=("other",))
    assert len(plan_split(version, "train", lab)) == 0  # rows outside the classes are left out, and counted
    assert plan_split(version, "train", lab).skipped == version.num_rows("train")
    with pytest.raises(TaskDataError):
        plan_split(version, "train", TargetSpec("label", (48, 64), label_column="no_such_column", classes=("a",)))


def test_iterate_numpy_is_record_order(version):
    ids = version.records("val", ["sample_id"]).column("sample_id").to_pylist()
    got, xs = [], []
    for batch_ids, x, y in iterate_numpy(version, "val", HEAT, batch_size=3):
        got += batch_ids
        xs.append(x)
        assert x.dtype == np.float32 and y.shape[1:] == (12, 8, 34)
    assert got == ids
    plan = plan_split(version, "val", HEAT)
    xe, _ = encode_sample(version.crops("val", [0])[0], plan.keypoints[0], plan.visibility[0], None, HEAT, None, plan.flip_permutation)
    np.testing.assert_array_equal(xs[0][0], xe)  # resized, not augmented


def test_make_dataset_layout_determinism_and_worker_count(version):
    import tensorflow as tf

    n = version.num_rows("train")
    kw = dict(batch_size=4, seed=7, epoch=1, augment=AUG, shuffle=True)
    ds = make_dataset(version, "train", HEAT, workers=1, **kw)
    assert int(ds.cardinality()) == -(-n // 4)
    one = [(x.numpy(), y.numpy()) for x, y in ds]
    assert one[0][0].shape == (4, 48, 32, 3) and one[0][0].dtype == np.float32 and one[0][1].shape == (4, 12, 8, 34)
    three = [(x.numpy(), y.numpy()) for x, y in make_dataset(version, "train", HEAT, workers=3, **kw)]
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(one, three, strict=True))
    # and equal to the batch made in this (Python) thread: TF's threads flush subnormals to zero,
    # so this fails if a target holds any
    plan = plan_split(version, "train", HEAT)
    x0, y0 = load_batch(plan, epoch_order(plan.shard_rows, 7, 1)[:4], 7, 1, AUG)
    assert np.array_equal(one[0][0], x0.astype(np.float32)) and np.array_equal(one[0][1], y0)
    other = [x.numpy() for x, _ in make_dataset(version, "train", HEAT, workers=2, **{**kw, "epoch": 2})]
    assert not all(np.array_equal(a[0], b) for a, b in zip(one, other, strict=True))
    # class weights: (x, y, sample_weight)
    lab = TargetSpec("label", (32, 48), label_column="dataset", classes=("coco",), class_weights=(2.5,))
    x, y, w = next(iter(make_dataset(version, "train", lab, batch_size=3, seed=0, epoch=0, augment=None, shuffle=False, drop_remainder=True)))
    assert x.shape == (3, 48, 32, 3) and y.dtype == tf.int32 and w.numpy().tolist() == [2.5] * 3


def test_process_backend_gives_the_same_batches(version):
    kw = dict(batch_size=5, seed=2, epoch=0, augment=AUG, shuffle=True)
    threads = [(x.numpy(), y.numpy()) for x, y in make_dataset(version, "train", HEAT, workers=2, **kw)]
    procs = [(x.numpy(), y.numpy()) for x, y in make_dataset(version, "train", HEAT, workers=2, backend="processes", **kw)]
    assert len(threads) == len(procs)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(threads, procs, strict=True))

"""storage/reader.py: a real version from the synthetic COCO generator read back — records, RGB crops
equal to the HDF5 rows, keypoints, batches — refusals (no manifest, failed gate, tampered Parquet,
tampered pixels), the documented pandas / pyarrow.dataset / duckdb one-liners, the old layout, fork."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import pickle
import shutil
import tracemalloc
from pathlib import Path

import duckdb
import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

import posepipe
from schemas.errors import ConfigError, SchemaError, ShardChecksumError, VersionNotFoundError, VersionNotValidatedError
from storage.hdf5 import COLOR_ORDER, content_digest, read_hdf5_rows, read_rows_into, stream_content_digest
from storage.reader import DatasetVersion, flags_array, open_version, parse_dataset_ref, points_array
from tasks.synthetic import write_synthetic_coco
from tasks.transforms.geometry import CropConfig
from tests.helpers import build_version

H, W = 64, 48  # crop size: big enough that a split's pixels dwarf a batch's in the memory test
SMALL = CropConfig(out_height_px=H, out_width_px=W)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    """One real version (train: 4 shards of ≤ 8, val: 1), built once for the module without Prefect."""
    base = tmp_path_factory.mktemp("reader")
    src = write_synthetic_coco(base / "src", {"train": 12, "val": 4}, seed=1)
    summary = build_version(str(base / "root"), str(src), crop=SMALL, shard_size=8)
    assert summary["validation"] == "passed" and summary["rejected"] > 0  # rejects exist: the one-liners must skip them
    return base / "root", summary


@pytest.fixture
def root(built, tmp_path) -> Path:
    """A private copy of the built root (for tests that tamper with it)."""
    dst = tmp_path / "root"
    shutil.copytree(built[0], dst)
    return dst


def _vdir(root: Path, summary: dict) -> Path:
    return root / "datasets" / "coco" / summary["version"]


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table.combine_chunks())
    return sink.getvalue().to_pybytes()


def test_parse_dataset_ref():
    assert parse_dataset_ref("coco@v-1234") == ("coco", "v-1234")
    assert parse_dataset_ref("coco") == ("coco", None)
    for bad in ("", "@v-1", "coco@", "a@b@c"):
        with pytest.raises(ConfigError, match="NAME@VERSION"):
            parse_dataset_ref(bad)


def test_round_trip_records_crops_keypoints(built):
    root, summary = built
    vdir = _vdir(root, summary)
    v = open_version(str(root), "coco")
    manifest_bytes = (vdir / "_manifest.json").read_bytes()
    assert (v.version, v.dataset, v.record, v.skeleton) == (summary["version"], "coco", "processed_samples", "coco17")
    assert v.manifest == json.loads(manifest_bytes) and v.manifest_sha256 == hashlib.sha256(manifest_bytes).hexdigest()
    assert v.splits == ["train", "val"] and {s: v.num_rows(s) for s in v.splits} == summary["counts"]
    assert v.dir == str(vdir) and v.crop_shape("train") == (H, W, 3)
    assert [s.index for s in v.shards("train")] == [0, 1, 2, 3] and v.shards("train")[0].hdf5 == str(vdir / "_pixels/train/part-00000.h5")
    for split in v.splits:
        t = v.records(split)
        files = sorted((vdir / split).glob("part-*.parquet"))
        assert _ipc(t) == _ipc(pa.concat_tables([pq.read_table(f) for f in files]).cast(t.schema))  # NaN-safe equality
        ids = t.column("sample_id").to_pylist()
        assert ids == sorted(ids)
        crops = v.crops(split, np.arange(t.num_rows))
        assert crops.shape == (t.num_rows, H, W, 3) and crops.dtype == np.uint8
        for i, row in enumerate(t.select(["pixels_file", "pixels_row"]).to_pylist()):
            with h5py.File(vdir / row["pixels_file"]) as f:
                assert f.attrs[COLOR_ORDER] == "BGR"
                bgr = f["images"][row["pixels_row"]]
                assert f["sample_id"][row["pixels_row"]].decode() == ids[i]
            assert np.array_equal(crops[i], bgr[..., ::-1]), (split, i)  # RGB = the stored BGR, channels swapped
        # any order, repeats, per shard and with a caller's buffer
        pick = [t.num_rows - 1, 0, 3, 0]
        assert np.array_equal(v.crops(split, pick), crops[pick])
        shard = v.shards(split)[-1]
        out = np.zeros((shard.rows, H, W, 3), np.uint8)
        assert v.read_crops(shard, out=out) is out and np.array_equal(out, crops[-shard.rows :])
        # keypoints, visibility, labels: the records' lists as arrays
        kp = v.keypoints(split)
        assert kp.shape == (t.num_rows, 17, 2) and kp.dtype == np.float32
        assert np.array_equal(kp, np.array(t.column("keypoints_crop_xy_px").to_pylist(), np.float32), equal_nan=True)
        kp_img = v.keypoints(split, frame="image")
        assert np.array_equal(kp_img, np.array(t.column("keypoints_xy_px").to_pylist(), np.float32), equal_nan=True)
        vis = v.visibility(split)
        assert vis.shape == (t.num_rows, 17) and vis.dtype == np.int8
        assert np.array_equal(vis, np.array(t.column("keypoints_visibility").to_pylist(), np.int8))
        labels = v.labels(split)
        assert labels.shape == (t.num_rows,) and labels.dtype == object and all(x is None for x in labels)  # COCO has no activity
        assert v.labels(split, "sample_id").tolist() == ids
    df = v.to_pandas("val", columns=["sample_id", "skeleton"])
    assert list(df.columns) == ["sample_id", "skeleton"] and len(df) == summary["counts"]["val"]
    assert v.records().num_rows == summary["written"]


def test_take_reads_only_the_shards_that_hold_the_rows(built, monkeypatch):
    root, summary = built
    v = open_version(str(root), "coco")
    shards = v.shards("train")
    assert len(shards) >= 3
    everything = v.records("train")
    n = everything.num_rows
    rows = [n - 1, 0, 3, 0]  # any order, repeats allowed
    read = []
    real = DatasetVersion.read_records
    monkeypatch.setattr(DatasetVersion, "read_records", lambda self, shard, columns=None: read.append(shard.parquet) or real(self, shard, columns))
    got = v.take("train", rows, ["sample_id", "keypoints_visibility"])
    assert got.column("sample_id").to_pylist() == [everything.column("sample_id")[r].as_py() for r in rows]
    assert got.column_names == ["sample_id", "keypoints_visibility"]
    assert sorted(set(read)) == sorted({shards[0].parquet, shards[-1].parquet})  # not the shards in between
    joints = v.take("train", rows, ["keypoints_crop_xy_px", "keypoints_visibility"])
    np.testing.assert_array_equal(points_array(joints.column("keypoints_crop_xy_px"), len(rows), "kp"), v.keypoints("train")[rows])
    np.testing.assert_array_equal(flags_array(joints.column("keypoints_visibility"), len(rows), "vis"), v.visibility("train")[rows])
    assert v.take("train", []).num_rows == 0 and v.column_names == everything.column_names
    with pytest.raises(ConfigError, match="rows must be in"):
        v.take("train", [n])


def test_latest_default_explicit_version_and_posepipe_reexport(built, tmp_path):
    root, summary = built
    a = posepipe.open_version(str(root), "coco")
    b = open_version(str(root), "coco", summary["version"])
    c = open_version(str(root), f"coco@{summary['version']}")
    assert a.version == b.version == c.version == summary["version"] and posepipe.DatasetVersion is DatasetVersion
    # a second, different version: LATEST follows the newest validated build, the old one stays readable by name
    src2 = write_synthetic_coco(tmp_path / "src2", {"val": 3}, seed=9)
    other_root = tmp_path / "root2"
    shutil.copytree(root, other_root)
    s2 = build_version(str(other_root), str(src2), crop=SMALL, shard_size=8)
    assert s2["version"] != summary["version"]
    assert open_version(str(other_root), "coco").version == s2["version"]
    assert open_version(str(other_root), "coco", summary["version"]).num_rows("val") == summary["counts"]["val"]
    with pytest.raises(ConfigError, match="no split"):
        a.shards("test")


def test_missing_manifest_or_latest_is_refused(root, built):
    summary = built[1]
    with pytest.raises(VersionNotFoundError, match="v-000000000000"):
        open_version(str(root), "coco", "v-000000000000")
    with pytest.raises(VersionNotFoundError, match="no LATEST"):
        open_version(str(root), "nothing")
    (_vdir(root, summary) / "_manifest.json").unlink()  # an interrupted build: shards but no manifest
    with pytest.raises(VersionNotFoundError, match="no committed version") as err:
        open_version(str(root), "coco")
    assert err.value.hint


def test_failed_validation_is_refused_naming_checks_and_shards(root, built):
    summary = built[1]
    path = _vdir(root, summary) / "_manifest.json"
    m = json.loads(path.read_text())
    m["validation"]["success"] = False
    m["validation"]["failures"] = [
        "coco-train-part-00001: crop_pixels_not_constant (1 unexpected: coco-000000000003-7)",
        "version: ids_unique (2 unexpected: a, b)",
    ]
    path.write_text(json.dumps(m))
    with pytest.raises(VersionNotValidatedError, match="failed validation") as err:
        open_version(str(root), "coco")
    assert "crop_pixels_not_constant" in str(err.value) and "coco-train-part-00001" in str(err.value) and "ids_unique" in str(err.value)
    assert "_validation.html" in err.value.hint


def test_tampered_parquet_is_refused_at_open(root, built):
    summary = built[1]
    target = _vdir(root, summary) / "train/part-00002.parquet"
    t = pq.read_table(target)
    t = t.set_column(t.schema.get_field_index("activity"), "activity", pa.array(["walking"] * t.num_rows, t.schema.field("activity").type))
    pq.write_table(t, target)  # still a valid Parquet file, different rows
    with pytest.raises(ShardChecksumError, match="train/part-00002.parquet") as err:
        open_version(str(root), "coco")
    assert "rebuild" in err.value.hint
    v = open_version(str(root), "coco", verify=False)  # opt out: reads, and verify() still refuses
    assert v.labels("train")[16] == "walking"
    with pytest.raises(ShardChecksumError, match="train/part-00002.parquet"):
        v.verify(pixels=False)


def test_tampered_pixel_byte_is_refused_on_first_read(root, built):
    summary = built[1]
    target = _vdir(root, summary) / "_pixels/train/part-00001.h5"
    with h5py.File(target) as f:
        offset = f["images"].id.get_chunk_info(5).byte_offset + 100  # one byte of row 5's pixels
    data = bytearray(target.read_bytes())
    data[offset] ^= 0xFF
    target.write_bytes(bytes(data))
    v = open_version(str(root), "coco")  # the Parquet is intact, so the version opens
    first = v.shards("train")[0]
    assert v.read_crops(first).shape == (first.rows, H, W, 3)  # other shards read
    with pytest.raises(ShardChecksumError, match="_pixels/train/part-00001.h5") as err:
        v.read_crops(v.shards("train")[1], [0])  # row 0 is intact: the whole shard is checked first
    assert "rebuild" in err.value.hint
    with pytest.raises(ShardChecksumError, match="part-00001.h5"):
        v.crops("train", [9])
    with pytest.raises(ShardChecksumError, match="part-00001.h5"):
        list(v.batches("train", 4))
    with pytest.raises(ShardChecksumError, match="part-00001.h5"):
        open_version(str(root), "coco", verify=False).verify()
    assert open_version(str(root), "coco", verify=False).read_crops(v.shards("train")[1], [0]).shape == (1, H, W, 3)


def test_a_manifest_written_with_sha256_content_hashes_still_verifies_and_still_catches_tampering(root, built):
    summary = built[1]
    vdir = _vdir(root, summary)
    path = vdir / "_manifest.json"
    m = json.loads(path.read_text())
    for shard in m["shards"]:  # as the manifests written before xxh3 have them
        ids, pixels = read_hdf5_rows(LocalFileSystem(), str(vdir / shard["hdf5"]))
        shard["hdf5_content_sha256"] = content_digest(ids, pixels, "sha256").removeprefix("sha256:")
        del shard["hdf5_content_digest"]
    path.write_text(json.dumps(m))
    v = open_version(str(root), "coco")
    v.verify()
    assert all(s.hdf5_content_digest.startswith("sha256:") for s in v.shards("train"))
    target = vdir / "_pixels/train/part-00001.h5"
    with h5py.File(target) as f:
        offset = f["images"].id.get_chunk_info(5).byte_offset + 100
    data = bytearray(target.read_bytes())
    data[offset] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ShardChecksumError, match="content digest sha256:"):
        open_version(str(root), "coco").read_crops(v.shards("train")[1], [0])


def test_streaming_content_digest_matches_the_manifest_and_reads_other_layouts(built, tmp_path):
    root, summary = built
    v = open_version(str(root), "coco")
    for shard in v.shards("train"):
        with h5py.File(shard.hdf5) as f:
            assert shard.hdf5_content_digest.startswith("xxh3_128:")
            assert stream_content_digest(f) == shard.hdf5_content_digest
            assert stream_content_digest(f, "sha256", block_bytes=1) == content_digest(*read_hdf5_rows(LocalFileSystem(), str(shard.hdf5)), "sha256")
    # a file another writer laid out (compressed, other chunking): the same rows through the slow path
    pixels = np.random.default_rng(0).integers(0, 255, (5, 6, 4, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("images", data=pixels, chunks=(2, 6, 4, 3), compression="gzip")
    with h5py.File(tmp_path / "other.h5") as f:
        out = np.empty((3, 6, 4, 3), np.uint8)
        assert np.array_equal(read_rows_into(f["images"], [4, 0, 2], out), pixels[[4, 0, 2]])


def test_batches_cover_every_row_once_in_order_with_bounded_memory(built, monkeypatch):
    root, summary = built
    v = open_version(str(root), "coco")
    t = v.records("train")
    crops = v.crops("train", np.arange(t.num_rows))
    batches = list(v.batches("train", batch_size=5, columns=["sample_id", "image_path"]))
    assert [len(b.sample_ids) for b in batches] == [5] * 6  # 30 rows; batches run across shard boundaries
    assert sum((b.sample_ids for b in batches), []) == t.column("sample_id").to_pylist()
    assert np.array_equal(np.concatenate([b.crops for b in batches]), crops)
    assert np.array_equal(np.concatenate([b.keypoints_xy_px for b in batches]), v.keypoints("train"), equal_nan=True)
    assert np.array_equal(np.concatenate([b.visibility for b in batches]), v.visibility("train"))
    assert batches[0].records.column_names == ["sample_id", "image_path"]
    assert [len(b.sample_ids) for b in v.batches("val", batch_size=3)] == [3, 3, 2]
    assert [len(b.sample_ids) for b in v.batches("train", batch_size=64)] == [30]

    # streaming: the first batch needs only the first shard's records
    calls: list[int] = []
    real = DatasetVersion.read_records
    monkeypatch.setattr(DatasetVersion, "read_records", lambda self, shard, columns=None: calls.append(shard.index) or real(self, shard, columns))
    it = v.batches("train", batch_size=4)
    next(it)
    assert calls == [0]
    list(it)
    assert calls == [0, 1, 2, 3]  # each shard read once, in order

    # bounded: what iterating holds is about a batch, not the split (tracemalloc sees numpy's buffers)
    split_bytes = t.num_rows * H * W * 3
    batch_bytes = 2 * H * W * 3
    for _ in v.batches("train", batch_size=2):  # warm: lazy imports and caches
        pass
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for _ in v.batches("train", batch_size=2):
            pass
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        base_all, _ = tracemalloc.get_traced_memory()
        everything = v.crops("train", np.arange(t.num_rows))
        _, peak_all = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_all - base_all >= split_bytes and everything.nbytes == split_bytes  # the measure sees pixels
    assert peak - base < 3 * batch_bytes + 32_000 < split_bytes / 2, (peak - base, batch_bytes, split_bytes)


def test_version_folder_reads_as_one_parquet_dataset(built):
    """The README's one-liners: exactly the records (count = manifest written), no rejects mixed in."""
    root, summary = built
    version_dir = str(_vdir(root, summary))
    written = json.loads((_vdir(root, summary) / "_manifest.json").read_text())["written"]
    ids = sorted(open_version(str(root), "coco").records().column("sample_id").to_pylist())
    assert len(ids) == written == summary["written"]

    t = pads.dataset(version_dir, format="parquet").to_table()
    assert t.num_rows == written and sorted(t.column("sample_id").to_pylist()) == ids
    df = pd.read_parquet(version_dir)
    assert len(df) == written and sorted(df["sample_id"]) == ids
    [(count,)] = duckdb.sql(f"select count(*) from read_parquet('{version_dir}/*/part-*.parquet')").fetchall()
    assert count == written
    got = duckdb.sql(f"select sample_id from read_parquet('{version_dir}/*/part-*.parquet') order by sample_id").fetchall()
    assert [r[0] for r in got] == ids
    # what the old layout's `**/*.parquet` glob did: rejects (and inputs) mixed in
    [(mixed,)] = duckdb.sql(f"select count(*) from read_parquet('{version_dir}/**/*.parquet', union_by_name=true)").fetchall()
    assert mixed > written


def test_old_layout_with_h5_beside_parquet_still_reads(root, built):
    summary = built[1]
    vdir = _vdir(root, summary)
    reference = open_version(str(root), "coco")
    expected = {s: reference.crops(s, np.arange(reference.num_rows(s))) for s in reference.splits}
    path = vdir / "_manifest.json"
    m = json.loads(path.read_text())
    for shard in m["shards"]:
        old = shard["hdf5"].removeprefix("_pixels/")
        (vdir / shard["hdf5"]).rename(vdir / old)
        shard["hdf5"] = old
    shutil.rmtree(vdir / "_pixels")
    path.write_text(json.dumps(m))
    v = open_version(str(root), "coco")
    assert v.shards("val")[0].hdf5 == str(vdir / "val/part-00000.h5")
    v.verify()
    for split, crops in expected.items():
        assert np.array_equal(v.crops(split, np.arange(v.num_rows(split))), crops)
        assert sum(len(b.sample_ids) for b in v.batches(split, 3)) == v.num_rows(split)


def test_colour_order_attribute(root):
    v = open_version(str(root), "coco")
    shard = v.shards("val")[0]
    rgb = v.read_crops(shard)
    v.close()
    with h5py.File(shard.hdf5, "r+") as f:  # a file written before the attribute existed: BGR
        del f.attrs[COLOR_ORDER]
    with open_version(str(root), "coco") as old:
        assert np.array_equal(old.read_crops(shard), rgb)
    with h5py.File(shard.hdf5, "r+") as f:  # a writer that stores RGB: no swap
        f.attrs[COLOR_ORDER] = "RGB"
    with open_version(str(root), "coco") as other:
        assert np.array_equal(other.read_crops(shard), rgb[..., ::-1])


_FORKED: dict[str, DatasetVersion] = {}


def _child_reads(rows: list[int]) -> bytes:
    v = _FORKED["v"]  # inherited through fork, with the parent's open handles
    assert v._pid != __import__("os").getpid()
    return v.crops("train", rows).tobytes()


def test_handles_reopen_after_fork_and_pickle(built):
    root, _ = built
    v = open_version(str(root), "coco")
    rows = [0, 8, 17, 29]
    parent = v.crops("train", rows)  # handles now open in the parent
    assert v._handles
    _FORKED["v"] = v
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            got = pool.map(_child_reads, [rows, rows[::-1]])
    finally:
        _FORKED.clear()
    assert got[0] == parent.tobytes() and got[1] == parent[::-1].tobytes()
    clone = pickle.loads(pickle.dumps(v))
    assert not clone._handles and np.array_equal(clone.crops("train", rows), parent)
    v.close()
    assert np.array_equal(v.crops("train", rows), parent)  # reopened on demand


def test_other_record_kinds_read_by_their_columns(root, built):
    """A kind the reader has no schema for (sequences) and shards without pixels still batch."""
    summary = built[1]
    path = _vdir(root, summary) / "_manifest.json"
    expected = open_version(str(root), "coco")
    crops = expected.crops("val", np.arange(expected.num_rows("val")))
    m = json.loads(path.read_text())
    m["record"] = "some_future_kind"
    path.write_text(json.dumps(m))
    v = open_version(str(root), "coco")
    (b,) = v.batches("val", batch_size=64)
    assert np.array_equal(b.crops, crops) and b.keypoints_xy_px.shape == (len(crops), 17, 2)
    for shard in m["shards"]:
        shard["hdf5"] = shard["hdf5_content_digest"] = None
    path.write_text(json.dumps(m))
    v = open_version(str(root), "coco")
    (b,) = v.batches("val", batch_size=64, columns=["image_path"])
    assert b.crops.shape == (len(crops), 0, 0, 3) and b.records.column_names == ["image_path"] and len(b.sample_ids) == len(crops)
    with pytest.raises(SchemaError, match="no pixels"):
        v.crop_shape("val")

import hashlib
import multiprocessing as mp
import os
import time

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from schemas.errors import LockError, SchemaError, StorageError, VersionNotFoundError
from schemas.records import REJECTS_SCHEMA
from storage.fs import atomic_open, filesystem
from storage.hdf5 import content_digest, digest_algorithm, read_hdf5_rows, write_hdf5_shard
from storage.manifest import (
    compute_version,
    dataset_lock,
    list_versions,
    read_latest,
    read_manifest,
    set_latest,
    write_manifest,
)
from storage.parquet import parquet_bytes, read_parquet, write_parquet


def test_atomic_open_leaves_nothing_on_error(tmp_path):
    fs, _ = filesystem(str(tmp_path))
    target = str(tmp_path / "x.bin")
    with pytest.raises(RuntimeError), atomic_open(fs, target) as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with atomic_open(fs, target) as fh:
        fh.write(b"whole")
    assert os.listdir(tmp_path) == ["x.bin"] and (tmp_path / "x.bin").read_bytes() == b"whole"


def test_parquet_bytes_deterministic_and_schema_enforced(tmp_path):
    t = pa.table({"source_key": ["a", "b"], "stage": ["parse"] * 2, "reason": ["crowd"] * 2, "detail": [None, "x"], "split": ["val"] * 2})
    assert parquet_bytes(t, REJECTS_SCHEMA) == parquet_bytes(t, REJECTS_SCHEMA)
    fs, _ = filesystem(str(tmp_path))
    n, sha = write_parquet(fs, str(tmp_path / "r.parquet"), t, REJECTS_SCHEMA)
    assert n == 2 and len(sha) == 64
    assert read_parquet(fs, str(tmp_path / "r.parquet"), REJECTS_SCHEMA).num_rows == 2
    with pytest.raises(SchemaError):
        write_parquet(fs, str(tmp_path / "bad.parquet"), t.drop(["stage"]), REJECTS_SCHEMA)
    assert not (tmp_path / "bad.parquet").exists()


def test_content_digest_names_its_algorithm_and_hashes_ids_shape_and_pixels():
    images = np.arange(6, dtype=np.uint8).reshape(2, 1, 1, 3)
    payload = b"a\0b" + b"(2, 1, 1, 3)" + bytes(range(6))
    assert content_digest(["a", "b"], images, "sha256") == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert content_digest(["a", "b"], images) == "xxh3_128:" + xxhash.xxh3_128(payload).hexdigest()
    assert content_digest(["a", "b"], images[::-1]) != content_digest(["a", "b"], images)
    assert digest_algorithm("xxh3_128:00") == "xxh3_128" and digest_algorithm("ab12") == "sha256"  # bare hex: written before
    with pytest.raises(StorageError, match="unknown content digest 'md4'"):
        content_digest(["a"], images[:1], "md4")


def test_hdf5_shard_checksum_is_a_content_hash(tmp_path):
    fs, _ = filesystem(str(tmp_path))
    images = np.random.default_rng(0).integers(0, 255, (3, 8, 6, 3), dtype=np.uint8)
    a = write_hdf5_shard(fs, str(tmp_path / "a.h5"), ["s1", "s2", "s3"], images)
    time.sleep(1.1)  # a timestamp would differ now
    b = write_hdf5_shard(fs, str(tmp_path / "b.h5"), ["s1", "s2", "s3"], images)
    assert a == b == content_digest(["s1", "s2", "s3"], images)
    changed = images.copy()
    changed[1, 0, 0, 0] ^= 1
    assert write_hdf5_shard(fs, str(tmp_path / "c.h5"), ["s1", "s2", "s3"], changed) != a
    assert write_hdf5_shard(fs, str(tmp_path / "d.h5"), ["s1", "s2", "s4"], images) != a
    ids, px = read_hdf5_rows(fs, str(tmp_path / "a.h5"), [2, 0])
    assert ids == ["s3", "s1"] and (px[0] == images[2]).all()


def test_version_hash_changes_with_any_input():
    base = compute_version({"a.json": "1"}, {"seed": 0}, "1.0.0", "c")
    assert base == compute_version({"a.json": "1"}, {"seed": 0}, "1.0.0", "c")
    assert len({base, compute_version({"a.json": "2"}, {"seed": 0}, "1.0.0", "c"), compute_version({"a.json": "1"}, {"seed": 1}, "1.0.0", "c"),
                compute_version({"a.json": "1"}, {"seed": 0}, "1.0.1", "c"), compute_version({"a.json": "1"}, {"seed": 0}, "1.0.0", "d")}) == 5  # fmt: skip


def test_manifest_latest_and_listing(tmp_path):
    fs, root = filesystem(str(tmp_path))
    with pytest.raises(VersionNotFoundError):
        read_manifest(fs, root, "coco", "v-x")
    (tmp_path / "datasets" / "coco" / "v-uncommitted").mkdir(parents=True)
    write_manifest(fs, root, "coco", "v-1", {"version": "v-1"})
    assert [m["version"] for m in list_versions(fs, root, "coco")] == ["v-1"]  # uncommitted folder ignored
    assert read_latest(fs, root, "coco") is None
    set_latest(fs, root, "coco", "v-1")
    assert read_latest(fs, root, "coco") == "v-1"


def _hold_lock(root, ready, release):
    fs, path = filesystem(root)
    with dataset_lock(fs, path, "coco"):
        ready.set()
        release.wait(30)


def test_lock_excludes_a_second_process(tmp_path):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    proc.start()
    try:
        assert ready.wait(60)
        fs, root = filesystem(str(tmp_path))
        with pytest.raises(LockError, match="another rebuild"), dataset_lock(fs, root, "coco"):
            pass
    finally:
        release.set()
        proc.join(30)
    with dataset_lock(fs, root, "coco"):  # released when the holder exits
        pass


def test_lock_released_when_holder_is_killed(tmp_path):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    proc.start()
    assert ready.wait(60)
    proc.kill()
    proc.join(30)
    fs, root = filesystem(str(tmp_path))
    with dataset_lock(fs, root, "coco"):
        pass


def test_memory_file_zero_fills_gaps_and_forgets_the_previous_file():
    from storage.hdf5 import MemoryFile

    f = MemoryFile(capacity=16)
    f.write(b"x" * 40)  # grows past the initial capacity
    f.reset()
    f.seek(5)
    f.write(b"ab")
    assert f.size == 7 and bytes(f.getbuffer()) == b"\0" * 5 + b"ab"  # the old x's are not visible
    f.truncate(10)
    assert bytes(f.getbuffer()) == b"\0" * 5 + b"ab\0\0\0"
    f.seek(0)
    out = bytearray(20)
    assert f.readinto(out) == 10 and out[5:7] == b"ab"
    assert len(f.buffer) % 4096 == 0 and len(f.buffer) >= f.size + 4096  # room for O_DIRECT padding


@pytest.mark.parametrize("size", [1, 4095, 4096, 4097, 3 * 4096 + 17])
def test_unbuffered_write_has_exactly_the_bytes(tmp_path, size):
    import mmap

    from storage.fs import write_local_unbuffered

    buf = mmap.mmap(-1, 8 * 4096)
    payload = os.urandom(size)
    buf[:size] = payload
    assert write_local_unbuffered(str(tmp_path / "f"), buf, size)
    assert (tmp_path / "f").read_bytes() == payload


def test_unbuffered_write_falls_back_where_o_direct_is_refused(tmp_path, monkeypatch):
    import errno

    fs, _ = filesystem(str(tmp_path))
    images = np.random.default_rng(1).integers(0, 255, (2, 8, 6, 3), dtype=np.uint8)
    write_hdf5_shard(fs, str(tmp_path / "direct.h5"), ["a", "b"], images)
    real_open, real_write = os.open, os.write

    def refusing_open(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    write_hdf5_shard(fs, str(tmp_path / "open-refused.h5"), ["a", "b"], images)
    monkeypatch.setattr(os, "open", real_open)

    def refusing_write(fd, data):  # some filesystems accept the flag and refuse the write
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "write", refusing_write)
    write_hdf5_shard(fs, str(tmp_path / "write-refused.h5"), ["a", "b"], images)
    monkeypatch.setattr(os, "write", real_write)
    buffered = write_hdf5_shard(fs, str(tmp_path / "buffered.h5"), ["a", "b"], images, direct_io=False)
    assert buffered == content_digest(["a", "b"], images)
    blobs = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(blobs) == ["buffered.h5", "direct.h5", "open-refused.h5", "write-refused.h5"]  # no temporaries left
    assert len(set(blobs.values())) == 1  # the same bytes whichever way they were written
    ids, px = read_hdf5_rows(fs, str(tmp_path / "write-refused.h5"))
    assert ids == ["a", "b"] and np.array_equal(px, images)


def test_hdf5_shard_on_a_remote_filesystem_matches_local(tmp_path):
    import fsspec

    images = np.random.default_rng(2).integers(0, 255, (3, 4, 5, 3), dtype=np.uint8)
    mem = fsspec.filesystem("memory")
    sha = write_hdf5_shard(mem, "/pp-test/a.h5", ["x", "y", "z"], images)
    local, _ = filesystem(str(tmp_path))
    assert sha == write_hdf5_shard(local, str(tmp_path / "a.h5"), ["x", "y", "z"], images)
    assert mem.cat_file("/pp-test/a.h5") == (tmp_path / "a.h5").read_bytes()
    assert mem.ls("/pp-test", detail=False) == ["/pp-test/a.h5"]
    mem.rm("/pp-test", recursive=True)


def test_a_shard_of_schema_1_0_0_reads_with_todays_column_names(tmp_path):
    """Schema 1.1.0 renamed the pixel sizes to *_px; shards written before still read."""
    import pyarrow as pa

    from schemas.records import LEGACY_COLUMNS, PROCESSED_SAMPLES_SCHEMA
    from storage.fs import filesystem
    from storage.parquet import read_parquet

    old_names = {new: old for old, new in LEGACY_COLUMNS.items()}
    fields = [pa.field(old_names.get(f.name, f.name), f.type, f.nullable) for f in PROCESSED_SAMPLES_SCHEMA]
    row = {
        "sample_id": "coco-000000000001-1", "dataset": "coco", "split": "val", "image_path": "a.jpg", "image_width": 640,
        "image_height": 480, "person_index": 0, "source_key": "1", "bbox_xyxy_px": [1.0, 2.0, 3.0, 4.0], "center_xy_px": [2.0, 3.0],
        "scale": 0.01, "skeleton": "coco17", "keypoints_xy_px": [[1.0, 2.0]] * 17, "keypoints_visibility": [2] * 17, "extra": None,
        "head_box_xyxy_px": None, "crop_xyxy_px": [0.0, 0.0, 10.0, 10.0], "crop_width": 192, "crop_height": 256,
        "keypoints_crop_xy_px": [[1.0, 2.0]] * 17, "pixels_file": "val/part-00000.h5", "pixels_row": 0,
    }  # fmt: skip
    row = {f.name: row.get(f.name) for f in fields}
    path = tmp_path / "old.parquet"
    pa.parquet.write_table(pa.Table.from_pylist([row], pa.schema(fields)), path)
    fs, _ = filesystem(str(tmp_path))
    t = read_parquet(fs, str(path), PROCESSED_SAMPLES_SCHEMA)
    got = t.to_pylist()[0]
    assert (got["crop_width_px"], got["crop_height_px"], got["image_width_px"], got["image_height_px"]) == (192, 256, 640, 480)
    assert t.schema.names == PROCESSED_SAMPLES_SCHEMA.names


def test_file_digest_is_xxh3_128_of_the_whole_content_across_read_blocks(tmp_path):
    from storage.fs import file_digest

    data = bytes(range(256)) * (3 * 4096 + 17)  # 3 MiB + a tail: four 1 MiB reads
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "empty.bin").write_bytes(b"")
    assert file_digest(tmp_path / "big.bin") == f"xxh3_128:{xxhash.xxh3_128(data).hexdigest()}"
    assert file_digest(tmp_path / "empty.bin") == f"xxh3_128:{xxhash.xxh3_128(b'').hexdigest()}"
    with pytest.raises(OSError):
        file_digest(tmp_path / "absent.bin")

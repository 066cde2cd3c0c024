"""HDF5 pixel shards: one file per shard, one writer per file, one chunk per sample.

Files are written with ``track_times=False`` and fixed chunking, under a temporary name, then renamed.
The checksum recorded for a shard is a *content* hash (sample ids, array shape and pixel bytes), not
a file hash: libhdf5 may write uninitialised memory into the unused tail of its metadata blocks, so
two files with identical contents are not always byte-identical (seen once in 1-vs-2-worker runs). On non-local roots the file is built locally and then
uploaded to a temporary name and moved.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence

import fsspec
import h5py
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from schemas.errors import StorageError
from storage.fs import _tmp_name, atomic_local_path

IMAGES = "images"
SAMPLE_IDS = "sample_id"


def _write(path: str, sample_ids: Sequence[str], images: np.ndarray, attrs: dict[str, str | int]) -> None:
    with h5py.File(path, "w", track_order=False) as h5:
        n = len(sample_ids)
        if images.ndim != 4 or images.shape[0] != n:
            raise StorageError(f"HDF5 shard {path}: images shape {images.shape} does not match {n} sample ids")
        chunks = (1, *images.shape[1:]) if n else None
        h5.create_dataset(IMAGES, data=images, dtype=np.uint8, chunks=chunks, track_times=False)
        h5.create_dataset(SAMPLE_IDS, data=np.array(list(sample_ids), dtype=object), dtype=h5py.string_dtype(), track_times=False)
        for key, value in sorted(attrs.items()):
            h5.attrs[key] = value


def content_sha256(sample_ids: Sequence[str], images: np.ndarray) -> str:
    """sha256 of a shard's contents: ids (NUL-separated), the array shape, then the pixel bytes."""
    h = hashlib.sha256()
    h.update("\0".join(sample_ids).encode())
    h.update(repr(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images, dtype=np.uint8).data)
    return h.hexdigest()


def write_hdf5_shard(
    fs: fsspec.AbstractFileSystem,
    path: str,
    sample_ids: Sequence[str],
    images: np.ndarray,
    attrs: dict[str, str | int] | None = None,
    durable: bool = True,
) -> str:
    """Write ``images`` ``(N, H, W, 3) uint8`` and their sample ids to one HDF5 shard, atomically.

    Returns:
        :func:`content_sha256` of what was written.
    """
    attrs = attrs or {}
    if isinstance(fs, LocalFileSystem):
        with atomic_local_path(path, durable=durable) as tmp:
            _write(tmp, sample_ids, images, attrs)
        return content_sha256(sample_ids, images)
    with tempfile.TemporaryDirectory() as d:
        local = os.path.join(d, "shard.h5")
        _write(local, sample_ids, images, attrs)
        tmp = _tmp_name(path)
        fs.put_file(local, tmp)
        fs.mv(tmp, path)
    return content_sha256(sample_ids, images)


def read_hdf5_rows(fs: fsspec.AbstractFileSystem, path: str, rows: Sequence[int] | None = None) -> tuple[list[str], np.ndarray]:
    """Read sample ids and pixels (all rows, or the given ones) from a shard.

    Returns:
        (sample ids, ``(n, H, W, 3) uint8``).
    """
    try:
        with fs.open(path, "rb") as fh, h5py.File(fh, "r") as h5:
            ids = [s.decode() if isinstance(s, bytes) else str(s) for s in h5[SAMPLE_IDS][()]]
            if rows is None:
                return ids, h5[IMAGES][()]
            idx = list(rows)
            return [ids[i] for i in idx], np.stack([h5[IMAGES][i] for i in idx]) if idx else np.zeros((0, 1, 1, 3), np.uint8)
    except FileNotFoundError as exc:
        raise StorageError(f"HDF5 shard not found: {path}") from exc
    except (OSError, KeyError) as exc:
        raise StorageError(f"cannot read HDF5 shard {path}: {exc}", hint="the file is corrupt; rebuild the version") from exc

"""Read a committed dataset version back: records, crops, keypoints, labels and batches (no TensorFlow).

::

    from storage.reader import open_version          # also ``posepipe.open_version``

    v = open_version("/data/pp", "coco")             # LATEST; or version="v-…"; refuses what it cannot trust
    v.splits, v.num_rows("val"), v.skeleton          # ["train", "val"], 68, "coco17"
    t = v.records("val")                             # pyarrow Table, shard order (= sorted by sample_id)
    df = v.to_pandas("val", columns=["sample_id", "activity"])
    x = v.crops("val", [0, 5, 9])                    # (3, H, W, 3) uint8 RGB
    kp, vis = v.keypoints("val"), v.visibility("val")   # (N, J, 2) float32 crop pixels, (N, J) int8
    for b in v.batches("train", batch_size=64):      # bounded memory: one shard's records + one batch
        b.crops, b.keypoints_xy_px, b.visibility, b.records

What is refused, each with its own error and a hint: a version with no manifest (or no ``LATEST``)
:class:`~schemas.errors.VersionNotFoundError`; a version whose gate failed
:class:`~schemas.errors.VersionNotValidatedError` (naming the failed checks and shards); a shard
whose bytes differ from the manifest :class:`~schemas.errors.ShardChecksumError` (naming the file).
Parquet shards are checked against their sha256 when the version is opened; an HDF5 shard's content
digest (:func:`storage.hdf5.content_digest`: xxh3-128, or sha256 for shards written before it) is
recomputed, a block of rows at a time, on the first pixel read from it; :meth:`DatasetVersion.verify` checks everything at once.

Pixels: the shards hold BGR (their ``color_order`` attribute says so; files written before it existed
are BGR too) and every crop returned here is RGB. A crop is one raw HDF5 chunk, copied straight into
the caller's array (``read_direct_chunk``), then its channels swapped in place. HDF5 handles stay open
for the life of the :class:`DatasetVersion` in each process and are reopened in a forked child (a
pickled version reopens them in the process that unpickles it).

File paths come from the manifest, so versions written before pixels moved to ``_pixels/`` (``.h5``
beside the Parquet) read the same way.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import (
    ConfigError,
    SchemaError,
    ShardChecksumError,
    StorageError,
    VersionNotFoundError,
    VersionNotValidatedError,
)
from schemas.records import CLIPS_SCHEMA, PROCESSED_SAMPLES_SCHEMA, conform, upgrade_legacy_columns
from storage.fs import filesystem
from storage.hdf5 import IMAGES, PixelsLayout, digest_algorithm, open_hdf5, read_rows_into, stream_content_digest
from storage.layout import VersionPaths
from storage.manifest import read_latest

#: Record schema of each manifest ``record`` (other kinds are read as stored).
RECORD_SCHEMAS: dict[str, pa.Schema] = {"processed_samples": PROCESSED_SAMPLES_SCHEMA, "clips": CLIPS_SCHEMA}

_MAX_FAILURES_SHOWN = 10


def parse_dataset_ref(ref: str) -> tuple[str, str | None]:
    """Split ``NAME[@VERSION]``.

    Example:
        ``"coco@v-1234"`` → ``("coco", "v-1234")``; ``"coco"`` → ``("coco", None)``.

    Raises:
        ConfigError: Empty name, empty version after ``@``, or more than one ``@``.
    """
    name, sep, version = ref.strip().partition("@")
    if not name or (sep and not version) or "@" in version:
        raise ConfigError(f"bad dataset reference {ref!r}", hint="write NAME or NAME@VERSION, e.g. coco or coco@v-0123456789ab")
    return name, version or None


@dataclass(frozen=True)
class ShardRef:
    """One shard of a version, as its manifest lists it.

    Attributes:
        split: Split name.
        index: Shard index within the split.
        rows: Records in the shard.
        parquet: Records file, a path on the version's filesystem.
        hdf5: Pixels file (None for record kinds without pixels).
        parquet_sha256: sha256 of the Parquet file's bytes.
        hdf5_content_digest: :func:`storage.hdf5.content_digest` of the pixels, ``"{algorithm}:{hex}"``
            (None without pixels; a manifest's older ``hdf5_content_sha256`` reads as ``"sha256:{hex}"``).
    """

    split: str
    index: int
    rows: int
    parquet: str
    hdf5: str | None
    parquet_sha256: str
    hdf5_content_digest: str | None


@dataclass(frozen=True)
class Batch:
    """``n`` consecutive records of a split with their pixels.

    Attributes:
        sample_ids: ``n`` ids.
        records: The rows (record schema, or the requested columns plus what the batch needs).
        crops: ``(n, H, W, 3) uint8`` RGB (``(n, 0, 0, 3)`` for kinds without pixels).
        keypoints_xy_px: ``(n, J, 2) float32`` in crop pixels (``(n, 0, 2)`` without keypoints).
        visibility: ``(n, J) int8`` (0 unlabelled, 1 occluded, 2 visible).
    """

    sample_ids: list[str]
    records: pa.Table
    crops: np.ndarray
    keypoints_xy_px: np.ndarray
    visibility: np.ndarray


def points_array(column: pa.ChunkedArray | pa.Array, n: int, what: str) -> np.ndarray:
    """A ``list<fixed_size_list<float32, 2>>`` column → ``(n, J, 2) float32`` (null points → NaN)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if n == 0:
        return np.zeros((0, 0, 2), np.float32)
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
    if arr.null_count or (lengths != lengths[0]).any():
        raise SchemaError(f"{what}: rows hold different numbers of joints ({sorted(set(lengths.tolist()))})", hint="read the column as records instead")
    points = arr.flatten()  # fixed_size_list<float32, 2>, one per joint
    xy = points.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if points.null_count:
        xy = xy.copy()
        xy_full = np.full((len(points), 2), np.nan, np.float32)
        valid = points.is_valid().to_numpy(zero_copy_only=False)
        xy_full[valid] = xy.reshape(-1, 2)
        return xy_full.reshape(n, int(lengths[0]), 2)
    return xy.reshape(n, int(lengths[0]), 2)


def flags_array(column: pa.ChunkedArray | pa.Array, n: int, what: str) -> np.ndarray:
    """A ``list<int8>`` column → ``(n, J) int8``."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if n == 0:
        return np.zeros((0, 0), np.int8)
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
    if arr.null_count or (lengths != lengths[0]).any():
        raise SchemaError(f"{what}: rows hold different numbers of joints", hint="read the column as records instead")
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.int8, copy=False).reshape(n, int(lengths[0]))


class DatasetVersion:
    """A committed, validated dataset version, opened by :func:`open_version`.

    Attributes:
        root: The root as given (local path or fsspec URL).
        dataset: Dataset name.
        version: Version id.
        manifest: The parsed ``_manifest.json``.
        fs: The root's filesystem (every path below is on it).
        record: ``manifest["record"]``: ``processed_samples`` (crops) or ``clips``.
        splits: Split names, from the manifest's counts.
        manifest_sha256: sha256 of the ``_manifest.json`` bytes (what lineage records).
        dir: The version folder.
    """

    def __init__(self, root: str, dataset: str, version: str, manifest: dict[str, Any], manifest_sha256: str, fs: fsspec.AbstractFileSystem, path: str) -> None:
        self.root = root
        self.dataset = dataset
        self.version = version
        self.manifest = manifest
        self.manifest_sha256 = manifest_sha256
        self.fs = fs
        self.record: str = manifest.get("record", "processed_samples")
        self.splits: list[str] = list(manifest.get("counts", {}))
        self._paths = VersionPaths(path, dataset, version)
        self.dir = self._paths.dir
        shards: dict[str, list[ShardRef]] = {s: [] for s in self.splits}
        for s in manifest.get("shards", []):
            ref = ShardRef(
                split=s["split"],
                index=int(s["index"]),
                rows=int(s["rows"]),
                parquet=self._paths.file(s["parquet"]),
                hdf5=self._paths.file(s["hdf5"]) if s.get("hdf5") else None,
                parquet_sha256=s["parquet_sha256"],
                hdf5_content_digest=s.get("hdf5_content_digest") or (f"sha256:{s['hdf5_content_sha256']}" if s.get("hdf5_content_sha256") else None),
            )
            shards.setdefault(ref.split, []).append(ref)
        self._shards = {split: sorted(refs, key=lambda r: r.index) for split, refs in shards.items()}
        self._schema = RECORD_SCHEMAS.get(self.record)
        self._verified_parquet: set[str] = set()
        self._verified_hdf5: set[str] = set()
        self.auto_verify = True
        self._lock = threading.Lock()
        self._reset_handles()
        self._skeleton: tuple[str | None] | None = None
        self._pixel_index_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # --- handles (per process) -----------------------------------------------------------------

    def _reset_handles(self) -> None:
        self._pid = os.getpid()
        self._handles: dict[str, h5py.File] = {}
        self._layouts: dict[str, tuple[h5py.File, h5py.Dataset, PixelsLayout]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_handles", "_layouts", "_lock", "_pid"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._reset_handles()

    def _h5(self, path: str) -> h5py.File:
        """The open handle of a pixels file in this process (opened on first use, reopened after fork)."""
        if self._pid != os.getpid():  # a forked child: the parent's libhdf5 state is not ours to use
            self._lock = threading.Lock()
            self._reset_handles()
        h5 = self._handles.get(path)
        if h5 is None:
            with self._lock:
                h5 = self._handles.get(path)
                if h5 is None:
                    h5 = self._handles[path] = open_hdf5(self.fs, path)
        return h5

    def _pixels(self, path: str) -> tuple[h5py.Dataset, PixelsLayout]:
        """The pixels dataset of an open shard and its layout, looked up once per handle."""
        h5 = self._h5(path)
        cached = self._layouts.get(path)
        if cached is None or cached[0] is not h5:
            cached = self._layouts[path] = (h5, h5[IMAGES], PixelsLayout.of(h5))
        return cached[1], cached[2]

    def close(self) -> None:
        """Close this process's HDF5 handles (they reopen on the next read)."""
        if self._pid == os.getpid():
            for h5 in self._handles.values():
                h5.close()
        self._reset_handles()

    def __enter__(self) -> DatasetVersion:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}: {self.num_rows(s)}" for s in self.splits)
        return f"DatasetVersion({self.dataset}@{self.version}, {self.record}, {counts})"

    # --- structure -----------------------------------------------------------------------------

    def shards(self, split: str) -> list[ShardRef]:
        """The shards of ``split`` in index order (= sorted by sample id)."""
        try:
            return list(self._shards[split])
        except KeyError:
            raise ConfigError(f"{self.dataset}@{self.version} has no split {split!r}", hint=f"splits: {', '.join(self.splits) or 'none'}") from None

    def num_rows(self, split: str) -> int:
        """Records in ``split``."""
        return sum(s.rows for s in self.shards(split))

    @property
    def skeleton(self) -> str | None:
        """The skeleton every record uses (None for kinds without one, or when records mix skeletons)."""
        if self._skeleton is None:
            names: set[str] = set()
            if self._schema is None or "skeleton" in self._schema.names:
                for split in self.splits:
                    for shard in self.shards(split):
                        if shard.rows:
                            names.update(v for v in self.read_records(shard, ["skeleton"]).column("skeleton").to_pylist() if v)
            self._skeleton = (names.pop() if len(names) == 1 else None,)
        return self._skeleton[0]

    @property
    def column_names(self) -> list[str]:
        """The records' columns: the record kind's schema (no shard read), else the first shard's."""
        if self._schema is not None:
            return list(self._schema.names)
        for split in self.splits:
            for shard in self.shards(split):
                return self.read_records(shard).column_names
        return []

    def crop_shape(self, split: str) -> tuple[int, int, int]:
        """``(H, W, 3)`` of the crops of ``split`` (from its first non-empty pixels shard).

        Raises:
            SchemaError: The split has no pixels.
        """
        for shard in self.shards(split):
            if shard.hdf5 and shard.rows:
                h, w, c = self._h5(shard.hdf5)[IMAGES].shape[1:]
                return int(h), int(w), int(c)
        raise SchemaError(f"{self.dataset}@{self.version} split {split!r} has no pixels (record kind {self.record!r})", hint="crops exist for image datasets only")

    # --- checksums -----------------------------------------------------------------------------

    def _parquet_bytes(self, shard: ShardRef, check: bool) -> bytes:
        try:
            data = self.fs.cat_file(shard.parquet)
        except FileNotFoundError:
            raise StorageError(f"shard not found: {shard.parquet}", hint="the version is incomplete; rebuild it") from None
        if check:
            got = hashlib.sha256(data).hexdigest()
            if got != shard.parquet_sha256:
                raise ShardChecksumError(
                    f"{shard.parquet}: sha256 {got[:16]}… differs from the manifest's {shard.parquet_sha256[:16]}…",
                    hint=f"the file changed after {self.dataset}@{self.version} was committed; rebuild the version (posepipe rebuild {self.dataset})",
                )
            self._verified_parquet.add(shard.parquet)
        return data

    def _verify_hdf5(self, shard: ShardRef) -> None:
        if shard.hdf5 is None or shard.hdf5 in self._verified_hdf5:
            return
        expected = str(shard.hdf5_content_digest)
        try:
            got = stream_content_digest(self._h5(shard.hdf5), digest_algorithm(expected))
        except (OSError, KeyError) as exc:
            raise StorageError(f"cannot read HDF5 shard {shard.hdf5}: {exc}", hint="the file is corrupt; rebuild the version") from exc
        if got != expected:
            raise ShardChecksumError(
                f"{shard.hdf5}: content digest {got[:25]}… differs from the manifest's {expected[:25]}…",
                hint=f"the pixels changed after {self.dataset}@{self.version} was committed; rebuild the version (posepipe rebuild {self.dataset})",
            )
        self._verified_hdf5.add(shard.hdf5)

    def verify(self, pixels: bool = True) -> None:
        """Check every shard against the manifest: Parquet sha256, and (``pixels``) HDF5 content digest.

        Raises:
            ShardChecksumError: The first shard that differs, named.
        """
        for split in self.splits:
            for shard in self.shards(split):
                self._parquet_bytes(shard, check=True)
                if pixels and shard.hdf5:
                    self._verified_hdf5.discard(shard.hdf5)
                    self._verify_hdf5(shard)

    # --- records -------------------------------------------------------------------------------

    def read_records(self, shard: ShardRef, columns: Sequence[str] | None = None) -> pa.Table:
        """The records of one shard (its sha256 checked on the first read unless opened with ``verify=False``).

        Args:
            shard: From :meth:`shards`.
            columns: Columns to read (default: all, cast to the record schema).

        Raises:
            SchemaError: A requested column does not exist.
            ShardChecksumError: The file differs from the manifest.
        """
        check = self.auto_verify and shard.parquet not in self._verified_parquet
        data = self._parquet_bytes(shard, check)
        try:
            source = pa.BufferReader(data)
            if columns is not None:
                names = pq.read_schema(source).names
                missing = [c for c in columns if c not in names]
                if not missing:
                    return pq.read_table(pa.BufferReader(data), columns=list(columns))
                source = pa.BufferReader(data)
            table = pq.read_table(source)
        except (pa.ArrowInvalid, OSError) as exc:
            raise StorageError(f"cannot read Parquet file {shard.parquet}: {exc}", hint="the file is corrupt; rebuild the version") from exc
        if self._schema is not None:
            table = conform(upgrade_legacy_columns(table, self._schema), self._schema)
        if columns is not None:
            missing = [c for c in columns if c not in table.schema.names]
            if missing:
                raise SchemaError(f"{self.dataset}@{self.version} records have no column(s) {missing}", hint=f"columns: {', '.join(table.schema.names)}")
            table = table.select(list(columns))
        return table

    def records(self, split: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Records of ``split`` (default: every split, in :attr:`splits` order), in shard order (= sorted by sample id)."""
        splits = [split] if split is not None else self.splits
        tables = [self.read_records(shard, columns) for s in splits for shard in self.shards(s)]
        return pa.concat_tables(tables) if tables else self._empty_records(columns)

    def _empty_records(self, columns: Sequence[str] | None) -> pa.Table:
        """No records, with the record schema's columns (or ``columns`` of it)."""
        schema = self._schema if self._schema is not None else pa.schema([])
        return schema.empty_table() if columns is None else pa.schema([schema.field(c) for c in columns]).empty_table()

    def to_pandas(self, split: str | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """:meth:`records` as a pandas DataFrame (list columns become arrays per cell)."""
        return self.records(split, columns).to_pandas()

    def take(self, split: str, rows: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None) -> pa.Table:
        """Records of ``split`` at positions ``rows`` of :meth:`records` (any order, repeats allowed),
        reading only the shards that hold them (a few rows of a large split read a few shards).

        Raises:
            ConfigError: A position outside the split.
        """
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        shards = self.shards(split)
        starts = np.cumsum([0, *(s.rows for s in shards)])
        if idx.size and (idx.min() < 0 or idx.max() >= starts[-1]):
            raise ConfigError(f"{self.dataset}@{self.version} split {split!r} has {int(starts[-1])} records; rows must be in [0, {int(starts[-1])})")
        which = np.searchsorted(starts, idx, side="right") - 1  # each row's shard
        needed = np.unique(which)
        if not needed.size:
            return self._empty_records(columns)
        read = pa.concat_tables([self.read_records(shards[int(k)], columns) for k in needed])
        offset = np.zeros(len(shards), np.int64)  # where each needed shard starts in ``read``
        offset[needed] = np.cumsum([0, *(shards[int(k)].rows for k in needed[:-1])])
        return read.take(pa.array(offset[which] + idx - starts[which]))

    def keypoints(self, split: str, frame: Literal["crop", "image"] = "crop") -> np.ndarray:
        """``(N, J, 2) float32`` joints of ``split`` in crop pixels (``frame="crop"``) or source-image pixels; NaN where unknown."""
        column = {"crop": "keypoints_crop_xy_px", "image": "keypoints_xy_px"}.get(frame)
        if column is None:
            raise ConfigError(f"frame must be 'crop' or 'image', not {frame!r}")
        t = self.records(split, [column])
        return points_array(t.column(column), t.num_rows, column)

    def visibility(self, split: str) -> np.ndarray:
        """``(N, J) int8`` visibility of ``split`` (0 unlabelled, 1 occluded, 2 visible)."""
        t = self.records(split, ["keypoints_visibility"])
        return flags_array(t.column("keypoints_visibility"), t.num_rows, "keypoints_visibility")

    def labels(self, split: str, column: str = "activity") -> np.ndarray:
        """``(N,) object`` values of ``column`` (``activity``, ``category``, ``activity_id``, ``label``…), None where missing."""
        values = self.records(split, [column]).column(column).to_pylist()
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    # --- pixels --------------------------------------------------------------------------------

    def read_crops(self, shard: ShardRef, rows: Sequence[int] | np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Crops of one shard as RGB.

        Args:
            shard: From :meth:`shards`.
            rows: Rows of the shard (its records' ``pixels_row``, = their position in the shard's
                Parquet); default all.
            out: ``(len(rows), H, W, 3) uint8`` C-contiguous buffer to fill (default: a new array).

        Returns:
            ``(n, H, W, 3) uint8`` RGB (``out`` when given).

        Raises:
            ShardChecksumError: On the first read from a shard whose pixels differ from the manifest.
        """
        if shard.hdf5 is None:
            raise SchemaError(f"{shard.parquet} has no pixels (record kind {self.record!r})", hint="crops exist for image datasets only")
        if self.auto_verify:
            self._verify_hdf5(shard)
        dset, layout = self._pixels(shard.hdf5)
        idx = np.arange(layout.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if out is None:
            out = np.empty((len(idx), *layout.shape[1:]), np.uint8)
        try:
            read_rows_into(dset, idx, out, layout=layout)
        except (OSError, KeyError) as exc:
            raise StorageError(f"cannot read HDF5 shard {shard.hdf5}: {exc}", hint="the file is corrupt; rebuild the version") from exc
        return out

    def _pixel_index(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Per record of ``split``: its shard's position in :meth:`shards` and its HDF5 row."""
        cache = self._pixel_index_cache
        if split not in cache:
            shard_of, row_of = [], []
            for k, shard in enumerate(self.shards(split)):
                rows = self.read_records(shard, ["pixels_row"]).column("pixels_row").to_numpy().astype(np.int64)
                shard_of.append(np.full(len(rows), k, np.int64))
                row_of.append(rows)
            cache[split] = (np.concatenate(shard_of or [np.zeros(0, np.int64)]), np.concatenate(row_of or [np.zeros(0, np.int64)]))
        return cache[split]

    def crops(self, split: str, rows: Sequence[int] | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Crops of records of ``split`` by position in :meth:`records` (any order, repeats allowed).

        Returns:
            ``(len(rows), H, W, 3) uint8`` RGB, in the order asked.

        Raises:
            ConfigError: A row is out of range.
        """
        shards = self.shards(split)
        shard_of, row_of = self._pixel_index(split)
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(shard_of)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise ConfigError(f"row out of range: split {split!r} has {n} records")
        if out is None:
            out = np.empty((len(idx), *self.crop_shape(split)), np.uint8)
        if not len(idx):
            return out
        which = shard_of[idx]
        order = np.argsort(which, kind="stable")
        starts = np.flatnonzero(np.diff(which[order], prepend=-1))
        bounds = np.append(starts, len(order))
        contiguous = np.array_equal(order, np.arange(len(order)))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            pos = order[a:b]
            shard = shards[int(which[pos[0]])]
            if contiguous:
                self.read_crops(shard, row_of[idx[pos]], out=out[a:b])
            else:
                out[pos] = self.read_crops(shard, row_of[idx[pos]])
        return out

    def _column_names(self, split: str) -> list[str]:
        """The record columns of ``split`` (the record schema's, else the first shard file's)."""
        if self._schema is not None:
            return list(self._schema.names)
        for shard in self.shards(split):
            with self.fs.open(shard.parquet, "rb") as fh:
                return list(pq.read_schema(fh).names)
        return []

    def batches(self, split: str, batch_size: int = 64, columns: Sequence[str] | None = None) -> Iterator[Batch]:
        """Consecutive batches of ``split`` in record order, each record once (the last batch may be short).

        Works for every record kind: crops where the records have ``pixels_row`` and the shards
        pixels, joints where they have ``keypoints_crop_xy_px``/``keypoints_visibility`` (else
        empty arrays), ids from ``sample_id`` (or ``clip_id``).

        Memory: one shard's records (plus fewer than ``batch_size`` left over from the shard before)
        and the batch being yielded; each batch's arrays are new (keep them as long as you like).

        Args:
            split: Split name.
            batch_size: Records per batch.
            columns: Record columns to include in :attr:`Batch.records` (default: all); the columns
                the batch's arrays come from are read either way.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1, not {batch_size}")
        names = self._column_names(split)
        pixels = "pixels_row" in names and any(s.hdf5 for s in self.shards(split))
        joints = "keypoints_crop_xy_px" in names and "keypoints_visibility" in names
        id_column = next((c for c in ("sample_id", "clip_id") if c in names), names[0] if names else "")
        need = [id_column, *(["pixels_row"] if pixels else []), *(["keypoints_crop_xy_px", "keypoints_visibility"] if joints else [])]
        read_cols = None if columns is None else list(dict.fromkeys([*columns, *need]))
        shape = self.crop_shape(split) if pixels else (0, 0, 3)
        pending: list[tuple[ShardRef, pa.Table]] = []  # (shard, rows not yet yielded)
        pending_rows = 0

        def emit(parts: list[tuple[ShardRef, pa.Table]], n: int) -> Batch:
            crops = np.empty((n, *shape), np.uint8)
            at = 0
            for shard, t in parts:
                if pixels and t.num_rows:
                    self.read_crops(shard, t.column("pixels_row").to_numpy(), out=crops[at : at + t.num_rows])
                at += t.num_rows
            table = pa.concat_tables([t for _, t in parts]) if len(parts) > 1 else parts[0][1]
            if joints:
                kp = points_array(table.column("keypoints_crop_xy_px"), n, "keypoints_crop_xy_px")
                vis = flags_array(table.column("keypoints_visibility"), n, "keypoints_visibility")
            else:
                kp, vis = np.zeros((n, 0, 2), np.float32), np.zeros((n, 0), np.int8)
            ids = [str(v) for v in table.column(id_column).to_pylist()]
            if columns is not None:
                table = table.select(list(columns))
            return Batch(ids, table, crops, kp, vis)

        for shard in self.shards(split):
            if not shard.rows:
                continue
            table = self.read_records(shard, read_cols)
            start = 0
            if pending_rows:  # complete the batch the previous shard started
                take = min(batch_size - pending_rows, table.num_rows)
                pending.append((shard, table.slice(0, take)))
                pending_rows += take
                start = take
                if pending_rows < batch_size:
                    continue
                yield emit(pending, pending_rows)
                pending, pending_rows = [], 0
            while table.num_rows - start >= batch_size:
                yield emit([(shard, table.slice(start, batch_size))], batch_size)
                start += batch_size
            if start < table.num_rows:
                pending = [(shard, table.slice(start))]
                pending_rows = table.num_rows - start
            del table
        if pending_rows:
            yield emit(pending, pending_rows)


def _resolve(fs: fsspec.AbstractFileSystem, path: str, root: str, dataset: str, version: str | None) -> str:
    if version is not None:
        return version
    latest = read_latest(fs, path, dataset)
    if latest is None:
        raise VersionNotFoundError(
            f"dataset {dataset!r} has no LATEST version under {root}",
            hint=f"run `posepipe rebuild {dataset}` first, or pass a version (`posepipe ls {dataset}` lists them)",
        )
    return latest


def open_version(root: str, dataset: str, version: str | None = None, verify: bool = True) -> DatasetVersion:
    """Open a committed, validated version for reading.

    Args:
        root: posepipe root (local path or fsspec URL).
        dataset: Dataset name (``"coco"``); ``"coco@v-…"`` is accepted too (see :func:`parse_dataset_ref`).
        version: Version id (default: the one ``LATEST`` points at).
        verify: Check every Parquet shard's sha256 now and each HDF5 shard's content digest on
            its first pixel read. ``False`` skips both (call :meth:`DatasetVersion.verify` yourself).

    Returns:
        The :class:`DatasetVersion`.

    Raises:
        VersionNotFoundError: No ``LATEST`` (when no version is given) or no manifest for the version.
        VersionNotValidatedError: The version's gate failed (the message lists the failed checks and shards).
        ShardChecksumError: A Parquet shard differs from its manifest sha256 (named).
    """
    if "@" in dataset:
        dataset, ref_version = parse_dataset_ref(dataset)
        if version is not None and ref_version is not None and version != ref_version:
            raise ConfigError(f"two versions given: {ref_version!r} (in {dataset}@…) and {version!r}")
        version = version or ref_version
    fs, path = filesystem(root)
    version = _resolve(fs, path, root, dataset, version)
    paths = VersionPaths(path, dataset, version)
    try:
        raw = fs.cat_file(paths.manifest)
    except FileNotFoundError:
        raise VersionNotFoundError(
            f"dataset {dataset!r} has no committed version {version!r} under {root} (no {paths.manifest})",
            hint=f"an interrupted build has no manifest and is not a version; `posepipe ls {dataset}` lists the committed ones",
        ) from None
    try:
        manifest = json.load(io.BytesIO(raw))
    except json.JSONDecodeError as exc:
        raise StorageError(f"{paths.manifest} is corrupt: {exc}", hint="delete the version folder and rebuild") from exc
    validation = manifest.get("validation") or {}
    if not validation.get("success"):
        failures = list(validation.get("failures") or ["no validation result in the manifest"])
        more = f"\n  … and {len(failures) - _MAX_FAILURES_SHOWN} more" if len(failures) > _MAX_FAILURES_SHOWN else ""
        raise VersionNotValidatedError(
            f"{dataset}@{version} failed validation; refusing to read it:\n  " + "\n  ".join(failures[:_MAX_FAILURES_SHOWN]) + more,
            hint=f"see {paths.file(validation.get('html') or '_validation.html')}; fix the source or the adapter and rebuild",
        )
    v = DatasetVersion(root, dataset, version, manifest, hashlib.sha256(raw).hexdigest(), fs, path)
    v.auto_verify = verify
    if verify:
        v.verify(pixels=False)
    return v


__all__ = ["RECORD_SCHEMAS", "Batch", "DatasetVersion", "ShardRef", "flags_array", "open_version", "parse_dataset_ref", "points_array"]

"""HDF5 pixel shards: one file per shard, one writer per file, one chunk per sample.

Files are written with ``track_times=False`` and fixed chunking, under a temporary name, then renamed.
A shard is first laid out by libhdf5 in a reusable in-memory file image (:class:`MemoryFile`, one
per thread), then written to disk in one go, with ``O_DIRECT`` where the filesystem allows it: the
pixels are written once and read much later, so they need not pass through the page cache.
The checksum recorded for a shard is a *content* digest (sample ids, array shape and pixel bytes), not
a file hash: libhdf5 may write uninitialised memory into the unused tail of its metadata blocks, so
two files with identical contents are not always byte-identical (seen once in 1-vs-2-worker runs).
It is written as ``"{algorithm}:{hex}"``: xxh3-128 for new shards (it guards against corruption, as
a filesystem checksum does; sha256 of a 512-crop shard cost 12 % of building it on one core, xxh3
about 1 %), ``sha256`` for shards written before (manifests' ``hdf5_content_sha256``), still verified.
On non-local roots the file is built locally and then
uploaded to a temporary name and moved.

Reading (:mod:`storage.reader` uses these): :func:`open_hdf5` opens a shard for reading,
:func:`read_rows_into` copies rows into a caller's buffer one raw chunk per sample (no chunk cache,
no filter pipeline, no per-row allocation) and :func:`stream_content_digest` recomputes
:func:`content_digest` from the file block by block, never holding more than one block of rows.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import fsspec
import h5py
import numpy as np
import xxhash
from fsspec.implementations.local import LocalFileSystem

from schemas.errors import StorageError
from storage.fs import DIRECT_IO_ALIGN, _tmp_name, atomic_local_path, prefaulted_memory, write_local_unbuffered

IMAGES = "images"
SAMPLE_IDS = "sample_id"
#: File attribute naming the channel order of :data:`IMAGES` (shards are written by OpenCV: ``"BGR"``).
COLOR_ORDER = "color_order"
#: What files without :data:`COLOR_ORDER` hold (every shard written before the attribute existed).
DEFAULT_COLOR_ORDER = "BGR"


class MemoryFile(io.RawIOBase):
    """A growable in-memory file on a page-aligned anonymous ``mmap``, reusable across files.

    h5py's file-object driver writes the shard into it; :meth:`reset` starts the next file in the
    same memory, so a worker touches fresh pages once rather than per shard. Every byte of the
    image is written by libhdf5 or zero-filled here (gaps, growth), never left over from an
    earlier file.
    """

    def __init__(self, capacity: int = 1 << 20) -> None:
        super().__init__()
        self._buf = prefaulted_memory(capacity)
        self._size = 0
        self._pos = 0

    @property
    def buffer(self) -> mmap.mmap:
        """The backing memory (``len`` ≥ :attr:`size`, page aligned)."""
        return self._buf

    @property
    def size(self) -> int:
        """Bytes in the file."""
        return self._size

    def reset(self) -> MemoryFile:
        """Empty the file (the memory is kept)."""
        self._size = self._pos = 0
        return self

    def getbuffer(self) -> memoryview:
        """A view of the file's bytes (release it before the next write)."""
        return memoryview(self._buf)[: self._size]

    def reserve(self, nbytes: int) -> None:
        """Make room for a file of ``nbytes`` now (one allocation instead of doubling while writing)."""
        self._reserve(nbytes, zero=False)

    def _reserve(self, end: int, zero: bool = True) -> None:
        """Make room for ``end`` bytes (plus O_DIRECT padding); with ``zero``, extend the file to ``end`` with zeros."""
        if end + DIRECT_IO_ALIGN > len(self._buf):
            grown = prefaulted_memory(max(end + DIRECT_IO_ALIGN, 2 * len(self._buf)))
            grown[: self._size] = self._buf[: self._size]
            self._buf.close()
            self._buf = grown
        if zero and end > self._size:
            self._buf[self._size : end] = bytes(end - self._size)
            self._size = end

    def readable(self) -> bool:  # noqa: D102
        return True

    def writable(self) -> bool:  # noqa: D102
        return True

    def seekable(self) -> bool:  # noqa: D102
        return True

    def tell(self) -> int:  # noqa: D102
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:  # noqa: D102
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, b: bytearray | memoryview) -> int:  # noqa: D102
        view = memoryview(b).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        view[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n

    def write(self, b: bytes | bytearray | memoryview) -> int:  # noqa: D102
        view = memoryview(b).cast("B")
        end = self._pos + len(view)
        if self._pos > self._size:
            self._reserve(self._pos)  # zero-fill the gap
        self._reserve(end, zero=False)  # every new byte is written just below
        self._buf[self._pos : end] = view
        self._size = max(self._size, end)
        self._pos = end
        return len(view)

    def truncate(self, size: int | None = None) -> int:  # noqa: D102
        size = self._pos if size is None else size
        if size > self._size:
            self._reserve(size)
        self._size = size
        return size


_local = threading.local()


def _memory_file() -> MemoryFile:
    """This thread's reusable :class:`MemoryFile`, emptied."""
    image = getattr(_local, "image", None)
    if image is None:
        image = _local.image = MemoryFile()
    return image.reset()


def _write(target: str | MemoryFile, sample_ids: Sequence[str], images: np.ndarray, attrs: dict[str, str | int]) -> None:
    n = len(sample_ids)
    if images.ndim != 4 or images.shape[0] != n:
        raise StorageError(f"HDF5 shard: images shape {images.shape} does not match {n} sample ids")
    with h5py.File(target, "w", track_order=False) as h5:
        if n:
            dset = h5.create_dataset(IMAGES, shape=images.shape, dtype=np.uint8, chunks=(1, *images.shape[1:]), track_times=False)
            pixels = np.ascontiguousarray(images, dtype=np.uint8)
            for i in range(n):  # one chunk per sample, written as is: no copy through the chunk cache
                dset.id.write_direct_chunk((i, 0, 0, 0), pixels[i])
        else:
            h5.create_dataset(IMAGES, data=images, dtype=np.uint8, track_times=False)
        h5.create_dataset(SAMPLE_IDS, data=np.array(list(sample_ids), dtype=object), dtype=h5py.string_dtype(), track_times=False)
        for key, value in sorted(attrs.items()):
            h5.attrs[key] = value


#: The content digest new shards record.
CONTENT_DIGEST = "xxh3_128"
_DIGESTS = {"xxh3_128": xxhash.xxh3_128, "sha256": hashlib.sha256}


def _hasher(algorithm: str) -> Any:
    try:
        return _DIGESTS[algorithm]()
    except KeyError:
        raise StorageError(f"unknown content digest {algorithm!r}", hint=f"known: {sorted(_DIGESTS)}; was the manifest written by a newer posepipe?") from None


def digest_algorithm(digest: str) -> str:
    """The algorithm of a ``"{algorithm}:{hex}"`` content digest (``"xxh3_128:9f…"`` → ``xxh3_128``)."""
    return digest.partition(":")[0] if ":" in digest else "sha256"


def content_digest(sample_ids: Sequence[str], images: np.ndarray, algorithm: str = CONTENT_DIGEST) -> str:
    """Digest of a shard's contents, ``"{algorithm}:{hex}"``: ids (NUL-separated), the array shape,
    then the pixel bytes (``(N, H, W, 3) uint8``).

    Example:
        ``content_digest(["a"], np.zeros((1, 1, 1, 3), np.uint8), "sha256")`` is ``"sha256:"`` and
        the sha256 hex of ``b"a" + b"(1, 1, 1, 3)" + bytes(3)``.
    """
    h = _content_hasher(algorithm, sample_ids, images.shape)
    h.update(np.ascontiguousarray(images, dtype=np.uint8).data)
    return f"{algorithm}:{h.hexdigest()}"


def _content_hasher(algorithm: str, sample_ids: Sequence[str], shape: tuple[int, ...]) -> Any:
    """A hasher that has taken a content digest's header: the ids (NUL-separated), then the array
    shape; :func:`content_digest` and :func:`stream_content_digest` then feed it the pixel bytes."""
    h = _hasher(algorithm)
    h.update("\0".join(sample_ids).encode())
    h.update(repr(tuple(shape)).encode())
    return h


def write_hdf5_shard(
    fs: fsspec.AbstractFileSystem,
    path: str,
    sample_ids: Sequence[str],
    images: np.ndarray,
    attrs: dict[str, str | int] | None = None,
    durable: bool = True,
    direct_io: bool = True,
) -> str:
    """Write ``images`` ``(N, H, W, 3) uint8`` and their sample ids to one HDF5 shard, atomically.

    Args:
        fs: Filesystem of ``path``.
        path: Final path.
        sample_ids: One id per image.
        images: ``(N, H, W, 3) uint8`` pixels.
        attrs: File attributes.
        durable: fsync before the rename.
        direct_io: On local disks, write with ``O_DIRECT`` when the filesystem supports it
            (falls back to a buffered write otherwise).

    Returns:
        :func:`content_digest` of what was written.
    """
    attrs = attrs or {}
    # the digest releases the GIL on large buffers: it runs while libhdf5 lays the file out and while
    # the write waits on the disk.
    digest: list[str | BaseException] = []
    hasher = threading.Thread(target=_hash_into, args=(digest, sample_ids, images), name="hdf5-content-digest", daemon=True)
    hasher.start()
    try:
        _write_image(fs, path, sample_ids, images, attrs, durable, direct_io)
    finally:
        hasher.join()
    if isinstance(digest[0], BaseException):
        raise digest[0]
    return digest[0]


def _hash_into(out: list[str | BaseException], sample_ids: Sequence[str], images: np.ndarray) -> None:
    try:
        out.append(content_digest(sample_ids, images))
    except BaseException as exc:  # re-raised in the caller's thread
        out.append(exc)


def _write_image(
    fs: fsspec.AbstractFileSystem, path: str, sample_ids: Sequence[str], images: np.ndarray, attrs: dict[str, str | int], durable: bool, direct_io: bool
) -> None:
    image = _memory_file()
    image.reserve(images.nbytes + (1 << 20))  # pixels + generous room for metadata
    _write(image, sample_ids, images, attrs)
    if isinstance(fs, LocalFileSystem):
        with atomic_local_path(path, durable=durable) as tmp:
            if not (direct_io and write_local_unbuffered(tmp, image.buffer, image.size)):
                with open(tmp, "wb") as fh, image.getbuffer() as view:
                    fh.write(view)
    else:
        tmp = _tmp_name(path)
        with image.getbuffer() as view:
            fs.pipe_file(tmp, bytes(view))
        fs.mv(tmp, path)


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


def open_hdf5(fs: fsspec.AbstractFileSystem, path: str) -> h5py.File:
    """Open a shard for reading (local files by name, other filesystems through a file object).

    The chunk cache is off: readers copy raw chunks straight into their own buffers.

    Raises:
        StorageError: Missing or unreadable file.
    """
    try:
        if isinstance(fs, LocalFileSystem):
            return h5py.File(path, "r", rdcc_nbytes=0)
        return h5py.File(fs.open(path, "rb"), "r", rdcc_nbytes=0)
    except FileNotFoundError as exc:
        raise StorageError(f"HDF5 shard not found: {path}", hint="the version is incomplete; rebuild it") from exc
    except OSError as exc:
        raise StorageError(f"cannot read HDF5 shard {path}: {exc}", hint="the file is corrupt; rebuild the version") from exc


def color_order(h5: h5py.File) -> str:
    """The channel order of a shard's pixels: its :data:`COLOR_ORDER` attribute, else ``"BGR"``."""
    value = h5.attrs.get(COLOR_ORDER, DEFAULT_COLOR_ORDER)
    return value.decode() if isinstance(value, bytes) else str(value)


def one_raw_chunk_per_row(dset: h5py.Dataset) -> bool:
    """Whether each row of ``dset`` is one unfiltered chunk (what :func:`write_hdf5_shard` writes),
    so that a chunk's raw bytes are the row's pixels."""
    return (
        dset.chunks is not None
        and dset.chunks == (1, *dset.shape[1:])
        and dset.dtype == np.uint8
        and dset.id.get_create_plist().get_nfilters() == 0
    )


def _row_scratch(nbytes: int) -> np.ndarray:
    """This thread's reusable 1-D ``uint8`` buffer of one row (no fresh pages per call)."""
    buf = getattr(_local, "row", None)
    if buf is None or buf.size != nbytes:
        buf = _local.row = np.empty(nbytes, np.uint8)
    return buf


@dataclass(frozen=True)
class PixelsLayout:
    """What :func:`read_rows_into` asks of a pixels dataset, asked once per open file.

    Each of these is a libhdf5 call (shape, dtype, chunking, filters, the colour attribute): ~70 µs
    per :func:`read_rows_into` call together, as much as reading the crops themselves for a small
    batch, so a reader keeps one per open handle.

    Attributes:
        shape: ``(N, H, W, C)``.
        raw_chunks: :func:`one_raw_chunk_per_row`.
        swap_rb: The file stores BGR (see :func:`color_order`) and the reader wants RGB.
    """

    shape: tuple[int, ...]
    raw_chunks: bool
    swap_rb: bool

    @classmethod
    def of(cls, h5: h5py.File, to_rgb: bool = True) -> PixelsLayout:
        dset = h5[IMAGES]
        return cls(tuple(dset.shape), one_raw_chunk_per_row(dset), to_rgb and color_order(h5).upper() == "BGR")


def read_rows_into(
    dset: h5py.Dataset, rows: Sequence[int] | np.ndarray, out: np.ndarray, swap_rb: bool = False, layout: PixelsLayout | None = None
) -> np.ndarray:
    """Copy rows of an ``(N, H, W, C) uint8`` dataset into ``out`` (``(len(rows), H, W, C) uint8``, C-contiguous).

    One ``read_direct_chunk`` per row when each row is one unfiltered chunk; otherwise (other
    writers' files) a read through libhdf5's selection machinery, one row at a time.

    Args:
        dset: The pixels dataset.
        rows: Row indices, any order, repeats allowed.
        out: Destination.
        swap_rb: Swap the first and third channels (BGR ↔ RGB; ``C`` must be 3): each raw chunk is
            read into a one-row scratch buffer and converted from there into ``out`` (one pass over
            ``out``; converting ``out`` in place afterwards costs about twice as much).
        layout: The dataset's :class:`PixelsLayout`, when the caller keeps one (its ``swap_rb``
            then wins); None asks libhdf5 again.

    Raises:
        StorageError: ``out`` has the wrong shape or layout, or a row is out of range.
    """
    n = len(rows)
    shape = layout.shape if layout is not None else tuple(dset.shape)
    if layout is not None:
        swap_rb = layout.swap_rb
    if out.shape != (n, *shape[1:]) or out.dtype != np.uint8 or not out.flags.c_contiguous or not out.flags.writeable:
        raise StorageError(f"output buffer {out.shape} {out.dtype} does not fit {n} rows of {shape[1:]} uint8 (C-contiguous, writable)")
    if swap_rb and (len(shape) != 4 or shape[3] != 3):
        raise StorageError(f"cannot swap colour channels of a {shape} dataset (want (N, H, W, 3))")
    size = shape[0]
    idx = np.asarray(rows, dtype=np.int64).reshape(-1)
    if n and (idx.min() < 0 or idx.max() >= size):
        raise StorageError(f"row out of range: shard has {size} rows, asked for {int(idx.min())}..{int(idx.max())}")
    if layout.raw_chunks if layout is not None else one_raw_chunk_per_row(dset):
        tail = (0,) * (len(shape) - 1)
        read = dset.id.read_direct_chunk
        if swap_rb:
            flat_row = _row_scratch(int(np.prod(shape[1:])))
            row_img = flat_row.reshape(shape[1:])
            for k, row in enumerate(idx.tolist()):
                read((row, *tail), out=flat_row)
                cv2.cvtColor(row_img, cv2.COLOR_BGR2RGB, dst=out[k])
        else:
            flat = out.reshape(n, -1)
            for k, row in enumerate(idx.tolist()):
                read((row, *tail), out=flat[k])
    else:
        for k, row in enumerate(idx.tolist()):
            dset.read_direct(out, np.s_[row : row + 1], np.s_[k : k + 1])
            if swap_rb:
                cv2.cvtColor(out[k], cv2.COLOR_BGR2RGB, dst=out[k])
    return out


def read_sample_ids(h5: h5py.File) -> list[str]:
    """The shard's sample ids, in row order."""
    return [s.decode() if isinstance(s, bytes) else str(s) for s in h5[SAMPLE_IDS][()]]


def stream_content_digest(h5: h5py.File, algorithm: str = CONTENT_DIGEST, block_bytes: int = 4 << 20) -> str:
    """:func:`content_digest` of an open shard, read a block of rows at a time (memory: ``block_bytes``, at least one row)."""
    dset = h5[IMAGES]
    h = _content_hasher(algorithm, read_sample_ids(h5), dset.shape)
    n = dset.shape[0]
    if n:
        row_bytes = max(1, int(np.prod(dset.shape[1:])))
        rows = max(1, min(n, block_bytes // row_bytes))
        block = np.empty((rows, *dset.shape[1:]), np.uint8)
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            part = block[: stop - start]
            read_rows_into(dset, np.arange(start, stop), part)
            h.update(part.data)
    return f"{algorithm}:{h.hexdigest()}"

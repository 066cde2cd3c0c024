"""fsspec paths and atomic writes: nothing half-written is ever visible.

Every writer writes to a temporary name in the destination folder, then renames. On local disk the
rename is atomic (``os.replace``); on object stores fsspec's ``mv`` of a single object is the
closest equivalent (the manifest, written last, is what readers trust).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import fsspec
import xxhash
from fsspec.implementations.local import LocalFileSystem

from schemas.errors import DiskFullError, StorageError
from storage.space import is_no_room, no_room_error


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve ``url`` (a local path or any fsspec URL) to a filesystem and a path on it."""
    try:
        fs, path = fsspec.core.url_to_fs(str(url))
    except (ValueError, ImportError) as exc:
        raise StorageError(f"cannot open storage root {url!r}: {exc}", hint="use a local path or an fsspec URL") from exc
    return fs, path


def join(*parts: str) -> str:
    """Join path parts with ``/`` (fsspec paths are POSIX-like on every filesystem)."""
    return "/".join(p.rstrip("/") for p in parts if p)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a local file, read in blocks into one buffer (the one checksum every manifest and registry uses)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()  # reads into one reused buffer


#: The content digest a dataset version takes of every image/video it references (``_inputs.parquet``).
#: xxh3-128 (``xxhash``): ~8 GB/s here against sha256's ~1 GB/s, and a rebuild hashes every
#: referenced file once (16,000 COCO-size JPEGs: 2.0 CPU-seconds with sha256). It detects any
#: change to a file; it is not a defence against a file crafted to collide.
FILE_DIGEST = "xxh3_128"


def file_digest(path: str | os.PathLike[str]) -> str:
    """``"xxh3_128:{hex}"`` (:data:`FILE_DIGEST`) of a local file's content.

    Read with raw ``os.read`` calls of 1 MiB: a small image is one read, so a hashing thread takes
    the GIL back a handful of times per file (25 us per 97 KB JPEG here, 41 us through
    ``hashlib.file_digest``), which matters when it runs beside a parse that holds the GIL.
    """
    h = xxhash.xxh3_128()
    fd = os.open(path, os.O_RDONLY)
    try:
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    finally:
        os.close(fd)
    return f"{FILE_DIGEST}:{h.hexdigest()}"


def _no_room(exc: BaseException, path: str) -> DiskFullError | None:
    """The :class:`DiskFullError` for a full/over-quota/over-limit/read-only write of a local file."""
    if not isinstance(exc, OSError) or not is_no_room(exc):
        return None
    return no_room_error(exc, Path(path), f"writing {path.rpartition('/')[2]}", kept="nothing half-written was left and LATEST is unchanged")


def _discard_and_reraise(exc: BaseException, path: str, discard: Callable[[], object]) -> None:
    """After a failed atomic write: delete the temporary file; a no-room error becomes a
    :class:`DiskFullError` naming ``path`` (free space as it was when the write failed). Returns
    when ``exc`` is any other error, for the caller to re-raise it unchanged."""
    full = _no_room(exc, path)
    with contextlib.suppress(Exception):
        discard()
    if full is not None:
        raise full from exc


def _tmp_name(path: str) -> str:
    head, _, tail = path.rpartition("/")
    return f"{head}/.{tail}.tmp-{uuid.uuid4().hex[:12]}" if head else f".{tail}.tmp-{uuid.uuid4().hex[:12]}"


def _ensure_parent(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Create ``path``'s folder if needed (a stat first: a failing ``mkdir`` costs a journal round trip)."""
    parent = path.rpartition("/")[0] or "."
    if isinstance(fs, LocalFileSystem) and os.path.isdir(parent):
        return
    fs.makedirs(parent, exist_ok=True)


@contextlib.contextmanager
def atomic_open(fs: fsspec.AbstractFileSystem, path: str, mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success rename it to ``path``, on error delete it.

    Args:
        fs: Filesystem.
        path: Final path.
        mode: ``wb`` or ``w``.
        durable: fsync before the rename. Bulk writers (shards) pass False and rely on one
            :func:`flush_to_disk` before the manifest is written; the rename alone already
            guarantees no reader ever sees a partial file.
    """
    tmp = _tmp_name(path)
    try:
        _ensure_parent(fs, path)
        with fs.open(tmp, mode) as fh:
            yield fh
            if durable and isinstance(fs, LocalFileSystem):
                fh.flush()
                os.fsync(fh.fileno())
        if isinstance(fs, LocalFileSystem):
            os.replace(tmp, path)
        else:
            fs.mv(tmp, path)
    except BaseException as exc:
        _discard_and_reraise(exc, path, lambda: fs.rm(tmp))
        raise


@contextlib.contextmanager
def atomic_local_path(path: str, durable: bool = True) -> Iterator[str]:
    """Yield a temporary local path beside ``path`` for libraries that need a file name (HDF5).

    The temporary file is renamed to ``path`` when the block exits without error, deleted otherwise
    (fsynced first when ``durable``).
    """
    tmp = _tmp_name(path)
    try:
        _ensure_parent(LocalFileSystem(), path)
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        _discard_and_reraise(exc, path, lambda: os.remove(tmp))
        raise


def prefaulted_memory(nbytes: int) -> mmap.mmap:
    """Page-aligned anonymous memory of ``nbytes`` (rounded up to pages), faulted in by one syscall.

    ``MAP_POPULATE`` maps every page up front: on the CI VMs that took 19 MB from ~16-30 ms of
    first-touch page faults to ~10 ms. For long-lived reusable buffers (shard crops, HDF5 images).
    """
    size = max(mmap.PAGESIZE, -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE)
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate:
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    return mmap.mmap(-1, size)


#: O_DIRECT needs buffer address, length and file offset aligned to the device's logical block
#: size; 4096 covers every block size Linux uses for it.
DIRECT_IO_ALIGN = 4096


def write_local_unbuffered(path: str, buffer: mmap.mmap, size: int) -> bool:
    """Write ``buffer[:size]`` to a new local file with ``O_DIRECT`` (no page cache), if possible.

    Bulk shards are written once and read much later: going around the page cache saves the
    kernel allocating (and later writing back) a cache page per 4 KiB. On the CI VMs a fresh
    page costs ~9 µs, so a 19 MB HDF5 shard took ~50 ms buffered and ~9 ms direct.

    Args:
        path: New file (created or truncated).
        buffer: Page-aligned source (an anonymous ``mmap``); bytes ``[size, ceil(size/4096)*4096)``
            are written too and then cut off again with ``ftruncate``, so they must be writable
            and are overwritten with zeros first.
        size: Bytes that make up the file.

    Returns:
        True if written; False if the filesystem refuses ``O_DIRECT`` (tmpfs, some FUSE mounts) or
        the platform has none, in which case nothing is left at ``path`` and the caller writes it
        the ordinary way.
    """
    flag = getattr(os, "O_DIRECT", 0)
    padded = -(-size // DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN
    if not flag or padded > len(buffer):
        return False
    buffer[size:padded] = bytes(padded - size)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o666)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    try:
        view = memoryview(buffer)[:padded]
        done = 0
        while done < padded:
            done += os.write(fd, view[done:])
        os.ftruncate(fd, size)
    except OSError as exc:
        os.close(fd)
        os.remove(path)
        if exc.errno == errno.EINVAL:
            return False
        raise
    finally:
        view.release()
    os.close(fd)
    return True


def flush_to_disk(fs: fsspec.AbstractFileSystem) -> None:
    """Make every file written so far durable (one ``sync`` instead of an fsync per shard)."""
    if isinstance(fs, LocalFileSystem):
        os.sync()


def write_bytes_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(fs, path, "wb") as fh:
        fh.write(data)

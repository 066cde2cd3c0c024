"""Dataset versions: manifest (written last), ``LATEST`` pointer, listing and the rebuild lock.

Every path comes from :mod:`storage.layout`. Readers trust only versions with a manifest. The manifest holds no timestamps, host names or
worker counts (those go to ``_run.json``), so equal inputs give byte-identical manifests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import fsspec
from filelock import FileLock, Timeout
from fsspec.implementations.local import LocalFileSystem

from schemas.errors import LockError, StorageError, VersionNotFoundError
from storage.fs import atomic_open, join
from storage.layout import MANIFEST, VersionPaths, dataset_dir, datasets_dir, latest_path, lock_path


def compute_version(inputs: dict[str, str], params: dict[str, Any], schema_version: str, code_version: str) -> str:
    """Content hash naming a dataset version.

    Args:
        inputs: Input file → checksum (annotations by sha256, image listing fingerprint...).
        params: Every parameter that changes the output (parse policy, crop, seed, shard size).
        schema_version: Record schema version.
        code_version: Hash of the code that produces the shards.

    Returns:
        ``v-`` plus 12 hex characters.
    """
    blob = json.dumps(
        {"inputs": inputs, "params": params, "schema": schema_version, "code": code_version},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return "v-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def dumps(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, 2-space indent, trailing newline)."""
    return (json.dumps(obj, sort_keys=True, indent=2, default=str) + "\n").encode()


def write_json(fs: fsspec.AbstractFileSystem, path: str, obj: Any) -> None:
    """Write canonical JSON atomically."""
    with atomic_open(fs, path, "wb") as fh:
        fh.write(dumps(obj))


def read_json(fs: fsspec.AbstractFileSystem, path: str) -> Any:
    """Read JSON; a missing file is :class:`VersionNotFoundError`, a corrupt one :class:`StorageError`."""
    try:
        with fs.open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise VersionNotFoundError(f"{path} not found") from None
    except json.JSONDecodeError as exc:
        raise StorageError(f"{path} is corrupt: {exc}", hint="delete the version folder and rebuild") from exc


def write_manifest(fs: fsspec.AbstractFileSystem, root: str, dataset: str, version: str, manifest: dict[str, Any]) -> str:
    """Write the manifest last; returns its path."""
    path = VersionPaths(root, dataset, version).manifest
    write_json(fs, path, manifest)
    return path


def read_manifest(fs: fsspec.AbstractFileSystem, root: str, dataset: str, version: str) -> dict[str, Any]:
    """The manifest of a committed version (raises if the version was never committed)."""
    try:
        return read_json(fs, VersionPaths(root, dataset, version).manifest)
    except VersionNotFoundError:
        raise VersionNotFoundError(
            f"dataset {dataset!r} has no committed version {version!r} under {root}",
            hint="run `posepipe ls` to see the versions",
        ) from None


def set_latest(fs: fsspec.AbstractFileSystem, root: str, dataset: str, version: str) -> None:
    """Point ``LATEST`` at ``version`` (atomic rename)."""
    with atomic_open(fs, latest_path(root, dataset), "wb") as fh:
        fh.write(f"{version}\n".encode())


def read_latest(fs: fsspec.AbstractFileSystem, root: str, dataset: str) -> str | None:
    """The version ``LATEST`` points at, or None."""
    try:
        with fs.open(latest_path(root, dataset), "rb") as fh:
            return fh.read().decode().strip() or None
    except FileNotFoundError:
        return None


def list_datasets(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """Datasets that have a folder under ``{root}/datasets``."""
    base = datasets_dir(root)
    if not fs.exists(base):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False) if fs.isdir(p))


def list_versions(fs: fsspec.AbstractFileSystem, root: str, dataset: str) -> list[dict[str, Any]]:
    """Manifests of the committed versions of ``dataset`` (uncommitted folders are ignored)."""
    base = dataset_dir(root, dataset)
    if not fs.exists(base):
        return []
    out = []
    for p in sorted(fs.ls(base, detail=False)):
        name = p.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith((".", "_")) or not fs.isdir(p):
            continue
        manifest_path = join(p, MANIFEST)  # p is a version folder
        if fs.exists(manifest_path):
            out.append(read_json(fs, manifest_path))
    return out


@contextlib.contextmanager
def dataset_lock(fs: fsspec.AbstractFileSystem, root: str, dataset: str) -> Iterator[None]:
    """Exclusive lock so two rebuilds of one dataset cannot interleave.

    Local roots use an OS file lock (released by the kernel if the holder is killed). Remote roots
    have no portable lock; a rebuild there relies on versions being content-addressed and on the
    atomic ``LATEST`` write.

    Raises:
        LockError: If another process holds the lock.
    """
    if not isinstance(fs, LocalFileSystem):
        yield
        return
    os.makedirs(dataset_dir(root, dataset), exist_ok=True)
    path = lock_path(root, dataset)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = ""
        with contextlib.suppress(OSError):
            holder = open(path + ".pid").read().strip()
        raise LockError(
            f"another rebuild of {dataset!r} is running under {root}" + (f" (pid {holder})" if holder else ""),
            hint="wait for it to finish; the lock is released automatically when that process exits",
        ) from None
    try:
        with contextlib.suppress(OSError), open(path + ".pid", "w") as fh:
            fh.write(str(os.getpid()))
        yield
    finally:
        lock.release()

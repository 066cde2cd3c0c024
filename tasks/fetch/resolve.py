"""Fetch every source of a dataset into the raw store and return the folder its adapter parses.

Storage layout under ``{root}/raw/{dataset}/`` (``root`` must be a local path; fetching needs
``Range`` resume, hard links and atomic renames, which object stores do not give; stage the raw
tree on local disk and point ``--root`` at it)::

    downloads/<filename>                 complete, verified files (renamed in only when verified)
    downloads/<filename>.part            an interrupted download, resumed with HTTP Range
    downloads/<filename>.part.json       the server's ETag/Last-Modified/length when it started (If-Range)
    downloads/<filename>.bad-<sha12>     a download whose sha256/size did not match, or an archive that
                                         could not be extracted, kept aside (never reused)
    index.json                           {"by_sha256": {sha256: {filename, size_bytes, url, source}}}
    extracted/                           THE source folder passed to ``adapter.parse``
    extracted/<extract_to>/...           each source unpacked (archives) or hard-linked (plain files)
    state/<source name>.json             per-source marker: the archive's sha256 and the entries it
                                         created; an unchanged archive is not extracted again
    .lock                                one fetch of a dataset at a time (filelock)

A file is *reused* when ``downloads/<filename>`` exists with the size recorded in ``index.json``
and, when a sha256 is registered, the recorded sha256 equals it (large files are not re-hashed on
every run). A file on disk without an index entry is hashed and verified before it is adopted.
A download that fails its checksum, or an archive that cannot be extracted (damaged, or refused as
unsafe), is moved aside to ``downloads/<filename>.bad-<sha12>`` and dropped from the index, so the
next fetch downloads it again instead of reusing it. Running out of room (disk full, quota,
read-only) is a :class:`~schemas.errors.DiskFullError` and keeps the download: the file is fine.

Where a file comes from, in order: the store (reuse), ``manual_dir/<filename>`` (files downloaded
by hand, verified the same way), ``{mirror}/<filename>`` (HTTP(S) or ``file://`` prefix), the
owner's URL. A ``404``/``4xx`` moves on to the next candidate; a checksum mismatch stops at once.
When no candidate delivers, the error lists every location tried with how it failed.
An optional source (``required=False``) that no candidate has (4xx), or that stays unreachable
after the retries, is skipped with a warning; for a required one both are errors (the transient
one is retried by the Prefect task). Expected checksums come from the registry (:mod:`tasks.fetch.registry`)
or the ``Source`` itself; without one the download proceeds with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout
from fsspec.implementations.local import LocalFileSystem

from schemas.errors import (
    ChecksumMismatchError,
    ConfigError,
    CorruptArchiveError,
    DownloadRefusedError,
    FetchError,
    LockError,
    TransientFetchError,
    UnsafeArchiveError,
)
from storage.fs import filesystem
from storage.layout import RawPaths
from storage.layout import raw_dir as raw_layout_dir
from storage.space import is_no_room, no_room_error
from tasks.datasets import get_adapter
from tasks.datasets.base import DatasetAdapter, Source
from tasks.fetch.archive import ExtractionLimits, safe_extract
from tasks.fetch.download import DownloadResult, ProgressFn, RetryPolicy, download, place_file, sha256_of
from tasks.fetch.registry import Checksum, load_checksums, save_checksums

log = logging.getLogger(__name__)

Action = Literal["downloaded", "reused", "manual", "skipped"]
Extraction = Literal["extracted", "reused", "placed", "none"]


@dataclass(frozen=True)
class FetchedFile:
    """The outcome for one source.

    Attributes:
        source: The source's logical name.
        filename: Stored file name.
        action: ``downloaded``, ``reused`` (already in the store), ``manual`` (from ``manual_dir``)
            or ``skipped`` (optional and unavailable).
        url: Where the bytes came from (the mirror's or owner's URL, or the manual file's path).
        path: Local path of the verified file (None when skipped).
        size_bytes: Its size.
        sha256: Its sha256.
        registered: Whether a registered/declared sha256 verified it.
        extraction: ``extracted``, ``reused`` (unchanged archive), ``placed`` (plain file linked
            into the tree) or ``none`` (skipped).
        transferred_bytes: Bytes received over the network for it in this call.
    """

    source: str
    filename: str
    action: Action
    url: str = ""
    path: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    registered: bool = False
    extraction: Extraction = "none"
    transferred_bytes: int = 0


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_dataset` did.

    Attributes:
        dataset: Dataset name.
        source_dir: The folder to pass to ``adapter.parse`` (``{root}/raw/{dataset}/extracted``).
        files: One entry per source, in the adapter's order.
        warnings: Human-readable warnings (unregistered checksums, skipped optional sources).
        registry: The registry file written, when ``register_checksums`` was set.
    """

    dataset: str
    source_dir: str
    files: tuple[FetchedFile, ...]
    warnings: tuple[str, ...] = ()
    registry: str | None = None

    @property
    def downloaded(self) -> list[str]:
        """File names fetched over the network in this call."""
        return [f.filename for f in self.files if f.action == "downloaded"]

    @property
    def reused(self) -> list[str]:
        """File names already in the store."""
        return [f.filename for f in self.files if f.action == "reused"]

    @property
    def checksums(self) -> dict[str, str]:
        """File name -> sha256 of every fetched file (the dataset version hashes these)."""
        return {f.filename: f.sha256 for f in self.files if f.sha256}


@dataclass
class _Store:
    raw: Path
    index: dict[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> RawPaths:
        return RawPaths(self.raw)

    @property
    def downloads(self) -> Path:
        return self.paths.downloads

    @property
    def extracted(self) -> Path:
        return self.paths.extracted

    def marker(self, source: Source) -> Path:
        return self.paths.marker(source.name)

    def load(self) -> None:
        path = self.paths.index
        try:
            self.index = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError:
            log.warning("%s is unreadable; files will be re-hashed", path)
            self.index = {}
        self.index.setdefault("by_sha256", {})

    def save(self) -> None:
        _write_json(self.paths.index, self.index)

    def entry_for(self, filename: str) -> tuple[str, dict[str, Any]] | None:
        for sha, entry in self.index["by_sha256"].items():
            if entry.get("filename") == filename:
                return sha, entry
        return None

    def record(self, source: Source, filename: str, size: int, sha: str, url: str) -> None:
        by_sha = self.index["by_sha256"]
        for old in [s for s, e in by_sha.items() if e.get("filename") == filename and s != sha]:
            del by_sha[old]
        by_sha[sha] = {"filename": filename, "size_bytes": size, "url": url, "source": source.name}
        self.save()

    def forget(self, filename: str) -> None:
        """Drop every index entry of ``filename`` (its stored file was moved aside)."""
        by_sha = self.index["by_sha256"]
        stale = [s for s, e in by_sha.items() if e.get("filename") == filename]
        for sha in stale:
            del by_sha[sha]
        if stale:
            self.save()


def fetch_dataset(
    dataset: str,
    root: str,
    mirror: str | None = None,
    manual_dir: str | None = None,
    register_checksums: bool = False,
    progress: ProgressFn | Callable[[str, int, int | None], None] | None = None,
    *,
    adapter: DatasetAdapter | None = None,
    checksums_dir: str | Path | None = None,
    retry: RetryPolicy | None = None,
    timeout_s: float = 60.0,
    limits: ExtractionLimits | None = None,
    lock_timeout_s: float = 3600.0,
) -> FetchResult:
    """Fetch, verify and unpack every source of ``dataset``; return the folder its adapter parses.

    Args:
        dataset: Registered adapter name.
        root: Local storage root (see the module docstring for the layout).
        mirror: HTTP(S) or ``file://`` prefix (or a local folder) tried before the owner's URL,
            as ``{mirror}/{filename}``.
        manual_dir: Folder of files downloaded by hand, looked up by file name and verified.
        register_checksums: Record url -> size + sha256 of every fetched file in the registry.
        progress: ``progress(filename, done_bytes, total_bytes)`` during transfers.
        adapter: Adapter instance (default ``get_adapter(dataset)``).
        checksums_dir: Registry folder (default: ``$POSEPIPE_CHECKSUMS_DIR`` or the package's).
        retry: Backoff for transient download failures.
        timeout_s: Socket timeout (a stalled server fails after this long without data).
        limits: Archive member count and size bounds.
        lock_timeout_s: How long to wait for another fetch of the same dataset.

    Returns:
        The source folder and, per source, what was downloaded, reused or skipped.

    Raises:
        ConfigError: Non-local ``root``, or a registered sha256 contradicting the adapter's.
        ChecksumMismatchError: A file differs from its registered size/sha256 (kept aside).
        DownloadRefusedError: A required source is on no candidate (404/4xx everywhere).
        TransientFetchError: A download kept failing transiently (worth retrying later).
        UnsafeArchiveError: An archive member is unsafe or passes a limit; nothing of it was
            extracted, and the download was moved aside (the next fetch downloads it again).
        CorruptArchiveError: An archive cannot be read; moved aside the same way.
        DiskFullError: No room to write under ``root`` (full, quota, file size limit, read-only).
        LockError: Another fetch of the dataset holds the lock past ``lock_timeout_s``.
    """
    adp = adapter or get_adapter(dataset)
    store = _Store(Path(raw_layout_dir(str(_local_root(root)), dataset)))
    try:
        return _fetch(dataset, adp, store, mirror, manual_dir, register_checksums, progress, checksums_dir, retry,
                      timeout_s, limits, lock_timeout_s)
    except OSError as exc:
        if not is_no_room(exc):
            raise
        where = Path(exc.filename) if isinstance(exc.filename, str) else store.raw
        raise no_room_error(exc, where, f"fetching {dataset} into {store.raw}") from exc


def _fetch(
    dataset: str,
    adp: DatasetAdapter,
    store: _Store,
    mirror: str | None,
    manual_dir: str | None,
    register_checksums: bool,
    progress: ProgressFn | Callable[[str, int, int | None], None] | None,
    checksums_dir: str | Path | None,
    retry: RetryPolicy | None,
    timeout_s: float,
    limits: ExtractionLimits | None,
    lock_timeout_s: float,
) -> FetchResult:
    store.raw.mkdir(parents=True, exist_ok=True)
    registry = load_checksums(dataset, checksums_dir)
    warnings: list[str] = []
    files: list[FetchedFile] = []
    lock = FileLock(str(store.paths.lock))
    try:
        lock.acquire(timeout=lock_timeout_s)
    except Timeout as exc:
        raise LockError(f"another fetch of {dataset} holds {store.paths.lock}", hint="wait for it to finish") from exc
    try:
        store.load()
        store.extracted.mkdir(parents=True, exist_ok=True)
        for source in adp.sources:
            expected = _expected(dataset, source, registry)
            got = _obtain(store, source, expected, mirror, manual_dir, progress, retry, timeout_s, warnings)
            if got.action == "skipped":
                files.append(got)
                continue
            if expected is None:
                msg = (
                    f"{source.filename}: no registered checksum for {source.url}; accepted sha256 {got.sha256} "
                    f"unverified (record it with `posepipe fetch {dataset} --register-checksums`)"
                )
                if not register_checksums:
                    log.warning(msg)
                    warnings.append(msg)
            try:
                extraction = _unpack(store, source, Path(got.path or ""), got.sha256 or "", limits)
            except (CorruptArchiveError, UnsafeArchiveError) as exc:
                raise _invalidated(store, source, got, exc, manual_dir) from exc
            files.append(replace(got, extraction=extraction))
        written = None
        if register_checksums:
            entries = [
                Checksum(s.url, f.size_bytes, f.sha256, s.filename)
                for s, f in zip(adp.sources, files, strict=True)
                if f.sha256 and f.size_bytes is not None
            ]
            written = str(save_checksums(dataset, entries, checksums_dir))
    finally:
        lock.release()
    return FetchResult(dataset, str(store.extracted), tuple(files), tuple(warnings), written)


def raw_dir(root: str, dataset: str) -> Path:
    """``{root}/raw/{dataset}`` as an absolute local path.

    Raises:
        ConfigError: ``root`` is not on the local filesystem.
    """
    return Path(raw_layout_dir(str(_local_root(root).resolve()), dataset))


def _local_root(root: str) -> Path:
    fs, path = filesystem(root)
    if not isinstance(fs, LocalFileSystem):
        raise ConfigError(
            f"fetch needs a local root, got {root!r} ({type(fs).__name__})",
            hint="fetch into a local --root (downloads need Range resume and atomic renames), then sync it",
        )
    return Path(path)


def _expected(dataset: str, source: Source, registry: dict[str, Checksum]) -> Checksum | None:
    reg = registry.get(source.url)
    if reg is not None and source.sha256 and reg.sha256 != source.sha256.lower():
        raise ConfigError(
            f"{dataset}/{source.name}: the registry says sha256 {reg.sha256} for {source.url} but the adapter "
            f"declares {source.sha256}",
            hint="one of them is stale: fix the adapter or delete the registry line and re-register",
        )
    if reg is not None:
        return reg
    if source.sha256:
        return Checksum(source.url, source.size_bytes if source.size_bytes is not None else -1, source.sha256.lower(), source.filename)
    return None


def _candidates(source: Source, mirror: str | None) -> list[str]:
    out: list[str] = []
    if mirror:
        prefix = mirror if "://" in mirror else Path(mirror).resolve().as_uri()
        out.append(prefix.rstrip("/") + "/" + source.filename)
    out.append(source.url)
    return out


def _obtain(
    store: _Store,
    source: Source,
    expected: Checksum | None,
    mirror: str | None,
    manual_dir: str | None,
    progress: Callable[[str, int, int | None], None] | None,
    retry: RetryPolicy | None,
    timeout_s: float,
    warnings: list[str],
) -> FetchedFile:
    dest = store.downloads / source.filename
    exp_sha = expected.sha256 if expected else None
    exp_size = expected.size_bytes if expected and expected.size_bytes >= 0 else None
    registered = expected is not None
    reused = _reuse(store, source, dest, exp_sha, exp_size)
    if reused is not None:
        size, sha = reused
        if progress is not None:
            progress(source.filename, size, size)
        return FetchedFile(source.name, source.filename, "reused", _store_url(store, dest), str(dest), size, sha, registered)
    if manual_dir:
        manual = Path(manual_dir) / source.filename
        if manual.is_file():
            size, sha = manual.stat().st_size, sha256_of(manual)
            if (exp_sha and sha != exp_sha) or (exp_size is not None and size != exp_size):
                raise ChecksumMismatchError(
                    f"{manual}: expected sha256 {exp_sha or '(any)'} and size {exp_size if exp_size is not None else '(any)'}, "
                    f"got sha256 {sha} and size {size}",
                    hint="the manually downloaded file is not the registered one (incomplete or another version); "
                    "download it again from " + source.url,
                )
            place_file(manual, dest)
            store.record(source, source.filename, size, sha, str(manual))
            if progress is not None:
                progress(source.filename, size, size)
            return FetchedFile(source.name, source.filename, "manual", str(manual), str(dest), size, sha, registered)
    refusals: list[DownloadRefusedError] = []
    tried: list[tuple[str, FetchError]] = []
    for url in _candidates(source, mirror):
        try:
            res: DownloadResult = download(
                url, dest, expected_sha256=exp_sha, expected_size=exp_size, timeout_s=timeout_s, retry=retry,
                progress=progress,
            )
        except DownloadRefusedError as exc:
            log.info("%s: %s; trying the next location", source.filename, exc.message)
            refusals.append(exc)
            tried.append((url, exc))
            continue
        except TransientFetchError as exc:
            tried.append((url, exc))
            if source.required and len(tried) > 1:
                raise TransientFetchError(
                    f"required source {source.name} ({source.filename}) could not be fetched; "
                    f"every location failed: {_tried(tried, source, manual_dir)}",
                    hint=_tried_hint(tried),
                ) from exc
            if source.required:
                raise
            # An optional source is not worth failing a rebuild over; its .part stays to resume later.
            msg = f"optional source {source.name} ({source.filename}) is unreachable, skipped: {exc.message}"
            log.warning(msg)
            warnings.append(msg)
            return FetchedFile(source.name, source.filename, "skipped")
        store.record(source, source.filename, res.size_bytes, res.sha256, url)
        return FetchedFile(
            source.name, source.filename, "downloaded", url, str(dest), res.size_bytes, res.sha256, registered,
            transferred_bytes=res.transferred_bytes,
        )
    listed = _tried(tried, source, manual_dir)
    if not source.required:
        msg = f"optional source {source.name} ({source.filename}) is unavailable, skipped: {listed}"
        log.warning(msg)
        warnings.append(msg)
        return FetchedFile(source.name, source.filename, "skipped")
    where = f" or in {manual_dir}" if manual_dir else ""
    raise DownloadRefusedError(
        f"required source {source.name} ({source.filename}) not found{where}: {listed}",
        hint="check --mirror, or download the file by hand into a folder and pass --manual-dir",
        status=refusals[-1].status if refusals else None,
    )


def _tried(tried: list[tuple[str, FetchError]], source: Source, manual_dir: str | None) -> str:
    """Each location tried, which one it was and how it failed: ``mirror URL: HTTP 404 ...; owner URL: ...``."""
    parts = []
    for url, exc in tried:
        label = "owner" if url == source.url else "mirror"
        why = exc.message.replace(f"downloading {url} ", "").replace(f"{url}: ", "")  # the URL is named once
        parts.append(f"{label} {url}: {why}")
    if manual_dir:
        parts.insert(0, f"manual folder {manual_dir}: no file {source.filename}")
    return "; ".join(parts)


def _tried_hint(tried: list[tuple[str, FetchError]]) -> str:
    refused = [url for url, exc in tried if isinstance(exc, DownloadRefusedError)]
    failing = [url for url, exc in tried if isinstance(exc, TransientFetchError)]
    hint = []
    if refused:
        hint.append(f"{', '.join(refused)}: the file is not there or the request was refused (put the file there "
                    "or fix --mirror)")
    if failing:
        hint.append(f"{', '.join(failing)} could not be reached (check the network)")
    return "; ".join(hint) + "; or download the file by hand into a folder and pass --manual-dir"


def _store_url(store: _Store, dest: Path) -> str:
    """The URL recorded for a stored file (where it was first fetched from), or its path."""
    found = store.entry_for(dest.name)
    return str(found[1].get("url", dest)) if found else str(dest)


def _reuse(store: _Store, source: Source, dest: Path, exp_sha: str | None, exp_size: int | None) -> tuple[int, str] | None:
    if not dest.is_file():
        return None
    size = dest.stat().st_size
    found = store.entry_for(source.filename)
    if found is not None:
        sha, entry = found
        if entry.get("size_bytes") == size and (exp_sha is None or sha == exp_sha) and (exp_size in (None, size)):
            return size, sha
        if entry.get("size_bytes") == size and exp_sha is not None and sha != exp_sha:
            _set_aside(dest, sha)  # the stored file is another version than the registered one
            store.forget(source.filename)
            return None
    sha = sha256_of(dest)
    if (exp_sha is None or sha == exp_sha) and exp_size in (None, size):
        store.record(source, source.filename, size, sha, str(dest))
        return size, sha
    _set_aside(dest, sha)
    store.forget(source.filename)
    return None


def _set_aside(dest: Path, sha: str) -> Path:
    aside = dest.with_name(f"{dest.name}.bad-{sha[:12]}")
    log.warning("%s does not match its registered checksum; moved to %s and fetched again", dest, aside)
    os.replace(dest, aside)
    return aside


def _invalidated(
    store: _Store, source: Source, got: FetchedFile, exc: CorruptArchiveError | UnsafeArchiveError,
    manual_dir: str | None,
) -> FetchError:
    """Move a download that cannot be extracted aside and forget it; the error to raise, saying so.

    The bytes are kept as ``<file>.bad-<sha12>`` for inspection; with the index entry gone, the next
    fetch downloads the file again instead of reusing the same bad bytes forever.
    """
    path, sha = Path(got.path or ""), got.sha256 or ""
    aside = path.with_name(f"{path.name}.bad-{sha[:12]}")
    if path.is_file():
        os.replace(path, aside)
    store.forget(source.filename)
    log.warning("%s could not be extracted; moved to %s, the next fetch downloads it again", path, aside)
    keep = f"{exc.hint}; " if exc.hint and "download it again" not in exc.hint else ""
    if got.action == "manual":
        again = (f"replace {Path(manual_dir or '.') / source.filename} with a good copy (or remove it to download "
                 "from --mirror or the owner's URL)")
    else:
        again = "it will be downloaded again by the next fetch (use a good --mirror, or the owner's URL)"
    return type(exc)(exc.message, hint=f"{keep}the download was moved aside to {aside}; {again}")


def _unpack(store: _Store, source: Source, path: Path, sha: str, limits: ExtractionLimits | None) -> Extraction:
    target = store.extracted / source.extract_to if source.extract_to else store.extracted
    marker = store.marker(source)
    old = _read_json(marker)
    if (
        old.get("sha256") == sha
        and old.get("extract") == source.extract
        and old.get("extract_to") == source.extract_to
        and all((target / name).exists() or (target / name).is_symlink() for name in old.get("top_level", []))
    ):
        return "reused"
    previous = old.get("top_level", []) if old.get("extract_to") == source.extract_to else []
    if source.extract is None:
        for name in previous:
            if name != source.filename:
                _remove_entry(target / name)
        place_file(path, target / source.filename)
        top: list[str] = [source.filename]
        result: Extraction = "placed"
        members, total = 1, path.stat().st_size
    else:
        res = safe_extract(path, target, source.extract, limits, replace=previous)
        top, members, total = list(res.top_level), res.members, res.total_bytes
        result = "extracted"
    _write_json(
        marker,
        {"sha256": sha, "filename": source.filename, "extract": source.extract, "extract_to": source.extract_to,
         "top_level": top, "members": members, "total_bytes": total},
    )
    return result


def _remove_entry(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def fetch_fingerprint(
    dataset: str, root: str, adapter: DatasetAdapter | None = None, checksums_dir: str | Path | None = None
) -> tuple[str, bool]:
    """What a cached fetch depends on, and whether its result is still on disk.

    The fingerprint hashes the dataset, the root and, per source, its URL with the registered (or
    declared) sha256, ``unregistered`` when none. The tree counts as complete when every required
    source has an extraction marker whose entries exist (and, when registered, whose sha256 is the
    registered one); optional sources may be absent (a fetch skips them when unavailable).

    Returns:
        ``(hex fingerprint, complete)``.
    """
    adp = adapter or get_adapter(dataset)
    registry = load_checksums(dataset, checksums_dir)
    raw = raw_dir(root, dataset)
    store = _Store(raw)
    lines = [dataset, str(raw)]
    complete = True
    for source in adp.sources:
        expected = _expected(dataset, source, registry)
        lines.append(f"{source.name}\t{source.url}\t{expected.sha256 if expected else 'unregistered'}")
        marker = _read_json(store.marker(source))
        target = store.extracted / source.extract_to if source.extract_to else store.extracted
        present = bool(marker) and all((target / n).exists() for n in marker.get("top_level", []))
        if expected is not None and marker.get("sha256") != expected.sha256:
            present = False
        if source.required and not present:
            complete = False
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), complete

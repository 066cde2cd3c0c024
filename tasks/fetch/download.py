"""Resumable, verified downloads over HTTP(S) or from ``file://`` URLs (stdlib only).

A download is written to ``<dest>.part`` and renamed to ``<dest>`` only when it is complete and its
size and sha256 match what is expected. An interrupted download leaves its ``.part`` behind; the
next attempt (in the same call, after a backoff, or in a later run) asks for the missing bytes with
an HTTP ``Range: bytes=N-`` header. A server that ignores ``Range`` (answers ``200`` with the whole
body) is handled by restarting from byte 0; one that answers ``416`` gets a fresh request.

A resume must continue *the same file*. When a download starts (a ``200``), the server's validator
(its strong ``ETag``, else its ``Last-Modified``) and the total length are stored beside the
``.part`` in ``<dest>.part.json``; the resume sends ``If-Range`` with it, so a server whose file
changed answers ``200`` with the new file, which restarts the ``.part`` from byte 0. A ``206``
whose ``ETag``, ``Last-Modified`` or total length differs from the stored ones (a server that
ignores ``If-Range``) is discarded the same way. A ``.part`` with no stored validator (left by an
older version, or from a server that sends none) is resumed with a bare ``Range``.

Failure classes, which decide retries:

- transient (:class:`TransientFetchError`): connection refused/reset/dropped, short body, socket
  timeout (a stalled server), HTTP 5xx, 408 and 429. Retried here with exponential backoff
  (:class:`RetryPolicy`), resuming from the ``.part``; raised once the attempts are spent.
- permanent (:class:`DownloadRefusedError`): any other HTTP 4xx or a missing ``file://`` path.
  Never retried.
- :class:`ChecksumMismatchError`: the complete file has the wrong size or sha256. Never retried;
  the bad bytes are kept aside as ``<dest>.bad-<first 12 hex of their sha256>`` for inspection.
- :class:`DiskFullError`: no room to write the ``.part`` (ENOSPC, EDQUOT, EFBIG, EROFS). Never
  retried; the bytes received so far stay in the ``.part`` and are resumed by the next run.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Protocol

from schemas.errors import (
    ChecksumMismatchError,
    DiskFullError,
    DownloadRefusedError,
    FetchError,
    TransientFetchError,
)
from storage.fs import file_sha256
from storage.space import is_no_room, no_room_error

log = logging.getLogger(__name__)

USER_AGENT = "posepipe-fetch/1 (+python urllib)"
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_TRANSIENT_HTTP = frozenset({408, 425, 429})


class ProgressFn(Protocol):
    """Progress callback: called after every chunk and once when a file is complete."""

    def __call__(self, filename: str, done_bytes: int, total_bytes: int | None) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient failures: attempt ``k`` (0-based) waits ``initial * factor**k``.

    Attributes:
        attempts: Total attempts, the first included (>= 1).
        backoff_initial_s: Wait after the first failure, seconds.
        backoff_factor: Multiplier between consecutive waits.
        backoff_max_s: Upper bound of one wait, seconds.
        sleep: The sleep function (tests pass a recorder instead of waiting).
    """

    attempts: int = 5
    backoff_initial_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def delay_s(self, failure_index: int) -> float:
        """Seconds to wait after failure number ``failure_index`` (0-based)."""
        return min(self.backoff_max_s, self.backoff_initial_s * self.backoff_factor**failure_index)


@dataclass(frozen=True)
class DownloadResult:
    """A complete, verified file.

    Attributes:
        url: The URL it came from.
        path: Final local path.
        size_bytes: File size.
        sha256: Hex sha256 of the file.
        attempts: Requests made (1 when nothing failed).
        transferred_bytes: Body bytes received over all attempts (less than ``size_bytes`` when a
            ``.part`` from an earlier run was resumed).
        resumed_from_bytes: Offsets at which a ``Range`` request was answered with ``206``.
    """

    url: str
    path: Path
    size_bytes: int
    sha256: str
    attempts: int
    transferred_bytes: int
    resumed_from_bytes: tuple[int, ...] = ()


def part_path(dest: Path) -> Path:
    """The in-progress name of ``dest``."""
    return dest.with_name(dest.name + ".part")


def validator_path(part: Path) -> Path:
    """Where the validator of the server's file behind ``part`` is stored."""
    return part.with_name(part.name + ".json")


@dataclass(frozen=True)
class _Validator:
    """What identifies the server's file a ``.part`` holds the beginning of."""

    url: str
    etag: str | None
    last_modified: str | None
    total_bytes: int | None

    @classmethod
    def from_headers(cls, url: str, headers: Message, total_bytes: int | None) -> _Validator:
        return cls(url, headers.get("ETag") or None, headers.get("Last-Modified") or None, total_bytes)

    def if_range(self) -> str | None:
        """The ``If-Range`` value: a strong ETag (weak ones are not allowed there), else the date."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def differs(self, other: _Validator) -> str:
        """Why ``other`` (from a ``206``) is not the stored file, or "" when nothing says so."""
        if self.etag and other.etag and self.etag != other.etag:
            return f"ETag {self.etag} -> {other.etag}"
        if self.last_modified and other.last_modified and self.last_modified != other.last_modified:
            return f"Last-Modified {self.last_modified} -> {other.last_modified}"
        if self.total_bytes is not None and other.total_bytes is not None and self.total_bytes != other.total_bytes:
            return f"length {self.total_bytes} -> {other.total_bytes} bytes"
        return ""

    def save(self, part: Path) -> None:
        path = validator_path(part)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(
            {"url": self.url, "etag": self.etag, "last_modified": self.last_modified, "total_bytes": self.total_bytes}
        ))
        os.replace(tmp, path)

    @classmethod
    def load(cls, part: Path) -> _Validator | None:
        try:
            data = json.loads(validator_path(part).read_text())
            total = data.get("total_bytes")
            return cls(str(data["url"]), data.get("etag"), data.get("last_modified"), int(total) if total is not None else None)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


def discard_part(part: Path) -> None:
    """Delete a ``.part`` and its stored validator."""
    part.unlink(missing_ok=True)
    validator_path(part).unlink(missing_ok=True)


def download(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    timeout_s: float = 60.0,
    retry: RetryPolicy | None = None,
    progress: ProgressFn | None = None,
    chunk_bytes: int = 1 << 20,
) -> DownloadResult:
    """Download ``url`` to ``dest``, resuming a previous ``.part``, verifying size and sha256.

    Args:
        url: ``http://``, ``https://`` or ``file://`` URL.
        dest: Final path; its folder is created. Written only when complete and verified.
        expected_sha256: Hex sha256 the file must have (None: not checked, caller warns).
        expected_size: Size in bytes the file must have (None: not checked).
        timeout_s: Socket timeout for connecting and for each read: a server that sends nothing
            for this long counts as stalled (transient).
        retry: Backoff policy for transient failures (default :class:`RetryPolicy`).
        progress: Called as ``progress(dest.name, done_bytes, total_bytes)``.
        chunk_bytes: Read size.

    Returns:
        The verified file.

    Raises:
        TransientFetchError: Every attempt failed transiently (the ``.part`` is kept to resume).
        DownloadRefusedError: HTTP 4xx (not 408/425/429) or a missing ``file://`` path.
        ChecksumMismatchError: Wrong size or sha256; the bytes are moved to ``<dest>.bad-<sha>``.
        DiskFullError: No room to write under ``dest.parent`` (the ``.part`` is kept to resume).
        FetchError: Unsupported URL scheme.
    """
    policy = retry or RetryPolicy()
    if policy.attempts < 1:
        raise FetchError(f"RetryPolicy.attempts must be >= 1, got {policy.attempts}", hint="use attempts=1 for no retry")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise FetchError(f"cannot download {url!r}: unsupported scheme {scheme!r}", hint="use http(s):// or file://")
    part = part_path(dest)
    try:
        return _download(url, dest, part, scheme, policy, expected_sha256, expected_size, timeout_s, progress, chunk_bytes)
    except OSError as exc:
        if not is_no_room(exc):
            raise
        done = part.stat().st_size if part.exists() else 0
        raise no_room_error(
            exc, Path(exc.filename) if exc.filename else dest.parent, f"downloading {url}",
            kept=f"{done} bytes are kept in {part} and will be resumed" if done else "",
        ) from exc


def _download(
    url: str,
    dest: Path,
    part: Path,
    scheme: str,
    policy: RetryPolicy,
    expected_sha256: str | None,
    expected_size: int | None,
    timeout_s: float,
    progress: ProgressFn | None,
    chunk_bytes: int,
) -> DownloadResult:
    dest.parent.mkdir(parents=True, exist_ok=True)
    transferred = [0]  # body bytes received, failed attempts included (mutated by the attempts)
    resumed: list[int] = []
    last: TransientFetchError | None = None
    for attempt in range(policy.attempts):
        if attempt:
            policy.sleep(policy.delay_s(attempt - 1))
        try:
            if scheme == "file":
                _copy_file_url(url, part, dest.name, progress, chunk_bytes, transferred)
            else:
                offset = _http_attempt(url, part, dest.name, timeout_s, progress, chunk_bytes, transferred)
                if offset:
                    resumed.append(offset)
        except TransientFetchError as exc:
            last = exc
            continue
        size, digest = _verify(url, dest, part, expected_sha256, expected_size)
        os.replace(part, dest)
        validator_path(part).unlink(missing_ok=True)
        if progress is not None:
            progress(dest.name, size, size)
        return DownloadResult(url, dest, size, digest, attempt + 1, transferred[0], tuple(resumed))
    done = part.stat().st_size if part.exists() else 0
    kept = f"{done} bytes are kept in {part} and will be resumed; " if done else ""
    raise TransientFetchError(
        f"downloading {url} failed {policy.attempts} times; last error: {last.message if last else '?'}",
        hint=f"{kept}check the network or use --mirror, then run again",
    ) from last


def _verify(
    url: str, dest: Path, part: Path, expected_sha256: str | None, expected_size: int | None
) -> tuple[int, str]:
    size = part.stat().st_size
    digest = sha256_of(part)
    size_bad = expected_size is not None and size != expected_size
    sha_bad = expected_sha256 is not None and digest != expected_sha256.lower()
    if size_bad or sha_bad:
        aside = dest.with_name(f"{dest.name}.bad-{digest[:12]}")
        os.replace(part, aside)
        validator_path(part).unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"{dest.name} from {url}: expected sha256 {expected_sha256 or '(any)'} and size "
            f"{expected_size if expected_size is not None else '(any)'}, got sha256 {digest} and size {size}",
            hint=f"the bad download is kept at {aside}; if the upstream file legitimately changed, delete its line "
            "from the checksum registry and run `posepipe fetch NAME --register-checksums`",
        )
    return size, digest


def sha256_of(path: Path) -> str:
    """Hex sha256 of a local file."""
    return file_sha256(path)


def _http_attempt(
    url: str, part: Path, name: str, timeout_s: float, progress: ProgressFn | None, chunk_bytes: int, counter: list[int]
) -> int:
    """One request (two when a ``206`` turns out to continue another file); appends to ``part``.

    Adds received body bytes to ``counter[0]``.

    Returns:
        The offset a ``206`` answer resumed from, or 0.
    """
    for _ in range(2):
        offset = part.stat().st_size if part.exists() else 0
        stored = _Validator.load(part) if offset else None
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if stored is not None and stored.if_range():
                headers["If-Range"] = stored.if_range() or ""
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout_s)  # scheme checked by the caller
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                # Our .part is not a prefix the server can continue (file changed or already complete):
                # start over rather than guess.
                discard_part(part)
                raise TransientFetchError(f"{url}: HTTP 416 for Range bytes={offset}-; restarting from 0") from exc
            raise _classify_http(url, exc.code, exc.reason) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise _transient(url, exc) from exc
        with response:
            status = response.status
            if status == 206:
                m = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    discard_part(part)
                    raise TransientFetchError(
                        f"{url}: answered 206 with Content-Range {response.headers.get('Content-Range')!r} "
                        f"for Range bytes={offset}-; restarting from 0"
                    )
                total = int(m.group(3)) if m.group(3) != "*" else None
                changed = stored.differs(_Validator.from_headers(url, response.headers, total)) if stored else ""
                if changed:
                    # The server ignored If-Range (or has none): these bytes continue another file.
                    log.warning("%s changed on the server since %s was started (%s); restarting from 0", url, part,
                                changed)
                    discard_part(part)
                    continue
                mode = "ab"
            elif status == 200:
                # No Range asked, the validator no longer matches (If-Range), or Range is ignored:
                # the body is the whole (current) file; the .part restarts from byte 0.
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                if offset:
                    log.info("%s: answered 200 to Range bytes=%d-; restarting %s from 0", url, offset, part)
                offset, mode = 0, "wb"
                _Validator.from_headers(url, response.headers, total).save(part)
            else:
                raise _classify_http(url, status, response.reason)
            received = _receive(url, response, part, mode, offset, total, name, progress, chunk_bytes, counter)
        expected_body = None if total is None else total - offset
        if expected_body is not None and received < expected_body:
            raise TransientFetchError(
                f"{url}: connection closed after {offset + received} of {total} bytes", hint="the download will resume"
            )
        return offset if status == 206 else 0
    raise TransientFetchError(f"{url}: the file kept changing on the server during the download; restarting from 0")


def _receive(
    url: str,
    response: http.client.HTTPResponse,
    part: Path,
    mode: str,
    offset: int,
    total: int | None,
    name: str,
    progress: ProgressFn | None,
    chunk_bytes: int,
    counter: list[int],
) -> int:
    """Copy the body into ``part``; returns the body bytes received.

    Raises:
        TransientFetchError: The connection failed mid-body (what arrived is kept).
        DiskFullError: No room to write the ``.part``.
    """
    received = 0
    try:
        out = open(part, mode)  # noqa: SIM115 (closed below)
    except OSError as exc:
        if is_no_room(exc):
            raise _part_full(url, exc, part, total, offset) from exc
        raise
    try:
        with out:
            while True:
                try:
                    block = response.read1(chunk_bytes)  # read1: what has arrived, kept on a stall
                except (OSError, http.client.HTTPException) as exc:
                    raise _transient(url, exc, offset + received) from exc
                if not block:
                    break
                out.write(block)
                received += len(block)
                counter[0] += len(block)
                if progress is not None:
                    progress(name, offset + received, total)
    except OSError as exc:
        if is_no_room(exc):
            raise _part_full(url, exc, part, total, offset + received) from exc
        raise
    return received


def _part_full(url: str, exc: OSError, part: Path, total: int | None, done: int) -> DiskFullError:
    kept = part.stat().st_size if part.exists() else 0
    return no_room_error(
        exc, part, f"downloading {url}", None if total is None else max(total - kept, 0),
        kept=f"{kept} bytes are kept in {part} and will be resumed" if kept else "",
    )


def _classify_http(url: str, status: int, reason: object) -> FetchError:
    if status >= 500 or status in _TRANSIENT_HTTP:
        return TransientFetchError(f"{url}: HTTP {status} {reason}", hint="the server is failing; retried with backoff")
    hint = "the file is not at this URL; check --mirror or the adapter's source URL" if status == 404 else (
        "the server refuses this request; check the URL and any access terms of the dataset"
    )
    return DownloadRefusedError(f"{url}: HTTP {status} {reason}", hint=hint, status=status)


def _transient(url: str, exc: BaseException, at_byte: int | None = None) -> TransientFetchError:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    what = "timed out (server stalled)" if isinstance(reason, TimeoutError | socket.timeout) else repr(reason)
    where = f" after {at_byte} bytes" if at_byte is not None else ""
    return TransientFetchError(f"{url}: {what}{where}", hint="transient network failure; retried with backoff")


def _copy_file_url(
    url: str, part: Path, name: str, progress: ProgressFn | None, chunk_bytes: int, counter: list[int]
) -> None:
    """Copy a ``file://`` URL into ``part`` (whole file; local copies need no resume)."""
    parsed = urllib.parse.urlsplit(url)
    src = Path(urllib.request.url2pathname(parsed.path))
    if not src.is_file():
        raise DownloadRefusedError(f"{url}: no such file {src}", hint="check the --mirror folder", status=None)
    total = src.stat().st_size
    done = 0
    validator_path(part).unlink(missing_ok=True)  # a whole copy: nothing is resumed
    try:
        with open(src, "rb") as fin, open(part, "wb") as fout:
            while block := fin.read(chunk_bytes):
                fout.write(block)
                done += len(block)
                counter[0] += len(block)
                if progress is not None:
                    progress(name, done, total)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        if is_no_room(exc):
            raise no_room_error(exc, part, f"copying {src}", max(total - done, 0)) from exc
        raise TransientFetchError(f"{url}: reading {src} failed: {exc}") from exc


def place_file(src: Path, dest: Path) -> None:
    """Put ``src`` at ``dest`` atomically: a hard link when possible, else a copy, then a rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)

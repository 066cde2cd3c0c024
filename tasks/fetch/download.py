"""Resumable, verified downloads over HTTP(S) or from ``file://`` URLs (stdlib only).

A download is written to ``<dest>.part`` and renamed to ``<dest>`` only when it is complete and its
size and sha256 match what is expected. An interrupted download leaves its ``.part`` behind; the
next attempt (in the same call, after a backoff, or in a later run) asks for the missing bytes with
an HTTP ``Range: bytes=N-`` header. A server that ignores ``Range`` (answers ``200`` with the whole
body) is handled by restarting from byte 0; one that answers ``416`` gets a fresh request.

Failure classes, which decide retries:

- transient (:class:`TransientFetchError`): connection refused/reset/dropped, short body, socket
  timeout (a stalled server), HTTP 5xx, 408 and 429. Retried here with exponential backoff
  (:class:`RetryPolicy`), resuming from the ``.part``; raised once the attempts are spent.
- permanent (:class:`DownloadRefusedError`): any other HTTP 4xx or a missing ``file://`` path.
  Never retried.
- :class:`ChecksumMismatchError`: the complete file has the wrong size or sha256. Never retried;
  the bad bytes are kept aside as ``<dest>.bad-<first 12 hex of their sha256>`` for inspection.
"""

from __future__ import annotations

import contextlib
import http.client
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
from pathlib import Path
from typing import Protocol

from schemas.errors import ChecksumMismatchError, DownloadRefusedError, FetchError, TransientFetchError
from storage.fs import file_sha256

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
        FetchError: Unsupported URL scheme.
    """
    policy = retry or RetryPolicy()
    if policy.attempts < 1:
        raise FetchError(f"RetryPolicy.attempts must be >= 1, got {policy.attempts}", hint="use attempts=1 for no retry")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise FetchError(f"cannot download {url!r}: unsupported scheme {scheme!r}", hint="use http(s):// or file://")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
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
    """One request; appends to ``part`` and adds received body bytes to ``counter[0]``.

    Returns:
        The offset a ``206`` answer resumed from, or 0.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)  # scheme checked by the caller
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            # Our .part is not a prefix the server can continue (file changed or already complete):
            # start over rather than guess.
            part.unlink(missing_ok=True)
            raise TransientFetchError(f"{url}: HTTP 416 for Range bytes={offset}-; restarting from 0") from exc
        raise _classify_http(url, exc.code, exc.reason) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _transient(url, exc) from exc
    with response:
        status = response.status
        if status == 206:
            m = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise TransientFetchError(
                    f"{url}: answered 206 with Content-Range {response.headers.get('Content-Range')!r} "
                    f"for Range bytes={offset}-; restarting from 0"
                )
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        elif status == 200:
            # No Range asked, or the server ignores Range: the body is the whole file.
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            offset, mode = 0, "wb"
        else:
            raise _classify_http(url, status, response.reason)
        expected_body = None if total is None else total - offset
        received = 0
        try:
            with open(part, mode) as out:
                while block := response.read1(chunk_bytes):  # read1: what has arrived, kept on a stall
                    out.write(block)
                    received += len(block)
                    counter[0] += len(block)
                    if progress is not None:
                        progress(name, offset + received, total)
        except (OSError, http.client.HTTPException) as exc:
            raise _transient(url, exc, offset + received) from exc
    if expected_body is not None and received < expected_body:
        raise TransientFetchError(
            f"{url}: connection closed after {offset + received} of {total} bytes", hint="the download will resume"
        )
    return offset if status == 206 else 0


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

"""tasks/fetch/download.py against a real, misbehaving HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from schemas.errors import ChecksumMismatchError, DownloadRefusedError, FetchError, TransientFetchError
from tasks.fetch.download import RetryPolicy, download, part_path, validator_path
from tests.ports import free_port

from .conftest import Server


def payload(n: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    block = seed.to_bytes(4, "little")
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


class Sleeps:
    """Records backoff waits instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def fast_retry(attempts: int = 4) -> tuple[RetryPolicy, Sleeps]:
    sleeps = Sleeps()
    return RetryPolicy(attempts=attempts, backoff_initial_s=0.5, backoff_factor=2.0, sleep=sleeps), sleeps


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(backoff_initial_s=1.0, backoff_factor=2.0, backoff_max_s=5.0)
    assert [policy.delay_s(i) for i in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_plain_download_verifies_and_reports_progress(server: Server, tmp_path: Path) -> None:
    data = payload(300_000, 1)
    server.put("plain.bin", data)
    seen: list[tuple[str, int, int | None]] = []
    res = download(
        server.url("plain", "plain.bin"), tmp_path / "plain.bin", expected_sha256=sha(data), expected_size=len(data),
        progress=lambda f, d, t: seen.append((f, d, t)), chunk_bytes=65536,
    )
    assert (tmp_path / "plain.bin").read_bytes() == data
    assert not part_path(tmp_path / "plain.bin").exists()
    assert (res.size_bytes, res.sha256, res.attempts, res.transferred_bytes) == (len(data), sha(data), 1, len(data))
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and done[-1] == len(data)
    assert {t for _, _, t in seen} == {len(data)}
    assert [e["range"] for e in server.log()] == [None]


def test_dropped_connection_resumes_with_range_and_fetches_only_missing_bytes(server: Server, tmp_path: Path) -> None:
    data = payload(1_000_001, 2)
    server.put("drop.bin", data)
    policy, sleeps = fast_retry()
    res = download(server.url("drop", "drop.bin"), tmp_path / "drop.bin", expected_sha256=sha(data), retry=policy)
    assert (tmp_path / "drop.bin").read_bytes() == data
    log = server.log()
    half = len(data) // 2
    assert [(e["status"], e["range"], e["body_bytes"]) for e in log] == [
        (200, None, half),
        (206, f"bytes={half}-", len(data) - half),
    ]
    assert sum(e["body_bytes"] for e in log) == len(data)  # nothing fetched twice
    assert res.resumed_from_bytes == (half,) and res.attempts == 2 and res.transferred_bytes == len(data)
    assert sleeps.calls == [0.5]


def test_partial_file_from_an_earlier_run_is_resumed(server: Server, tmp_path: Path) -> None:
    data = payload(50_000, 3)
    server.put("earlier.bin", data)
    dest = tmp_path / "earlier.bin"
    part_path(dest).write_bytes(data[:12_345])
    res = download(server.url("plain", "earlier.bin"), dest, expected_sha256=sha(data))
    assert dest.read_bytes() == data
    assert [(e["range"], e["body_bytes"]) for e in server.log()] == [("bytes=12345-", len(data) - 12_345)]
    assert res.transferred_bytes == len(data) - 12_345


def test_503_twice_then_200_is_retried_with_exponential_backoff(server: Server, tmp_path: Path) -> None:
    data = payload(10_000, 4)
    server.put("flaky.bin", data)
    policy, sleeps = fast_retry()
    res = download(server.url("flaky", "flaky.bin"), tmp_path / "flaky.bin", expected_sha256=sha(data), retry=policy)
    assert (tmp_path / "flaky.bin").read_bytes() == data
    assert [e["status"] for e in server.log()] == [503, 503, 200]
    assert sleeps.calls == [0.5, 1.0]
    assert res.attempts == 3


def test_persistent_5xx_raises_transient_after_all_attempts(server: Server, tmp_path: Path) -> None:
    server.put("down.bin", b"x")
    policy, sleeps = fast_retry(attempts=3)
    with pytest.raises(TransientFetchError, match=r"failed 3 times.*HTTP 503"):
        download(server.url("always503", "down.bin"), tmp_path / "down.bin", retry=policy)
    assert [e["status"] for e in server.log()] == [503, 503, 503]
    assert sleeps.calls == [0.5, 1.0]
    assert not (tmp_path / "down.bin").exists()


def test_server_ignoring_range_restarts_cleanly(server: Server, tmp_path: Path) -> None:
    data = payload(400_000, 5)
    server.put("norange.bin", data)
    policy, _ = fast_retry()
    res = download(server.url("dropnorange", "norange.bin"), tmp_path / "norange.bin", expected_sha256=sha(data), retry=policy)
    assert (tmp_path / "norange.bin").read_bytes() == data
    log = server.log()
    half = len(data) // 2
    # The retry asked for the rest, got the whole file with 200, and rewrote the .part from byte 0.
    assert [(e["status"], e["range"], e["body_bytes"]) for e in log] == [(200, None, half), (200, f"bytes={half}-", len(data))]
    assert res.resumed_from_bytes == ()


def test_stale_partial_with_range_ignoring_server_is_overwritten(server: Server, tmp_path: Path) -> None:
    data = payload(20_000, 6)
    server.put("nr2.bin", data)
    dest = tmp_path / "nr2.bin"
    part_path(dest).write_bytes(b"garbage from an older version" * 100)
    download(server.url("norange", "nr2.bin"), dest, expected_sha256=sha(data))
    assert dest.read_bytes() == data


def test_wrong_bytes_are_a_checksum_error_kept_aside_and_not_retried(server: Server, tmp_path: Path) -> None:
    data = payload(30_000, 7)
    server.put("bad.bin", data)
    policy, sleeps = fast_retry()
    dest = tmp_path / "bad.bin"
    with pytest.raises(ChecksumMismatchError) as err:
        download(server.url("corrupt", "bad.bin"), dest, expected_sha256=sha(data), retry=policy)
    corrupted = bytearray(data)
    corrupted[len(data) // 2] ^= 0xFF
    actual = sha(bytes(corrupted))
    msg = str(err.value)
    assert "bad.bin" in msg and sha(data) in msg and actual in msg
    aside = tmp_path / f"bad.bin.bad-{actual[:12]}"
    assert aside.read_bytes() == bytes(corrupted)
    assert str(aside) in msg
    assert not dest.exists() and not part_path(dest).exists()
    assert len(server.log()) == 1 and sleeps.calls == []


def test_wrong_size_is_a_checksum_error(server: Server, tmp_path: Path) -> None:
    server.put("size.bin", b"12345")
    with pytest.raises(ChecksumMismatchError, match="size 6, got sha256 .* and size 5"):
        download(server.url("plain", "size.bin"), tmp_path / "size.bin", expected_size=6)


def test_stalled_server_times_out_as_transient_then_resumes(server: Server, tmp_path: Path) -> None:
    data = payload(200_000, 8)
    server.put("stall.bin", data)
    policy, sleeps = fast_retry()
    res = download(
        server.url("stall", "stall.bin"), tmp_path / "stall.bin", expected_sha256=sha(data), retry=policy, timeout_s=0.5
    )
    assert (tmp_path / "stall.bin").read_bytes() == data
    half = len(data) // 2
    assert [(e["range"], e["body_bytes"]) for e in server.log()] == [(None, half), (f"bytes={half}-", len(data) - half)]
    assert res.attempts == 2 and sleeps.calls == [0.5]


def test_stalled_server_without_retries_raises_a_clear_transient_error(server: Server, tmp_path: Path) -> None:
    server.put("stall1.bin", payload(100_000, 9))
    with pytest.raises(TransientFetchError, match="timed out") as err:
        download(server.url("stall", "stall1.bin"), tmp_path / "stall1.bin", retry=RetryPolicy(attempts=1), timeout_s=0.3)
    assert "will be resumed" in str(err.value)
    assert part_path(tmp_path / "stall1.bin").stat().st_size == 50_000


@pytest.mark.parametrize(("mode", "status"), [("plain", 404), ("forbidden", 403)])
def test_4xx_is_refused_at_once_without_retry(server: Server, tmp_path: Path, mode: str, status: int) -> None:
    server.put("exists.bin", b"data")
    policy, sleeps = fast_retry()
    name = "missing.bin" if status == 404 else "exists.bin"
    with pytest.raises(DownloadRefusedError, match=f"HTTP {status}") as err:
        download(server.url(mode, name), tmp_path / name, retry=policy)
    assert err.value.status == status
    assert len(server.log()) == 1 and sleeps.calls == []


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    port = free_port()  # nobody listens on it
    policy, sleeps = fast_retry(attempts=2)
    with pytest.raises(TransientFetchError, match="failed 2 times"):
        download(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.bin", retry=policy)
    assert sleeps.calls == [0.5]


def test_file_url_mirror_and_missing_file(tmp_path: Path) -> None:
    src = tmp_path / "mirror" / "f.bin"
    src.parent.mkdir()
    src.write_bytes(b"local bytes")
    res = download(src.as_uri(), tmp_path / "out" / "f.bin", expected_sha256=sha(b"local bytes"))
    assert res.path.read_bytes() == b"local bytes"
    with pytest.raises(DownloadRefusedError, match="no such file"):
        download((tmp_path / "mirror" / "nope.bin").as_uri(), tmp_path / "out" / "nope.bin")


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="unsupported scheme 'ftp'"):
        download("ftp://example.org/x", tmp_path / "x")
    assert os.listdir(tmp_path) == []


# --- the file changes on the server between an interrupted attempt and its resume (fault #53) ---


def etag_of(data: bytes) -> str:
    """The test server's ETag for ``data``."""
    return '"' + sha(data)[:16] + '"'


def put_changing(server: Server, name: str, v1: bytes, v2: bytes) -> None:
    """``name`` is v1 (an old mtime) for the first request, then v2 (a newer mtime, another ETag)."""
    old = server.put(name, v1)
    os.utime(old, (1_600_000_000, 1_600_000_000))
    server.put(name + ".v2", v2)


@pytest.mark.parametrize("mode", ["changing", "changinglm", "changingnoifrange"])
def test_file_changed_between_attempts_restarts_from_zero_not_a_hybrid(server: Server, tmp_path: Path, mode: str) -> None:
    # Same size, no registered checksum: only the validators can tell v1's first half from v2's.
    v1, v2 = payload(400_000, 20), payload(400_000, 21)
    put_changing(server, f"{mode}/chg.bin", v1, v2)
    dest = tmp_path / "chg.bin"
    policy, _ = fast_retry()
    res = download(server.url(mode, f"{mode}/chg.bin"), dest, retry=policy)
    assert dest.read_bytes() == v2  # not v1[:200000] + v2[200000:]
    assert res.sha256 == sha(v2)
    log = server.log()
    half = len(v1) // 2
    assert (log[0]["status"], log[0]["range"], log[0]["body_bytes"]) == (200, None, half)
    assert log[1]["range"] == f"bytes={half}-"
    if mode == "changinglm":  # no ETag: the resume is conditioned on the date
        assert log[1]["if_range"] == "Sun, 13 Sep 2020 12:26:40 GMT"
    else:
        assert log[1]["if_range"] == etag_of(v1)
    if mode == "changingnoifrange":
        # The server ignored If-Range and answered 206 with v2's tail; its new ETag gave it away.
        assert [e["status"] for e in log] == [200, 206, 200]
        assert (log[2]["range"], log[2]["body_bytes"]) == (None, len(v2))
    else:
        assert [(e["status"], e["body_bytes"]) for e in log] == [(200, half), (200, len(v2))]
    assert not part_path(dest).exists() and not validator_path(part_path(dest)).exists()


def test_file_changed_between_runs_restarts_from_zero(server: Server, tmp_path: Path) -> None:
    v1, v2 = payload(300_000, 22), payload(300_000, 23)
    put_changing(server, "runs/chg.bin", v1, v2)
    dest = tmp_path / "chg.bin"
    with pytest.raises(TransientFetchError, match="will be resumed"):
        download(server.url("changing", "runs/chg.bin"), dest, retry=RetryPolicy(attempts=1))
    part = part_path(dest)
    assert part.read_bytes() == v1[: len(v1) // 2]
    assert json.loads(validator_path(part).read_text())["etag"] == etag_of(v1)  # stored when it started
    download(server.url("changing", "runs/chg.bin"), dest, retry=RetryPolicy(attempts=1))
    assert dest.read_bytes() == v2


def test_unchanged_file_still_resumes_with_if_range(server: Server, tmp_path: Path) -> None:
    data = payload(300_000, 24)
    server.put("same.bin", data)
    policy, _ = fast_retry()
    download(server.url("drop", "same.bin"), tmp_path / "same.bin", expected_sha256=sha(data), retry=policy)
    half = len(data) // 2
    assert [(e["status"], e["range"], e["if_range"], e["body_bytes"]) for e in server.log()] == [
        (200, None, None, half),
        (206, f"bytes={half}-", etag_of(data), len(data) - half),
    ]

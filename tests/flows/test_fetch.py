"""flows/fetch.py (the Prefect task) and flows/commands/fetch.py (``posepipe fetch``) against the real server."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.commands import fetch as fetch_cmd
from schemas.errors import ChecksumMismatchError, DownloadRefusedError, TransientFetchError
from tasks.datasets.base import AdapterParams, DatasetAdapter, ParseResult, Source
from tasks.fetch.registry import ENV_DIR, Checksum, load_checksums, save_checksums
from tests.fetch.archives import write_zip
from tests.fetch.conftest import Server, http_server  # noqa: F401 (fixture)
from tests.fetch.conftest import server as server  # noqa: F401 (fixture)


class _FlowFetchAdapter(DatasetAdapter):
    """Registered test adapter; each test points its sources at the session's server."""

    name = "_test_fetch_flow"

    def parse(self, source: Path, params: AdapterParams) -> ParseResult:  # pragma: no cover - never parsed here
        raise NotImplementedError


@pytest.fixture
def served(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """An annotations zip and a plain file on the server, the adapter's sources, an empty registry folder."""
    prefix = tmp_path.name
    ann = write_zip(tmp_path / "ann.zip", {"annotations/a.json": b'{"ok": true}'}).read_bytes()
    server.put(f"{prefix}/ann.zip", ann)
    server.put(f"{prefix}/list.txt", b"one\ntwo\n")
    base = f"{server.base}/plain/{prefix}"
    sources = (
        Source("annotations", f"{base}/ann.zip", "ann.zip", extract="zip"),
        Source("list", f"{base}/list.txt", "list.txt"),
        Source("optional", f"{base}/absent.zip", "absent.zip", extract="zip", required=False),
    )
    monkeypatch.setattr(_FlowFetchAdapter, "sources", sources)
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "registry"))
    monkeypatch.setenv("POSEPIPE_FETCH_ATTEMPTS", "2")
    monkeypatch.setenv("POSEPIPE_FETCH_BACKOFF_S", "0.01")
    yield {"base": base, "prefix": prefix, "ann": ann, "root": str(tmp_path / "store"), "tmp": tmp_path}


# --- CLI --------------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()
    fetch_cmd.register(app)
    app.command("noop")(lambda: None)  # two commands, so typer keeps the command name
    return app


def test_cli_fetch_registers_checksums_then_verifies(server: Server, served: dict) -> None:
    runner = CliRunner()
    res = runner.invoke(cli(), ["fetch", "_test_fetch_flow", "--root", served["root"], "--register-checksums"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "3 source(s)" in out and "unregistered" in out  # the plan, before anything is fetched
    assert "2 downloaded, 0 reused, 0 from the manual folder, 1 skipped" in out
    assert "checksums recorded in" in out and "optional source optional (absent.zip) is unavailable" in out
    src = Path(served["root"]) / "raw" / "_test_fetch_flow" / "extracted"
    assert out.strip().splitlines()[-1] == str(src)
    reg = load_checksums("_test_fetch_flow")
    assert reg[f"{served['base']}/ann.zip"].sha256 == hashlib.sha256(served["ann"]).hexdigest()
    assert reg[f"{served['base']}/list.txt"] == Checksum(f"{served['base']}/list.txt", 8, hashlib.sha256(b"one\ntwo\n").hexdigest(), "list.txt")

    again = runner.invoke(cli(), ["fetch", "_test_fetch_flow", "--root", served["root"]])
    assert again.exit_code == 0, again.output
    assert "0 downloaded, 2 reused" in again.output and "registered" in again.output
    assert "no registered checksum" not in again.output


def test_cli_mismatch_exits_with_the_domain_error(server: Server, served: dict) -> None:
    url = f"{served['base']}/list.txt"
    save_checksums("_test_fetch_flow", [Checksum(url, 8, "0" * 64, "list.txt")])
    res = CliRunner().invoke(cli(), ["fetch", "_test_fetch_flow", "--root", served["root"]])
    assert isinstance(res.exception, ChecksumMismatchError)
    assert "0" * 64 in str(res.exception) and hashlib.sha256(b"one\ntwo\n").hexdigest() in str(res.exception)


def test_cli_archive_limits_from_options_and_environment(
    server: Server, served: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schemas.errors import ConfigError, UnsafeArchiveError

    bomb = write_zip(served["tmp"] / "bomb.zip", {"annotations/zeros.bin": bytes(3_000_000)}).read_bytes()
    server.put(f"{served['prefix']}/ann.zip", bomb)  # ~1000:1
    runner = CliRunner()
    args = ["fetch", "_test_fetch_flow", "--root", served["root"]]
    res = runner.invoke(cli(), args)
    assert isinstance(res.exception, UnsafeArchiveError) and "past the 100:1" in str(res.exception)
    res = runner.invoke(cli(), [*args, "--max-compression-ratio", "5000", "--max-extract-bytes", "2000000"])
    assert isinstance(res.exception, UnsafeArchiveError) and "passes 2000000 bytes" in str(res.exception)
    monkeypatch.setenv("POSEPIPE_MAX_EXTRACT_BYTES", "1000000")
    res = runner.invoke(cli(), [*args, "--max-compression-ratio", "5000"])
    assert isinstance(res.exception, UnsafeArchiveError) and "passes 1000000 bytes" in str(res.exception)
    monkeypatch.setenv("POSEPIPE_MAX_COMPRESSION_RATIO", "5000")
    res = runner.invoke(cli(), [*args, "--max-extract-bytes", "4000000"])  # the option wins over the environment
    assert res.exit_code == 0, res.output
    src = Path(served["root"]) / "raw" / "_test_fetch_flow" / "extracted"
    assert (src / "annotations" / "zeros.bin").stat().st_size == 3_000_000
    res = runner.invoke(cli(), [*args, "--max-compression-ratio", "0.5"])
    assert isinstance(res.exception, ConfigError) and "max_compression_ratio" in str(res.exception)


# --- Prefect task -----------------------------------------------------------------------------


def _run(dataset: str, root: str, mirror: str | None = None, retries: int | None = None):  # noqa: ANN202
    from prefect import flow

    from flows.fetch import fetch_source_task

    task_fn = fetch_source_task if retries is None else fetch_source_task.with_options(retries=retries, retry_delay_seconds=0)

    @flow(name="fetch-test")
    def run():  # noqa: ANN202
        return task_fn(dataset, root, mirror=mirror, return_state=True)

    return run()


@pytest.mark.slow
def test_task_caches_by_url_and_checksum_and_never_caches_a_missing_tree(
    prefect_harness: None, server: Server, served: dict
) -> None:
    first = _run("_test_fetch_flow", served["root"])
    src = Path(first.result())
    assert (src / "annotations" / "a.json").read_bytes() == b'{"ok": true}'
    n = len(server.log())
    assert n == 3  # two files + one 404 for the optional source

    second = _run("_test_fetch_flow", served["root"])
    assert second.is_completed() and second.name == "Cached" and second.result() == str(src)
    assert len(server.log()) == n  # an unchanged rebuild downloads nothing, not even a HEAD

    shutil.rmtree(src / "annotations")  # the cached path no longer holds the tree: no cache hit
    third = _run("_test_fetch_flow", served["root"])
    assert third.name != "Cached" and (src / "annotations" / "a.json").is_file()
    assert [e["path"] for e in server.log()[n:]] == [f"/plain/{served['prefix']}/absent.zip"]  # files reused

    # Registering a checksum changes the key: the task runs again (and verifies, downloading nothing).
    save_checksums("_test_fetch_flow", [Checksum(f"{served['base']}/list.txt", 8, hashlib.sha256(b"one\ntwo\n").hexdigest(), "list.txt")])
    fourth = _run("_test_fetch_flow", served["root"])
    assert fourth.name != "Cached" and fourth.result() == str(src)
    assert _run("_test_fetch_flow", served["root"]).name == "Cached"


@pytest.mark.slow
def test_task_retries_transient_failures_only(prefect_harness: None, server: Server, served: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    flaky = (Source("annotations", f"{served['base'].replace('/plain/', '/always503/')}/ann.zip", "ann.zip", extract="zip"),)
    monkeypatch.setattr(_FlowFetchAdapter, "sources", flaky)
    with pytest.raises(TransientFetchError, match="failed 2 times"):
        _run("_test_fetch_flow", served["root"] + "-503", retries=2)
    # 2 download attempts inside the task x (1 run + 2 Prefect retries)
    assert [e["status"] for e in server.log()] == [503] * 6

    server.reset()
    missing = (Source("annotations", f"{served['base']}/gone.zip", "gone.zip", extract="zip"),)
    monkeypatch.setattr(_FlowFetchAdapter, "sources", missing)
    with pytest.raises(DownloadRefusedError, match="HTTP 404"):
        _run("_test_fetch_flow", served["root"] + "-404", retries=2)
    assert [e["status"] for e in server.log()] == [404]  # a 4xx is never retried

    server.reset()
    monkeypatch.setattr(_FlowFetchAdapter, "sources", served_sources := (
        Source("list", f"{served['base']}/list.txt", "list.txt"),
    ))
    save_checksums("_test_fetch_flow", [Checksum(served_sources[0].url, 8, "f" * 64, "list.txt")])
    with pytest.raises(ChecksumMismatchError, match="f" * 64):
        _run("_test_fetch_flow", served["root"] + "-bad", retries=2)
    assert len(server.log()) == 1  # a checksum mismatch is never retried


def test_task_takes_archive_limits_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.fetch import _limits
    from schemas.errors import ConfigError

    assert (_limits().max_ratio, _limits().max_total_bytes) == (100.0, 64 * 1024**3)
    monkeypatch.setenv("POSEPIPE_MAX_COMPRESSION_RATIO", "7")
    monkeypatch.setenv("POSEPIPE_MAX_EXTRACT_BYTES", "12345")
    assert (_limits().max_ratio, _limits().max_total_bytes) == (7.0, 12345)
    monkeypatch.setenv("POSEPIPE_MAX_EXTRACT_BYTES", "lots")
    with pytest.raises(ConfigError, match="POSEPIPE_"):
        _limits()

"""tasks/fetch/resolve.py: all of an adapter's sources into {root}/raw/{dataset}, against the real server."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from schemas.errors import ChecksumMismatchError, ConfigError, DownloadRefusedError, UnsafeArchiveError
from tasks.datasets.base import AdapterParams, DatasetAdapter, ParseResult, Source
from tasks.fetch.registry import Checksum, load_checksums, save_checksums
from tasks.fetch.resolve import fetch_dataset

from .archives import write_tar, write_zip
from .conftest import Server


class _FetchOnly(DatasetAdapter):
    """An adapter whose sources each test sets on the instance (it is never parsed here)."""

    def parse(self, source: Path, params: AdapterParams) -> ParseResult:  # pragma: no cover - not used
        raise NotImplementedError


def adapter(*sources: Source) -> DatasetAdapter:
    a = _FetchOnly()
    a.sources = sources  # type: ignore[misc]
    return a


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def dataset(server: Server, tmp_path: Path) -> dict:
    """Served files of a small dataset: an annotations zip, an images tar.gz and a plain list file."""
    folder = tmp_path / "make"
    folder.mkdir()
    ann = write_zip(folder / "ann.zip", {"annotations/train.json": b'{"n": 2}', "annotations/val.json": b'{"n": 1}'})
    img = write_tar(folder / "img.tar.gz", [("images/a.jpg", b"A" * 5000), ("images/b.jpg", b"B" * 7000)])
    files = {"ann.zip": ann.read_bytes(), "img.tar.gz": img.read_bytes(), "list.txt": b"a\nb\n"}
    prefix = tmp_path.name  # unique per test on the session's server
    for name, data in files.items():
        server.put(f"{prefix}/{name}", data)
    base = f"{server.base}/plain/{prefix}"
    sources = (
        Source("annotations", f"{base}/ann.zip", "ann.zip", extract="zip"),
        Source("images", f"{base}/img.tar.gz", "img.tar.gz", extract="tar", extract_to="data"),
        Source("list", f"{base}/list.txt", "list.txt", extract_to="meta"),
        Source("extra", f"{base}/train_huge.zip", "train_huge.zip", extract="zip", required=False),
    )
    return {"files": files, "sources": sources, "prefix": prefix, "base": base}


def test_first_fetch_downloads_extracts_and_warns_then_second_downloads_nothing(
    server: Server, dataset: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "store"
    a = adapter(*dataset["sources"])
    caplog.set_level(logging.WARNING)
    res = fetch_dataset("_t", str(root), adapter=a, checksums_dir=tmp_path / "reg")
    src = Path(res.source_dir)
    assert src == root / "raw" / "_t" / "extracted"
    assert (src / "annotations" / "train.json").read_bytes() == b'{"n": 2}'
    assert (src / "data" / "images" / "b.jpg").read_bytes() == b"B" * 7000
    assert (src / "meta" / "list.txt").read_bytes() == b"a\nb\n"
    assert sorted(p.name for p in src.iterdir()) == ["annotations", "data", "meta"]
    assert [(f.filename, f.action, f.extraction) for f in res.files] == [
        ("ann.zip", "downloaded", "extracted"),
        ("img.tar.gz", "downloaded", "extracted"),
        ("list.txt", "downloaded", "placed"),
        ("train_huge.zip", "skipped", "none"),
    ]
    assert res.checksums == {n: sha(d) for n, d in dataset["files"].items()}
    assert sum("no registered checksum" in w for w in res.warnings) == 3
    assert any("optional source extra (train_huge.zip) is unavailable, skipped" in w for w in res.warnings)
    assert "no registered checksum" in caplog.text and "skipped" in caplog.text
    index = json.loads((root / "raw" / "_t" / "index.json").read_text())
    assert index["by_sha256"][sha(dataset["files"]["ann.zip"])]["filename"] == "ann.zip"
    assert (root / "raw" / "_t" / "downloads" / "ann.zip").read_bytes() == dataset["files"]["ann.zip"]
    n_requests = len(server.log())
    assert n_requests == 4  # three files + one 404 for the optional source

    again = fetch_dataset("_t", str(root), adapter=a, checksums_dir=tmp_path / "reg")
    assert [(f.action, f.extraction) for f in again.files] == [
        ("reused", "reused"), ("reused", "reused"), ("reused", "reused"), ("skipped", "none"),
    ]
    assert again.downloaded == [] and again.reused == ["ann.zip", "img.tar.gz", "list.txt"]
    assert [e["path"] for e in server.log()[n_requests:]] == [f"/plain/{dataset['prefix']}/train_huge.zip"]


def test_register_then_verify_then_mismatch_keeps_the_bad_file_aside(server: Server, dataset: dict, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    a = adapter(*dataset["sources"][:3])
    res = fetch_dataset("_t", str(tmp_path / "s1"), adapter=a, checksums_dir=reg, register_checksums=True)
    assert res.registry == str(reg / "_t.tsv") and res.warnings == ()
    registered = load_checksums("_t", reg)
    assert {c.filename: (c.size_bytes, c.sha256) for c in registered.values()} == {
        n: (len(d), sha(d)) for n, d in dataset["files"].items()
    }
    # A fresh store verifies against the registry: no warning.
    res2 = fetch_dataset("_t", str(tmp_path / "s2"), adapter=a, checksums_dir=reg)
    assert res2.warnings == () and all(f.registered for f in res2.files)
    # Upstream bytes change without the registry changing: an error naming file and both hashes.
    new_list = b"a\nb\nc\n"
    server.put(f"{dataset['prefix']}/list.txt", new_list)
    with pytest.raises(ChecksumMismatchError) as err:
        fetch_dataset("_t", str(tmp_path / "s3"), adapter=a, checksums_dir=reg)
    msg = str(err.value)
    assert "list.txt" in msg and sha(dataset["files"]["list.txt"]) in msg and sha(new_list) in msg
    kept = tmp_path / "s3" / "raw" / "_t" / "downloads" / f"list.txt.bad-{sha(new_list)[:12]}"
    assert kept.read_bytes() == new_list
    assert not (tmp_path / "s3" / "raw" / "_t" / "extracted" / "meta").exists()


def test_changed_registered_archive_is_fetched_and_re_extracted(server: Server, dataset: dict, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    root = tmp_path / "store"
    a = adapter(dataset["sources"][0])
    fetch_dataset("_t", str(root), adapter=a, checksums_dir=reg, register_checksums=True)
    v2 = write_zip(tmp_path / "v2.zip", {"annotations/val.json": b'{"n": 9}', "annotations2/x.json": b"{}"}).read_bytes()
    server.put(f"{dataset['prefix']}/ann.zip", v2)
    save_checksums("_t", [Checksum(dataset["sources"][0].url, len(v2), sha(v2), "ann.zip")], reg)
    res = fetch_dataset("_t", str(root), adapter=a, checksums_dir=reg)
    assert [(f.action, f.extraction) for f in res.files] == [("downloaded", "extracted")]
    src = Path(res.source_dir)
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*")) == [
        "annotations", "annotations/val.json", "annotations2", "annotations2/x.json",
    ]  # train.json of v1 is gone with v1's entries


def test_mirror_is_tried_first_and_a_missing_mirror_file_falls_back(server: Server, dataset: dict, tmp_path: Path) -> None:
    p = dataset["prefix"]
    m = f"{p}-mirror"
    server.put(f"{m}/ann.zip", dataset["files"]["ann.zip"])
    a = adapter(*dataset["sources"][:3])
    res = fetch_dataset("_t", str(tmp_path / "s"), mirror=f"{server.base}/plain/{m}/", adapter=a,
                        checksums_dir=tmp_path / "reg")
    paths = [(e["path"], e["status"]) for e in server.log()]
    assert paths == [
        (f"/plain/{m}/ann.zip", 200),
        (f"/plain/{m}/img.tar.gz", 404), (f"/plain/{p}/img.tar.gz", 200),
        (f"/plain/{m}/list.txt", 404), (f"/plain/{p}/list.txt", 200),
    ]
    assert res.files[0].url == f"{server.base}/plain/{m}/ann.zip"


def test_file_mirror_folder(server: Server, dataset: dict, tmp_path: Path) -> None:
    mirror = tmp_path / "local_mirror"
    mirror.mkdir()
    for name, data in dataset["files"].items():
        (mirror / name).write_bytes(data)
    a = adapter(*dataset["sources"][:3])
    res = fetch_dataset("_t", str(tmp_path / "s"), mirror=mirror.as_uri(), adapter=a, checksums_dir=tmp_path / "reg")
    assert res.downloaded == ["ann.zip", "img.tar.gz", "list.txt"]
    assert server.log() == []


def test_manual_dir_is_verified_like_a_download(server: Server, dataset: dict, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    a = adapter(*dataset["sources"][:3])
    save_checksums("_t", [Checksum(s.url, len(dataset["files"][s.filename]), sha(dataset["files"][s.filename]),
                                   s.filename) for s in a.sources], reg)
    manual = tmp_path / "manual"
    manual.mkdir()
    for name, data in dataset["files"].items():
        (manual / name).write_bytes(data)
    res = fetch_dataset("_t", str(tmp_path / "s"), manual_dir=str(manual), adapter=a, checksums_dir=reg)
    assert [f.action for f in res.files] == ["manual"] * 3 and res.warnings == ()
    assert server.log() == []
    assert (Path(res.source_dir) / "annotations" / "val.json").read_bytes() == b'{"n": 1}'
    (manual / "list.txt").write_bytes(b"truncated")
    with pytest.raises(ChecksumMismatchError, match="manual/list.txt: expected sha256"):
        fetch_dataset("_t", str(tmp_path / "s2"), manual_dir=str(manual), adapter=a, checksums_dir=reg)
    assert (manual / "list.txt").read_bytes() == b"truncated"  # the user's file is left alone


def test_required_source_missing_everywhere_is_an_error(server: Server, dataset: dict, tmp_path: Path) -> None:
    src = Source("gone", f"{dataset['base']}/gone.zip", "gone.zip", extract="zip")
    with pytest.raises(DownloadRefusedError, match=r"required source gone \(gone.zip\) not found.*HTTP 404") as err:
        fetch_dataset("_t", str(tmp_path / "s"), adapter=adapter(src), checksums_dir=tmp_path / "reg")
    assert err.value.status == 404
    assert "--manual-dir" in str(err.value)


def test_unsafe_archive_is_refused_and_nothing_reaches_the_tree(server: Server, dataset: dict, tmp_path: Path) -> None:
    evil = write_zip(tmp_path / "evil.zip", {"annotations/ok.json": b"{}", "../../escaped.txt": b"x"}).read_bytes()
    server.put(f"{dataset['prefix']}/evil.zip", evil)
    src = Source("evil", f"{dataset['base']}/evil.zip", "evil.zip", extract="zip")
    with pytest.raises(UnsafeArchiveError, match="escapes"):
        fetch_dataset("_t", str(tmp_path / "s"), adapter=adapter(src), checksums_dir=tmp_path / "reg")
    raw = tmp_path / "s" / "raw" / "_t"
    assert list((raw / "extracted").iterdir()) == []
    assert not (raw / "state").exists()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_deleted_extracted_tree_is_rebuilt_without_downloading(server: Server, dataset: dict, tmp_path: Path) -> None:
    import shutil

    a = adapter(dataset["sources"][0])
    root = tmp_path / "s"
    res = fetch_dataset("_t", str(root), adapter=a, checksums_dir=tmp_path / "reg")
    shutil.rmtree(Path(res.source_dir) / "annotations")
    n = len(server.log())
    again = fetch_dataset("_t", str(root), adapter=a, checksums_dir=tmp_path / "reg")
    assert [(f.action, f.extraction) for f in again.files] == [("reused", "extracted")]
    assert len(server.log()) == n
    assert (Path(again.source_dir) / "annotations" / "train.json").is_file()


def test_stray_file_without_index_is_hashed_before_it_is_trusted(server: Server, dataset: dict, tmp_path: Path) -> None:
    a = adapter(dataset["sources"][2])
    reg = tmp_path / "reg"
    data = dataset["files"]["list.txt"]
    save_checksums("_t", [Checksum(a.sources[0].url, len(data), sha(data), "list.txt")], reg)
    downloads = tmp_path / "s" / "raw" / "_t" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "list.txt").write_bytes(b"x\ny\nz\n")  # same size, other bytes, no index entry
    res = fetch_dataset("_t", str(tmp_path / "s"), adapter=a, checksums_dir=reg)
    assert res.files[0].action == "downloaded"
    assert (downloads / "list.txt").read_bytes() == data
    stray = sha(b"x\ny\nz\n")
    assert (downloads / f"list.txt.bad-{stray[:12]}").read_bytes() == b"x\ny\nz\n"


def test_adapter_and_registry_disagreeing_is_a_config_error(tmp_path: Path) -> None:
    src = Source("a", "http://127.0.0.1:9/a.zip", "a.zip", sha256="b" * 64)
    save_checksums("_t", [Checksum(src.url, 1, "c" * 64, "a.zip")], tmp_path / "reg")
    with pytest.raises(ConfigError, match="registry says sha256 c+ .* adapter declares b+"):
        fetch_dataset("_t", str(tmp_path / "s"), adapter=adapter(src), checksums_dir=tmp_path / "reg")


def test_non_local_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fetch needs a local root"):
        fetch_dataset("_t", "memory://bucket/root", adapter=adapter(), checksums_dir=tmp_path)


def test_unreachable_optional_source_is_skipped_but_a_required_one_raises(server: Server, dataset: dict, tmp_path: Path) -> None:
    from schemas.errors import TransientFetchError
    from tasks.fetch.download import RetryPolicy

    url = dataset["base"].replace("/plain/", "/always503/") + "/list.txt"
    retry = RetryPolicy(attempts=2, backoff_initial_s=0.0)
    optional = Source("list", url, "list.txt", required=False)
    res = fetch_dataset("_t", str(tmp_path / "s"), adapter=adapter(optional), checksums_dir=tmp_path / "reg", retry=retry)
    assert [f.action for f in res.files] == ["skipped"]
    assert "optional source list (list.txt) is unreachable, skipped" in res.warnings[0] and "HTTP 503" in res.warnings[0]
    required = Source("list", url, "list.txt")
    with pytest.raises(TransientFetchError, match="failed 2 times"):
        fetch_dataset("_t", str(tmp_path / "s"), adapter=adapter(required), checksums_dir=tmp_path / "reg", retry=retry)
    assert [e["status"] for e in server.log()] == [503] * 4

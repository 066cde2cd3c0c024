"""fetch_dataset under the faults of the December campaign: a corrupt download is fetched again (#54),
every location tried is named (#58), zip bombs are refused (#57), a full disk says so (#61).

Real server on 127.0.0.1, real files, a real small tmpfs where the machine lets us mount one and a
real file size limit (``RLIMIT_FSIZE``) in a subprocess where it does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.errors import CorruptArchiveError, DiskFullError, TransientFetchError, UnsafeArchiveError
from tasks.datasets.base import Source
from tasks.fetch.archive import ExtractionLimits
from tasks.fetch.download import RetryPolicy
from tasks.fetch.resolve import fetch_dataset
from tests.ports import free_port

from .archives import write_tar, write_zip
from .conftest import Server
from .test_archive import counter_text
from .test_resolve import adapter

REPO = Path(__file__).resolve().parents[2]
NO_WAIT = RetryPolicy(attempts=2, backoff_initial_s=0.0)


def index_filenames(root: Path, dataset: str = "_t") -> list[str]:
    data = json.loads((root / "raw" / dataset / "index.json").read_text())
    return sorted(e["filename"] for e in data["by_sha256"].values())


# --- #54: a download that cannot be extracted is not reused forever -----------------------------


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_corrupt_archive_is_set_aside_and_the_next_fetch_downloads_again(
    server: Server, tmp_path: Path, kind: str
) -> None:
    name = "img.tar.gz" if kind == "tar" else "img.zip"
    members = {"images/a.bin": os.urandom(200_000), "images/b.txt": b"b"}
    made = tmp_path / name
    if kind == "tar":
        write_tar(made, list(members.items()))
    else:
        write_zip(made, members)
    good = made.read_bytes()
    bad = good[:-5000] if kind == "tar" else good.replace(members["images/a.bin"][1000:1100], b"\0" * 100)
    assert len(bad) < len(good) or kind == "zip"
    served = f"{tmp_path.name}/{name}"
    server.put(served, bad)  # no registered checksum: only the extraction can tell
    src = Source("images", server.url("plain", served), name, extract=kind)  # type: ignore[arg-type]
    root = tmp_path / "s"
    with pytest.raises(CorruptArchiveError) as err:
        fetch_dataset("_t", str(root), adapter=adapter(src), checksums_dir=tmp_path / "reg")
    downloads = root / "raw" / "_t" / "downloads"
    aside = [p for p in downloads.iterdir() if p.name.startswith(f"{name}.bad-")]
    assert [p.read_bytes() for p in aside] == [bad]
    assert not (downloads / name).exists() and index_filenames(root) == []
    assert str(aside[0]) in str(err.value) and "downloaded again by the next fetch" in err.value.hint
    assert not list((root / "raw" / "_t" / "extracted").iterdir())

    server.put(served, good)  # the mirror is repaired (or the user points --mirror at a good one)
    n = len(server.log())
    res = fetch_dataset("_t", str(root), adapter=adapter(src), checksums_dir=tmp_path / "reg")
    assert [(e["path"], e["status"], e["body_bytes"]) for e in server.log()[n:]] == [
        (f"/plain/{served}", 200, len(good))
    ]  # a real request, the whole file
    assert [(f.action, f.extraction) for f in res.files] == [("downloaded", "extracted")]
    assert (Path(res.source_dir) / "images" / "a.bin").read_bytes() == members["images/a.bin"]
    assert index_filenames(root) == [name]


def test_unsafe_archive_is_set_aside_too(server: Server, tmp_path: Path) -> None:
    served = f"{tmp_path.name}/ann.zip"
    server.put(served, write_zip(tmp_path / "evil.zip", {"ok.json": b"{}", "../../x": b"evil"}).read_bytes())
    src = Source("ann", server.url("plain", served), "ann.zip", extract="zip")
    root = tmp_path / "s"
    with pytest.raises(UnsafeArchiveError, match="escapes"):
        fetch_dataset("_t", str(root), adapter=adapter(src), checksums_dir=tmp_path / "reg")
    server.put(served, write_zip(tmp_path / "good.zip", {"ok.json": b"{}"}).read_bytes())
    res = fetch_dataset("_t", str(root), adapter=adapter(src), checksums_dir=tmp_path / "reg")
    assert res.downloaded == ["ann.zip"] and (Path(res.source_dir) / "ok.json").is_file()


# --- #58: say which URL failed and how ------------------------------------------------------------


def test_mirror_404_and_unreachable_owner_are_both_named(server: Server, tmp_path: Path) -> None:
    owner = f"http://127.0.0.1:{free_port()}/zips/val2017.zip"
    src = Source("images_val", owner, "val2017.zip", extract="zip")
    mirror = f"{server.base}/gone/{tmp_path.name}"
    with pytest.raises(TransientFetchError) as err:
        fetch_dataset("_t", str(tmp_path / "s"), mirror=mirror, adapter=adapter(src),
                      checksums_dir=tmp_path / "reg", retry=NO_WAIT)
    msg = err.value.message
    assert "required source images_val (val2017.zip) could not be fetched" in msg
    assert f"mirror {mirror}/val2017.zip: HTTP 404" in msg
    assert f"owner {owner}: " in msg and "failed 2 times" in msg and "Connection refused" in msg
    assert msg.index("mirror") < msg.index("owner")
    assert msg.count(owner) == 1  # each URL named once, with its own error
    assert f"{mirror}/val2017.zip: the file is not there" in err.value.hint and "could not be reached" in err.value.hint
    assert [(e["path"], e["status"]) for e in server.log()] == [(f"/gone/{tmp_path.name}/val2017.zip", 404)]


# --- #57: zip bombs through the whole fetch -------------------------------------------------------


def test_zip_bomb_is_refused_by_default_and_the_total_cap_is_a_parameter(server: Server, tmp_path: Path) -> None:
    served = f"{tmp_path.name}/val2017.zip"
    server.put(served, write_zip(tmp_path / "bomb.zip", {"val2017/zeros.bin": bytes(6_000_000)}).read_bytes())
    src = Source("images_val", server.url("plain", served), "val2017.zip", extract="zip")
    root = tmp_path / "s"
    with pytest.raises(UnsafeArchiveError, match=r"past the 100:1 compression ratio limit"):
        fetch_dataset("_t", str(root), adapter=adapter(src), checksums_dir=tmp_path / "reg")
    assert not list((root / "raw" / "_t" / "extracted").iterdir())
    trusted = ExtractionLimits(max_ratio=10_000.0, max_total_bytes=5_000_000)
    with pytest.raises(UnsafeArchiveError, match="uncompressed size passes 5000000 bytes"):
        fetch_dataset("_t", str(root), adapter=adapter(src), checksums_dir=tmp_path / "reg", limits=trusted)
    res = fetch_dataset("_t", str(root), adapter=adapter(src), checksums_dir=tmp_path / "reg",
                        limits=ExtractionLimits(max_ratio=10_000.0))
    assert (Path(res.source_dir) / "val2017" / "zeros.bin").stat().st_size == 6_000_000


# --- #61: no room to extract or download ----------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs (needs root and CAP_SYS_ADMIN; skipped with the reason otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def test_disk_full_while_extracting_names_the_filesystem_and_keeps_the_download(small_fs: Path, tmp_path: Path) -> None:
    data = counter_text(3_000_000)  # ~650 kB zip that expands to 3 MB: the download fits, the tree does not
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    write_zip(mirror / "val2017.zip", {"val2017/a.txt": data})
    src = Source("images_val", "http://images.invalid/val2017.zip", "val2017.zip", extract="zip")
    with pytest.raises(DiskFullError) as err:
        fetch_dataset("_t", str(small_fs / "root"), mirror=mirror.as_uri(), adapter=adapter(src),
                      checksums_dir=tmp_path / "reg")
    exc = err.value
    assert exc.filesystem == str(small_fs)
    assert "no room while extracting val2017.zip" in exc.message and "the filesystem is full" in exc.message
    assert f"filesystem {small_fs}" in exc.message and exc.needed_bytes is not None and exc.needed_bytes > 0
    assert f"free space on {small_fs}" in exc.hint and "--root" in exc.hint and "archive is kept" in exc.hint
    assert "damaged" not in str(exc)
    raw = small_fs / "root" / "raw" / "_t"
    assert (raw / "downloads" / "val2017.zip").is_file() and index_filenames(small_fs / "root") == ["val2017.zip"]
    assert list((raw / "extracted").iterdir()) == [] and not list(raw.glob(".tmp-extract-*"))

    # Room made: the kept download is extracted without being fetched again.
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_fs)], check=True, capture_output=True, timeout=30)
    res = fetch_dataset("_t", str(small_fs / "root"), mirror=mirror.as_uri(), adapter=adapter(src),
                        checksums_dir=tmp_path / "reg")
    assert [(f.action, f.extraction) for f in res.files] == [("reused", "extracted")]
    assert (Path(res.source_dir) / "val2017" / "a.txt").read_bytes() == data


def test_disk_full_while_downloading_is_not_retried(small_fs: Path, server: Server, tmp_path: Path) -> None:
    served = f"{tmp_path.name}/big.bin"
    server.put(served, os.urandom(3_000_000))
    src = Source("big", server.url("plain", served), "big.bin")
    with pytest.raises(DiskFullError) as err:
        fetch_dataset("_t", str(small_fs / "root"), adapter=adapter(src), checksums_dir=tmp_path / "reg",
                      retry=NO_WAIT)
    assert f"no room while downloading {src.url}" in err.value.message and err.value.filesystem == str(small_fs)
    assert "will be resumed" in err.value.hint
    assert len(server.log()) == 1  # not retried: the same disk would fill again


_FSIZE_SCRIPT = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from schemas.errors import PosepipeError
    from tasks.datasets.base import Source
    from tasks.fetch.download import RetryPolicy
    from tasks.fetch.resolve import fetch_dataset
    from tests.fetch.test_resolve import adapter

    root, mirror, url, filename, extract, limit = sys.argv[2:8]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    src = Source("s", url, filename, extract=extract or None)
    try:
        fetch_dataset("_t", root, mirror=mirror or None, adapter=adapter(src), checksums_dir=root + "/reg",
                      retry=RetryPolicy(attempts=2, backoff_initial_s=0.0))
    except PosepipeError as exc:
        print(json.dumps({"type": type(exc).__name__, "message": exc.message, "hint": exc.hint,
                          "filesystem": getattr(exc, "filesystem", None), "needed": getattr(exc, "needed_bytes", None)}))
    else:
        print(json.dumps({"type": None}))
    """
)


def run_with_file_size_limit(root: Path, mirror: str, url: str, filename: str, extract: str, limit: int) -> dict:
    """fetch_dataset in a subprocess whose files may not grow past ``limit`` bytes (``ulimit -f``)."""
    proc = subprocess.run(
        [sys.executable, "-c", _FSIZE_SCRIPT, str(REPO), str(root), mirror, url, filename, extract, str(limit)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_file_size_limit_while_extracting_is_reported_as_no_room(tmp_path: Path) -> None:
    """Needs no mount: EFBIG from RLIMIT_FSIZE takes the same path as ENOSPC."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    write_zip(mirror / "val2017.zip", {"val2017/a.txt": counter_text(3_000_000)})  # ~650 kB -> 3 MB
    root = tmp_path / "root"
    got = run_with_file_size_limit(root, mirror.as_uri(), "http://images.invalid/val2017.zip", "val2017.zip", "zip",
                                   1_000_000)
    assert got["type"] == "DiskFullError", got
    assert "no room while extracting val2017.zip" in got["message"] and "file size limit" in got["message"]
    assert "ulimit -f" in got["hint"] and "archive is kept" in got["hint"] and got["needed"] > 0
    assert "damaged" not in got["message"] + got["hint"]
    raw = root / "raw" / "_t"
    assert (raw / "downloads" / "val2017.zip").is_file()
    assert list((raw / "extracted").iterdir()) == [] and not list(raw.glob(".tmp-extract-*"))


def test_file_size_limit_while_downloading_keeps_the_part(server: Server, tmp_path: Path) -> None:
    served = f"{tmp_path.name}/big.bin"
    server.put(served, os.urandom(1_500_000))
    root = tmp_path / "root"
    got = run_with_file_size_limit(root, "", server.url("plain", served), "big.bin", "", 1_000_000)
    assert got["type"] == "DiskFullError", got
    assert "no room while downloading" in got["message"] and got["needed"] == 500_000
    assert "1000000 bytes are kept" in got["hint"]
    assert (root / "raw" / "_t" / "downloads" / "big.bin.part").stat().st_size == 1_000_000
    assert len(server.log()) == 1

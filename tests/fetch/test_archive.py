"""tasks/fetch/archive.py: good archives unpack exactly; malicious ones are refused with nothing written."""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from schemas.errors import CorruptArchiveError, FetchError, UnsafeArchiveError
from tasks.fetch.archive import ExtractionLimits, safe_extract

from .archives import RarMember, rar5_stored, tar_entry, write_tar, write_zip, write_zip_symlink


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: files -> bytes, symlinks -> 'link:<target>', folders -> 'dir'."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = p.read_bytes()
    return out


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """(work folder, target folder inside it); the work folder is what 'outside' is checked against."""
    work = tmp_path / "work"
    work.mkdir()
    return work, work / "out" / "target"


def assert_nothing_written(work: Path, archive: Path) -> None:
    """After a refusal only the archive itself remains (no target, no temp folder, no escaped file)."""
    assert sorted(p.name for p in work.rglob("*")) == [archive.name]
    assert not (work.parent / "x").exists() and not (work.parent / "evil.txt").exists()


def assert_refused(
    archive: Path, target: Path, kind: str, match: str, work: Path, limits: ExtractionLimits | None = None
) -> None:
    """``safe_extract`` refuses ``archive`` as unsafe (message matching ``match``) and writes nothing."""
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(archive, target, kind, limits)
    assert_nothing_written(work, archive)


GOOD = {"annotations/a.json": b'{"a": 1}', "val2017/000001.jpg": b"\xff\xd8jpeg", "README": b"hi"}


def test_zip_extracts_exactly(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_zip(work / "good.zip", GOOD)
    res = safe_extract(archive, target, "zip")
    assert tree(target) == {"annotations": "dir", "val2017": "dir", **GOOD}
    assert (res.members, res.total_bytes, res.top_level) == (3, sum(map(len, GOOD.values())), ("README", "annotations", "val2017"))
    assert [p.name for p in target.parent.iterdir()] == ["target"]  # the temp folder is gone


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_every_compression_extracts_exactly(sandbox: tuple[Path, Path], mode: str) -> None:
    work, target = sandbox
    members: list[tarfile.TarInfo | tuple[str, bytes]] = [tar_entry("annotations", tarfile.DIRTYPE), *GOOD.items()]
    members.append(tar_entry("annotations/link.json", tarfile.SYMTYPE, "a.json"))
    members.append(tar_entry("val2017/hard.jpg", tarfile.LNKTYPE, "val2017/000001.jpg"))
    archive = write_tar(work / "good.tar", members, mode)
    safe_extract(archive, target, "tar")
    got = tree(target)
    assert got["annotations/link.json"] == "link:a.json"
    assert got["val2017/hard.jpg"] == GOOD["val2017/000001.jpg"]
    assert (target / "annotations/link.json").read_bytes() == GOOD["annotations/a.json"]
    assert {k: v for k, v in got.items() if k in GOOD} == GOOD


def test_rar5_stored_extracts_exactly(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = rar5_stored(
        work / "good.rar",
        [RarMember("d", is_dir=True), RarMember("d/x.txt", b"hello rar"), RarMember("d/l", symlink_to="x.txt")],
    )
    res = safe_extract(archive, target, "rar")
    assert tree(target) == {"d": "dir", "d/x.txt": b"hello rar", "d/l": "link:x.txt"}
    assert res.total_bytes == 9


def test_extraction_replaces_earlier_entries_and_merges_with_others(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    safe_extract(write_zip(work / "v1.zip", {"images/old.jpg": b"1"}), target, "zip")
    safe_extract(write_zip(work / "ann.zip", {"annotations/a.json": b"{}"}), target, "zip")
    safe_extract(write_zip(work / "v2.zip", {"images/new.jpg": b"2"}), target, "zip", replace=["images"])
    assert tree(target) == {"images": "dir", "images/new.jpg": b"2", "annotations": "dir", "annotations/a.json": b"{}"}


# --- malicious archives ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "a/../../x", "..\\..\\x"])
def test_zip_slip_is_refused(sandbox: tuple[Path, Path], name: str) -> None:
    work, target = sandbox
    archive = write_zip(work / "slip.zip", {"ok.txt": b"fine", name: b"evil"})
    with pytest.raises(UnsafeArchiveError, match="escapes the target folder") as err:
        safe_extract(archive, target, "zip")
    assert "slip.zip" in str(err.value) and repr(name) in str(err.value)
    assert_nothing_written(work, archive)


def test_tar_slip_is_refused(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_tar(work / "slip.tar.gz", [("ok.txt", b"fine"), ("../../x", b"evil")])
    assert_refused(archive, target, "tar", "escapes", work)


@pytest.mark.parametrize("name", ["/tmp/evil.txt", "C:/evil.txt", "\\evil.txt"])
def test_absolute_paths_are_refused(sandbox: tuple[Path, Path], name: str) -> None:
    work, target = sandbox
    archive = write_zip(work / "abs.zip", {name: b"evil"})
    assert_refused(archive, target, "zip", "absolute path", work)


def test_tar_absolute_path_is_refused(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_tar(work / "abs.tar", [(str(work.parent / "evil.txt"), b"evil")], "w")
    assert_refused(archive, target, "tar", "absolute path", work)


def test_zip_symlink_to_root_is_refused(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_zip_symlink(work / "link.zip", "root", "/", {"ok.txt": b"fine"})
    assert_refused(archive, target, "zip", "symlink 'root' -> '/' is absolute", work)


def test_tar_symlink_to_root_then_write_through_it_is_refused(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_tar(work / "link.tar", [tar_entry("root", tarfile.SYMTYPE, "/"), ("root/tmp/evil.txt", b"evil")], "w")
    assert_refused(archive, target, "tar", "absolute", work)


def test_relative_symlink_climbing_out_is_refused(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_tar(work / "up.tar", [tar_entry("a/up", tarfile.SYMTYPE, "../../..")], "w")
    assert_refused(archive, target, "tar", "points outside", work)


def test_symlink_chain_escaping_through_another_link_is_refused(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    # Each target is harmless read lexically: b/c -> .. is the root itself (allowed), a -> b/c and d -> a/.. also read as inside; but through
    # the links a is the root, so d = a/.. is the folder *above* the root.
    archive = write_tar(
        work / "chain.tar",
        [
            tar_entry("b", tarfile.DIRTYPE),
            tar_entry("b/c", tarfile.SYMTYPE, ".."),
            tar_entry("a", tarfile.SYMTYPE, "b/c"),
            tar_entry("d", tarfile.SYMTYPE, "a/.."),
        ],
        "w",
    )
    assert_refused(archive, target, "tar", "resolves outside the target folder through other links", work)


def test_hard_link_outside_is_refused(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_tar(work / "hard.tar", [tar_entry("passwd", tarfile.LNKTYPE, "/etc/passwd")], "w")
    assert_refused(archive, target, "tar", "hard link 'passwd' -> '/etc/passwd' points outside", work)


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_device_nodes_are_refused(sandbox: tuple[Path, Path], kind: bytes) -> None:
    work, target = sandbox
    archive = write_tar(work / "dev.tar", [("ok.txt", b"fine"), tar_entry("null", kind, devmajor=1, devminor=3)], "w")
    assert_refused(archive, target, "tar", "'null' is a device node", work)


def test_zip_bomb_over_the_size_limit_is_refused(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_zip(work / "bomb.zip", {f"zeros{i}.bin": bytes(4_000_000) for i in range(4)})
    assert archive.stat().st_size < 100_000  # 16 MB of zeros compress to almost nothing
    no_ratio = 1e9  # this test is about the total cap; the ratio limit has its own tests
    limits = ExtractionLimits(max_total_bytes=10_000_000, max_ratio=no_ratio)
    assert_refused(archive, target, "zip", "uncompressed size passes 10000000 bytes .*'zeros2.bin'", work, limits)
    safe_extract(archive, target, "zip", ExtractionLimits(max_total_bytes=16_000_000, max_ratio=no_ratio))  # at the limit
    assert sum(p.stat().st_size for p in target.iterdir()) == 16_000_000


def test_zip_header_lying_about_size_is_caught_while_writing(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_zip(work / "liar.zip", {"big.bin": bytes(2_000_000)})
    raw = bytearray(archive.read_bytes())
    # Patch the declared uncompressed size (local header offset 22, central directory offset 24) to 10 bytes.
    raw[22:26] = (10).to_bytes(4, "little")
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    with pytest.raises((UnsafeArchiveError, CorruptArchiveError)):
        safe_extract(archive, target, "zip", ExtractionLimits(max_total_bytes=1000))
    assert_nothing_written(work, archive)


def test_member_count_limit(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_zip(work / "many.zip", {f"f{i}": b"" for i in range(11)})
    assert_refused(archive, target, "zip", "more than 10 members", work, ExtractionLimits(max_members=10))


def test_rar_slip_and_symlink_to_root_are_refused(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    slip = rar5_stored(work / "slip.rar", [RarMember("ok.txt", b"fine"), RarMember("../../x", b"evil")])
    with pytest.raises(UnsafeArchiveError, match="escapes"):
        safe_extract(slip, target, "rar")
    link = rar5_stored(work / "link.rar", [RarMember("root", symlink_to="/")])
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        safe_extract(link, target, "rar")
    assert sorted(p.name for p in work.iterdir()) == ["link.rar", "slip.rar"]


def test_refused_archive_leaves_an_existing_tree_untouched(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    safe_extract(write_zip(work / "good.zip", GOOD), target, "zip")
    before = tree(target)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(write_zip(work / "slip.zip", {"annotations/a.json": b"new", "../x": b"evil"}), target, "zip",
                     replace=["annotations"])
    assert tree(target) == before


@pytest.mark.parametrize(("kind", "suffix"), [("zip", "zip"), ("tar", "tar.gz"), ("rar", "rar")])
def test_corrupt_archives_raise_a_clear_error(sandbox: tuple[Path, Path], kind: str, suffix: str) -> None:
    work, target = sandbox
    archive = work / f"junk.{suffix}"
    archive.write_bytes(b"this is not an archive at all" * 10)
    with pytest.raises(CorruptArchiveError, match="junk"):
        safe_extract(archive, target, kind)  # type: ignore[arg-type]
    assert_nothing_written(work, archive)


def test_truncated_tar_gz_is_corrupt(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_tar(work / "t.tar.gz", [("big.bin", os.urandom(200_000))])
    archive.write_bytes(archive.read_bytes()[:-5000])
    with pytest.raises(CorruptArchiveError):
        safe_extract(archive, target, "tar")
    assert_nothing_written(work, archive)


def test_crc_error_in_zip_is_corrupt(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_zip(work / "crc.zip", {"a.txt": b"A" * 1000}, compression=zipfile.ZIP_STORED)
    raw = bytearray(archive.read_bytes())
    raw[raw.find(b"AAAA")] = ord("B")
    archive.write_bytes(bytes(raw))
    with pytest.raises(CorruptArchiveError, match="cannot read member 'a.txt'"):
        safe_extract(archive, target, "zip")
    assert_nothing_written(work, archive)


def test_unknown_kind_and_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="archive not found"):
        safe_extract(tmp_path / "nope.zip", tmp_path / "t", "zip")
    (tmp_path / "a.7z").write_bytes(b"x")
    with pytest.raises(FetchError, match="unknown archive kind '7z'"):
        safe_extract(tmp_path / "a.7z", tmp_path / "t", "7z")  # type: ignore[arg-type]


def test_rar_decoder_tool_is_installed() -> None:
    """Compressed RAR members (UCF101/UCF11) need ``unar`` (Debian package ``unar``, installed by the Makefile)."""
    import rarfile

    try:
        rarfile.tool_setup(unrar=False, unar=True, bsdtar=False, sevenzip=False, sevenzip2=False, force=True)
        assert rarfile.CURRENT_SETUP.setup["open_cmd"][0] == "UNAR_TOOL"
    finally:
        rarfile.tool_setup(force=True)  # back to rarfile's own choice


# --- compression-ratio limit (fault #57) --------------------------------------------------------


def counter_text(n_bytes: int) -> bytes:
    """Text that deflates about 4.6:1, like real annotation files (well under the default 100:1)."""
    return b"".join(b"%09d\n" % i for i in range(n_bytes // 10))


def test_default_ratio_refuses_a_1000_to_1_member_before_writing(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_zip(work / "bomb.zip", {"val2017/ok.txt": b"fine", "val2017/zeros.bin": bytes(8_000_000)})
    packed = zipfile.ZipFile(archive).getinfo("val2017/zeros.bin").compress_size
    assert 8_000_000 / packed > 900  # deflate's near-maximum ratio
    with pytest.raises(UnsafeArchiveError, match=r"'val2017/zeros.bin' declares 8000000 bytes .*past the 100:1") as err:
        safe_extract(archive, target, "zip")
    assert "--max-compression-ratio" in str(err.value) and "POSEPIPE_MAX_COMPRESSION_RATIO" in str(err.value)
    assert_nothing_written(work, archive)


def test_tar_gz_bomb_is_refused_by_the_whole_archive_ratio(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox  # tar records no compressed size per member: only the archive's size tells
    archive = write_tar(work / "bomb.tar.gz", [(f"zeros{i}.bin", bytes(2_000_000)) for i in range(3)])
    assert_refused(archive, target, "tar", r"6000000 uncompressed bytes from a \d+-byte archive .*past the 100:1", work)


def test_lying_compressed_size_does_not_pass_the_ratio(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_zip(work / "liar.zip", {"zeros.bin": bytes(4_000_000)})
    raw = bytearray(archive.read_bytes())
    # Declare the member's compressed size as 4 MB (1:1) in the central directory (offset 20).
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 20 : cd + 24] = (4_000_000).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    assert zipfile.ZipFile(archive).getinfo("zeros.bin").compress_size == 4_000_000
    assert_refused(archive, target, "zip", r"4000000 uncompressed bytes from a \d+-byte archive", work)


def test_ratio_limit_is_a_setting_and_real_data_passes_the_default(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    data = counter_text(3_000_000)
    archive = write_zip(work / "text.zip", {"a.txt": data})
    limits = ExtractionLimits(max_ratio=3.0, ratio_min_bytes=100_000)
    assert_refused(archive, target, "zip", "compression ratio limit", work, limits)
    # The same bytes pass the default ratio: real, compressible data is not refused.
    res = safe_extract(archive, target, "zip")
    assert (target / "a.txt").read_bytes() == data and res.total_bytes == len(data)


@pytest.mark.parametrize(
    ("size", "packed", "blocks", "why"),
    [
        (3_000, 1_000, [2_000, 2_000], "holds more than the 3000 bytes its header declares"),
        (10**9, 1_000, [50_000, 60_000], r"expands past 100:1 \(110000 bytes from 1000 compressed\) while writing"),
        (10**9, None, [400_000, 400_000], "more than 100 times the archive's 5000 bytes written"),
    ],
)
def test_limits_are_enforced_on_the_bytes_as_they_are_written(
    size: int, packed: int | None, blocks: list[int], why: str
) -> None:
    """What a lying header cannot hide: the write phase counts real bytes, whatever was declared."""
    from tasks.fetch.archive import _Budget, _Member

    member = _Member("m.bin", Path("m.bin"), "file", size, None, None, packed)  # type: ignore[arg-type]
    budget = _Budget(ExtractionLimits(ratio_min_bytes=10_000), declared=size, archive_bytes=5_000)
    budget.add(Path("a.zip"), member, 0, blocks[0])
    with pytest.raises(UnsafeArchiveError, match=why):
        budget.add(Path("a.zip"), member, blocks[0], blocks[1])


def test_small_very_compressible_member_is_exempt(sandbox: tuple[Path, Path]) -> None:
    work, target = sandbox
    archive = write_zip(work / "small.zip", {"blank.txt": b" " * 500_000})  # ~1000:1 but only 500 kB
    safe_extract(archive, target, "zip")
    assert (target / "blank.txt").stat().st_size == 500_000

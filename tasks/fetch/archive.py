"""Safe extraction of zip, tar (plain, gz, bz2, xz) and rar archives.

Nothing from an archive is trusted. Extraction runs in two phases:

1. **Check** every member before writing a byte: its name must stay inside the target folder
   (no absolute path, no drive letter, no ``..`` that climbs out); symlinks and hard links must
   point inside it; device nodes, FIFOs, sockets and Windows junctions are refused; the member count
   and the declared uncompressed total must stay under :class:`ExtractionLimits` (zip bombs), and
   so must the compression ratio: per member where the format records a compressed size (zip,
   rar), and for the whole archive (declared uncompressed bytes / archive file size; this also
   catches members that share one compressed stream, and tar.gz, which has no per-member size).
2. **Write** into a fresh temporary folder beside the target: regular files first (bytes counted
   as they are written, so a lying header cannot pass the size or ratio limits: a member may not
   write more than it declares, nor more than ``max_ratio`` times its compressed size, and the
   archive may not write more than ``max_ratio`` times its own size), then hard links, then
   symlinks, so no write ever goes through a link. Every created symlink is then resolved with
   ``realpath`` and must land inside the temporary folder (this catches link chains). Only then
   are the top-level entries renamed into the target folder; any failure deletes the temporary
   folder, so a refused archive leaves nothing behind, inside or outside the target.

Our own writer is used for every format (``tarfile.extract``/``ZipFile.extract`` are never
called), so the same rules hold for all of them. RAR is read with the maintained ``rarfile``
library: it parses headers itself (member names, types and links are checked before any
decoding) and reads *stored* members directly; compressed members are decoded by an external
tool that ``rarfile`` finds on ``PATH``. We use ``unar`` from the Debian package ``unar`` (The
Unarchiver, free software): it reads RAR 1.5 to 5 (UCF101/UCF11 ship as RAR), streams a single
member to stdout as ``rarfile`` needs (``rarfile.UNAR_TOOL``), and needs no non-free ``unrar``.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal

from schemas.errors import CorruptArchiveError, FetchError, UnsafeArchiveError
from storage.space import is_no_room, no_room_error
from tasks.common import safe_relative_path

if TYPE_CHECKING:
    from schemas.settings import Settings

ArchiveKind = Literal["zip", "tar", "rar"]
MemberKind = Literal["file", "dir", "symlink", "hardlink", "special"]
_MAX_LINK_TARGET_BYTES = 4096


DEFAULT_MAX_TOTAL_BYTES = 64 * 1024**3
DEFAULT_MAX_RATIO = 100.0
_LIMIT_HINT = (
    "refused as a possible zip bomb; if the archive is trusted, raise the limit "
    "(`posepipe fetch --max-extract-bytes/--max-compression-ratio`, env POSEPIPE_MAX_EXTRACT_BYTES/"
    "POSEPIPE_MAX_COMPRESSION_RATIO)"
)


@dataclass(frozen=True)
class ExtractionLimits:
    """Bounds that refuse zip bombs, checked on the declared sizes first and again while writing.

    Real dataset archives stay far below the ratio limit (JSON annotations deflate about 5-20:1,
    JPEG/video members about 1:1); deflate's own maximum is about 1030:1.

    Attributes:
        max_members: Most members (files, folders, links) an archive may hold.
        max_total_bytes: Most uncompressed bytes, declared and actually written.
        max_ratio: Most uncompressed bytes per compressed byte, per member (zip, rar) and for the
            whole archive (uncompressed total / archive file size).
        ratio_min_bytes: Members (and archives) expanding to at most this many bytes are exempt from
            the ratio check (a small, very compressible file is harmless).
    """

    max_members: int = 2_000_000
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    max_ratio: float = DEFAULT_MAX_RATIO
    ratio_min_bytes: int = 1 << 20

    @classmethod
    def from_settings(cls, settings: Settings) -> ExtractionLimits:
        """The limits ``settings`` ask for (``max_extract_bytes``, ``max_compression_ratio``)."""
        return cls(max_total_bytes=settings.max_extract_bytes, max_ratio=settings.max_compression_ratio)


@dataclass(frozen=True)
class ExtractResult:
    """What an extraction wrote.

    Attributes:
        archive: The archive.
        target: Folder it was unpacked into.
        members: Members written (files, folders, links).
        total_bytes: Bytes of regular files written.
        top_level: Names of the entries created directly under ``target``, sorted.
    """

    archive: Path
    target: Path
    members: int
    total_bytes: int
    top_level: tuple[str, ...]


@dataclass(frozen=True)
class _Member:
    name: str
    rel: PurePosixPath
    kind: MemberKind
    size: int
    link: str | None
    opener: Callable[[], IO[bytes]] | None
    packed: int | None = None  # compressed bytes, where the format records them per member (zip, rar)


def safe_extract(
    archive: Path,
    target: Path,
    kind: ArchiveKind,
    limits: ExtractionLimits | None = None,
    replace: Iterable[str] = (),
) -> ExtractResult:
    """Unpack ``archive`` into ``target`` after checking every member (see the module docstring).

    Args:
        archive: Archive file.
        target: Folder to unpack into (created). Entries of the archive replace same-named entries.
        kind: ``zip``, ``tar`` (any of plain/gz/bz2/xz, detected) or ``rar``.
        limits: Member count and uncompressed size bounds (default :class:`ExtractionLimits`).
        replace: Top-level names under ``target`` left by an earlier extraction of the same source;
            they are removed just before the new entries are renamed in.

    Returns:
        What was written.

    Raises:
        UnsafeArchiveError: A member escapes, is a device/junction, a link points outside, or a limit
            (members, total bytes, compression ratio) is passed; names the archive, the member and
            the rule. Nothing is written.
        CorruptArchiveError: The archive cannot be read.
        DiskFullError: Writing failed for lack of room (ENOSPC, EDQUOT, EFBIG, EROFS); names the
            filesystem and the bytes still needed. Nothing is written.
        FetchError: Unknown kind, or rar without a decoding tool.
    """
    lim = limits or ExtractionLimits()
    archive = Path(archive)
    target = Path(target)
    if not archive.is_file():
        raise FetchError(f"archive not found: {archive}", hint="fetch it first")
    with _open_members(archive, kind) as members:
        checked, declared = _check(archive, members, lim)
        created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-extract-{target.name or 'root'}-{uuid.uuid4().hex[:12]}"
        try:
            tmp.mkdir()
        except OSError as exc:
            if is_no_room(exc):
                raise no_room_error(exc, tmp, f"extracting {archive.name}", declared) from exc
            raise
        try:
            total = _write(archive, tmp, target, checked, lim, declared)
            top = tuple(sorted(os.listdir(tmp)))
            target.mkdir(parents=True, exist_ok=True)
            for name in {*replace, *top}:
                _remove(target / name)
            for name in top:
                os.replace(tmp / name, target / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            for folder in created:  # deepest first: leave no empty folder behind a refused archive
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return ExtractResult(archive, target, len(checked), total, top)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


# --- phase 1: check ---------------------------------------------------------------------------


def _check(archive: Path, members: Iterator[_Member], lim: ExtractionLimits) -> tuple[list[_Member], int]:
    """Every member's checks; returns the members and their declared uncompressed total."""
    out: list[_Member] = []
    regular: set[PurePosixPath] = set()
    declared = 0
    for m in members:
        if len(out) >= lim.max_members:
            raise UnsafeArchiveError(
                f"{archive.name}: more than {lim.max_members} members",
                hint="refused as a possible zip bomb; raise ExtractionLimits.max_members if the archive is trusted",
            )
        if m.kind == "special":
            raise UnsafeArchiveError(
                f"{archive.name}: member {m.name!r} is a device node, FIFO, socket or junction",
                hint="dataset archives never need these; the archive is refused",
            )
        if m.kind == "symlink":
            _check_symlink(archive, m)
        elif m.kind == "hardlink":
            link_rel = safe_relative_path(Path("."), m.link or "")
            if link_rel is None or link_rel not in regular:
                raise UnsafeArchiveError(
                    f"{archive.name}: hard link {m.name!r} -> {m.link!r} points outside the archive's files",
                    hint="hard links may only point to a regular file extracted earlier from the same archive",
                )
        elif m.kind == "file":
            declared += m.size
            regular.add(m.rel)
            if declared > lim.max_total_bytes:
                raise UnsafeArchiveError(
                    f"{archive.name}: uncompressed size passes {lim.max_total_bytes} bytes (at member {m.name!r})",
                    hint=_LIMIT_HINT,
                )
            if m.packed is not None and m.size > lim.ratio_min_bytes and m.size > lim.max_ratio * max(m.packed, 1):
                raise UnsafeArchiveError(
                    f"{archive.name}: member {m.name!r} declares {m.size} bytes from {m.packed} compressed "
                    f"({m.size / max(m.packed, 1):.0f}:1), past the {lim.max_ratio:g}:1 compression ratio limit",
                    hint=_LIMIT_HINT,
                )
        out.append(m)
    archive_bytes = archive.stat().st_size
    if declared > lim.ratio_min_bytes and declared > lim.max_ratio * max(archive_bytes, 1):
        raise UnsafeArchiveError(
            f"{archive.name}: {declared} uncompressed bytes from a {archive_bytes}-byte archive "
            f"({declared / max(archive_bytes, 1):.0f}:1), past the {lim.max_ratio:g}:1 compression ratio limit",
            hint=_LIMIT_HINT,
        )
    return out, declared


def _check_symlink(archive: Path, m: _Member) -> None:
    target = m.link or ""
    if not target or target.startswith(("/", "\\")) or (len(target) > 1 and target[1] == ":"):
        raise UnsafeArchiveError(
            f"{archive.name}: symlink {m.name!r} -> {target!r} is absolute",
            hint="links must be relative and stay inside the extracted folder",
        )
    joined = (m.rel.parent / target.replace("\\", "/")).as_posix()
    if posixpath.normpath(joined) != "." and safe_relative_path(Path("."), joined) is None:
        raise UnsafeArchiveError(
            f"{archive.name}: symlink {m.name!r} -> {target!r} points outside the target folder",
            hint="links must stay inside the extracted folder",
        )


# --- phase 2: write ---------------------------------------------------------------------------


@dataclass
class _Budget:
    """What the write phase may still write, and what it has written."""

    lim: ExtractionLimits
    declared: int
    archive_bytes: int
    written: int = 0
    member: str = ""  # the member being written

    def add(self, archive: Path, m: _Member, member_written: int, more: int) -> None:
        """Count ``more`` bytes of member ``m`` (``member_written`` before them) or refuse them."""
        lim = self.lim
        self.written += more
        now = member_written + more
        why = ""
        if now > m.size:
            why = f"member {m.name!r} holds more than the {m.size} bytes its header declares"
        elif m.packed is not None and now > lim.ratio_min_bytes and now > lim.max_ratio * max(m.packed, 1):
            why = (f"member {m.name!r} expands past {lim.max_ratio:g}:1 ({now} bytes from {m.packed} compressed) "
                   "while writing")
        elif self.written > lim.max_total_bytes:
            why = f"more than {lim.max_total_bytes} bytes written (at member {m.name!r})"
        elif self.written > lim.ratio_min_bytes and self.written > lim.max_ratio * max(self.archive_bytes, 1):
            why = (f"more than {lim.max_ratio:g} times the archive's {self.archive_bytes} bytes written "
                   f"(at member {m.name!r})")
        if why:
            raise UnsafeArchiveError(f"{archive.name}: {why}", hint=_LIMIT_HINT + "; nothing was kept")


def _write(
    archive: Path, tmp: Path, target: Path, members: list[_Member], lim: ExtractionLimits, declared: int
) -> int:
    """Phase 2 into ``tmp``; returns the bytes written. No room is reported against ``target``."""
    budget = _Budget(lim, declared, archive.stat().st_size)
    try:
        _write_all(archive, tmp, members, budget)
    except OSError as exc:
        if is_no_room(exc):
            member = f" (member {budget.member!r})" if budget.member else ""
            raise no_room_error(
                exc, target, f"extracting {archive.name}{member}", max(declared - budget.written, 0),
                kept="nothing was extracted (the partial output was removed); the downloaded archive is kept",
            ) from exc
        raise
    return budget.written


def _write_all(archive: Path, tmp: Path, members: list[_Member], budget: _Budget) -> None:
    for m in members:
        dest = tmp / m.rel.as_posix()
        if m.kind == "dir":
            _mkdirs(archive, tmp, dest)
        elif m.kind == "file":
            _mkdirs(archive, tmp, dest.parent)
            if dest.is_dir():
                raise CorruptArchiveError(f"{archive.name}: member {m.name!r} is both a folder and a file")
            dest.unlink(missing_ok=True)
            budget.member = m.name
            _copy_member(archive, m, dest, budget)
    for m in members:
        if m.kind == "hardlink":
            dest = tmp / m.rel.as_posix()
            src = tmp / str(safe_relative_path(Path("."), m.link or ""))
            _mkdirs(archive, tmp, dest.parent)
            dest.unlink(missing_ok=True)
            try:
                os.link(src, dest)
            except OSError:
                shutil.copyfile(src, dest)
    links = [m for m in members if m.kind == "symlink"]
    for m in links:
        dest = tmp / m.rel.as_posix()
        _mkdirs(archive, tmp, dest.parent)
        if dest.exists() or dest.is_symlink():
            _remove(dest)
        os.symlink(m.link or "", dest)
    real_tmp = os.path.realpath(tmp)
    for m in links:
        resolved = os.path.realpath(tmp / m.rel.as_posix())
        if os.path.commonpath([resolved, real_tmp]) != real_tmp:
            raise UnsafeArchiveError(
                f"{archive.name}: symlink {m.name!r} -> {m.link!r} resolves outside the target folder "
                "through other links",
                hint="links must stay inside the extracted folder; the archive is refused",
            )


def _mkdirs(archive: Path, tmp: Path, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise CorruptArchiveError(
            f"{archive.name}: {folder.relative_to(tmp)} is both a file and a folder in the archive"
        ) from exc


class _WriteFailed(Exception):
    """Carries an ``OSError`` of the *output* side past the handler that maps reading errors to corruption."""

    def __init__(self, exc: OSError) -> None:
        self.exc = exc
        super().__init__(str(exc))


def _copy_member(archive: Path, m: _Member, dest: Path, budget: _Budget) -> None:
    """Stream member ``m`` into ``dest``, counting every block against ``budget`` before it is written.

    Reading errors mean a damaged archive (:class:`CorruptArchiveError`); writing errors are the
    disk's: an ``OSError`` with no room is re-raised for :func:`_write` to report with the bytes still
    needed, any other one becomes a :class:`FetchError` naming the file.
    """
    if m.opener is None:
        raise CorruptArchiveError(f"{archive.name}: member {m.name!r} has no data")
    written = 0
    try:
        try:
            out = open(dest, "wb")  # noqa: SIM115 (closed by the with below)
        except OSError as exc:
            raise _WriteFailed(exc) from exc
        with out, m.opener() as src:
            while block := src.read(1 << 20):
                budget.add(archive, m, written, len(block))
                written += len(block)
                try:
                    out.write(block)
                except OSError as exc:
                    raise _WriteFailed(exc) from exc
    except _WriteFailed as failed:
        _raise_write_error(archive, dest, failed.exc)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and is_no_room(exc):  # raised by the final flush when closing the output
            _raise_write_error(archive, dest, exc)
        raise CorruptArchiveError(
            f"{archive.name}: cannot read member {m.name!r}: {exc}", hint="the archive is damaged; download it again"
        ) from exc
    except Exception as exc:  # rarfile's errors share no base with the above
        if type(exc).__module__ == "rarfile":
            raise _rar_error(archive, exc) from exc
        raise


def _raise_write_error(archive: Path, dest: Path, exc: OSError) -> None:
    if is_no_room(exc):
        raise exc
    raise FetchError(
        f"{archive.name}: writing {dest} failed: {exc}",
        hint="the archive is fine; check the disk under --root, then run again",
    ) from exc


# --- readers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_members(archive: Path, kind: str) -> Iterator[Iterator[_Member]]:
    if kind == "zip":
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as exc:
            raise CorruptArchiveError(f"{archive}: not a readable zip: {exc}", hint="download it again") from exc
        with zf:
            yield _zip_members(archive, zf)
    elif kind == "tar":
        try:
            tf = tarfile.open(archive, "r:*")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise CorruptArchiveError(f"{archive}: not a readable tar(.gz/.bz2/.xz): {exc}", hint="download it again") from exc
        with tf:
            try:
                infos = tf.getmembers()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise CorruptArchiveError(f"{archive}: truncated or corrupt tar: {exc}", hint="download it again") from exc
            yield _tar_members(archive, tf, infos)
    elif kind == "rar":
        import rarfile

        try:
            rf = rarfile.RarFile(archive)
        except (rarfile.Error, OSError) as exc:
            raise _rar_error(archive, exc) from exc
        with rf:
            yield _rar_members(archive, rf)
    else:
        raise FetchError(f"{archive}: unknown archive kind {kind!r}", hint="use zip, tar or rar")


def _member(
    archive: Path,
    name: str,
    kind: MemberKind,
    size: int,
    link: str | None,
    opener: Callable[[], IO[bytes]] | None,
    packed: int | None = None,
) -> _Member:
    if "\x00" in name:
        raise UnsafeArchiveError(f"{archive.name}: member name {name!r} contains a NUL byte")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(
            f"{archive.name}: member {name!r} has an absolute path",
            hint="refused: it would be written outside the target folder",
        )
    rel = safe_relative_path(Path("."), name)
    if rel is None:
        if kind == "dir" and PurePosixPath(name.replace("\\", "/")) == PurePosixPath("."):
            rel = PurePosixPath(".")
        else:
            raise UnsafeArchiveError(
                f"{archive.name}: member {name!r} escapes the target folder ('..' climbs out)",
                hint="refused (zip-slip); the archive was not extracted",
            )
    return _Member(name, rel, kind, size, link, opener, packed)


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if info.flag_bits & 0x1:
            raise CorruptArchiveError(f"{archive.name}: member {info.filename!r} is encrypted", hint="not supported")
        if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            if stat.S_ISLNK(mode):
                if info.file_size > _MAX_LINK_TARGET_BYTES:
                    raise UnsafeArchiveError(f"{archive.name}: symlink {info.filename!r} has an oversized target")
                target = zf.read(info).decode("utf-8", "replace")
                yield _member(archive, info.filename, "symlink", 0, target, None)
            else:
                yield _member(archive, info.filename, "special", 0, None, None)
        elif info.is_dir():
            yield _member(archive, info.filename, "dir", 0, None, None)
        else:
            yield _member(
                archive, info.filename, "file", info.file_size, None, lambda i=info: zf.open(i), info.compress_size
            )


def _tar_members(archive: Path, tf: tarfile.TarFile, infos: list[tarfile.TarInfo]) -> Iterator[_Member]:
    for info in infos:
        if info.isdir():
            yield _member(archive, info.name, "dir", 0, None, None)
        elif info.isreg():
            yield _member(archive, info.name, "file", info.size, None, lambda i=info: _tar_open(tf, i))
        elif info.issym():
            yield _member(archive, info.name, "symlink", 0, info.linkname, None)
        elif info.islnk():
            yield _member(archive, info.name, "hardlink", 0, info.linkname, None)
        else:
            yield _member(archive, info.name, "special", 0, None, None)


def _tar_open(tf: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    fh = tf.extractfile(info)
    if fh is None:
        raise CorruptArchiveError(f"tar member {info.name!r} has no data")
    return fh


def _rar_members(archive: Path, rf: Any) -> Iterator[_Member]:  # rf: rarfile.RarFile (imported lazily)
    import rarfile

    for info in rf.infolist():
        redir = info.file_redir
        if redir is not None:
            redir_type, _flags, redir_target = redir
            if redir_type in (rarfile.RAR5_XREDIR_UNIX_SYMLINK, rarfile.RAR5_XREDIR_WINDOWS_SYMLINK):
                yield _member(archive, info.filename, "symlink", 0, redir_target, None)
            elif redir_type in (rarfile.RAR5_XREDIR_HARD_LINK, rarfile.RAR5_XREDIR_FILE_COPY):
                yield _member(archive, info.filename, "hardlink", 0, redir_target, None)
            else:
                yield _member(archive, info.filename, "special", 0, None, None)
        elif info.is_symlink():
            if info.file_size > _MAX_LINK_TARGET_BYTES:
                raise UnsafeArchiveError(f"{archive.name}: symlink {info.filename!r} has an oversized target")
            yield _member(archive, info.filename, "symlink", 0, rf.read(info).decode("utf-8", "replace"), None)
        elif info.is_dir():
            yield _member(archive, info.filename, "dir", 0, None, None)
        elif info.mode and stat.S_IFMT(info.mode) not in (0, stat.S_IFREG) and info.host_os == rarfile.RAR_OS_UNIX:
            yield _member(archive, info.filename, "special", 0, None, None)
        else:
            yield _member(
                archive, info.filename, "file", info.file_size, None, lambda i=info: rf.open(i), info.compress_size
            )


def _rar_error(archive: Path, exc: BaseException) -> FetchError:
    import rarfile

    if isinstance(exc, rarfile.RarCannotExec):
        return FetchError(
            f"{archive.name}: no tool to decompress RAR members ({exc})",
            hint="install the Debian package `unar` (apt-get install -y unar); rarfile calls it",
        )
    return CorruptArchiveError(f"{archive.name}: not a readable rar: {exc}", hint="download it again")

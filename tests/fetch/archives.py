"""Generators of test archives (good and malicious) in the real on-disk formats.

zip and tar come from the stdlib writers, with hand-set member types where the writers would
refuse (symlinks in zip, device nodes in tar). RAR has no free writer, so :func:`rar5_stored`
writes a RAR 5.0 archive byte by byte following RARLAB's published format description
(https://www.rarlab.com/technote.htm, "RAR 5.0 archive format"): signature, main archive header,
one file header per member with the *store* method (no compression, so the data area is the file
itself), optional file-system redirection records (symlinks), end-of-archive header. Every header
carries the CRC32 of its bytes from the header-size field on, as the format requires; ``rarfile``
and ``unar`` both verify it.
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

RAR5_SIGNATURE = b"Rar!\x1a\x07\x01\x00"


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip of regular files ``name -> bytes``, written with the member names exactly as given."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
    return path


def write_zip_symlink(path: Path, link_name: str, target: str, extra: dict[str, bytes] | None = None) -> Path:
    """A zip holding a Unix symlink ``link_name -> target`` (as Info-ZIP stores it) and ``extra`` files."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        info = zipfile.ZipInfo(link_name, date_time=(2020, 1, 1, 0, 0, 0))
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return path


def write_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    """A tar (``mode`` picks gz/bz2/xz) of ``(name, bytes)`` files and ready-made ``TarInfo`` entries."""
    with tarfile.open(path, mode) as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                name, data = m
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(data))
    return path


def tar_entry(name: str, kind: bytes, linkname: str = "", devmajor: int = 0, devminor: int = 0) -> tarfile.TarInfo:
    """A non-regular tar header: ``tarfile.SYMTYPE``, ``LNKTYPE``, ``CHRTYPE``, ``BLKTYPE``, ``FIFOTYPE``..."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.devmajor, info.devminor = devmajor, devminor
    info.mode = 0o644
    return info


# --- RAR 5.0 (stored) --------------------------------------------------------------------------


def vint(value: int) -> bytes:
    """RAR5 variable-length integer: 7 bits per byte, least significant first, bit 7 = more follows."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _rar5_header(body: bytes) -> bytes:
    """Prefix ``body`` (type, flags, fields, extra area) with its size vint and the CRC32 of both."""
    sized = vint(len(body)) + body
    return zlib.crc32(sized).to_bytes(4, "little") + sized


@dataclass(frozen=True)
class RarMember:
    """A member of :func:`rar5_stored`: a regular file (``data``), a folder, or a symlink (``symlink_to``)."""

    name: str
    data: bytes = b""
    is_dir: bool = False
    symlink_to: str | None = None


def rar5_stored(path: Path, members: list[RarMember]) -> Path:
    """Write a RAR 5.0 archive whose members use the *store* method (method 0, no compression).

    Layout per member (technote, "File header"): header type 2; header flags 0x0002 (data area
    follows) and 0x0001 when there is an extra area; file flags 0x0004 (data CRC32 present) or
    0x0001 (directory); unpacked size; Unix attributes (host OS 1); compression info 0 (version 0,
    method 0 = store); name length + UTF-8 name; a redirection record (type 5, redirection type 1 =
    Unix symlink) in the extra area for symlinks; then the data area.
    """
    out = bytearray(RAR5_SIGNATURE)
    out += _rar5_header(vint(1) + vint(0) + vint(0))  # main archive header: type 1, no flags, archive flags 0
    for m in members:
        name = m.name.encode()
        data = b"" if (m.is_dir or m.symlink_to is not None) else m.data
        if m.is_dir:
            file_flags, mode = 0x0001, stat.S_IFDIR | 0o755
        elif m.symlink_to is not None:
            file_flags, mode = 0x0004, stat.S_IFLNK | 0o777
        else:
            file_flags, mode = 0x0004, stat.S_IFREG | 0o644
        extra = b""
        if m.symlink_to is not None:
            target = m.symlink_to.encode()
            record = vint(5) + vint(1) + vint(0) + vint(len(target)) + target
            extra = vint(len(record)) + record
        fields = vint(file_flags) + vint(len(data)) + vint(mode)
        if file_flags & 0x0004:
            fields += zlib.crc32(data).to_bytes(4, "little")
        fields += vint(0) + vint(1) + vint(len(name)) + name  # compression info, host OS Unix, name
        header_flags = 0x0002 | (0x0001 if extra else 0)
        body = vint(2) + vint(header_flags) + (vint(len(extra)) if extra else b"") + vint(len(data)) + fields + extra
        out += _rar5_header(body) + data
    out += _rar5_header(vint(5) + vint(0) + vint(0))  # end of archive: type 5, no flags
    path.write_bytes(bytes(out))
    return path

"""Small helpers many task modules share: a stable hash, safe relative paths, required files, storable text.

They import nothing above ``schemas`` (no Prefect, Dask or TensorFlow), so adapters, fetch,
video sampling, shard building and extraction can all use them. File digests are
:func:`storage.fs.file_sha256`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

from schemas.errors import SourceError


def stable_hash(text: str) -> int:
    """A 64-bit integer hash of ``text`` that is stable across processes (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def text_of(value: str) -> str:
    """``value`` as valid UTF-8 text, for Parquet strings, JSON and messages.

    A file name's bytes that are not UTF-8 reach Python as lone surrogates (PEP 383:
    ``'caf\\udce9'``); they are shown as ``\\xNN`` (``'caf\\\\xe9'``), as a reject detail or id must
    be storable whatever the name it quotes. Valid text is returned unchanged.
    """
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that are not escaped bytes (e.g. from broken JSON)
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def safe_relative_path(root: Path, name: str) -> PurePosixPath | None:
    """Return ``name`` as a normalised relative POSIX path inside ``root``, or None if it escapes.

    Absolute names, ``..`` components that climb out of ``root`` and empty names escape.
    """
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return None
    parts: list[str] = []
    for part in PurePosixPath(name.replace("\\", "/")).parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        return None
    return PurePosixPath(*parts)


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`SourceError` saying what was expected."""
    if not path.is_file():
        raise SourceError(f"{what} not found: {path}", hint="check --source points at the dataset's folder")
    return path

"""Small helpers many task modules share: a stable hash, safe relative paths, required files, storable text,
the box of labelled joints.

They import nothing above ``schemas`` (no Prefect, Dask or TensorFlow), so adapters, fetch,
video sampling, shard building and extraction can all use them. File digests are
:func:`storage.fs.file_sha256`.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from schemas.errors import SourceError


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a block that builds many objects that all live on.

    Parsing an annotation file creates millions of small containers and keeps them; each one counts
    towards the next collection, and every full collection walks every object of the process (a
    CLI process holds ~10^6 from its imports). Parsing COCO's 40k annotations spent about half its
    time there (``_parse_file`` 1.5 s -> 0.6 s with the collector paused). Reference counting still
    frees everything acyclic; cycles made inside wait for the next collection after the block. The
    collector's previous state is restored, also on error.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    for part in name.replace("\\", "/").split("/"):  # what PurePosixPath(...).parts gives here, without its cost
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


def relative_name(path: Path, root: Path) -> str:
    """``path`` as a POSIX path relative to ``root``, or its bare file name when it lies outside ``root``.

    Adapters key their input checksums by it (``relative_name(Path("/d/a/x.mat"), Path("/d"))`` is
    ``"a/x.mat"``; ``relative_name(Path("/e/x.mat"), Path("/d"))`` is ``"x.mat"``).
    """
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name


def joint_box(xy: np.ndarray, labelled: np.ndarray) -> tuple[list[float], list[float]]:
    """The min/max box of the labelled joints and its centre, in the joints' own precision.

    Args:
        xy: ``(J, 2)`` joint coordinates (NaN allowed where not labelled).
        labelled: ``(J,)`` bool, True for the joints the box spans; at least one must be True.

    Returns:
        ``[x1, y1, x2, y2]`` and ``[cx, cy]`` as Python floats; the centre is computed in the dtype
        of ``xy`` (float32 for keypoints) before conversion.
    """
    pts = xy[labelled]
    x1, y1 = pts.min(axis=0)
    x2, y2 = pts.max(axis=0)
    return [float(x1), float(y1), float(x2), float(y2)], [float((x1 + x2) / 2), float((y1 + y2) / 2)]


def zero_based_xy(xy_one_based: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """MATLAB 1-based pixel coordinates as 0-based pixel centres (x-1, y-1), float32, NaN where not labelled.

    Args:
        xy_one_based: ``(..., 2)`` coordinates as the MATLAB-era file stores them (pixel 1 covers [0.5, 1.5)).
        labelled: Bool mask over the leading axes, True where the position is to be kept.

    Returns:
        A new float32 array of the same shape (``[[1.0, 2.0]]`` with ``[True]`` gives ``[[0.0, 1.0]]``).
    """
    xy = (np.asarray(xy_one_based) - 1.0).astype(np.float32)  # MATLAB 1-based -> 0-based pixel centres
    xy[~np.asarray(labelled, dtype=bool)] = np.nan
    return xy

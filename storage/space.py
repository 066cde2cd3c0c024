"""Tell "no room to write" apart from every other ``OSError``, and say where and what to do.

A download or an extraction that fails with ENOSPC (filesystem full), EDQUOT (quota), EFBIG (past
the process's file size limit, ``ulimit -f``) or EROFS (read-only) says nothing about the input: the
file is neither damaged nor worth retrying. :func:`no_room_error` turns such an error into a
:class:`~schemas.errors.DiskFullError` naming the path, the filesystem's mount point, its free
space and, when known, how many bytes the operation needed.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from schemas.errors import DiskFullError

NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
_WHY = {
    errno.ENOSPC: "the filesystem is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file passes the file size limit (ulimit -f) or the filesystem's largest file",
    errno.EROFS: "the filesystem is read-only",
}


def is_no_room(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error it wraps) is a full, over-quota, over-limit or read-only write."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in NO_ROOM_ERRNOS:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path`` (or its nearest existing parent)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem (None if unknown)."""
    try:
        st = os.statvfs(mount_point(path))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def no_room_error(exc: OSError, path: Path, doing: str, needed_bytes: int | None = None, kept: str = "") -> DiskFullError:
    """The :class:`DiskFullError` for ``exc``, raised while ``doing`` (e.g. "extracting val2017.zip").

    Args:
        exc: An ``OSError`` with an errno in :data:`NO_ROOM_ERRNOS`.
        path: The file or folder being written.
        doing: What was being done, for the message.
        needed_bytes: Bytes the whole operation still needed, when known.
        kept: A sentence on what was kept or cleaned up (ends the hint).

    Returns:
        The error to raise (``from exc``).
    """
    code = exc.errno if exc.errno is not None else errno.ENOSPC
    fs = mount_point(path)
    free = free_bytes(path)
    need = f"; about {needed_bytes} more bytes were needed" if needed_bytes is not None else ""
    has = f", {free} bytes free" if free is not None else ""
    if code == errno.EROFS:
        todo = f"make {fs} writable or choose another --root"
    elif code == errno.EFBIG:
        todo = "raise the file size limit (ulimit -f) or choose another --root"
    elif code == errno.EDQUOT:
        todo = f"free space within your quota on {fs} or choose another --root"
    else:
        todo = f"free space on {fs}" + (f" (at least {needed_bytes} bytes)" if needed_bytes is not None else "") + (
            " or choose another --root on a larger disk"
        )
    return DiskFullError(
        f"no room while {doing}: writing {path} failed: {_WHY.get(code, os.strerror(code))} "
        f"([Errno {code}] {os.strerror(code)}; filesystem {fs}{has}){need}",
        hint=f"{todo}, then run again" + (f"; {kept}" if kept else ""),
        path=str(path),
        filesystem=str(fs),
        needed_bytes=needed_bytes,
    )

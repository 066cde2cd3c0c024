"""Reading MATLAB ``.mat`` files (v5/v7 through SciPy, v7.3 through h5py) into plain Python: the one
module of MATLAB-reading primitives, imported by the dataset adapters (annotations) and by
:mod:`tasks.evaluation.readers` (evaluation ground truth and predictions).

Both readers return the same normalised tree, so a caller never cares which version it got:

* a 1×1 struct → ``dict`` (field name → value);
* a struct array → ``list`` of ``dict`` (a 1×1 struct array may come back as either; use :func:`as_list`);
* a cell array → ``list``;
* a char array → ``str``;
* a numeric or logical array → ``np.ndarray`` squeezed (a 1×1 becomes a 0-d array; use :func:`as_float`),
  or with ``squeeze=False`` in MATLAB's own shape (an ``(16, 2, N)`` stays 3-D when N is 1);
* an empty array (``[]``, ``''``, ``{}``) → ``None``.

Errors name the file and what was expected (:class:`AnnotationFormatError`): a missing file, a truncated
or non-MATLAB file, a missing top-level variable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import AnnotationFormatError, SourceError

MAT73_HEADER = b"MATLAB 7.3 MAT-file"


def mat_version(path: Path) -> str:
    """Return ``"5"`` for v4/v5/v7 files (SciPy reads them) or ``"7.3"`` for HDF5-based files.

    Raises:
        SourceError: If the file does not exist.
        AnnotationFormatError: If the file is empty or not a MATLAB file at all.
    """
    if not path.is_file():
        raise SourceError(f"MATLAB file not found: {path}", hint="check --source points at the dataset's folder")
    with open(path, "rb") as fh:
        head = fh.read(128)
    if head.startswith(MAT73_HEADER):
        return "7.3"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "7.3"  # HDF5 without the 512-byte MATLAB user block (written by h5py directly)
    if len(head) < 128 or not head.startswith(b"MATLAB"):
        # MATLAB v4 files have no text header; they are never used by these datasets.
        raise AnnotationFormatError(
            f"{path} is not a MATLAB .mat file (it has {path.stat().st_size} bytes and no 'MATLAB' header)",
            hint="the download is probably truncated or an HTML error page; fetch it again",
        )
    # Bytes 124..125: the format version, in the byte order bytes 126..127 announce ('IM' little, 'MI' big).
    version = int.from_bytes(head[124:126], "little" if head[126:128] == b"IM" else "big")
    return "7.3" if version == 0x0200 else "5"


def load_mat(
    path: Path, variables: Sequence[str] | None = None, *, optional: Sequence[str] = (), squeeze: bool = True
) -> dict[str, Any]:
    """Load variables of a ``.mat`` file as the normalised tree described in the module docstring.

    Args:
        path: The ``.mat`` file (v5, v7 or v7.3).
        variables: Top-level variables that must be there (all variables when None and no ``optional``).
            Any that is missing is an error.
        optional: Top-level variables loaded when present (absent from the result otherwise).
        squeeze: Squeeze numeric arrays (the annotation trees); False keeps MATLAB's shapes (arrays
            whose axes mean something, such as evaluation's ``(16, 2, N)``).

    Returns:
        Variable name → normalised value.

    Raises:
        SourceError: The file does not exist.
        AnnotationFormatError: Truncated/corrupt file, or a required variable is missing.
    """
    path = Path(path)
    version = mat_version(path)
    wanted = None if variables is None and not optional else [*(variables or ()), *optional]
    out = _load_mat73(path, wanted, squeeze) if version == "7.3" else _load_mat5(path, wanted, squeeze)
    if variables is not None:
        missing = [v for v in variables if v not in out]
        if missing:
            found = list_variables(path, version)
            raise AnnotationFormatError(
                f"{path} has no variable {', '.join(repr(m) for m in missing)} (found: {found or 'none'})",
                hint="is this the right annotation file for this dataset?",
            )
    return out


def list_variables(path: Path, version: str | None = None) -> list[str]:
    """Sorted names of the top-level variables of a ``.mat`` file (empty when unreadable)."""
    version = version or mat_version(path)
    try:
        if version == "7.3":
            import h5py

            with h5py.File(path, "r") as fh:
                return sorted(k for k in fh if not k.startswith("#"))
        import scipy.io

        return sorted(name for name, _shape, _cls in scipy.io.whosmat(str(path)))
    except (OSError, ValueError, TypeError, EOFError):
        return []


def _load_mat5(path: Path, variables: Sequence[str] | None, squeeze: bool) -> dict[str, Any]:
    import scipy.io

    try:
        raw = scipy.io.loadmat(
            str(path),
            squeeze_me=squeeze,
            struct_as_record=False,
            chars_as_strings=True,
            variable_names=list(variables) if variables is not None else None,
        )
    except NotImplementedError:  # pragma: no cover - mat_version routes v7.3 away already
        return _load_mat73(path, variables, squeeze)
    except (ValueError, TypeError, OSError, EOFError, IndexError, KeyError, MemoryError) as exc:
        raise AnnotationFormatError(
            f"cannot read MATLAB file {path}: {type(exc).__name__}: {exc}",
            hint="the file is truncated or corrupt; fetch it again",
        ) from exc
    return {k: _from_scipy(v) for k, v in raw.items() if not k.startswith("__")}


def _from_scipy(obj: Any) -> Any:
    from scipy.io.matlab import mat_struct

    if isinstance(obj, mat_struct):
        return {name: _from_scipy(getattr(obj, name)) for name in obj._fieldnames}
    if isinstance(obj, np.ndarray):
        if obj.size == 0:
            return None
        if obj.dtype == object:
            return [_from_scipy(x) for x in obj.ravel(order="F")]
        if obj.dtype.kind == "U":
            return str(obj.item()) if obj.ndim == 0 else [str(x) for x in obj.ravel(order="F")]
        return obj
    if isinstance(obj, str):
        return obj if obj != "" else None
    if isinstance(obj, (int, float, bool, np.number, np.bool_)):
        return np.asarray(obj)
    return obj


def _load_mat73(path: Path, variables: Sequence[str] | None, squeeze: bool) -> dict[str, Any]:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            names = [k for k in fh if not k.startswith("#")]
            wanted = names if variables is None else [v for v in variables if v in fh]
            return {name: _from_h5(fh, fh[name], squeeze) for name in wanted}
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise AnnotationFormatError(
            f"cannot read MATLAB v7.3 (HDF5) file {path}: {type(exc).__name__}: {exc}",
            hint="the file is truncated or corrupt; fetch it again",
        ) from exc


def _attr(node: Any, name: str) -> str | None:
    value = node.attrs.get(name)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tobytes().decode() if value.dtype.kind == "S" else str(value.item())
    return str(value)


def _from_h5(fh: Any, node: Any, squeeze: bool = True) -> Any:
    import h5py

    if isinstance(node, h5py.Group):
        fields = [k for k in node if not k.startswith("#")]
        ref_fields = [
            k
            for k in fields
            if isinstance(node[k], h5py.Dataset)
            and node[k].dtype == h5py.ref_dtype
            and _attr(node[k], "MATLAB_class") != "cell"
        ]
        if fields and len(ref_fields) == len(fields):
            # A struct array: every field is an array of references, one per element.
            columns = {k: np.asarray(node[k][()]).ravel(order="F") for k in fields}
            n = max(len(c) for c in columns.values())
            if any(len(c) != n for c in columns.values()):
                raise AnnotationFormatError(f"struct array {node.name} has fields of different lengths")
            return [{k: _from_h5(fh, fh[columns[k][i]], squeeze) for k in fields} for i in range(n)]
        return {k: _from_h5(fh, node[k], squeeze) for k in fields}
    # A dataset.
    if node.attrs.get("MATLAB_empty") is not None and int(np.asarray(node.attrs["MATLAB_empty"]).ravel()[0]):
        return None
    cls = _attr(node, "MATLAB_class")
    data = node[()]
    if node.dtype == h5py.ref_dtype:
        refs = np.asarray(data).T  # MATLAB is column-major: h5 shape is the reverse of MATLAB's
        items = [_from_h5(fh, fh[r], squeeze) for r in refs.ravel(order="F")]
        return items
    arr = np.asarray(data).T
    if cls == "char":
        return "".join(chr(c) for c in arr.ravel(order="F")) or None
    if arr.size == 0:
        return None
    if cls == "logical":
        arr = arr.astype(bool)
    return np.squeeze(arr) if squeeze else arr


# --- tree helpers adapters use ------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    """A struct/cell field as a list: None → [], a single dict → [dict], a list → itself."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, np.ndarray) and value.dtype == object:
        return list(value.ravel())
    return [value]


def as_float(value: Any) -> float | None:
    """A scalar numeric field as float; None for empty, non-numeric or non-finite values."""
    if value is None or isinstance(value, (str, dict, list)):
        return None
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "biuf":
        return None
    out = float(arr.ravel()[0])
    return out if np.isfinite(out) else None


def as_int(value: Any) -> int | None:
    """A scalar numeric field as int (None when empty, non-numeric or non-integral)."""
    f = as_float(value)
    if f is None or f != int(f):
        return None
    return int(f)


def as_str(value: Any) -> str | None:
    """A char field as str (None when empty or not a string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return None

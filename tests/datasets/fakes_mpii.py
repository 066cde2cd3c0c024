"""Fake MPII Human Pose data in the real on-disk formats, plus generic MATLAB writers.

* :func:`write_mat5` / :func:`write_mat73`: write a Python tree (dict = struct, list of dicts = struct
  array, other list = cell, str = char, None = ``[]``, numbers/arrays = double) as a MATLAB v5 file
  (``scipy.io.savemat``) or as a MATLAB v7.3 file (HDF5 with MATLAB's 512-byte header, ``#refs#``
  group, ``MATLAB_class`` attributes, column-major shapes, ``MATLAB_empty`` for ``[]``), the way
  MATLAB's ``save -v7.3`` lays them out.
* :func:`release_tree`: the nested ``RELEASE`` struct of ``mpii_human_pose_v1_u12_1.mat`` with the
  real inconsistencies (people without ``annopoints``, points without ``is_visible``, ``is_visible``
  stored as a char, empty ``act``, test images with only ``objpos``/``scale``).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

# --- MATLAB v5 (scipy) -----------------------------------------------------------------------------


def _to_savemat(value: Any) -> Any:
    if value is None:
        return np.zeros((0, 0))
    if isinstance(value, dict):
        return {k: _to_savemat(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            fields = list(dict.fromkeys(itertools.chain.from_iterable(v.keys() for v in value)))
            arr = np.empty((1, len(value)), dtype=[(f, object) for f in fields])
            for i, v in enumerate(value):
                for f in fields:
                    # A field another element has but this one lacks is [] (MATLAB struct arrays share fields).
                    arr[0, i][f] = _to_savemat(v.get(f))
            return arr
        cell = np.empty((1, len(value)), dtype=object)
        for i, v in enumerate(value):
            cell[0, i] = _to_savemat(v)
        return cell
    return value


def write_mat5(path: Path, variables: dict[str, Any]) -> Path:
    """Write ``variables`` as a MATLAB v5 ``.mat`` (struct arrays as real 1×N struct arrays)."""
    import scipy.io

    scipy.io.savemat(str(path), {k: _to_savemat(v) for k, v in variables.items()}, oned_as="row")
    return path


# --- MATLAB v7.3 (HDF5) ----------------------------------------------------------------------------

_counter = itertools.count()


def _cls(node: Any, name: str) -> None:
    node.attrs["MATLAB_class"] = np.bytes_(name)


def _write_h5(fh: Any, parent: Any, name: str, value: Any) -> Any:
    import h5py

    if value is None:
        ds = parent.create_dataset(name, data=np.zeros(2, dtype=np.uint64))
        _cls(ds, "double")
        ds.attrs["MATLAB_empty"] = np.uint8(1)
        return ds
    if isinstance(value, dict):
        grp = parent.create_group(name)
        _cls(grp, "struct")
        for k, v in value.items():
            _write_h5(fh, grp, k, v)
        return grp
    if isinstance(value, list):
        refs_grp = fh.require_group("#refs#")
        if value and all(isinstance(v, dict) for v in value):
            grp = parent.create_group(name)
            _cls(grp, "struct")
            fields = list(dict.fromkeys(itertools.chain.from_iterable(v.keys() for v in value)))
            for f in fields:
                refs = []
                for v in value:
                    obj = _write_h5(fh, refs_grp, f"r{next(_counter)}", v.get(f))
                    refs.append(obj.ref)
                grp.create_dataset(f, data=np.array(refs, dtype=h5py.ref_dtype).reshape(len(value), 1))
            return grp
        refs = [_write_h5(fh, refs_grp, f"r{next(_counter)}", v).ref for v in value]
        ds = parent.create_dataset(name, data=np.array(refs, dtype=h5py.ref_dtype).reshape(len(value), 1))
        _cls(ds, "cell")
        return ds
    if isinstance(value, str):
        ds = parent.create_dataset(name, data=np.array([ord(c) for c in value], dtype=np.uint16).reshape(-1, 1))
        _cls(ds, "char")
        return ds
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    elif arr.ndim == 1:
        arr = arr.reshape(1, -1)
    ds = parent.create_dataset(name, data=arr.T)  # MATLAB is column-major: h5 shape is reversed
    _cls(ds, "double")
    return ds


def write_mat73(path: Path, variables: dict[str, Any]) -> Path:
    """Write ``variables`` as a MATLAB v7.3 file (HDF5 with the MATLAB 512-byte header)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as fh:
        for k, v in variables.items():
            _write_h5(fh, fh, k, v)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    return path

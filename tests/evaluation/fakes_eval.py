"""Evaluation input files written in their real on-disk formats, into ``tmp_path``.

* MPII PCKh ground truth as ``detections_our_format.mat`` lays it out (``pos_gt_src (16,2,N)``,
  ``jnt_missing (16,N) uint8``, ``headboxes_src (2,2,N)``, ``dataset_joints`` a 1x16 cell).
* FLIC ``examples.mat``: a 1xN MATLAB struct array with ``coords`` 2x29 (NaN where unlabelled),
  ``istest``/``istrain`` uint8, ``filepath`` char, as ``scipy.io.loadmat`` reads the real file.
* MATLAB v7.3 files: HDF5 with MATLAB's 512-byte header, arrays stored column-major (axes reversed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from schemas.skeletons import FLIC29, MPII16


@dataclass(frozen=True)
class FakeMpii:
    """What :func:`write_fake_mpii_gt` wrote, in posepipe's layout."""

    path: Path
    gt_xy: np.ndarray  # (N, 16, 2)
    visible: np.ndarray  # (N, 16) bool
    head_boxes_xyxy: np.ndarray  # (N, 4)


def write_fake_mpii_gt(
    path: Path, n: int = 5, seed: int = 0, drop: tuple[str, ...] = (), joint_names: tuple[str, ...] | None = None
) -> FakeMpii:
    """Write an MPII PCKh ground-truth ``.mat`` (v5) like ``detections_our_format.mat``.

    Args:
        path: Destination.
        n: People.
        seed: RNG seed.
        drop: Top-level variables to leave out (to make a broken file).
        joint_names: ``dataset_joints`` to write (default MPII's order).
    """
    rng = np.random.default_rng(seed)
    gt_xy = rng.uniform(50, 600, size=(n, 16, 2))
    visible = rng.random((n, 16)) > 0.15
    visible[:, 0] = True  # every joint id visible at least once
    visible[0] = True
    x1y1 = rng.uniform(50, 500, size=(n, 2))
    boxes = np.concatenate([x1y1, x1y1 + rng.uniform(20, 80, size=(n, 2))], axis=1)
    names = joint_names or tuple(MPII16.source_names or ())
    cell = np.empty((1, len(names)), dtype=object)
    for i, name in enumerate(names):
        cell[0, i] = np.array([name])
    variables: dict[str, Any] = {
        "pos_gt_src": np.transpose(gt_xy, (1, 2, 0)),  # (16, 2, N)
        "jnt_missing": (~visible).T.astype(np.uint8),  # (16, N)
        "headboxes_src": np.stack([boxes[:, :2].T, boxes[:, 2:].T]),  # (corner, xy, N)
        "dataset_joints": cell,
    }
    scipy.io.savemat(path, {k: v for k, v in variables.items() if k not in drop})
    return FakeMpii(path=path, gt_xy=gt_xy, visible=visible, head_boxes_xyxy=boxes)


@dataclass(frozen=True)
class FakeFlic:
    """What :func:`write_fake_flic_examples` wrote."""

    path: Path
    coords_xy: np.ndarray  # (N, 29, 2)
    is_test: np.ndarray  # (N,) bool


FLIC_LABELLED = ("lsho", "lelb", "lwri", "rsho", "relb", "rwri", "lhip", "rhip", "leye", "reye", "nose")


def fake_flic_coords(n: int, seed: int = 0, backwards: tuple[int, ...] = ()) -> np.ndarray:
    """``(n, 29, 2)`` plausible upper bodies facing the camera (left joints at larger x); the people listed in
    ``backwards`` have their left/right arm labels crossed like a person seen from behind."""
    rng = np.random.default_rng(seed)
    template = {
        "lsho": (40, 0), "lelb": (55, 40), "lwri": (60, 80), "rsho": (-40, 0), "relb": (-55, 40),
        "rwri": (-60, 80), "lhip": (25, 110), "rhip": (-25, 110), "leye": (8, -40), "reye": (-8, -40),
        "nose": (0, -30),
    }  # fmt: skip
    out = np.full((n, FLIC29.num_joints, 2), np.nan)
    for i in range(n):
        centre = rng.uniform(200, 500, size=2)
        for name, (dx, dy) in template.items():
            sign = -1.0 if (i in backwards and name[1:] in ("sho", "elb", "wri")) else 1.0
            out[i, FLIC29.index(name)] = centre + (sign * dx, dy) + rng.normal(0, 2, size=2)
    return out


def write_fake_flic_examples(path: Path, coords_xy: np.ndarray, is_test: np.ndarray, drop_field: str = "") -> FakeFlic:
    """Write FLIC's ``examples.mat``: struct array ``examples`` (1 x N) with the real file's fields."""
    n = coords_xy.shape[0]
    fields = ["poselet_hit_idx", "moviename", "coords", "filepath", "imgdims", "currframe", "torsobox",
              "istrain", "istest"]  # fmt: skip
    fields = [f for f in fields if f != drop_field]
    ex = np.empty((1, n), dtype=[(f, object) for f in fields])
    for i in range(n):
        values = {
            "poselet_hit_idx": np.arange(1, 4, dtype=np.uint16).reshape(-1, 1),
            "moviename": "fake-movie",
            "coords": coords_xy[i].T.copy(),  # (2, 29): x row, y row
            "filepath": f"fake-movie-{i + 1:08d}.jpg",
            "imgdims": np.array([[480, 720, 3]], dtype=np.uint16),
            "currframe": np.array([[i + 1]], dtype=np.uint16),
            "torsobox": np.array([[10, 20, 110, 220]], dtype=np.float32),
            "istrain": np.array([[0 if is_test[i] else 1]], dtype=np.uint8),
            "istest": np.array([[1 if is_test[i] else 0]], dtype=np.uint8),
        }
        for f in fields:
            ex[0, i][f] = values[f]
    scipy.io.savemat(path, {"examples": ex})
    return FakeFlic(path=path, coords_xy=coords_xy, is_test=np.asarray(is_test, dtype=bool))


def write_mat73_numeric(path: Path, variables: dict[str, np.ndarray], struct_name: str = "") -> Path:
    """Write numeric arrays as MATLAB ``save -v7.3`` does (HDF5, 512-byte MATLAB header, axes reversed).

    Args:
        path: Destination.
        variables: Name -> array (MATLAB shape).
        struct_name: Also write an (empty) struct group under this name, as a v7.3 struct variable.
    """
    import h5py

    with h5py.File(path, "w", userblock_size=512) as fh:
        for name, arr in variables.items():
            ds = fh.create_dataset(name, data=np.asarray(arr, dtype=np.float64).T)
            ds.attrs["MATLAB_class"] = np.bytes_(b"double")
        if struct_name:
            grp = fh.create_group(struct_name)
            grp.attrs["MATLAB_class"] = np.bytes_(b"struct")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    return path


def truncate(src: Path, dst: Path, keep_fraction: float = 0.5) -> Path:
    """Copy the first ``keep_fraction`` of ``src``'s bytes to ``dst`` (a file cut off mid-transfer)."""
    data = src.read_bytes()
    dst.write_bytes(data[: max(1, int(len(data) * keep_fraction))])
    return dst

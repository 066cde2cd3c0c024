"""Reading evaluation ground truth and predictions: MATLAB ``.mat`` (v5 and v7.3), HDF5, ``.npy``, JSON.

Every reader either returns arrays in posepipe's layout (``(N, J, 2)`` x/y, 0-based joint ids) or
raises :class:`~schemas.errors.EvaluationInputError` naming the file and what was expected.
Coordinates are returned *as stored*: the MPII and FLIC ground-truth files hold MATLAB (1-based)
pixel coordinates and their evaluators compare predictions to them unchanged, so predictions must
be in the same frame (HRNet adds 1.0 to its 0-based predictions before writing ``pred.mat``).
Joint *ids*, which are 1-based in the MATLAB sources (FLIC's ``lookupPart``), are 0-based here.

``.mat`` files are read by :mod:`tasks.datasets._matlab`, the one module of MATLAB-reading primitives
the dataset adapters use too (v5/v7 and v7.3, structs included); its errors come out of this module
as :class:`EvaluationInputError` with the same message and hint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import EvaluationInputError, SourceError
from schemas.skeletons import FLIC29, MPII16
from tasks.datasets._matlab import as_float, as_list, as_str, load_mat

__all__ = [
    "FlicGroundTruth",
    "MpiiGroundTruth",
    "load_array",
    "read_flic_gt",
    "read_flic_predictions",
    "read_json",
    "read_mpii_gt",
    "read_mpii_predictions",
]

_PRED_SUFFIXES = (".mat", ".h5", ".hdf5", ".npy")


# --------------------------------------------------------------------------------------------------
# Generic file access
# --------------------------------------------------------------------------------------------------


def _require_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise EvaluationInputError(f"{what} file {str(p)!r} does not exist or is not a file", hint="check the path")
    return p


def _read_mat(p: Path, variables: Sequence[str], squeeze: bool) -> dict[str, Any]:
    """``variables`` of a ``.mat`` that are present (MATLAB shapes unless ``squeeze``), errors as ours."""
    try:
        return load_mat(p, optional=variables, squeeze=squeeze)
    except SourceError as exc:  # AnnotationFormatError too: a truncated, corrupt or non-MATLAB file
        raise EvaluationInputError(exc.message, hint=exc.hint) from exc


def load_array(path: str | Path, keys: Sequence[str], what: str) -> tuple[str, np.ndarray]:
    """Read one numeric array from ``.mat``, ``.h5``/``.hdf5`` (first of ``keys`` present) or ``.npy``.

    Args:
        path: The file.
        keys: Candidate variable/dataset names, in order of preference (ignored for ``.npy``).
        what: What the array is, for error messages ("MPII predictions").

    Returns:
        The key found (``""`` for ``.npy``) and the array as float64.

    Raises:
        EvaluationInputError: Unknown suffix, unreadable file, or none of ``keys`` present.
    """
    p = _require_file(path, what)
    suffix = p.suffix.lower()
    if suffix not in _PRED_SUFFIXES:
        raise EvaluationInputError(
            f"{what} file {str(p)!r} has suffix {suffix!r}; expected one of {', '.join(_PRED_SUFFIXES)}"
        )
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise EvaluationInputError(
                f"cannot read {what} from {str(p)!r}: {type(exc).__name__}: {exc}",
                hint="write it with numpy.save (no pickled objects)",
            ) from exc
        key = ""
    elif suffix == ".mat":
        data = _read_mat(p, keys, squeeze=False)
        key = next((k for k in keys if k in data), "")
        if not key:
            raise EvaluationInputError(
                f"{what} file {str(p)!r} has none of the variables {list(keys)}",
                hint=f"save the array under the name {keys[0]!r}",
            )
        arr = data[key]
    else:
        import h5py

        try:
            with h5py.File(p, "r") as fh:
                key = next((k for k in keys if k in fh and isinstance(fh[k], h5py.Dataset)), "")
                if not key:
                    raise EvaluationInputError(
                        f"{what} file {str(p)!r} has none of the datasets {list(keys)}",
                        hint=f"write the array as dataset {keys[0]!r}",
                    )
                arr = fh[key][()]
        except EvaluationInputError:
            raise
        except Exception as exc:
            raise EvaluationInputError(
                f"cannot read HDF5 file {str(p)!r}: {type(exc).__name__}: {exc}",
                hint="the file is truncated or corrupt; write it again",
            ) from exc
    arr = np.asarray(arr) if isinstance(arr, np.ndarray) else np.asarray(arr, dtype=object)
    if arr.dtype.kind not in "fiu":
        raise EvaluationInputError(f"{what} in {str(p)!r} ({key or 'array'}) has dtype {arr.dtype}; expected numbers")
    return key, arr.astype(np.float64)


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file, turning any failure into an :class:`EvaluationInputError` naming it."""
    p = _require_file(path, what)
    try:
        with p.open("rb") as fh:
            return json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvaluationInputError(
            f"{what} file {str(p)!r} is not valid JSON: {exc}", hint="the file is truncated or not JSON"
        ) from exc


def _check_finite(arr: np.ndarray, p: Path, what: str, allow_missing: bool) -> None:
    bad = ~np.isfinite(arr)
    if bad.any() and not allow_missing:
        raise EvaluationInputError(
            f"{what} in {str(p)!r} hold {int(bad.sum())} non-finite coordinates (NaN or inf)",
            hint="predict every joint, or pass --allow-missing to count non-finite predictions as misses",
        )


# --------------------------------------------------------------------------------------------------
# MPII
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MpiiGroundTruth:
    """The standard MPII validation ground truth (``detections_our_format.mat`` / HRNet ``gt_valid.mat``).

    Attributes:
        path: The file read.
        gt_xy: ``(N, 16, 2) float64`` joints in MPII order (MATLAB 1-based pixel coordinates, as stored).
        visible: ``(N, 16) bool`` joints that count (``jnt_missing == 0``).
        head_boxes_xyxy: ``(N, 4) float64`` head boxes ``[x1, y1, x2, y2]``.
        stored_pred_xy: ``(N, 16, 2) float64`` predictions stored alongside (``pos_pred_src``,
            Tompson et al.'s in the standard file) or None.
    """

    path: Path
    gt_xy: np.ndarray
    visible: np.ndarray
    head_boxes_xyxy: np.ndarray
    stored_pred_xy: np.ndarray | None

    @property
    def num_people(self) -> int:
        """N."""
        return int(self.gt_xy.shape[0])


def _mpii_from_matlab(arr: np.ndarray) -> np.ndarray:
    """``(16, 2, N)`` MATLAB layout -> ``(N, 16, 2)``."""
    return np.ascontiguousarray(np.transpose(arr, (2, 0, 1)), dtype=np.float64)


def read_mpii_gt(path: str | Path) -> MpiiGroundTruth:
    """Read the MPII PCKh ground truth: ``pos_gt_src (16,2,N)``, ``jnt_missing (16,N)``, ``headboxes_src (2,2,N)``.

    Args:
        path: ``detections_our_format.mat`` or an equivalent ``gt_valid.mat``.

    Returns:
        The :class:`MpiiGroundTruth`.

    Raises:
        EvaluationInputError: Unreadable file, missing variables, wrong shapes, a joint order other
            than MPII's (``dataset_joints``), or non-finite coordinates of visible joints.
    """
    p = _require_file(path, "MPII ground-truth")
    required = ("pos_gt_src", "jnt_missing", "headboxes_src")
    data = _read_mat(p, (*required, "pos_pred_src", "dataset_joints"), squeeze=False)
    missing = [k for k in required if k not in data]
    if missing:
        raise EvaluationInputError(
            f"MPII ground-truth file {str(p)!r} lacks {missing}; expected pos_gt_src (16,2,N), "
            "jnt_missing (16,N) and headboxes_src (2,2,N)",
            hint="pass the standard validation GT (detections_our_format.mat or gt_valid.mat)",
        )
    pos = np.asarray(data["pos_gt_src"], dtype=np.float64)
    if pos.ndim != 3 or pos.shape[:2] != (16, 2):
        raise EvaluationInputError(f"pos_gt_src in {str(p)!r} has shape {pos.shape}; expected (16, 2, N)")
    n = pos.shape[2]
    missing_flags = np.asarray(data["jnt_missing"])
    boxes = np.asarray(data["headboxes_src"], dtype=np.float64)
    if missing_flags.shape != (16, n):
        raise EvaluationInputError(f"jnt_missing in {str(p)!r} has shape {missing_flags.shape}; expected (16, {n})")
    if boxes.shape != (2, 2, n):
        raise EvaluationInputError(f"headboxes_src in {str(p)!r} has shape {boxes.shape}; expected (2, 2, {n})")
    if "dataset_joints" in data:
        names = [as_str(c) for c in as_list(data["dataset_joints"])]
        if names != list(MPII16.source_names or ()):
            raise EvaluationInputError(
                f"dataset_joints in {str(p)!r} is {names}; expected MPII order {list(MPII16.source_names or ())}",
                hint="reorder the joints to MPII ids 0..15 before evaluating",
            )
    gt_xy = _mpii_from_matlab(pos)
    visible = (missing_flags == 0).T.copy()
    bad = visible & ~np.all(np.isfinite(gt_xy), axis=-1)
    if bad.any():
        raise EvaluationInputError(
            f"pos_gt_src in {str(p)!r} is not finite at {int(bad.sum())} joints marked present in jnt_missing",
            hint="set jnt_missing to 1 for unknown joints",
        )
    # headboxes_src[corner, xy, n]: corner 0 = top-left, 1 = bottom-right.
    head_boxes = np.concatenate([boxes[0].T, boxes[1].T], axis=1)
    if not np.all(np.isfinite(head_boxes[visible.any(axis=1)])):
        raise EvaluationInputError(f"headboxes_src in {str(p)!r} has non-finite values", hint="check the head boxes")
    stored = None
    if "pos_pred_src" in data and np.asarray(data["pos_pred_src"]).shape == pos.shape:
        stored = _mpii_from_matlab(np.asarray(data["pos_pred_src"], dtype=np.float64))
    return MpiiGroundTruth(path=p, gt_xy=gt_xy, visible=visible, head_boxes_xyxy=head_boxes, stored_pred_xy=stored)


def read_mpii_predictions(path: str | Path, num_people: int, allow_missing: bool = False) -> np.ndarray:
    """Read MPII predictions: ``preds`` ``(N, 16, 2)`` (pytorch-pose/HRNet ``pred.mat``, ``.h5``, ``.npy``).

    A ``.mat`` without ``preds`` but with ``pos_pred_src (16, 2, N)`` (the official evaluator's
    layout, as in ``detections_our_format.mat``) is accepted too. ``(N, 16, 3)`` arrays (x, y,
    score) are cut to x, y.

    Args:
        path: Prediction file.
        num_people: N of the ground truth; the predictions must have as many rows, in the same order.
        allow_missing: Accept non-finite coordinates (they count as misses).

    Returns:
        ``(N, 16, 2) float64`` predictions as stored.

    Raises:
        EvaluationInputError: Unreadable file, no ``preds``, wrong shape, or NaN without ``allow_missing``.
    """
    p = _require_file(path, "MPII predictions")
    key, arr = load_array(p, ("preds", "pos_pred_src"), "MPII predictions")
    if key == "pos_pred_src":
        if arr.shape != (16, 2, num_people):
            raise EvaluationInputError(
                f"pos_pred_src in {str(p)!r} has shape {arr.shape}; expected (16, 2, {num_people})"
            )
        arr = _mpii_from_matlab(arr)
    if arr.ndim == 3 and arr.shape[1:] == (16, 3):
        arr = arr[..., :2]
    if arr.shape != (num_people, 16, 2):
        raise EvaluationInputError(
            f"MPII predictions {key or 'array'} in {str(p)!r} have shape {arr.shape}; "
            f"expected ({num_people}, 16, 2): one row per ground-truth person, MPII joint order",
            hint="joint order: " + ", ".join(MPII16.source_names or ()),
        )
    _check_finite(arr, p, "MPII predictions", allow_missing)
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------------------------------
# FLIC
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlicGroundTruth:
    """FLIC's ``examples.mat``.

    Attributes:
        path: The file read.
        coords_xy: ``(N, 29, 2) float64`` in ``flic29`` order (MODEC ``lookupPart`` slot k, 1-based,
            is joint k - 1 here), NaN where unlabelled, MATLAB pixel coordinates as stored.
        is_test: ``(N,) bool`` ``istest`` flags.
        filepaths: Image file names, one per example.
    """

    path: Path
    coords_xy: np.ndarray
    is_test: np.ndarray
    filepaths: tuple[str, ...]

    @property
    def test_coords_xy(self) -> np.ndarray:
        """``(N_test, 29, 2)`` coordinates of the test examples, in file order."""
        return self.coords_xy[self.is_test]


def read_flic_gt(path: str | Path) -> FlicGroundTruth:
    """Read FLIC's ``examples.mat`` (struct array ``examples`` with ``coords`` 2x29, ``istest``, ``filepath``).

    Args:
        path: ``examples.mat`` (v5/v7 or v7.3).

    Returns:
        The :class:`FlicGroundTruth`.

    Raises:
        EvaluationInputError: Unreadable/truncated file, no ``examples`` struct, or an example whose
            ``coords`` is not 2x29 or whose ``istest`` is not one number.
    """
    p = _require_file(path, "FLIC ground-truth")
    examples = as_list(_read_mat(p, ("examples",), squeeze=True).get("examples"))
    if not examples or not all(isinstance(ex, dict) for ex in examples):
        raise EvaluationInputError(
            f"FLIC ground-truth file {str(p)!r} has no struct array 'examples'",
            hint="pass FLIC's examples.mat",
        )
    fields = tuple(examples[0])
    for field in ("coords", "istest"):
        if field not in fields:
            raise EvaluationInputError(f"'examples' in {str(p)!r} has no field {field!r}; fields: {fields}")
    coords = np.empty((len(examples), FLIC29.num_joints, 2), dtype=np.float64)
    is_test = np.zeros(len(examples), dtype=bool)
    paths: list[str] = []
    for i, rec in enumerate(examples):
        try:
            c = np.asarray(rec["coords"], dtype=np.float64)
            if c.shape != (2, FLIC29.num_joints):
                raise ValueError(f"coords has shape {c.shape}")
            coords[i] = c.T  # (2, 29): x in row 0, y in row 1 -> (29, 2); slot k (1-based) -> joint k - 1
            flag = as_float(rec["istest"])
            if flag is None:
                raise ValueError(f"istest is {rec['istest']!r}, not one number")
            is_test[i] = bool(flag)
        except (ValueError, TypeError) as exc:
            raise EvaluationInputError(
                f"example {i} (1-based {i + 1}) in {str(p)!r} is malformed: {exc}; expected coords 2x29 and a scalar istest"
            ) from exc
        paths.append(as_str(rec.get("filepath")) or "")
    return FlicGroundTruth(path=p, coords_xy=coords, is_test=is_test, filepaths=tuple(paths))


def read_flic_predictions(path: str | Path, num_examples: int, allow_missing: bool = False) -> np.ndarray:
    """Read FLIC arm predictions: ``pred_coords`` ``(2, 6, N)`` as MODEC saves it, or ``(N, 6, 2)``.

    Joint order is MODEC's: lsho, lelb, lwri, rsho, relb, rwri; N = number of test examples, in
    ``examples.mat`` order. For ``.mat``/``.h5`` files the variable is ``pred_coords`` (or
    ``preds``); ``.npy`` holds the bare array. When both layouts fit (N = 2) a ``.mat``'s array is
    taken as MODEC's ``(2, 6, N)`` and any other file's as ``(N, 6, 2)``.

    Args:
        path: Prediction file.
        num_examples: Number of FLIC test examples.
        allow_missing: Accept non-finite coordinates (they count as misses).

    Returns:
        ``(N, 6, 2) float64``.

    Raises:
        EvaluationInputError: Unreadable file, missing variable, wrong shape, or NaN without ``allow_missing``.
    """
    p = _require_file(path, "FLIC predictions")
    key, arr = load_array(p, ("pred_coords", "preds"), "FLIC predictions")
    modec_shape, ours_shape = (2, 6, num_examples), (num_examples, 6, 2)
    prefer_modec = p.suffix.lower() == ".mat"
    if arr.shape == modec_shape and (prefer_modec or arr.shape != ours_shape):
        arr = np.transpose(arr, (2, 1, 0))
    elif arr.shape != ours_shape:
        raise EvaluationInputError(
            f"FLIC predictions {key or 'array'} in {str(p)!r} have shape {arr.shape}; expected "
            f"{modec_shape} (MODEC's pred_coords) or {ours_shape}, for the {num_examples} test examples "
            "in order lsho, lelb, lwri, rsho, relb, rwri",
        )
    _check_finite(arr, p, "FLIC predictions", allow_missing)
    return np.ascontiguousarray(arr, dtype=np.float64)

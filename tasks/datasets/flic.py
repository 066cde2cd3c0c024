"""FLIC and FLIC-full (MODEC, Sapp & Taskar 2013): ``examples.mat`` → canonical ``samples``.

``examples`` is a 1×N struct array with ``coords`` (2×29, x in row 0, y in row 1, NaN where not
labelled), ``filepath``, ``moviename``, ``currframe``, ``imgdims`` ([H W 3]), ``torsobox``
([x1 y1 x2 y2]), ``istrain``/``istest`` and, in FLIC-full only, ``isbad``/``isunchecked``.

* All 29 MODEC slots are kept, in MODEC ``lookupPart`` order (skeleton ``flic29``); FLIC labels 11
  of them. A labelled joint has visibility 2, or 1 when it lies outside the image (FLIC records no
  occlusion, but off-frame wrists are labelled); an unlabelled one is NaN with visibility 0.
* Coordinates and ``torsobox`` are MATLAB 1-based and are converted to 0-based (x-1, y-1) here.
* ``bbox_xyxy_px`` is the min/max box of the labelled joints (the upper body: FLIC labels no legs).
* Splits come from ``istrain``/``istest`` (``official``), or from the FLIC-plus index lists
  (``plus``: ``tr_plus_indices.mat`` for train, ``ts_plus_indices.mat`` for test when present, else
  ``istest``; 1-based indices into ``examples``, range-checked). Never a random split.
* ``is_backwards_facing`` is MODEC's test: every left shoulder/elbow/wrist has a smaller x than its
  right partner (null when one of the six is unlabelled). The annotation is stored as given.
* Several examples may share one frame (two people): the source key is ``filepath:k`` with ``k`` the
  occurrence of that frame in ``examples`` (``person_index``); ``extra`` has the 1-based example index.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

import numpy as np

from schemas.errors import AnnotationFormatError, ConfigError, RejectReason
from schemas.skeletons import get_skeleton
from storage.fs import file_sha256
from tasks.common import joint_box, relative_name, require_file, safe_relative_path
from tasks.datasets._matlab import as_int, as_list, as_str, load_mat
from tasks.datasets.base import AdapterParams, DatasetAdapter, ParseResult, Reject, Source, rejects_table

NUM_SLOTS = 29
# MODEC lookupPart indices (0-based) of the left/right arm joints compared for backwards facing.
_LEFT_ARM = (0, 1, 2)  # lsho, lelb, lwri
_RIGHT_ARM = (3, 4, 5)  # rsho, relb, rwri
# Tompson et al.'s FLIC-plus training list: one file for both adapters (it indexes FLIC-full).
PLUS_TRAIN_INDICES = Source(
    name="plus_train_indices",
    url="https://cims.nyu.edu/~tompson/data/tr_plus_indices.mat",
    filename="tr_plus_indices.mat",
    size_bytes=34960,
    required=False,
    description="FLIC-plus training indices (Tompson et al. 2014), 1-based into FLIC-full",
)


class FlicParams(AdapterParams):
    """FLIC parse policy.

    Attributes:
        annotation_file: ``examples.mat``, relative to the source folder (searched in ``FLIC/`` and
            ``FLIC-full/`` too) or absolute.
        split_protocol: ``official`` (``istrain``/``istest``) or ``plus`` (FLIC-plus index files).
        plus_indices_dir: Folder of ``tr_plus_indices.mat`` (and optionally ``ts_plus_indices.mat``);
            relative to the source folder or absolute; default: the source folder.
        reject_bad: Reject FLIC-full examples flagged ``isbad``.
        reject_unchecked: Reject FLIC-full examples flagged ``isunchecked``.
        image_dir: Folder of the frames, relative to the source folder.
    """

    annotation_file: str = "examples.mat"
    split_protocol: Literal["official", "plus"] = "official"
    plus_indices_dir: str | None = None
    reject_bad: bool = True
    reject_unchecked: bool = True
    image_dir: str = "images"


def backwards_facing(xy: np.ndarray) -> bool | None:
    """MODEC's test: every left arm joint lies left (smaller x) of its right partner.

    Args:
        xy: ``(29, 2) float32`` FLIC coordinates, NaN where unlabelled.

    Returns:
        True/False, or None when a shoulder, elbow or wrist is unlabelled.
    """
    left = xy[list(_LEFT_ARM), 0]
    right = xy[list(_RIGHT_ARM), 0]
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        return None
    return bool(np.all(left < right))


def decode_coords(coords: Any, width_px: int | None, height_px: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Convert one ``coords`` field (2×29, MATLAB 1-based) to 0-based keypoints and visibility.

    Args:
        coords: ``(2, 29)`` x row / y row, NaN where unlabelled.
        width_px: Image width W (None when unknown: no off-image test).
        height_px: Image height H.

    Returns:
        ``(29, 2) float32`` 0-based coordinates, NaN where unlabelled, and ``(29,) int8`` visibility:
        2 labelled, 1 labelled but outside the image, 0 unlabelled.

    Raises:
        ValueError: If ``coords`` is not a numeric 2×29 array.
    """
    arr = np.asarray(coords)
    if arr.dtype.kind not in "biuf" or arr.shape != (2, NUM_SLOTS):
        raise ValueError(f"coords has shape {arr.shape} and dtype {arr.dtype}; expected a 2×29 numeric array")
    xy = (arr.T.astype(np.float64) - 1.0).astype(np.float32)  # MATLAB 1-based -> 0-based pixel centres
    labelled = np.isfinite(xy).all(axis=1)  # a value too large for float32 becomes inf: not a position
    xy[~labelled] = np.nan
    vis = np.where(labelled, 2, 0).astype(np.int8)
    if width_px is not None and height_px is not None:
        with np.errstate(invalid="ignore"):
            outside = labelled & (
                (xy[:, 0] < -0.5) | (xy[:, 1] < -0.5) | (xy[:, 0] > width_px - 0.5) | (xy[:, 1] > height_px - 0.5)
            )
        vis[outside] = 1
    return xy, vis


def read_plus_indices(path: Path, variable: str, count: int) -> np.ndarray:
    """Read a FLIC-plus index file (1-based example indices) and return 0-based indices.

    Raises:
        AnnotationFormatError: Missing variable, non-integer values, or indices outside ``1..count``
            (e.g. FLIC-full indices applied to the 5003-example FLIC).
    """
    raw = load_mat(path, [variable])[variable]
    arr = np.atleast_1d(np.asarray(raw if raw is not None else [], dtype=np.float64)).ravel()
    if arr.size == 0:
        raise AnnotationFormatError(f"{path}: {variable!r} is empty; expected 1-based example indices")
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise AnnotationFormatError(f"{path}: {variable!r} holds non-integer values; expected 1-based example indices")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 1 or hi > count:
        raise AnnotationFormatError(
            f"{path}: {variable!r} indexes examples {lo}..{hi}, but the examples file has {count} (valid: 1..{count})",
            hint="FLIC-plus indices index FLIC-full (20928 examples); parse flic_full, or use split_protocol=official",
        )
    if len(np.unique(arr)) != arr.size:
        raise AnnotationFormatError(f"{path}: {variable!r} lists some example indices twice")
    return arr.astype(np.int64) - 1  # 1-based MATLAB indices -> 0-based


class FlicAdapter(DatasetAdapter):
    """FLIC: 5003 frames from 30 Hollywood movies, 3987 train / 1016 test (``examples.mat``)."""

    name: ClassVar[str] = "flic"
    skeleton: ClassVar[str | None] = "flic29"
    folder_names: ClassVar[tuple[str, ...]] = ("FLIC",)
    description: ClassVar[str] = (
        "Frames Labeled In Cinema: 5003 frames from 30 movies, upper-body joints of one person per "
        "example (29 MODEC slots, 11 labelled), 3987 train / 1016 test."
    )
    homepage: ClassVar[str] = "https://bensapp.github.io/flic-dataset.html"
    citation: ClassVar[str] = (
        "@inproceedings{modec13, title={MODEC: Multimodal Decomposable Models for Human Pose Estimation}, "
        "author={Sapp, Benjamin and Taskar, Ben}, booktitle={CVPR}, year={2013}}"
    )
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    sources: ClassVar[tuple[Source, ...]] = (
        Source(
            name="dataset",
            url="http://vision.grasp.upenn.edu/video/FLIC.zip",
            filename="FLIC.zip",
            extract="zip",
            description="FLIC/examples.mat and FLIC/images/*.jpg (720×480 frames)",
        ),
        PLUS_TRAIN_INDICES,
    )
    Params: ClassVar[type[AdapterParams]] = FlicParams

    def _find_annotations(self, source: Path, params: FlicParams) -> tuple[Path, Path]:
        """Return (examples.mat, source root) for ``source`` (a folder or the file itself)."""
        if source.is_file():
            return source, source.parent
        candidate = Path(params.annotation_file)
        if candidate.is_absolute():
            return require_file(candidate, f"{self.name} annotation file"), source
        for folder in (source, *(source / f for f in self.folder_names)):
            if (folder / candidate).is_file():
                return folder / candidate, folder
        return require_file(source / candidate, f"{self.name} annotation file ({candidate})"), source

    def parse(self, source: Path, params: AdapterParams) -> ParseResult:
        """Parse ``examples.mat`` (FLIC or FLIC-full) under ``source``.

        Raises:
            SourceError: ``examples.mat`` (or a requested FLIC-plus index file) is missing.
            AnnotationFormatError: No ``examples`` struct array, or bad FLIC-plus indices.
        """
        if not isinstance(params, FlicParams):
            raise ConfigError(f"{self.name} expects FlicParams, got {type(params).__name__}")
        ann_path, root = self._find_annotations(Path(source), params)
        examples = as_list(load_mat(ann_path, ["examples"])["examples"])
        if not examples or not all(isinstance(e, dict) for e in examples):
            raise AnnotationFormatError(f"{ann_path}: 'examples' is not a struct array of FLIC examples")
        missing = {"coords", "filepath"} - set(examples[0])
        if missing:
            raise AnnotationFormatError(
                f"{ann_path}: 'examples' lacks the field(s) {sorted(missing)}; fields: {sorted(examples[0])}"
            )
        count = len(examples)
        checksums = {relative_name(ann_path, root): file_sha256(ann_path)}
        split_by_index = self._plus_splits(Path(source), root, params, examples, checksums)

        skeleton = get_skeleton("flic29")
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        occurrences: Counter[str] = Counter()
        movies: set[str] = set()
        off_image = 0
        for i, ex in enumerate(examples):
            filepath = as_str(ex.get("filepath")) or ""
            k = occurrences[filepath]
            occurrences[filepath] += 1
            key = f"{filepath}:{k}" if filepath else f"examples({i + 1})"
            official = self._official_split(ex)
            split = official if split_by_index is None else split_by_index.get(i)
            if split_by_index is not None and split is None:
                rejects.append(Reject(key, RejectReason.NOT_IN_SPLIT, f"example {i + 1} is in no FLIC-plus list"))
                continue
            if split is None:
                rejects.append(
                    Reject(key, RejectReason.MALFORMED_ANNOTATION, f"example {i + 1}: istrain/istest are not exactly one of 0/1")
                )
                continue
            if params.reject_bad and as_int(ex.get("isbad")) == 1:
                rejects.append(Reject(key, RejectReason.BAD_FLAG, f"example {i + 1} has isbad=1", split=split))
                continue
            if params.reject_unchecked and as_int(ex.get("isunchecked")) == 1:
                rejects.append(Reject(key, RejectReason.UNCHECKED, f"example {i + 1} has isunchecked=1", split=split))
                continue
            rel = safe_relative_path(root, f"{params.image_dir}/{filepath}") if filepath else None
            if rel is None or PurePosixPath(filepath).name != filepath:
                rejects.append(
                    Reject(key, RejectReason.PATH_ESCAPES_SOURCE, f"example {i + 1}: filepath {filepath!r}", split=split)
                )
                continue
            dims = np.asarray(ex.get("imgdims") if ex.get("imgdims") is not None else [], dtype=np.float64).ravel()
            height_px, width_px = (int(dims[0]), int(dims[1])) if dims.size >= 2 else (None, None)
            try:
                xy, vis = decode_coords(ex.get("coords"), width_px, height_px)
            except ValueError as exc:
                rejects.append(Reject(key, RejectReason.MALFORMED_ANNOTATION, f"example {i + 1}: {exc}", split=split))
                continue
            labelled = vis > 0
            if not labelled.any():
                rejects.append(Reject(key, RejectReason.ZERO_KEYPOINTS, f"example {i + 1}: no labelled joint", split=split))
                continue
            off_image += int((vis == 1).sum())
            bbox, center = joint_box(xy, labelled)
            torso = self._torso_box(ex.get("torsobox"))
            movie = as_str(ex.get("moviename"))
            if movie:
                movies.add(movie)
            stem = PurePosixPath(filepath).stem
            rows.append(
                {
                    "sample_id": f"{self.name}-{stem}-p{k}",
                    "dataset": self.name,
                    "split": split,
                    "image_path": rel.as_posix(),
                    "image_width_px": width_px,
                    "image_height_px": height_px,
                    "person_index": k,
                    "source_key": key,
                    "bbox_xyxy_px": bbox,
                    "center_xy_px": center,
                    "torso_box_xyxy_px": torso,
                    "is_backwards_facing": backwards_facing(xy),
                    "skeleton": skeleton.name,
                    "keypoints_xy_px": xy.tolist(),
                    "keypoints_visibility": vis.tolist(),
                    "extra": json.dumps(
                        {
                            "example_index": i + 1,
                            "moviename": movie,
                            "currframe": as_int(ex.get("currframe")),
                            "isbad": as_int(ex.get("isbad")),
                            "isunchecked": as_int(ex.get("isunchecked")),
                        }
                    ),
                }
            )
        records = self.table(rows)
        split_counts = Counter(records.column("split").to_pylist())
        stats = {
            "examples": count,
            "movies": len(movies),
            "split_protocol": params.split_protocol,
            "per_split": dict(sorted(split_counts.items())),
            "labelled_off_image": off_image,
            "backwards_facing": sum(1 for r in rows if r["is_backwards_facing"]),
        }
        return ParseResult(records=records, rejects=rejects_table(rejects), input_checksums=checksums, stats=stats)

    # --- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _official_split(ex: dict[str, Any]) -> str | None:
        is_train, is_test = as_int(ex.get("istrain")), as_int(ex.get("istest"))
        if is_train == 1 and is_test in (0, None):
            return "train"
        if is_test == 1 and is_train in (0, None):
            return "test"
        return None

    @staticmethod
    def _torso_box(value: Any) -> list[float] | None:
        if value is None:
            return None
        box = np.asarray(value, dtype=np.float64).ravel()
        if box.size != 4 or not np.isfinite(box).all():
            return None
        return (box - 1.0).tolist()  # MATLAB 1-based -> 0-based, like the joints

    def _plus_splits(
        self, source: Path, root: Path, params: FlicParams, examples: list[Any], checksums: dict[str, str]
    ) -> dict[int, str] | None:
        """0-based example index → split for ``split_protocol=plus`` (None for ``official``).

        Without ``ts_plus_indices.mat`` the FLIC-plus test set is FLIC's ``istest`` examples.
        """
        if params.split_protocol == "official":
            return None
        count = len(examples)
        folder = root
        if params.plus_indices_dir:
            folder = Path(params.plus_indices_dir)
            if not folder.is_absolute():
                folder = (source if source.is_dir() else root) / folder
        train_path = require_file(folder / "tr_plus_indices.mat", "FLIC-plus training indices (tr_plus_indices.mat)")
        train = read_plus_indices(train_path, "tr_plus_indices", count)
        checksums[relative_name(train_path, root)] = file_sha256(train_path)
        test_path = folder / "ts_plus_indices.mat"
        if test_path.is_file():
            test = read_plus_indices(test_path, "ts_plus_indices", count)
            checksums[relative_name(test_path, root)] = file_sha256(test_path)
        else:
            test = None
        out = {int(i): "train" for i in train}
        if test is not None:
            both = sorted(set(out) & {int(i) for i in test})
            if both:
                raise AnnotationFormatError(
                    f"{test_path}: {len(both)} example(s) are in both FLIC-plus lists (first: {both[0] + 1})"
                )
            out.update({int(i): "test" for i in test})
        if test is None:
            out.update({i: "test" for i, ex in enumerate(examples) if as_int(ex.get("istest")) == 1 and i not in out})
        return out


class FlicFullAdapter(FlicAdapter):
    """FLIC-full: 20928 examples with ``isbad``/``isunchecked`` flags (FLIC-plus indexes these)."""

    name: ClassVar[str] = "flic_full"
    folder_names: ClassVar[tuple[str, ...]] = ("FLIC-full",)
    description: ClassVar[str] = (
        "FLIC-full: all 20928 annotated frames of the FLIC movies, including those flagged isbad or "
        "isunchecked (rejected by default); the base of Tompson et al.'s FLIC-plus training set."
    )
    sources: ClassVar[tuple[Source, ...]] = (
        Source(
            name="dataset",
            url="http://vision.grasp.upenn.edu/video/FLIC-full.zip",
            filename="FLIC-full.zip",
            extract="zip",
            description="FLIC-full/examples.mat and FLIC-full/images/*.jpg",
        ),
        PLUS_TRAIN_INDICES,
    )


__all__ = ["FlicAdapter", "FlicFullAdapter", "FlicParams", "backwards_facing", "decode_coords", "read_plus_indices"]

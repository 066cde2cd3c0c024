"""COCO keypoints (``person_keypoints_*.json``) → canonical ``samples``.

On-disk layouts accepted as ``source``:

* the official one after unpacking the archives: ``annotations/person_keypoints_{split}2017.json``
  and ``{split}2017/*.jpg``;
* a flat folder: ``person_keypoints_*.json`` beside ``images/`` (e.g. COCO-MINI);
* a single annotation file (``--source test_coco.json``) with images beside it or in ``images/``.

Policy (parameters, with MMPose's defaults): crowd annotations and annotations without a labelled
keypoint are rejected; boxes whose side is not above ``min_box_side_px`` are rejected.

Coordinates are stored exactly as COCO gives them (COCO's evaluation compares them as stored).
Unlabelled keypoints (``v = 0``, stored by COCO as ``0, 0``) become NaN. ``sample_id`` is
``coco-{image_id:012d}-{annotation_id}``: stable, unique, and sorting it keeps the people of one
image together in a shard.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import AnnotationFormatError, RejectReason, SourceError
from storage.fs import file_sha256
from tasks.common import safe_relative_path
from tasks.datasets.base import AdapterParams, DatasetAdapter, ParseResult, Reject, Source, rejects_table

_ANN_RE = re.compile(r"^person_keypoints_(?P<split>[A-Za-z]+)(?P<year>\d{4})?\.json$")
_SPLIT_NAMES = {"val": "val", "train": "train", "test": "test", "minival": "val"}
_NUM_JOINTS = 17


class CocoParams(AdapterParams):
    """COCO parse policy.

    Attributes:
        keep_crowd: Keep ``iscrowd`` annotations (default: reject as ``crowd``).
        min_keypoints: Minimum labelled keypoints (``v > 0``); fewer → ``zero_keypoints``.
        min_box_side_px: A box side must be strictly above this, else ``box_too_small``.
        split: Split name used when ``source`` is a single annotation file.
        check_keypoints_in_image: Reject labelled keypoints outside the image.
    """

    keep_crowd: bool = False
    min_keypoints: int = 1
    min_box_side_px: float = 0.0
    split: str = "val"
    check_keypoints_in_image: bool = True


class CocoKeypoints(DatasetAdapter):
    """COCO 2017 person keypoints."""

    name = "coco"
    skeleton = "coco17"
    description = "COCO 2017 person keypoints: 17 joints per person, boxes, crowd flags."
    homepage = "https://cocodataset.org/#keypoints-2017"
    licence = "annotations CC BY 4.0; images under their own Flickr licences (cocodataset.org/#termsofuse)"
    citation = "Lin et al., Microsoft COCO: Common Objects in Context, ECCV 2014."
    splits = ("train", "val")
    sources = (
        Source(
            name="annotations",
            url="http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
            filename="annotations_trainval2017.zip",
            size_bytes=252907541,
            extract="zip",
            description="instances, captions and person_keypoints for train2017 and val2017",
        ),
        Source(
            name="images_val",
            url="http://images.cocodataset.org/zips/val2017.zip",
            filename="val2017.zip",
            size_bytes=815585330,
            extract="zip",
            description="5,000 validation images",
        ),
        Source(
            name="images_train",
            url="http://images.cocodataset.org/zips/train2017.zip",
            filename="train2017.zip",
            size_bytes=19336861798,
            extract="zip",
            required=False,
            description="118,287 training images (19 GB; optional)",
        ),
    )
    Params = CocoParams

    def parse(self, source: Path, params: AdapterParams) -> ParseResult:
        """Parse every ``person_keypoints_*.json`` under ``source`` (or the one file given).

        Raises:
            SourceError: When no annotation file is found.
            AnnotationFormatError: When a file is not valid COCO JSON (names file and position).
        """
        p = params if isinstance(params, CocoParams) else self.make_params(params.model_dump())
        source = Path(source)
        root = source.parent if source.is_file() else source
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        checksums: dict[str, str] = {}
        stats: dict[str, Any] = {"images": 0, "annotation_files": 0}
        for ann_file, split in _annotation_files(source, p.split):
            rel = ann_file.relative_to(root).as_posix()
            checksums[rel] = file_sha256(ann_file)
            data = load_json(ann_file)
            if not isinstance(data, dict):
                raise AnnotationFormatError(
                    f"{ann_file}: the top level is a JSON {type(data).__name__}, not an object with 'images' and 'annotations'",
                    hint="is this a COCO annotation file? (results files are lists: evaluate them with posepipe evaluate coco)",
                )
            stats["annotation_files"] += 1
            images_dir = _images_dir(root, ann_file, split, data)
            n_images, file_rows, file_rejects = self._parse_file(data, ann_file, split, images_dir, root, p)
            stats["images"] += n_images
            rows.extend(file_rows)
            rejects.extend(file_rejects)
        return ParseResult(records=self.table(rows), rejects=rejects_table(rejects), input_checksums=checksums, stats=stats)

    def _parse_file(
        self, data: dict[str, Any], ann_file: Path, split: str, images_dir: str, root: Path, p: CocoParams
    ) -> tuple[int, list[dict[str, Any]], list[Reject]]:
        for key in ("images", "annotations"):
            if not isinstance(data.get(key), list):
                raise AnnotationFormatError(f"{ann_file}: top-level key {key!r} missing or not a list", hint="is this a COCO annotation file?")
        images: dict[int, dict[str, Any]] = {}
        malformed: dict[str, str] = {}  # image entries that cannot be used, by their id as text
        for position, img in enumerate(data["images"]):
            if not isinstance(img, dict):
                continue
            image_id = _as_int(img.get("id"))
            if image_id is None:
                malformed[str(img.get("id"))] = f"{ann_file.name}: images[{position}] has id {img.get('id')!r} (not an integer)"
            else:
                images[image_id] = img
        seen: set[Any] = set()
        # Two passes, same checks in the same order as one: per annotation, the structural checks up
        # to the keypoint count (anything odd raises and becomes malformed_annotation); then the
        # numeric checks on all survivors' keypoints at once (numpy per person cost ~40 us of ~60).
        outcomes: list[Reject | _Candidate] = []
        for ann in data["annotations"]:
            key = str(ann.get("id", "?")) if isinstance(ann, dict) else "?"
            try:
                if isinstance(ann, dict) and _as_int(ann.get("image_id")) is None and str(ann.get("image_id")) in malformed:
                    outcomes.append(Reject(key, RejectReason.MALFORMED_ANNOTATION, malformed[str(ann.get("image_id"))], split=split))
                    continue
                outcomes.append(self._screen(ann, images, split, seen, p))
            except (TypeError, ValueError, KeyError) as exc:
                outcomes.append(Reject(key, RejectReason.MALFORMED_ANNOTATION, f"{ann_file.name}: {exc!r}", split=split))
        candidates = [o for o in outcomes if isinstance(o, _Candidate)]
        people = _PeopleKeypoints.of([c.keypoints for c in candidates])
        paths: dict[int, tuple[str | None, RejectReason | None, str]] = {}  # per image: checked once, not per person
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        done = iter(range(len(candidates)))
        for outcome in outcomes:
            if not isinstance(outcome, _Candidate):
                rejects.append(outcome)
                continue
            try:
                row, reject = self._convert(outcome, people, next(done), split, images_dir, root, p, paths)
            except (TypeError, ValueError, KeyError) as exc:
                row, reject = None, Reject(outcome.key, RejectReason.MALFORMED_ANNOTATION, f"{ann_file.name}: {exc!r}", split=split)
            if row is not None:
                rows.append(row)
            else:
                rejects.append(reject)  # type: ignore[arg-type]
        return len(images), rows, rejects

    def _screen(self, ann: dict[str, Any], images: dict[int, dict[str, Any]], split: str, seen: set[Any], p: CocoParams) -> Reject | _Candidate:
        """The per-annotation checks up to the keypoint count (first pass of :meth:`_parse_file`)."""
        ann_id = ann["id"]
        key = str(ann_id)
        if ann_id in seen:
            return Reject(key, RejectReason.DUPLICATE_ID, f"annotation id {ann_id} appears more than once", split=split)
        seen.add(ann_id)
        if int(ann.get("category_id", 1)) != 1:
            return Reject(key, RejectReason.MALFORMED_ANNOTATION, f"category_id {ann.get('category_id')} is not person", split=split)
        image = images.get(int(ann["image_id"]))
        if image is None:
            return Reject(key, RejectReason.UNKNOWN_IMAGE, f"image_id {ann['image_id']} not in images", split=split)
        if ann.get("iscrowd", 0) and not p.keep_crowd:
            return Reject(key, RejectReason.CROWD, "iscrowd=1", split=split)
        kps = np.asarray(ann.get("keypoints") or [0] * (3 * _NUM_JOINTS), dtype=np.float64)
        if kps.size != 3 * _NUM_JOINTS:
            return Reject(key, RejectReason.MALFORMED_ANNOTATION, f"{kps.size} keypoint values, expected 51", split=split)
        return _Candidate(ann, key, image, kps.reshape(_NUM_JOINTS, 3))

    def _convert(
        self,
        c: _Candidate,
        people: _PeopleKeypoints,
        i: int,
        split: str,
        images_dir: str,
        root: Path,
        p: CocoParams,
        paths: dict[int, tuple[str | None, RejectReason | None, str]],
    ) -> tuple[dict[str, Any] | None, Reject | None]:
        """The rest of the checks and the record of candidate ``c`` (row ``i`` of ``people``)."""
        ann, key, image = c.ann, c.key, c.image
        labelled = int(people.labelled[i])
        if labelled < p.min_keypoints:
            return None, Reject(key, RejectReason.ZERO_KEYPOINTS, f"{labelled} labelled keypoints", split=split)
        x, y, w, h = map(float, ann["bbox"])
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(w) and math.isfinite(h)) or w <= 0 or h <= 0:
            return None, Reject(key, RejectReason.INVALID_BOX, f"bbox {ann['bbox']}", split=split)
        if w <= p.min_box_side_px or h <= p.min_box_side_px:
            return None, Reject(key, RejectReason.BOX_TOO_SMALL, f"bbox {w:.1f}x{h:.1f} px", split=split)
        width, height = int(image["width"]), int(image["height"])
        if p.check_keypoints_in_image:
            outside = people.outside(i, width, height)
            if outside:
                return None, Reject(key, RejectReason.KEYPOINTS_OUT_OF_IMAGE, f"{outside} labelled keypoints outside {width}x{height}", split=split)
        image_id = int(ann["image_id"])
        if image_id not in paths:
            paths[image_id] = _image_relpath(image, images_dir, root)
        rel, reason, detail = paths[image_id]
        if rel is None:
            return None, Reject(key, reason, detail, split=split)  # type: ignore[arg-type]
        row = {
            "sample_id": f"coco-{image_id:012d}-{ann['id']}",
            "dataset": self.name,
            "split": split,
            "image_path": rel,
            "image_width_px": width,
            "image_height_px": height,
            "person_index": 0,
            "source_key": key,
            "bbox_xyxy_px": [x, y, x + w, y + h],
            "center_xy_px": [x + w / 2, y + h / 2],
            "scale": max(w, h) / 200.0,
            "skeleton": self.skeleton,
            "keypoints_xy_px": people.xy_lists[i],
            "keypoints_visibility": people.visibility_lists[i],
            "extra": f'{{"image_id": {image_id}, "area": {_json_value(ann.get("area"))}, "iscrowd": {int(ann.get("iscrowd", 0))}}}',
        }
        return row, None


@dataclass(frozen=True)
class _Candidate:
    """An annotation that passed :meth:`CocoKeypoints._screen`: its ``(17, 3) float64`` keypoints."""

    ann: dict[str, Any]
    key: str
    image: dict[str, Any]
    keypoints: np.ndarray


@dataclass(frozen=True)
class _PeopleKeypoints:
    """The keypoint arrays of M people, computed once for all of them.

    Attributes:
        visibility: ``(M, 17) int8``, COCO's v clipped to 0..2.
        labelled: ``(M,) int`` joints with v > 0.
        xy: ``(M, 17, 2) float32``, NaN where not labelled.
        low_xy: ``(M, 2) float32`` smallest labelled x and y (inf when none).
        high_xy: ``(M, 2) float32`` largest labelled x and y (-inf when none).
        xy_lists: ``xy`` as nested lists (the records' values).
        visibility_lists: ``visibility`` as nested lists.
    """

    visibility: np.ndarray
    labelled: np.ndarray
    xy: np.ndarray
    low_xy: np.ndarray
    high_xy: np.ndarray
    xy_lists: list[list[list[float]]]
    visibility_lists: list[list[int]]

    @classmethod
    def of(cls, keypoints: list[np.ndarray]) -> _PeopleKeypoints:
        """From each person's ``(17, 3) float64`` (x, y, v) rows."""
        kps = np.stack(keypoints) if keypoints else np.zeros((0, _NUM_JOINTS, 3))
        vis = np.clip(kps[:, :, 2], 0, 2).astype(np.int8)
        labelled = vis > 0
        xy = np.where(labelled[:, :, None], kps[:, :, :2], np.nan).astype(np.float32)
        known = labelled[:, :, None] & ~np.isnan(xy)  # a NaN coordinate is never "outside"
        low = np.where(known, xy, np.inf).min(axis=1)
        high = np.where(known, xy, -np.inf).max(axis=1)
        return cls(vis, labelled.sum(axis=1), xy, low, high, xy.tolist(), vis.tolist())  # one tolist each, not one per person

    def outside(self, i: int, width: int, height: int) -> int:
        """Labelled joints of person ``i`` outside ``[0, width] x [0, height]``."""
        (x0, y0), (x1, y1) = self.low_xy[i], self.high_xy[i]
        if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:  # the usual case, without numpy
            return 0
        lab = self.xy[i][self.visibility[i] > 0]
        return int(((lab[:, 0] < 0) | (lab[:, 1] < 0) | (lab[:, 0] > width) | (lab[:, 1] > height)).sum())


def _image_relpath(image: dict[str, Any], images_dir: str, root: Path) -> tuple[str | None, RejectReason | None, str]:
    """An image entry's path relative to the source root, or why it cannot be used.

    Returns:
        ``(relative POSIX path, None, "")``, or ``(None, reason, detail)`` for a missing or
        non-text ``file_name`` (``malformed_annotation``), one that is not UTF-8 (``path_not_utf8``)
        or one that escapes the source (``path_escapes_source``).
    """
    name = image.get("file_name")
    if not isinstance(name, str) or not name:
        return None, RejectReason.MALFORMED_ANNOTATION, f"image {image.get('id')}: file_name {name!r} is not a file name"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return None, RejectReason.PATH_NOT_UTF8, f"image {image.get('id')}: file_name {shown!r} is not valid UTF-8"
    rel = safe_relative_path(root, f"{images_dir}/{name}" if images_dir else name)
    if rel is None or ".." in name.split("/") or name.startswith("/"):
        return None, RejectReason.PATH_ESCAPES_SOURCE, f"file_name {name!r}"
    return rel.as_posix(), None, ""


def _json_value(value: Any) -> str:
    """``json.dumps(value)``, without its call overhead for the usual ``None``, int and finite float.

    Example:
        ``None`` → ``null``, ``12`` → ``12``, ``1.5`` → ``1.5``, ``"x"`` → ``"x"``.
    """
    if value is None:
        return "null"
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)  # what the json encoder writes for these
    return json.dumps(value)


def _as_int(value: Any) -> int | None:
    """An integer id (``5`` or ``"5"``), or None for anything else (``"abc"``, ``None``, ``1.5``, ``True``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def load_json(path: Path) -> Any:
    """Load a JSON file, turning syntax errors into an error that names file, line and column."""
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise AnnotationFormatError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno} (byte {exc.pos}): {exc.msg}",
            hint="the file is truncated or corrupt; download it again",
        ) from exc
    except UnicodeDecodeError as exc:
        raise AnnotationFormatError(f"{path}: not UTF-8 text at byte {exc.start}", hint="is this really a JSON file?") from exc


def _annotation_files(source: Path, default_split: str) -> Iterator[tuple[Path, str]]:
    if source.is_file():
        yield source, default_split
        return
    if not source.is_dir():
        raise SourceError(f"COCO source not found: {source}", hint="pass the folder holding person_keypoints_*.json")
    found = sorted({*source.glob("person_keypoints_*.json"), *source.glob("annotations/person_keypoints_*.json")})
    if not found:
        raise SourceError(
            f"no person_keypoints_*.json under {source} or {source}/annotations",
            hint="unpack annotations_trainval2017.zip there, or pass the annotation file itself",
        )
    for path in found:
        m = _ANN_RE.match(path.name)
        split = _SPLIT_NAMES.get(m.group("split"), m.group("split")) if m else default_split
        yield path, split


def _images_dir(root: Path, ann_file: Path, split: str, data: dict[str, Any]) -> str:
    """Folder (relative to ``root``) holding this file's images: the first candidate with them."""
    m = _ANN_RE.match(ann_file.name)
    year_split = f"{m.group('split')}{m.group('year') or ''}" if m else split
    candidates = [year_split, f"images/{year_split}", "images", ""]
    rel_ann_dir = ann_file.parent.relative_to(root).as_posix()
    if rel_ann_dir not in ("", "."):
        candidates += [f"{rel_ann_dir}/images", rel_ann_dir]
    first = next((img.get("file_name") for img in data.get("images", []) if isinstance(img, dict)), None)
    if isinstance(first, str):
        for cand in candidates:
            if (root / cand / first).is_file():
                return cand
    return candidates[0]

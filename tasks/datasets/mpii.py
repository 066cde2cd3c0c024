"""MPII Human Pose: the official ``RELEASE`` ``.mat`` and the two converted JSON formats → ``samples``.

Inputs (``annotation_format``, detected from the file when ``auto``):

* ``release``: ``mpii_human_pose_v1_u12_1.mat`` (v5, or v7.3 read through h5py). ``RELEASE`` holds
  ``annolist`` (per image: ``image.name``, ``annorect`` per person with the head box ``x1 y1 x2 y2``,
  ``annopoints.point`` with ``id`` (0-based MPII joint id) ``x y is_visible``, ``scale``, ``objpos``;
  ``frame_sec``, ``vididx``), ``img_train``, ``single_person``, ``act`` (``cat_name``, ``act_name``,
  ``act_id``) and ``video_list``. Every field is optional: a person without ``annopoints`` in a
  training image is rejected (``no_annotation``); a point without ``is_visible`` counts as visible
  (as CPM's ``genJSON.m``); ``is_visible`` may be a number or a char; an empty ``act`` gives nulls.
* ``hrnet_json``: HRNet/MMPose ``mpii_{train,val,test}.json`` (``image``, ``center``, ``scale``,
  ``joints`` 16×2, ``joints_vis``). The split comes from ``json_split`` or the file name.
* ``cpm_json``: CPM / pytorch-pose ``mpii_annotations.json`` (``img_paths``, ``objpos``,
  ``joint_self`` 16×[x y vis], ``scale_provided``, ``annolist_index``, ``people_index``,
  ``isValidation``; jsonlab encodes empty fields as ``{"_ArrayType_":..., "_ArrayData_": null}``).

All three store MATLAB 1-based pixel coordinates (HRNet and MMPose subtract 1 when loading); they
are converted to 0-based (x-1, y-1) here, for joints, ``objpos`` and head boxes. Visibility: 2 =
labelled and visible, 1 = labelled with ``is_visible = 0``, 0 = not labelled; the HRNet JSON does
not record occlusion, so its labelled joints are 2.

``bbox_xyxy_px`` follows the MPII convention: a square of side ``200 * scale`` px centred on
``objpos`` (``scale`` is the person height / 200); where ``objpos``/``scale`` are missing, the
min/max box of the labelled joints; with neither, the person is rejected (``invalid_box``).

Splits (``split_protocol``): ``official`` = ``img_train`` (annotated persons of training images →
``train``, persons of test images → ``test``, with no keypoints); ``single_person`` = the standard
Tompson et al. split used by Newell's hourglass lists (``hg_split_lists``): ``valid`` = the 2958
(image, person) pairs of Tompson's ``detections.mat`` (``RELEASE_img_index``/``RELEASE_person_index``,
1-based); ``train`` = every annotated person of the other training images (training images holding
a validation person contribute only that person); ``test`` = the ``single_person`` persons of the
test images. The rest is rejected as ``not_in_split``. On the full RELEASE this gives 22,246 train /
2,958 valid persons on 14,679 / 2,729 images, and 11,731 test persons on 6,619 images.

The source key of a person is ``image:p`` with ``p`` the 0-based ``annorect`` index (the CPM JSON's
1-based ``people_index`` - 1), so RELEASE and CPM records of one person share ``sample_id``
``mpii-{image stem}-p{p}``; the HRNet JSON has no person index and uses ``-o{k}`` (k-th entry of that
image in the file).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

import numpy as np

from schemas.errors import AnnotationFormatError, ConfigError, RejectReason, SourceError
from storage.fs import file_sha256
from tasks.common import joint_box, relative_name, safe_relative_path, zero_based_xy
from tasks.datasets._matlab import as_float, as_int, as_list, as_str, load_mat
from tasks.datasets.base import AdapterParams, DatasetAdapter, ParseResult, Reject, Source, rejects_table

NUM_JOINTS = 16
BOX_UNIT_PX = 200.0  # MPII scale = person height / 200 px
RELEASE_NAMES = ("mpii_human_pose_v1_u12_1.mat", "mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat")


class MpiiParams(AdapterParams):
    """MPII parse policy.

    Attributes:
        annotation_file: Annotation file relative to the source folder (or absolute); default: the
            RELEASE ``.mat`` at the top or under ``mpii_human_pose_v1_u12_2/``.
        annotation_format: ``auto`` (from the file), ``release``, ``hrnet_json`` or ``cpm_json``.
        split_protocol: ``official`` (``img_train``) or ``single_person`` (Tompson's split; RELEASE only).
        valid_persons_file: Tompson's ``detections.mat`` (``mpii_valid_pred.zip``) naming the
            validation persons; required by ``single_person``.
        json_split: Split of an HRNet JSON (default from its name: train / val(id) / test).
        image_dir: Folder of the images, relative to the source folder.
    """

    annotation_file: str | None = None
    annotation_format: Literal["auto", "release", "hrnet_json", "cpm_json"] = "auto"
    split_protocol: Literal["official", "single_person"] = "official"
    valid_persons_file: str | None = None
    json_split: Literal["train", "valid", "test"] | None = None
    image_dir: str = "images"


def center_scale_box(center_xy: np.ndarray, scale: float) -> list[float]:
    """The MPII person box: a square of side ``200 * scale`` px centred on ``center_xy`` (x1, y1, x2, y2)."""
    half = BOX_UNIT_PX * scale / 2.0
    return [float(center_xy[0] - half), float(center_xy[1] - half), float(center_xy[0] + half), float(center_xy[1] + half)]


def _flag(value: Any) -> int | None:
    """``is_visible`` as 0/1 whether stored as a number or a char ('0'/'1'); None if absent."""
    if isinstance(value, str):
        return int(value.strip()) if value.strip() in ("0", "1") else None
    return as_int(value)


def release_points(annopoints: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode one ``annorect.annopoints`` struct.

    Args:
        annopoints: The normalised struct (a dict with ``point``), or None.

    Returns:
        ``(16, 2) float32`` 0-based coordinates (NaN where absent), ``(16,) int8`` visibility, and the
        number of points that had no ``is_visible`` (counted as visible).
    """
    xy = np.full((NUM_JOINTS, 2), np.nan, dtype=np.float32)
    vis = np.zeros(NUM_JOINTS, dtype=np.int8)
    no_flag = 0
    points = as_list(annopoints.get("point")) if isinstance(annopoints, dict) else []
    for pt in points:
        if not isinstance(pt, dict):
            continue
        jid, x, y = as_int(pt.get("id")), as_float(pt.get("x")), as_float(pt.get("y"))
        if jid is None or not 0 <= jid < NUM_JOINTS or x is None or y is None:
            continue
        xy[jid] = (x - 1.0, y - 1.0)  # MATLAB 1-based -> 0-based pixel centres
        flag = _flag(pt.get("is_visible"))
        if flag is None:
            no_flag += 1
        vis[jid] = 1 if flag == 0 else 2
    return xy, vis, no_flag


def _objpos(value: Any) -> np.ndarray | None:
    if not isinstance(value, dict):
        return None
    x, y = as_float(value.get("x")), as_float(value.get("y"))
    return None if x is None or y is None else np.array([x - 1.0, y - 1.0], dtype=np.float64)  # 1-based -> 0-based


def _head_box(rect: dict[str, Any]) -> list[float] | None:
    vals = [as_float(rect.get(k)) for k in ("x1", "y1", "x2", "y2")]
    if any(v is None for v in vals):
        return None
    return [float(v) - 1.0 for v in vals]  # type: ignore[operator]  # 1-based -> 0-based


def _file(row: dict[str, Any] | Reject, rows: list[dict[str, Any]], rejects: list[Reject]) -> None:
    """Append what :meth:`MpiiAdapter._row` built to ``rows``, or to ``rejects`` when it is a reject."""
    if isinstance(row, Reject):
        rejects.append(row)
    else:
        rows.append(row)


def _jsonlab(value: Any) -> Any:
    """Undo jsonlab's encoding of empty/typed arrays (``{"_ArrayType_":..., "_ArrayData_": ...}``)."""
    if isinstance(value, dict) and "_ArrayType_" in value:
        data = value.get("_ArrayData_")
        if data is None:
            return None
        size = value.get("_ArraySize_")
        arr = np.asarray(data, dtype=np.float64)
        return arr.reshape(size, order="F").tolist() if size else arr.tolist()
    return value


class MpiiAdapter(DatasetAdapter):
    """MPII Human Pose (Andriluka et al. 2014): ~25k images, ~40k people, 16 joints, 410 activities."""

    name: ClassVar[str] = "mpii"
    skeleton: ClassVar[str | None] = "mpii16"
    description: ClassVar[str] = (
        "MPII Human Pose: about 25,000 YouTube frames with over 40,000 people annotated with 16 joints, "
        "head boxes (for PCKh) and one of 410 activities per image."
    )
    homepage: ClassVar[str] = "http://human-pose.mpi-inf.mpg.de/"
    licence: ClassVar[str] = "Simplified BSD License (annotations); images from YouTube videos"
    citation: ClassVar[str] = (
        "@inproceedings{andriluka14cvpr, title={2D Human Pose Estimation: New Benchmark and State of the Art "
        "Analysis}, author={Andriluka, Mykhaylo and Pishchulin, Leonid and Gehler, Peter and Schiele, Bernt}, "
        "booktitle={CVPR}, year={2014}}"
    )
    splits: ClassVar[tuple[str, ...]] = ("train", "valid", "test")
    sources: ClassVar[tuple[Source, ...]] = (
        Source(
            name="annotations",
            url="https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1_u12_2.zip",
            filename="mpii_human_pose_v1_u12_2.zip",
            extract="zip",
            description="mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat (the RELEASE struct)",
        ),
        Source(
            name="images",
            url="https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1.tar.gz",
            filename="mpii_human_pose_v1.tar.gz",
            extract="tar",
            description="images/*.jpg (24,987 frames, about 12.9 GB)",
        ),
        Source(
            name="tompson_valid",
            url="https://www.cims.nyu.edu/~tompson/data/mpii_valid_pred.zip",
            filename="mpii_valid_pred.zip",
            extract="zip",
            required=False,
            description="Tompson et al.'s validation split (detections.mat), for split_protocol=single_person",
        ),
    )
    Params: ClassVar[type[AdapterParams]] = MpiiParams

    # --- entry point ---------------------------------------------------------------------------
    def parse(self, source: Path, params: AdapterParams) -> ParseResult:
        """Parse the MPII annotations under ``source`` (a folder or the annotation file itself).

        Raises:
            SourceError: No annotation file found, or ``single_person`` without its validation file.
            AnnotationFormatError: Missing ``RELEASE``, truncated file, malformed JSON.
            ConfigError: A split protocol the format cannot provide.
        """
        if not isinstance(params, MpiiParams):
            raise ConfigError(f"{self.name} expects MpiiParams, got {type(params).__name__}")
        source = Path(source)
        ann_path, root = self._find_annotations(source, params)
        fmt = params.annotation_format if params.annotation_format != "auto" else self._detect_format(ann_path)
        checksums = {relative_name(ann_path, root): file_sha256(ann_path)}
        if fmt == "release":
            rows, rejects, stats = self._parse_release(ann_path, root, params, checksums)
        else:
            if params.split_protocol != "official":
                raise ConfigError(
                    f"split_protocol={params.split_protocol!r} needs the RELEASE .mat; {ann_path.name} is {fmt}",
                    hint="the JSON formats carry their split already; use split_protocol=official",
                )
            entries = self._read_json(ann_path)
            if fmt == "hrnet_json":
                rows, rejects, stats = self._parse_hrnet(entries, ann_path, root, params)
            else:
                rows, rejects, stats = self._parse_cpm(entries, ann_path, root, params)
        records = self.table(rows)
        stats = {"format": fmt, **stats, "per_split": dict(sorted(Counter(r["split"] for r in rows).items()))}
        stats["images_per_split"] = {
            s: len({r["image_path"] for r in rows if r["split"] == s}) for s in stats["per_split"]
        }
        return ParseResult(records=records, rejects=rejects_table(rejects), input_checksums=checksums, stats=stats)

    # --- locating and reading --------------------------------------------------------------------
    def _find_annotations(self, source: Path, params: MpiiParams) -> tuple[Path, Path]:
        if source.is_file():
            return source, source.parent
        if params.annotation_file:
            path = Path(params.annotation_file)
            path = path if path.is_absolute() else source / path
            if not path.is_file():
                raise SourceError(f"MPII annotation file not found: {path}", hint="check annotation_file and --source")
            return path, source
        for name in RELEASE_NAMES:
            if (source / name).is_file():
                return source / name, source
        raise SourceError(
            f"no MPII annotation file under {source}: expected {' or '.join(RELEASE_NAMES)}",
            hint="or pass annotation_file=... (a RELEASE .mat, an HRNet mpii_*.json or a CPM mpii_annotations.json)",
        )

    @staticmethod
    def _detect_format(path: Path) -> str:
        if path.suffix.lower() != ".json":
            return "release"
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="replace")
        if '"joint_self"' in head or '"img_paths"' in head:
            return "cpm_json"
        if '"joints_vis"' in head or '"center"' in head:
            return "hrnet_json"
        raise AnnotationFormatError(
            f"{path}: not an MPII JSON this adapter knows (no 'joints_vis'/'center' nor 'joint_self'/'img_paths')",
            hint="set annotation_format explicitly",
        )

    @staticmethod
    def _read_json(path: Path) -> list[dict[str, Any]]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AnnotationFormatError(f"{path} is not valid JSON: {exc}", hint="the file is truncated; fetch it again") from exc
        if isinstance(data, dict) and "root" in data:  # jsonlab's savejson('', ...) may wrap in a root key
            data = data["root"]
        if not isinstance(data, list):
            raise AnnotationFormatError(f"{path}: expected a JSON list of person entries, got {type(data).__name__}")
        return data

    def _image_path(self, root: Path, params: MpiiParams, name: str | None) -> str | None:
        if not name or PurePosixPath(name).name != name:
            return None
        rel = safe_relative_path(root, f"{params.image_dir}/{name}")
        return rel.as_posix() if rel is not None else None

    # --- row building ----------------------------------------------------------------------------
    def _row(
        self,
        *,
        sample_id: str,
        key: str,
        split: str,
        image_path: str,
        person_index: int,
        xy: np.ndarray,
        vis: np.ndarray,
        center: np.ndarray | None,
        scale: float | None,
        head_box: list[float] | None = None,
        act: tuple[str | None, str | None, int | None] = (None, None, None),
        size: tuple[int | None, int | None] = (None, None),
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any] | Reject:
        """One samples row, or a reject when no box can be derived."""
        if center is not None and scale is not None and scale > 0:
            box = center_scale_box(center, scale)
        elif (vis > 0).any():
            box, _ = joint_box(xy, vis > 0)
        else:
            return Reject(key, RejectReason.INVALID_BOX, "no objpos/scale and no labelled joint", split=split)
        category, activity, activity_id = act
        return {
            "sample_id": sample_id,
            "dataset": self.name,
            "split": split,
            "image_path": image_path,
            "image_width_px": size[0],
            "image_height_px": size[1],
            "person_index": person_index,
            "source_key": key,
            "activity": activity,
            "category": category,
            "activity_id": activity_id,
            "bbox_xyxy_px": box,
            "center_xy_px": [float(center[0]), float(center[1])] if center is not None else None,
            "scale": float(scale) if scale is not None else None,
            "head_box_xyxy_px": head_box,
            "skeleton": "mpii16",
            "keypoints_xy_px": xy.tolist(),
            "keypoints_visibility": vis.tolist(),
            "extra": json.dumps(extra or {}),
        }

    # --- RELEASE .mat -----------------------------------------------------------------------------
    def _valid_pairs(self, root: Path, params: MpiiParams, checksums: dict[str, str]) -> set[tuple[int, int]]:
        """Tompson's validation persons as 1-based (annolist index, annorect index) pairs."""
        if not params.valid_persons_file:
            raise SourceError(
                "split_protocol=single_person needs Tompson's validation list (detections.mat)",
                hint="pass valid_persons_file=path/to/detections.mat (from mpii_valid_pred.zip)",
            )
        path = Path(params.valid_persons_file)
        path = path if path.is_absolute() else root / path
        data = load_mat(path, ["RELEASE_img_index", "RELEASE_person_index"])
        img = np.atleast_1d(np.asarray(data["RELEASE_img_index"], dtype=np.int64)).ravel()
        person = np.atleast_1d(np.asarray(data["RELEASE_person_index"], dtype=np.int64)).ravel()
        if img.shape != person.shape or img.size == 0 or img.min() < 1 or person.min() < 1:
            raise AnnotationFormatError(
                f"{path}: RELEASE_img_index/RELEASE_person_index must be equally long lists of 1-based indices "
                f"(got {img.size} and {person.size})"
            )
        checksums[relative_name(path, root)] = file_sha256(path)
        return set(zip(img.tolist(), person.tolist(), strict=True))

    def _parse_release(
        self, path: Path, root: Path, params: MpiiParams, checksums: dict[str, str]
    ) -> tuple[list[dict[str, Any]], list[Reject], dict[str, Any]]:
        release = load_mat(path, ["RELEASE"])["RELEASE"]
        if not isinstance(release, dict) or "annolist" not in release:
            raise AnnotationFormatError(f"{path}: RELEASE is not the MPII struct (no 'annolist' field)")
        annolist = as_list(release.get("annolist"))
        img_train = np.atleast_1d(np.asarray(release.get("img_train"), dtype=np.float64)).ravel()
        if img_train.size != len(annolist):
            raise AnnotationFormatError(
                f"{path}: RELEASE.img_train has {img_train.size} entries for {len(annolist)} annolist images"
            )
        acts = as_list(release.get("act"))
        single = as_list(release.get("single_person"))
        videos = as_list(release.get("video_list"))
        valid = self._valid_pairs(root, params, checksums) if params.split_protocol == "single_person" else set()
        valid_images = {i for i, _ in valid}
        if valid and max(valid_images) > len(annolist):
            raise AnnotationFormatError(
                f"{params.valid_persons_file}: validation images go up to {max(valid_images)}, "
                f"but {path.name} has {len(annolist)} images"
            )
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        no_flag = 0
        for i, entry in enumerate(annolist):
            idx1 = i + 1  # MATLAB 1-based annolist index (what detections.mat and CPM's annolist_index use)
            entry = entry if isinstance(entry, dict) else {}
            image = entry.get("image")
            name = as_str(image.get("name")) if isinstance(image, dict) else None
            is_train = img_train[i] == 1
            rects = as_list(entry.get("annorect"))
            act = acts[i] if i < len(acts) and isinstance(acts[i], dict) else {}
            act_id = as_int(act.get("act_id"))
            act_t = (as_str(act.get("cat_name")), as_str(act.get("act_name")), act_id if act_id not in (None, -1) else None)
            singles = {int(v) for v in np.atleast_1d(np.asarray(single[i], dtype=np.float64)).ravel()} if (
                i < len(single) and single[i] is not None
            ) else set()
            vididx = as_int(entry.get("vididx"))
            video = as_str(videos[vididx - 1]) if vididx is not None and 0 < vididx <= len(videos) else None
            image_path = self._image_path(root, params, name)
            for p, rect in enumerate(rects):
                ridx = p + 1  # MATLAB 1-based person index
                key = f"{name}:{p}" if name else f"annolist({idx1}).annorect({ridx})"
                rect = rect if isinstance(rect, dict) else {}
                annotated = isinstance(rect.get("annopoints"), dict) and bool(as_list(rect["annopoints"].get("point")))
                split: str | None
                if params.split_protocol == "official":
                    split = "train" if is_train else "test"
                elif not is_train:
                    split = "test" if ridx in singles else None
                elif (idx1, ridx) in valid:
                    split = "valid"
                else:
                    split = None if idx1 in valid_images else "train"
                if split is None:
                    rejects.append(Reject(key, RejectReason.NOT_IN_SPLIT, f"not in the {params.split_protocol} split"))
                    continue
                if image_path is None:
                    rejects.append(Reject(key, RejectReason.PATH_ESCAPES_SOURCE, f"image name {name!r}", split=split))
                    continue
                if split != "test" and not annotated:
                    rejects.append(Reject(key, RejectReason.NO_ANNOTATION, "training image person without annopoints", split=split))
                    continue
                xy, vis, missing_flags = release_points(rect.get("annopoints"))
                no_flag += missing_flags
                row = self._row(
                    sample_id=f"{self.name}-{PurePosixPath(name or '').stem}-p{p}",
                    key=key,
                    split=split,
                    image_path=image_path,
                    person_index=p,
                    xy=xy,
                    vis=vis,
                    center=_objpos(rect.get("objpos")),
                    scale=as_float(rect.get("scale")),
                    head_box=_head_box(rect),
                    act=act_t,
                    extra={"annolist_index": idx1, "ridx": ridx, "frame_sec": as_int(entry.get("frame_sec")),
                           "video_id": video, "single_person": ridx in singles},
                )  # fmt: skip
                _file(row, rows, rejects)
        stats = {"images": len(annolist), "points_without_is_visible": no_flag, "videos": len(videos)}
        return rows, rejects, stats

    # --- HRNet / MMPose JSON ----------------------------------------------------------------------
    def _parse_hrnet(
        self, entries: list[dict[str, Any]], path: Path, root: Path, params: MpiiParams
    ) -> tuple[list[dict[str, Any]], list[Reject], dict[str, Any]]:
        split = params.json_split or self._split_from_name(path)
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        seen: Counter[str] = Counter()
        for n, entry in enumerate(entries):
            name = entry.get("image") if isinstance(entry, dict) else None
            k = seen[str(name)]
            seen[str(name)] += 1
            key = f"{name}#{k}" if name else f"entry[{n}]"
            try:
                joints = np.asarray(entry["joints"], dtype=np.float64)
                jvis = np.asarray(entry["joints_vis"], dtype=np.float64).ravel()
                center = np.asarray(entry["center"], dtype=np.float64).ravel()
                scale = float(entry["scale"])
                if joints.shape != (NUM_JOINTS, 2) or jvis.shape != (NUM_JOINTS,) or center.shape != (2,):
                    raise ValueError(f"joints {joints.shape}, joints_vis {jvis.shape}, center {center.shape}")
            except (KeyError, TypeError, ValueError) as exc:
                rejects.append(Reject(key, RejectReason.MALFORMED_ANNOTATION, f"entry {n}: {exc!r}", split=split))
                continue
            image_path = self._image_path(root, params, name)
            if image_path is None:
                rejects.append(Reject(key, RejectReason.PATH_ESCAPES_SOURCE, f"image name {name!r}", split=split))
                continue
            labelled = (jvis > 0) & np.isfinite(joints).all(axis=1)
            xy = zero_based_xy(joints, labelled)  # HRNet subtracts 1 on load too
            vis = np.where(labelled, 2, 0).astype(np.int8)  # the format keeps no occlusion flag
            has_center = bool(np.isfinite(center).all() and center[0] != -1)
            row = self._row(
                sample_id=f"{self.name}-{PurePosixPath(str(name)).stem}-o{k}",
                key=key,
                split=split,
                image_path=image_path,
                person_index=k,
                xy=xy,
                vis=vis,
                center=center - 1.0 if has_center else None,  # 1-based -> 0-based
                scale=scale if np.isfinite(scale) else None,
                extra={"entry": n},
            )
            _file(row, rows, rejects)
        return rows, rejects, {"entries": len(entries)}

    @staticmethod
    def _split_from_name(path: Path) -> str:
        tokens = set(path.stem.lower().replace("-", "_").split("_"))
        for split, names in (("train", {"train", "trainval"}), ("valid", {"val", "valid"}), ("test", {"test"})):
            if tokens & names:
                return split
        raise ConfigError(f"cannot tell the split of {path.name} from its name", hint="pass json_split=train|valid|test")

    # --- CPM JSON ---------------------------------------------------------------------------------
    def _parse_cpm(
        self, entries: list[dict[str, Any]], path: Path, root: Path, params: MpiiParams
    ) -> tuple[list[dict[str, Any]], list[Reject], dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        seen: set[str] = set()
        jsonlab_empty = 0
        for n, raw in enumerate(entries):
            entry = {k: _jsonlab(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
            jsonlab_empty += sum(1 for v in (raw.values() if isinstance(raw, dict) else []) if _jsonlab(v) is None)
            name = entry.get("img_paths")
            split = "valid" if as_int(entry.get("isValidation")) == 1 else "train"
            people = as_int(entry.get("people_index"))
            p = people - 1 if people is not None else None  # 1-based people_index -> 0-based annorect index
            key = f"{name}:{p}" if name and p is not None else f"entry[{n}]"
            try:
                joints = np.asarray(entry["joint_self"], dtype=np.float64)
                if joints.shape != (NUM_JOINTS, 3) or p is None or p < 0:
                    raise ValueError(f"joint_self {joints.shape}, people_index {people}")
            except (KeyError, TypeError, ValueError) as exc:
                rejects.append(Reject(key, RejectReason.MALFORMED_ANNOTATION, f"entry {n}: {exc!r}", split=split))
                continue
            if key in seen:
                rejects.append(Reject(key, RejectReason.DUPLICATE_ID, f"entry {n} repeats {key}", split=split))
                continue
            seen.add(key)
            image_path = self._image_path(root, params, name if isinstance(name, str) else None)
            if image_path is None:
                rejects.append(Reject(key, RejectReason.PATH_ESCAPES_SOURCE, f"image name {name!r}", split=split))
                continue
            # genJSON.m pads absent joints with (0, 0, 0); vis 0 with a position = is_visible 0.
            absent = (joints[:, 0] == 0) & (joints[:, 1] == 0) & (joints[:, 2] == 0)
            labelled = ~absent & np.isfinite(joints[:, :2]).all(axis=1)
            xy = zero_based_xy(joints[:, :2], labelled)
            vis = np.where(labelled, np.where(joints[:, 2] > 0, 2, 1), 0).astype(np.int8)
            objpos = entry.get("objpos")
            center = np.asarray(objpos, dtype=np.float64).ravel() - 1.0 if objpos is not None else None  # 0-based
            size = (as_int(entry.get("img_width")), as_int(entry.get("img_height")))
            row = self._row(
                sample_id=f"{self.name}-{PurePosixPath(name).stem}-p{p}",
                key=key,
                split=split,
                image_path=image_path,
                person_index=p,
                xy=xy,
                vis=vis,
                center=center if center is not None and center.shape == (2,) else None,
                scale=as_float(entry.get("scale_provided")),
                size=size,
                extra={"annolist_index": as_int(entry.get("annolist_index")), "ridx": people,
                       "num_other_people": as_int(entry.get("numOtherPeople"))},
            )  # fmt: skip
            _file(row, rows, rejects)
        return rows, rejects, {"entries": len(entries), "jsonlab_empty_fields": jsonlab_empty}


__all__ = ["MpiiAdapter", "MpiiParams", "center_scale_box", "release_points"]

"""``extract images``: keypoints for image files, written as COCO results with their image ids.

Image ids are settled before any inference, so nothing computed is thrown away:

- with a ground-truth json (``--gt``), each image's id is the GT's id for its ``file_name``; an image
  the GT does not list is a clear error up front (its results could not be evaluated against it);
- without one, a COCO-style name gives its number (``000000000785.jpg``, ``COCO_val2014_000000000785.jpg``
  -> 785) and any other name a stable id derived from the name's bytes (:func:`stable_image_id`):
  16 digits from 10^15 up, so never one of COCO's (at most 12 digits) and exact in any JSON reader.

Next to the results file, ``{results stem}.images.json`` lists the images in COCO's ``images``
format (id, file_name, width, height) with the person category, so ``pycocotools.coco.COCO`` can
load it and ``loadRes`` the results against it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import AnnotationFormatError, ConfigError
from schemas.skeletons import get_skeleton
from storage.fs import atomic_local_path
from tasks.common import text_of
from tasks.extract.exports import coco_results
from tasks.extract.ids import stable_image_id
from tasks.extract.plan import path_bytes_hex
from tasks.keypoints.api import FramePoses, PoseEstimator

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def image_files(paths: Iterable[Path]) -> list[Path]:
    """Image files among ``paths`` (files, or folders whose images are taken), sorted.

    Raises:
        ConfigError: If there is none.
    """
    paths = list(paths)
    files = sorted(
        {p for path in paths for p in ([path] if path.is_file() else path.glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES}
    )
    if not files:
        raise ConfigError(
            f"no .jpg/.png images in {', '.join(text_of(str(p)) for p in paths)}", hint="pass image files or folders of them"
        )
    return files


def read_gt_image_ids(gt: Path) -> dict[str, int]:
    """``file_name -> id`` of a COCO ground-truth json's ``images``.

    Raises:
        AnnotationFormatError: If the file is not JSON, has no ``images`` list, or an entry has no
            ``file_name`` or no integer ``id``.
    """
    try:
        doc = json.loads(Path(gt).read_bytes())
    except (OSError, ValueError) as exc:
        raise AnnotationFormatError(f"cannot read the GT json {gt}: {exc}", hint="--gt takes a COCO annotation file") from exc
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list):
        raise AnnotationFormatError(f"{gt}: no 'images' list", hint="--gt takes a COCO annotation file (images, annotations)")
    out: dict[str, int] = {}
    for i, im in enumerate(images):
        name = im.get("file_name") if isinstance(im, dict) else None
        image_id = im.get("id") if isinstance(im, dict) else None
        if not isinstance(name, str) or isinstance(image_id, bool) or not isinstance(image_id, int):
            raise AnnotationFormatError(
                f"{gt}: images[{i}] needs a string 'file_name' and an integer 'id', got {text_of(repr(im))[:200]}",
                hint="fix the GT json, or leave out --gt to give images ids from their names",
            )
        out[Path(name).name] = image_id
    return out


def resolve_image_ids(files: Sequence[Path], gt: Path | None = None) -> dict[str, int]:
    """Every image's id, decided before inference.

    Args:
        files: The images.
        gt: COCO GT json (``--gt``), or None for ids from the names (:func:`stable_image_id`).

    Returns:
        ``file name -> image id``, one entry per file.

    Raises:
        ConfigError: If two files share a name, two names share an id, or (with ``gt``) the GT does
            not list an image.
        AnnotationFormatError: If ``gt`` is malformed.
    """
    names = Counter(f.name for f in files)
    twice = sorted(text_of(n) for n, c in names.items() if c > 1)
    if twice:
        raise ConfigError(
            f"{len(twice)} image names occur in more than one folder: {', '.join(twice[:5])}",
            hint="COCO results name images by file name: extract one folder at a time",
        )
    if gt is None:
        ids = {f.name: stable_image_id(f.name) for f in files}
    else:
        by_name = read_gt_image_ids(gt)
        missing = sorted(text_of(f.name) for f in files if f.name not in by_name)
        if missing:
            raise ConfigError(
                f"{len(missing)} of {len(files)} images are not in --gt {gt}: {', '.join(missing[:5])}",
                hint="pass only images the GT lists, or leave out --gt to give images ids from their names",
            )
        ids = {f.name: by_name[f.name] for f in files}
    shared = Counter(ids.values())
    clash = sorted(text_of(n) for n, i in ids.items() if shared[i] > 1)
    if clash:
        raise ConfigError(
            f"images share an id: {', '.join(clash[:5])}", hint="rename them (e.g. 1.jpg and 0001.jpg are both id 1)"
        )
    return ids


@dataclass
class ImagesResult:
    """What :func:`extract_images` found.

    Attributes:
        found: (file name, people) per image read, in file order; ``keypoints`` ``(P, J, 3)``.
        image_ids: File name -> image id, every file.
        sizes_wh: File name -> (width, height) in pixels of each image read.
        failures: File name -> reject reason code (``image_unreadable``, ``image_missing``...).
        details: File name -> what was wrong, for each failure.
        people: People found over all images.
        seconds: Wall time of reading and inference.
    """

    found: list[tuple[str, FramePoses]] = field(default_factory=list)
    image_ids: dict[str, int] = field(default_factory=dict)
    sizes_wh: dict[str, tuple[int, int]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    people: int = 0
    seconds: float = 0.0


def extract_images(
    files: Sequence[Path],
    estimator: PoseEstimator,
    image_ids: dict[str, int],
    on_batch: Callable[[int], None] | None = None,
    batch: int | None = None,
) -> ImagesResult:
    """Read images in batches (``batch``, default the backend's) and find their people.

    A file that cannot be read is a failure with its reason; the others go on.

    Args:
        files: The images.
        estimator: Pose backend.
        image_ids: From :func:`resolve_image_ids` (every file has one).
        on_batch: Called with the number of files of each batch done (progress bars).
        batch: Images per network call (see :meth:`~tasks.keypoints.api.PoseEstimator.choose_batch`);
            results do not depend on it.

    Returns:
        The :class:`ImagesResult`.
    """
    from tasks.transforms.image_io import ImageReadError, read_image_bgr

    result = ImagesResult(image_ids=dict(image_ids))
    t0 = time.perf_counter()
    step = estimator.choose_batch(batch)
    for i in range(0, len(files), step):
        chunk = files[i : i + step]
        good = []
        for f in chunk:
            try:
                good.append((f.name, read_image_bgr(f)))
            except ImageReadError as exc:
                result.failures[f.name] = str(exc.reason)
                result.details[f.name] = text_of(exc.detail)
        for (name, image), poses in zip(good, estimator.predict([im for _, im in good], batch=step), strict=True):
            result.found.append((name, poses))
            result.sizes_wh[name] = (int(image.shape[1]), int(image.shape[0]))
            result.people += poses.num_people
        if on_batch:
            on_batch(len(chunk))
    result.seconds = time.perf_counter() - t0
    return result


def images_sidecar_path(results_json: Path) -> Path:
    """``r.json`` -> ``r.images.json`` (the image list beside the results)."""
    return results_json.with_name(f"{results_json.stem}.images.json")


def images_document(result: ImagesResult, skeleton: str) -> dict[str, Any]:
    """The image list in COCO format: ``images`` (id, file_name, width, height), no annotations,
    the person category with COCO's keypoint names and limbs.

    Images that could not be read are left out of ``images`` and listed in ``failed`` with their
    reason. A name that is not UTF-8 is shown as text; its exact bytes are in ``file_name_bytes_hex``.
    """
    coco = get_skeleton("coco17")
    images = []
    for name, _ in result.found:
        width, height = result.sizes_wh[name]
        entry: dict[str, Any] = {"id": result.image_ids[name], "file_name": text_of(name), "width": width, "height": height}
        exact = path_bytes_hex(name)
        if exact is not None:
            entry["file_name_bytes_hex"] = exact
        images.append(entry)
    failed = [
        {"id": result.image_ids[n], "file_name": text_of(n), "reason": r, "detail": result.details.get(n, "")}
        for n, r in sorted(result.failures.items())
    ]
    category = {
        "id": 1, "name": "person", "supercategory": "person", "keypoints": list(coco.joints),
        "skeleton": [[int(a) + 1, int(b) + 1] for a, b in coco.limb_indices],  # COCO's skeleton is 1-based
    }  # fmt: skip
    return {
        "info": {"description": f"images of a posepipe extraction ({skeleton} keypoints converted to coco17)"},
        "images": images,
        "annotations": [],
        "categories": [category],
        "failed": failed,
    }


def write_coco_outputs(result: ImagesResult, skeleton: str, results_json: Path) -> tuple[Path, Path, int]:
    """Write the COCO results (atomically), then the image list beside them.

    Args:
        result: From :func:`extract_images`.
        skeleton: Skeleton of the keypoints.
        results_json: Results file to write.

    Returns:
        (results file, image list file, detections written).
    """
    detections = coco_results(result.found, skeleton, result.image_ids)
    with atomic_local_path(str(results_json)) as tmp:
        Path(tmp).write_text(json.dumps(detections))
    sidecar = images_sidecar_path(results_json)
    with atomic_local_path(str(sidecar)) as tmp:
        Path(tmp).write_text(json.dumps(images_document(result, skeleton)))
    return results_json, sidecar, len(detections)

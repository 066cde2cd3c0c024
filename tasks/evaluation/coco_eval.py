"""COCO results and their evaluation: the one COCO keypoint results writer and the one ``COCOeval`` wrapper.

Evaluation is pycocotools' ``COCOeval`` (OKS keypoint or bbox AP/AR), never a re-implementation. This
module checks the inputs first (so a bad file gives an :class:`EvaluationInputError` naming it, instead
of a bare ``AssertionError`` deep inside pycocotools), silences pycocotools' printing, and returns the
10 (keypoints) or 12 (bbox) summary numbers in ``COCOeval.stats`` order.

Results are COCO's results format, ``[{"image_id", "category_id": 1, "keypoints": [x, y, c] * 17,
"score"}]``. The third value of each keypoint triple is the joint's **score** (the model's confidence,
0 where the joint was not found, whose x and y are then 0 too). COCO's results-format page notes that
these values are not currently used by the evaluation (it suggests writing 1), and pycocotools'
``COCOeval`` reads only x and y of a detection's keypoints (``computeOks``: ``xd = d[0::3];
yd = d[1::3]``): scores there change no metric, keep the model's confidence, and are what OpenPose-
and MMPose-style results files write in the same place. COCO's 0/1/2 visibilities belong to ground
truth, not to results.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from schemas.errors import EvaluationInputError
from schemas.skeletons import convert_keypoints
from tasks.evaluation.readers import read_json

__all__ = [
    "STAT_NAMES",
    "CocoCurves",
    "CocoReport",
    "coco_evaluate",
    "coco_gt_as_results",
    "coco_keypoint_results",
    "keypoint_triples",
]

IouType = Literal["keypoints", "bbox"]

#: Names of ``COCOeval.stats`` entries, in order, per iou type.
STAT_NAMES: dict[str, tuple[str, ...]] = {
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"),
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
}
_COCO_NUM_KEYPOINTS = 17


@dataclass(frozen=True)
class CocoCurves:
    """COCOeval's accumulated arrays at its largest ``maxDets`` (what the summary lines average).

    Attributes:
        iou_thresholds: ``(T,)`` OKS (keypoints) or IoU (bbox) thresholds, 0.50..0.95.
        recall_thresholds: ``(R,)`` recall levels 0..1 (101).
        area_labels: ``(A,)`` area range names (``all``, ``small``, ``medium``, ``large``; keypoints
            have no ``small``).
        max_dets: The detections-per-image limit the arrays are taken at.
        precision: ``(T, R, K, A)`` interpolated precision per category ``K``; -1 where a category
            has no ground truth in that area range.
        recall: ``(T, K, A)`` recall; -1 likewise.
    """

    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    area_labels: tuple[str, ...]
    max_dets: int
    precision: np.ndarray
    recall: np.ndarray


@dataclass(frozen=True)
class CocoReport:
    """COCOeval's summary.

    Attributes:
        iou_type: ``"keypoints"`` or ``"bbox"``.
        stats: The ``COCOeval.stats`` numbers, in order (10 for keypoints, 12 for bbox); -1 where
            COCOeval has no ground truth for an entry.
        num_images: Images evaluated.
        num_detections: Results loaded.
        summary_text: pycocotools' own printout of ``summarize()``.
        curves: The precision/recall arrays behind the summary (for plots).
    """

    iou_type: str
    stats: tuple[float, ...]
    num_images: int
    num_detections: int
    summary_text: str
    curves: CocoCurves | None = None

    @property
    def named(self) -> dict[str, float]:
        """Stat name -> value."""
        return dict(zip(STAT_NAMES[self.iou_type], self.stats, strict=True))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready ``{"stats": [...], "AP": .., "AP50": .., ...}``."""
        return {"stats": list(self.stats), **self.named}


def _check_gt(gt: Any, path: Path, iou_type: str) -> None:
    if not isinstance(gt, dict) or not all(k in gt for k in ("images", "annotations", "categories")):
        raise EvaluationInputError(
            f"COCO ground truth {str(path)!r} is not a COCO annotation file; expected a JSON object with "
            "'images', 'annotations' and 'categories'",
            hint="pass a person_keypoints_*.json or instances_*.json",
        )
    if iou_type == "keypoints":
        for ann in gt["annotations"]:
            kps = ann.get("keypoints") if isinstance(ann, dict) else None
            if not isinstance(kps, list) or len(kps) != 3 * _COCO_NUM_KEYPOINTS or "num_keypoints" not in ann:
                raise EvaluationInputError(
                    f"annotation {ann.get('id') if isinstance(ann, dict) else ann!r} in {str(path)!r} has no "
                    f"17-joint 'keypoints' (51 numbers) and 'num_keypoints'",
                    hint="keypoint evaluation needs person_keypoints_*.json; use --iou-type bbox for instances files",
                )


def _check_dt(dt: Any, where: str, iou_type: str, gt_image_ids: set[int]) -> None:
    if not isinstance(dt, list):
        raise EvaluationInputError(
            f"COCO results {where} must be a JSON list of detections; got {type(dt).__name__}",
            hint="results format: [{'image_id', 'category_id', 'keypoints' or 'bbox', 'score'}, ...]",
        )
    field, length = ("keypoints", 3 * _COCO_NUM_KEYPOINTS) if iou_type == "keypoints" else ("bbox", 4)
    for i, det in enumerate(dt):
        ok = (
            isinstance(det, dict)
            and all(k in det for k in ("image_id", "category_id", "score", field))
            and isinstance(det[field], list)
            and len(det[field]) == length
        )
        if not ok:
            raise EvaluationInputError(
                f"detection {i} in {where} is malformed; expected image_id, category_id, score and "
                f"{field!r} with {length} numbers",
            )
    unknown = sorted({d["image_id"] for d in dt} - gt_image_ids)
    if unknown:
        raise EvaluationInputError(
            f"COCO results {where} name {len(unknown)} image ids absent from the ground truth "
            f"(first: {unknown[:5]})",
            hint="evaluate against the annotation file the detections were made on",
        )


def coco_evaluate(
    gt_path: str | Path,
    results: str | Path | Sequence[dict[str, Any]],
    iou_type: IouType = "keypoints",
    img_ids: Sequence[int] | None = None,
) -> CocoReport:
    """Run pycocotools' COCOeval and return its summary (the one COCOeval wrapper).

    Args:
        gt_path: COCO annotation JSON (``person_keypoints_*.json`` for keypoints).
        results: A COCO results JSON file (a list of detections), or the detections themselves (from
            :func:`coco_keypoint_results`; they are not modified). A file with no detection is an error
            (it is not the file meant); an empty list is a model that found nobody and scores 0.
        iou_type: ``"keypoints"`` (OKS with COCO's 17 sigmas) or ``"bbox"``.
        img_ids: Images to evaluate; default every ground-truth image (COCOeval's default).

    Returns:
        The :class:`CocoReport` (for an empty list: every stat 0.0, no summary text or curves).

    Raises:
        EvaluationInputError: Unreadable/malformed files or detections, results on unknown images,
            unknown iou type.
    """
    if iou_type not in STAT_NAMES:
        raise EvaluationInputError(f"iou type {iou_type!r} is not supported; expected one of {sorted(STAT_NAMES)}")
    gt_p = Path(gt_path)
    gt = read_json(gt_p, "COCO ground-truth")
    _check_gt(gt, gt_p, iou_type)
    if isinstance(results, (str, Path)):
        where = repr(str(results))
        dt = read_json(Path(results), "COCO results")
        if isinstance(dt, list) and not dt:
            raise EvaluationInputError(f"COCO results {where} hold no detections", hint="nothing to evaluate")
    else:
        where, dt = "given", list(results)
    gt_image_ids = {img["id"] for img in gt["images"]}
    _check_dt(dt, where, iou_type, gt_image_ids)
    if img_ids is not None:
        missing = sorted(set(img_ids) - gt_image_ids)
        if missing:
            raise EvaluationInputError(f"image ids {missing[:5]} are not in {str(gt_p)!r}")
    if not dt:
        n = len(set(img_ids)) if img_ids is not None else len(gt_image_ids)
        zeros = (0.0,) * len(STAT_NAMES[iou_type])
        return CocoReport(iou_type=iou_type, stats=zeros, num_images=n, num_detections=0, summary_text="")

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        # loadRes mutates the dicts it is given (adds area/id/bbox); hand it a copy.
        coco_dt = coco_gt.loadRes(copy.deepcopy(dt))
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        if img_ids is not None:
            evaluator.params.imgIds = sorted(set(img_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        mark = buf.tell()
        evaluator.summarize()
    return CocoReport(
        iou_type=iou_type,
        stats=tuple(float(s) for s in evaluator.stats),
        num_images=len(evaluator.params.imgIds),
        num_detections=len(dt),
        summary_text=buf.getvalue()[mark:],
        curves=CocoCurves(
            iou_thresholds=np.asarray(evaluator.params.iouThrs, dtype=np.float64),
            recall_thresholds=np.asarray(evaluator.params.recThrs, dtype=np.float64),
            area_labels=tuple(evaluator.params.areaRngLbl),
            max_dets=int(evaluator.params.maxDets[-1]),
            precision=np.asarray(evaluator.eval["precision"][..., -1], dtype=np.float64),
            recall=np.asarray(evaluator.eval["recall"][..., -1], dtype=np.float64),
        ),
    )


def keypoint_triples(keypoints_xyc: np.ndarray) -> list[float]:
    """``(J, 3)`` x, y, c -> ``[x0, y0, c0, x1, ...]`` as COCO results and OpenPose JSON write them.

    A joint whose x or y is not finite (not found) is written ``0, 0, 0``; values are rounded to 3
    decimals (1/1000 pixel).

    Args:
        keypoints_xyc: ``(J, 3) float32`` x, y (pixels) and score.

    Returns:
        ``3 * J`` floats.

    Example:
        >>> keypoint_triples(np.array([[1.23456, 2.0, 0.5], [np.nan, np.nan, 0.0]], np.float32))
        [1.235, 2.0, 0.5, 0.0, 0.0, 0.0]
    """
    kp = np.asarray(keypoints_xyc, np.float32).copy()
    unknown = ~np.isfinite(kp[:, 0]) | ~np.isfinite(kp[:, 1])
    kp[unknown] = 0.0
    return [round(float(v), 3) for v in kp.reshape(-1)]


def coco_keypoint_results(
    keypoints_xyc: np.ndarray, person_scores: np.ndarray, image_id: int, skeleton: str
) -> list[dict[str, Any]]:
    """One image's people as COCO keypoint results (the one COCO results writer).

    Joints are converted to COCO-17 by name (OpenPose's neck, which COCO lacks, is dropped). Each
    keypoint triple is ``x, y, score`` (the convention in the module docstring): a joint found with
    score > 0 keeps its score, any other is ``0, 0, 0``.

    Args:
        keypoints_xyc: ``(P, J, 3) float32`` x, y in original image pixels (NaN where not found) and
            per-joint score, in ``skeleton``'s order.
        person_scores: ``(P,) float32`` person scores (the results' ``score``, rounded to 5 decimals).
        image_id: COCO image id.
        skeleton: Skeleton of ``keypoints_xyc`` (``openpose18``...).

    Returns:
        One result dict per person, ``{"image_id", "category_id": 1, "keypoints": 51 floats, "score"}``.
    """
    kp = np.asarray(keypoints_xyc, np.float32)
    if kp.shape[0] == 0:
        return []
    xy, score = kp[..., :2], kp[..., 2]
    vis = np.where(np.isfinite(xy[..., 0]) & (score > 0), 2, 0).astype(np.int8)
    coco_xy, _ = convert_keypoints(xy, vis, skeleton, "coco17")
    coco_score, _ = convert_keypoints(np.stack([score, score], -1), vis, skeleton, "coco17")
    out: list[dict[str, Any]] = []
    for p in range(kp.shape[0]):
        triples = np.concatenate([coco_xy[p], np.nan_to_num(coco_score[p, :, :1])], axis=-1)
        out.append({"image_id": image_id, "category_id": 1, "keypoints": keypoint_triples(triples),
                    "score": round(float(person_scores[p]), 5)})  # fmt: skip
    return out


def coco_gt_as_results(gt: dict[str, Any], iou_type: IouType = "keypoints") -> list[dict[str, Any]]:
    """Turn ground-truth annotations into a results list (score 1), for a perfect-prediction check.

    Crowd annotations, and for keypoints those with ``num_keypoints == 0``, are left out (COCOeval
    ignores them as ground truth; MMPose drops them from its test set too).

    Args:
        gt: A loaded COCO annotation dict.
        iou_type: Which field to copy (``keypoints`` or ``bbox``).

    Returns:
        A list of detections in COCO results format.
    """
    out: list[dict[str, Any]] = []
    for ann in gt["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        det: dict[str, Any] = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 1.0}
        if iou_type == "keypoints":
            if ann.get("num_keypoints", 0) == 0:
                continue
            det["keypoints"] = list(ann["keypoints"])
        else:
            det["bbox"] = list(ann["bbox"])
        out.append(det)
    return out

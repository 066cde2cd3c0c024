"""COCO OKS keypoint (and bbox) AP/AR through pycocotools' ``COCOeval``, never a re-implementation.

This module checks the inputs first (so a bad file gives an :class:`EvaluationInputError` naming
it, instead of a bare ``AssertionError`` deep inside pycocotools), silences pycocotools' printing,
and returns the 10 (keypoints) or 12 (bbox) summary numbers in ``COCOeval.stats`` order.
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
from tasks.evaluation.readers import read_json

__all__ = ["STAT_NAMES", "CocoCurves", "CocoReport", "coco_evaluate", "coco_gt_as_results"]

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


def _check_dt(dt: Any, path: Path, iou_type: str, gt_image_ids: set[int]) -> None:
    if not isinstance(dt, list):
        raise EvaluationInputError(
            f"COCO results {str(path)!r} must be a JSON list of detections; got {type(dt).__name__}",
            hint="results format: [{'image_id', 'category_id', 'keypoints' or 'bbox', 'score'}, ...]",
        )
    if not dt:
        raise EvaluationInputError(f"COCO results {str(path)!r} hold no detections", hint="nothing to evaluate")
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
                f"detection {i} in {str(path)!r} is malformed; expected image_id, category_id, score and "
                f"{field!r} with {length} numbers",
            )
    unknown = sorted({d["image_id"] for d in dt} - gt_image_ids)
    if unknown:
        raise EvaluationInputError(
            f"COCO results {str(path)!r} name {len(unknown)} image ids absent from the ground truth "
            f"(first: {unknown[:5]})",
            hint="evaluate against the annotation file the detections were made on",
        )


def coco_evaluate(
    gt_path: str | Path,
    dt_path: str | Path,
    iou_type: IouType = "keypoints",
    img_ids: Sequence[int] | None = None,
) -> CocoReport:
    """Run pycocotools' COCOeval and return its summary.

    Args:
        gt_path: COCO annotation JSON (``person_keypoints_*.json`` for keypoints).
        dt_path: COCO results JSON (a list of detections).
        iou_type: ``"keypoints"`` (OKS with COCO's 17 sigmas) or ``"bbox"``.
        img_ids: Images to evaluate; default every ground-truth image (COCOeval's default).

    Returns:
        The :class:`CocoReport`.

    Raises:
        EvaluationInputError: Unreadable/malformed files, results on unknown images, unknown iou type.
    """
    if iou_type not in STAT_NAMES:
        raise EvaluationInputError(f"iou type {iou_type!r} is not supported; expected one of {sorted(STAT_NAMES)}")
    gt_p, dt_p = Path(gt_path), Path(dt_path)
    gt = read_json(gt_p, "COCO ground-truth")
    _check_gt(gt, gt_p, iou_type)
    dt = read_json(dt_p, "COCO results")
    gt_image_ids = {img["id"] for img in gt["images"]}
    _check_dt(dt, dt_p, iou_type, gt_image_ids)

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
            missing = sorted(set(img_ids) - gt_image_ids)
            if missing:
                raise EvaluationInputError(f"image ids {missing[:5]} are not in {str(gt_p)!r}")
            evaluator.params.imgIds = sorted(img_ids)
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

"""COCO keypoint results from backend outputs, and their evaluation with pycocotools.

The results format is COCO's: ``[{image_id, category_id: 1, keypoints: [x, y, v] * 17, score}]``
with joints not found written as ``0, 0, 0`` (COCO's convention for "not predicted").
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import EvaluationInputError
from schemas.skeletons import convert_keypoints
from tasks.keypoints.api import FramePoses

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def poses_to_coco(poses: FramePoses, image_id: int, skeleton: str) -> list[dict[str, Any]]:
    """Convert one frame's people to COCO keypoint results.

    Args:
        poses: ``(P, J, 3)`` keypoints in original pixels (NaN where not found) and person scores.
        image_id: COCO image id.
        skeleton: Skeleton of ``poses`` (``openpose18``...); converted to ``coco17`` by joint name.

    Returns:
        One result dict per person (v = 2 for predicted joints, 0 otherwise).
    """
    kp = np.asarray(poses.keypoints, np.float32)
    if kp.shape[0] == 0:
        return []
    found = np.isfinite(kp[..., 0]) & np.isfinite(kp[..., 1])
    vis = np.where(found, 2, 0).astype(np.int8)
    xy, v = convert_keypoints(kp[..., :2], vis, skeleton, "coco17")
    out = []
    for p in range(kp.shape[0]):
        flat = np.zeros((17, 3), np.float64)
        ok = v[p] > 0
        flat[ok, :2] = xy[p][ok]
        flat[ok, 2] = 2
        out.append(
            {
                "image_id": int(image_id),
                "category_id": 1,
                "keypoints": [round(float(x), 2) for x in flat.reshape(-1)],
                "score": float(poses.person_scores[p]),
            }
        )
    return out


def evaluate_coco_keypoints(
    gt_json: str | Path, results: Sequence[dict[str, Any]], image_ids: Iterable[int]
) -> dict[str, float]:
    """COCOeval (iouType ``keypoints``) of ``results`` on ``image_ids`` of ``gt_json``.

    Returns:
        ``{"AP": ..., "AP50": ..., ..., "ARl": ...}`` (COCOeval's 10 summary stats).

    Raises:
        EvaluationInputError: If the ground truth is missing or unreadable.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_json = Path(gt_json)
    if not gt_json.is_file():
        raise EvaluationInputError(f"COCO ground truth {gt_json} not found", hint="pass person_keypoints_*.json")
    ids = sorted({int(i) for i in image_ids})
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            gt = COCO(str(gt_json))
        except (json.JSONDecodeError, KeyError) as exc:
            raise EvaluationInputError(f"{gt_json} is not COCO keypoint ground truth: {exc}") from exc
        if not results:
            return dict.fromkeys(COCO_STAT_NAMES, 0.0)
        dt = gt.loadRes(list(results))
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(COCO_STAT_NAMES, ev.stats, strict=True)}

"""Tests of COCO results conversion and evaluation (tasks/keypoints/coco_eval.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from schemas.errors import EvaluationInputError
from tasks.keypoints.api import FramePoses
from tasks.keypoints.coco_eval import evaluate_coco_keypoints, poses_to_coco


def test_openpose18_person_to_coco17_result() -> None:
    kp = np.full((1, 18, 3), np.nan, np.float32)
    kp[0, :, 2] = 0.0
    kp[0, 0] = [10.0, 20.0, 0.9]  # nose -> coco 0
    kp[0, 1] = [11.0, 30.0, 0.8]  # neck: not a COCO joint, dropped
    kp[0, 2] = [5.0, 31.0, 0.7]  # right_shoulder -> coco 6
    kp[0, 17] = [14.0, 18.0, 0.6]  # left_ear -> coco 3
    (res,) = poses_to_coco(FramePoses(kp, np.array([0.75], np.float32)), image_id=42, skeleton="openpose18")
    assert res["image_id"] == 42 and res["category_id"] == 1 and res["score"] == pytest.approx(0.75)
    k = np.array(res["keypoints"]).reshape(17, 3)
    assert k[0].tolist() == [10.0, 20.0, 2.0]
    assert k[6].tolist() == [5.0, 31.0, 2.0]
    assert k[3].tolist() == [14.0, 18.0, 2.0]
    assert np.count_nonzero(k[:, 2]) == 3 and k[1].tolist() == [0.0, 0.0, 0.0]
    assert poses_to_coco(FramePoses(np.zeros((0, 18, 3), np.float32), np.zeros(0, np.float32)), 1, "openpose18") == []


def test_ground_truth_as_results_scores_one(shared_data: Path) -> None:
    gt_json = shared_data / "coco" / "coco_mini_val2017" / "person_keypoints_val2017.json"
    gt = json.loads(gt_json.read_text())
    anns = [a for a in gt["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in anns]
    ids = {a["image_id"] for a in gt["annotations"]}
    assert len(ids) == 39 and len(anns) == 68  # published: 118 person annotations, 68 with keypoints
    stats = evaluate_coco_keypoints(gt_json, results, ids)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    assert evaluate_coco_keypoints(gt_json, [], ids)["AP"] == 0.0


def test_missing_ground_truth(tmp_path: Path) -> None:
    with pytest.raises(EvaluationInputError, match="not found"):
        evaluate_coco_keypoints(tmp_path / "nope.json", [], [1])

"""COCOeval wrapper: generated COCO files with hand-computed AP/AR, bad inputs, and the real fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas.errors import EvaluationInputError
from tasks.evaluation.coco_eval import (
    STAT_NAMES,
    coco_evaluate,
    coco_gt_as_results,
    coco_keypoint_results,
    keypoint_triples,
)


def _person(ann_id: int, image_id: int, x0: float, y0: float) -> dict[str, Any]:
    rng = np.random.default_rng(ann_id)
    xs = x0 + rng.uniform(0, 150, 17)
    ys = y0 + rng.uniform(0, 200, 17)
    kps = np.stack([xs, ys, np.full(17, 2.0)], axis=1).ravel().round(1).tolist()
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
        "keypoints": kps, "bbox": [x0, y0, 150.0, 200.0], "area": 150.0 * 200.0,
    }  # fmt: skip


def write_fake_coco(folder: Path) -> tuple[Path, dict[str, Any]]:
    """A person_keypoints-style file: one 640x480 image, two large people far apart."""
    gt = {
        "images": [{"id": 7, "file_name": "000000000007.jpg", "width": 640, "height": 480}],
        "annotations": [_person(1, 7, 10.0, 10.0), _person(2, 7, 400.0, 200.0)],
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": [f"k{i}" for i in range(17)], "skeleton": []}],
    }  # fmt: skip
    path = folder / "person_keypoints_fake.json"
    path.write_text(json.dumps(gt))
    return path, gt


def _write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_fake_one_of_two_people_found(tmp_path: Path) -> None:
    gt_path, gt = write_fake_coco(tmp_path)
    dets = coco_gt_as_results(gt)[:1]
    report = coco_evaluate(gt_path, _write(tmp_path / "dt.json", dets))
    s = report.named
    # Recall 0.5 at every OKS threshold; precision 1 on the 51 recall points 0, 0.01, ..., 0.50.
    assert s["AR"] == pytest.approx(0.5) and s["ARl"] == pytest.approx(0.5)
    assert s["AP"] == pytest.approx(51 / 101) and s["APl"] == pytest.approx(51 / 101)
    assert s["APm"] == -1.0 and s["ARm"] == -1.0  # no medium-sized person in the ground truth
    assert len(report.stats) == 10 and report.num_images == 1 and report.num_detections == 1
    assert "Average Precision" in report.summary_text


def test_fake_all_found_and_a_far_false_positive_ranked_last(tmp_path: Path) -> None:
    gt_path, gt = write_fake_coco(tmp_path)
    dets = coco_gt_as_results(gt)
    far = dict(dets[0], keypoints=[v + 300.0 if i % 3 != 2 else v for i, v in enumerate(dets[0]["keypoints"])])
    far["score"] = 0.1
    report = coco_evaluate(gt_path, _write(tmp_path / "dt.json", [*dets, far]))
    assert report.named["AP"] == pytest.approx(1.0) and report.named["AR"] == pytest.approx(1.0)
    assert report.to_dict()["stats"] == list(report.stats)


def test_gt_as_results_skips_crowd_and_empty_annotations() -> None:
    gt = {"annotations": [
        {"image_id": 1, "category_id": 1, "iscrowd": 1, "num_keypoints": 5, "keypoints": [0] * 51, "bbox": [0] * 4},
        {"image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 0, "keypoints": [0] * 51, "bbox": [1] * 4},
        {"image_id": 2, "category_id": 1, "num_keypoints": 3, "keypoints": [1] * 51, "bbox": [2] * 4},
    ]}  # fmt: skip
    assert coco_gt_as_results(gt) == [{"image_id": 2, "category_id": 1, "score": 1.0, "keypoints": [1] * 51}]
    assert [d["bbox"] for d in coco_gt_as_results(gt, "bbox")] == [[1] * 4, [2] * 4]


def test_bad_inputs(tmp_path: Path) -> None:
    gt_path, gt = write_fake_coco(tmp_path)
    good = coco_gt_as_results(gt)
    with pytest.raises(EvaluationInputError, match=r"name 1 image ids absent from the ground truth \(first: \[99\]\)"):
        coco_evaluate(gt_path, _write(tmp_path / "a.json", [dict(good[0], image_id=99)]))
    with pytest.raises(EvaluationInputError, match=r"b\.json' hold no detections"):
        coco_evaluate(gt_path, _write(tmp_path / "b.json", []))
    with pytest.raises(EvaluationInputError, match=r"detection 0 .* 'keypoints' with 51 numbers"):
        coco_evaluate(gt_path, _write(tmp_path / "c.json", [dict(good[0], keypoints=[1, 2, 3])]))
    with pytest.raises(EvaluationInputError, match="must be a JSON list"):
        coco_evaluate(gt_path, _write(tmp_path / "d.json", {"annotations": good}))
    (tmp_path / "e.json").write_text('[{"image_id": 7, ')
    with pytest.raises(EvaluationInputError, match=r"e\.json' is not valid JSON"):
        coco_evaluate(gt_path, tmp_path / "e.json")
    with pytest.raises(EvaluationInputError, match="not a COCO annotation file"):
        coco_evaluate(_write(tmp_path / "f.json", good), _write(tmp_path / "g.json", good))
    with pytest.raises(EvaluationInputError, match="iou type 'segm' is not supported"):
        coco_evaluate(gt_path, tmp_path / "g.json", iou_type="segm")  # type: ignore[arg-type]


def test_instances_file_is_refused_for_keypoints(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "coco/cocoapi_val2014_first100"
    with pytest.raises(EvaluationInputError, match="no 17-joint 'keypoints'.*use --iou-type bbox"):
        coco_evaluate(
            folder / "instances_val2014_100.json", folder / "person_keypoints_val2014_fakekeypoints100_results.json"
        )


def test_real_mmpose_gt_as_prediction_is_perfect(shared_data: Path, tmp_path: Path) -> None:
    gt_path = shared_data / "coco/mmpose_tests/test_coco.json"
    dets = coco_gt_as_results(json.loads(gt_path.read_text()))
    assert len(dets) == 12  # 14 annotations, 2 with 0 keypoints (MMPose's topdown length 12)
    report = coco_evaluate(gt_path, _write(tmp_path / "dt.json", dets))
    assert report.stats == (1.0,) * 10
    assert report.num_images == 4


def test_real_cocoapi_fake_bbox_results_reproduce_published(shared_data: Path) -> None:
    folder = shared_data / "coco/cocoapi_val2014_first100"
    gt = folder / "instances_val2014_100.json"
    ids = sorted(img["id"] for img in json.loads(gt.read_text())["images"])[:100]
    report = coco_evaluate(gt, folder / "instances_val2014_fakebbox100_results.json", "bbox", img_ids=ids)
    published = [0.505, 0.697, 0.573, 0.586, 0.519, 0.501, 0.387, 0.594, 0.595, 0.640, 0.566, 0.564]
    assert [round(s, 3) for s in report.stats] == published
    assert list(report.named) == list(STAT_NAMES["bbox"])
    assert report.num_detections == 734


# --------------------------------------------------------------------------------------------------
# The results writer (third value of each triple = the joint's score) and in-memory results
# --------------------------------------------------------------------------------------------------


def test_keypoint_triples_zero_unknown_joints_and_round() -> None:
    kp = np.array([[1.23456, 2.0, 0.5], [np.nan, np.nan, 0.0], [3.0, np.inf, 0.7]], np.float32)
    assert keypoint_triples(kp) == [1.235, 2.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_openpose18_person_to_coco17_result_carries_joint_scores() -> None:
    kp = np.full((1, 18, 3), np.nan, np.float32)
    kp[0, :, 2] = 0.0
    kp[0, 0] = [10.0, 20.0, 0.9]  # nose -> coco 0
    kp[0, 1] = [11.0, 30.0, 0.8]  # neck: not a COCO joint, dropped
    kp[0, 2] = [5.0, 31.0, 0.7]  # right_shoulder -> coco 6
    kp[0, 17] = [14.0, 18.0, 0.6]  # left_ear -> coco 3
    kp[0, 5] = [7.0, 8.0, 0.0]  # left_shoulder found with score 0: not a result joint
    (res,) = coco_keypoint_results(kp, np.array([0.75], np.float32), image_id=42, skeleton="openpose18")
    assert res["image_id"] == 42 and res["category_id"] == 1 and res["score"] == 0.75
    k = np.array(res["keypoints"]).reshape(17, 3)
    assert k[0].tolist() == [10.0, 20.0, 0.9]
    assert k[6].tolist() == [5.0, 31.0, 0.7]
    assert k[3].tolist() == [14.0, 18.0, 0.6]
    assert np.count_nonzero(k[:, 2]) == 3 and k[1].tolist() == [0.0, 0.0, 0.0] and k[5].tolist() == [0.0, 0.0, 0.0]
    assert coco_keypoint_results(np.zeros((0, 18, 3), np.float32), np.zeros(0, np.float32), 1, "openpose18") == []


def test_in_memory_results_match_the_file(tmp_path: Path) -> None:
    gt_path, gt = write_fake_coco(tmp_path)
    dets = coco_gt_as_results(gt)[:1]
    before = json.dumps(dets)
    report = coco_evaluate(gt_path, dets)
    assert json.dumps(dets) == before  # loadRes gets a copy
    assert report.stats == coco_evaluate(gt_path, _write(tmp_path / "dt.json", dets)).stats
    nobody = coco_evaluate(gt_path, [], img_ids=[7])
    assert nobody.stats == (0.0,) * 10 and nobody.num_detections == 0 and nobody.num_images == 1
    with pytest.raises(EvaluationInputError, match=r"detection 0 in given is malformed"):
        coco_evaluate(gt_path, [{"image_id": 7}])
    with pytest.raises(EvaluationInputError, match=r"nope\.json' does not exist"):
        coco_evaluate(tmp_path / "nope.json", [])


def test_real_coco_mini_ground_truth_as_results_scores_one(shared_data: Path) -> None:
    gt_json = shared_data / "coco" / "coco_mini_val2017" / "person_keypoints_val2017.json"
    gt = json.loads(gt_json.read_text())
    results = coco_gt_as_results(gt)
    ids = {a["image_id"] for a in gt["annotations"]}
    assert len(ids) == 39 and len(results) == 68  # published: 118 person annotations, 68 with keypoints
    report = coco_evaluate(gt_json, results, img_ids=sorted(ids))
    assert report.named["AP"] == pytest.approx(1.0) and report.named["AR"] == pytest.approx(1.0)
    assert coco_evaluate(gt_json, [], img_ids=sorted(ids)).named["AP"] == 0.0

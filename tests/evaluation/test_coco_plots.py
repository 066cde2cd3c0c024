"""COCO precision-recall arrays behind ``evaluate coco --plot``: they must reproduce COCOeval's own
summary numbers (real cocoapi bbox fixture, generated keypoint files), and the plot must be real."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from schemas.errors import EvaluationInputError
from tasks.evaluation.coco_eval import CocoReport, coco_evaluate, coco_gt_as_results
from tasks.evaluation.plots import coco_area_scores, coco_pr_curves, plot_coco_report
from tests.evaluation.test_coco_eval import write_fake_coco


@pytest.fixture(scope="module")
def bbox_report(shared_data: Path) -> CocoReport:
    folder = shared_data / "coco/cocoapi_val2014_first100"
    return coco_evaluate(folder / "instances_val2014_100.json", folder / "instances_val2014_fakebbox100_results.json", iou_type="bbox")


def test_curves_keep_cocoeval_shapes(bbox_report: CocoReport) -> None:
    curves = bbox_report.curves
    assert curves is not None
    assert curves.area_labels == ("all", "small", "medium", "large") and curves.max_dets == 100
    t, r, k, a = curves.precision.shape
    assert (t, r, a) == (10, 101, 4) and curves.recall.shape == (t, k, a) and k >= 1
    assert np.allclose(curves.iou_thresholds, np.linspace(0.5, 0.95, 10))


def test_arrays_reproduce_the_summary_stats(bbox_report: CocoReport) -> None:
    named = bbox_report.named
    pr = coco_pr_curves(bbox_report)
    assert pr["0.50:0.95"][1] == pytest.approx(named["AP"], abs=1e-12)
    assert pr["0.50"][1] == pytest.approx(named["AP50"], abs=1e-12)
    assert pr["0.75"][1] == pytest.approx(named["AP75"], abs=1e-12)
    scores = coco_area_scores(bbox_report)
    for area, suffix in (("small", "s"), ("medium", "m"), ("large", "l")):
        assert scores[area][0] == pytest.approx(named[f"AP{suffix}"], abs=1e-12)
        assert scores[area][1] == pytest.approx(named[f"AR{suffix}"], abs=1e-12)
    assert scores["all"] == pytest.approx((named["AP"], named["AR100"]), abs=1e-12)
    # the published cocoapi printout for these fake results
    assert round(scores["all"][0], 3) == 0.505 and round(scores["small"][0], 3) == 0.586


def test_perfect_keypoints_give_flat_curves_and_no_small_range(tmp_path: Path) -> None:
    path, gt = write_fake_coco(tmp_path)
    (tmp_path / "dt.json").write_text(json.dumps(coco_gt_as_results(gt)))
    report = coco_evaluate(path, tmp_path / "dt.json")
    pr = coco_pr_curves(report)
    assert all(ap == 1.0 and np.all(curve == 1.0) for curve, ap in pr.values())
    scores = coco_area_scores(report)
    assert set(scores) == {"all", "medium", "large"}  # COCOeval's keypoint area ranges
    assert scores["all"] == (1.0, 1.0) and scores["medium"] == (-1.0, -1.0)  # no medium person: -1, as COCOeval says
    out = plot_coco_report(report, tmp_path / "perfect.png")
    image = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 300 and image.std() > 10
    with pytest.raises(EvaluationInputError, match="area range 'small'"):
        coco_pr_curves(report, area="small")


def test_a_report_without_arrays_is_a_clear_error(bbox_report: CocoReport, tmp_path: Path) -> None:
    bare = CocoReport(bbox_report.iou_type, bbox_report.stats, bbox_report.num_images, bbox_report.num_detections, "")
    with pytest.raises(EvaluationInputError, match="no precision/recall arrays"):
        plot_coco_report(bare, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()

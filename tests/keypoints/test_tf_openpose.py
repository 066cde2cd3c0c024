"""The tf-openpose backend on the real tf-pose-estimation MobileNetV2 graph (one TF load per module)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from schemas.errors import ExtractionError, ModelError
from schemas.skeletons import OPENPOSE18
from tasks.evaluation.coco_eval import coco_evaluate, coco_keypoint_results
from tasks.keypoints import load_backend
from tasks.keypoints.batching import probe_batch_invariance
from tasks.keypoints.models import get_model
from tasks.keypoints.tf_openpose import TfOpenPose

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graph_path(shared_data: Path) -> Path:
    return shared_data / "models" / "tf_pose_mobilenet_v2_small" / "graph_opt.pb"


@pytest.fixture(scope="module")
def backend(graph_path: Path) -> TfOpenPose:
    be = load_backend("tf-openpose", str(graph_path), intra_op_threads=2, inter_op_threads=1)
    assert isinstance(be, TfOpenPose)
    return be


@pytest.fixture(scope="module")
def p1(shared_data: Path) -> np.ndarray:
    img = cv2.imread(str(shared_data / "media" / "tf_pose_images" / "p1.jpg"))
    assert img is not None and img.shape == (232, 217, 3)
    return img


def test_model_identity_and_raw_output_layout(backend: TfOpenPose, p1: np.ndarray) -> None:
    assert backend.model_sha256 == get_model("tf_pose_mobilenet_v2_small").sha256
    assert backend.skeleton == "openpose18" and backend.name == "tf-openpose"
    (raw,) = backend.infer([p1])
    assert raw.heatmaps.shape == (46, 54, 19) and raw.pafs.shape == (46, 54, 38)
    assert raw.image_hw == (232, 217) and raw.input_hw == (368, 432)
    assert raw.heatmaps.dtype == np.float32
    # PAFs are reordered to the layout's pair order: limb 0 (neck -> right shoulder) is network channels 12, 13
    net = backend._run(backend.preprocess(p1)[None])[0]
    np.testing.assert_array_equal(raw.pafs[..., 0], net[..., 19 + 12])
    np.testing.assert_array_equal(raw.pafs[..., 1], net[..., 19 + 13])
    np.testing.assert_array_equal(raw.heatmaps, net[..., :19])
    # the background channel is ~1 away from the person (the input colour order is right)
    assert raw.heatmaps[..., 18].max() > 0.9


def test_p1_footballer_is_one_anatomically_plausible_person(backend: TfOpenPose, p1: np.ndarray) -> None:
    (poses,) = backend.predict([p1])
    assert poses.num_people == 1
    kp = poses.keypoints[0]
    j = OPENPOSE18.index
    found = kp[:, 2] > 0
    assert found.sum() >= 16
    assert np.all((kp[found, 0] >= 0) & (kp[found, 0] <= 216) & (kp[found, 1] >= 0) & (kp[found, 1] <= 231))
    y = {name: kp[j(name), 1] for name in OPENPOSE18.joints}
    for side in ("left", "right"):
        assert y["nose"] < y["neck"] <= y[f"{side}_shoulder"] + 5
        assert y[f"{side}_shoulder"] < y[f"{side}_hip"] < y[f"{side}_knee"] < y[f"{side}_ankle"]
        assert y[f"{side}_eye"] < y["neck"]
    # he faces the camera: his right side is on the image's left, for every left/right pair found
    for left, right in OPENPOSE18.flip_pairs:
        if found[left] and found[right]:
            assert kp[right, 0] < kp[left, 0], OPENPOSE18.joints[left]
    assert poses.person_scores[0] > 0


def test_batch_dependence_is_detected_and_batches_are_refused(backend: TfOpenPose, p1: np.ndarray) -> None:
    assert backend.batch_invariant is False and backend.max_batch == 1
    invariant, diff = probe_batch_invariance(backend.run_frames, 368, 432, count=3)
    assert not invariant and diff > 0.1  # train-mode batch norm: batch statistics change every output
    with pytest.raises(ExtractionError, match="max_batch"):
        backend.infer([p1, p1])


def test_batch_composition_never_changes_a_result(backend: TfOpenPose, p1: np.ndarray) -> None:
    other = cv2.flip(p1, 1)
    together = backend.predict([p1, other, p1])
    alone = backend.predict([p1])[0]
    np.testing.assert_array_equal(together[0].keypoints, alone.keypoints)
    np.testing.assert_array_equal(together[2].keypoints, alone.keypoints)
    assert together[1].num_people == 1


def test_broken_graph_file_is_a_model_error(tmp_path: Path, backend: TfOpenPose) -> None:
    bad = tmp_path / "graph_opt.pb"
    bad.write_bytes(b"\x00not a graphdef\xff" * 10)
    with pytest.raises(ModelError, match="graph_opt.pb"):
        load_backend("tf-openpose", str(bad), batch_invariant=False)


def test_bad_frame_is_an_extraction_error(backend: TfOpenPose) -> None:
    with pytest.raises(ExtractionError, match=r"\(H, W, 3\)"):
        backend.infer([np.zeros((10, 10), np.uint8)])


def test_coco_mini_ap_reaches_the_reference(backend: TfOpenPose, shared_data: Path) -> None:
    """AP on the 39 COCO-mini person images >= 0.131, tf-pose-estimation's own pipeline's score."""
    coco = shared_data / "coco" / "coco_mini_val2017"
    gt_json = coco / "person_keypoints_val2017.json"
    ids = {im["file_name"]: im["id"] for im in json.loads(gt_json.read_text())["images"]}
    images = sorted((coco / "images").glob("*.jpg"))
    assert len(images) == 39
    results = []
    for path in images:
        (poses,) = backend.predict([cv2.imread(str(path))])
        results.extend(coco_keypoint_results(poses.keypoints, poses.person_scores, ids[path.name], backend.skeleton))
    stats = coco_evaluate(gt_json, results, img_ids=[ids[p.name] for p in images]).named
    assert stats["AP"] >= 0.131
    assert stats["AP50"] >= 0.286
    assert stats["AR"] >= 0.157

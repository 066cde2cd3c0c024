"""tasks/training/tasks.py: the registry, typed parameters, dataset refusals, splits, target specs,
the pure classification metrics (explicit values), evaluation of hand-made predictions (perfect ones
score 1: PCK, PCKh, F1, COCO AP from the reconstructed ground truth; a known offset gives the
expected RMSE and PCK), the files written for ``posepipe evaluate pckh|coco|flic``, the plots, and
one quick learning check for pose-mlp (an MLP trains in seconds).

Real versions are built once per module from generated data (the MPII stick-figure fake of
:mod:`tests.training.fakes` and the project's synthetic COCO), in-process; FLIC and split-overlap
cases use a small in-memory stand-in for the reader (the tasks only call ``records``/``crops``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from schemas.errors import ConfigError, TaskDataError
from schemas.skeletons import FLIC7, FLIC29, MPII16, convert_keypoints
from tasks.training.tasks import (
    balanced_class_weights,
    classification_predictions_table,
    classification_report,
    confusion_matrix,
    get_task,
    input_to_crop_px,
    pose_predictions_table,
    task_names,
)
from tests.training.fakes import CATEGORIES, build_activity_version, write_activity_source

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------------
# Fixtures: real versions (built once) and an in-memory reader stand-in
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mpii_version(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The stick-figure MPII fake: 48 train persons, 16 valid, 4 balanced categories, 64x64 crops."""
    from storage.reader import open_version

    base = tmp_path_factory.mktemp("mpii_fake")
    src = write_activity_source(base / "src", train_per_class=12, valid_per_class=4, seed=0)
    summary = build_activity_version(base / "root", src)
    assert summary["validation"] == "passed" and summary["counts"] == {"train": 48, "valid": 16}
    return open_version(str(base / "root"), "mpii")


@pytest.fixture(scope="module")
def coco_version(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The project's synthetic COCO (train + val), 64x48 crops."""
    from storage.reader import open_version
    from tasks.synthetic import write_synthetic_coco
    from tasks.transforms.geometry import CropConfig
    from tests.helpers import build_version

    base = tmp_path_factory.mktemp("coco_syn")
    src = write_synthetic_coco(base / "src", {"train": 4, "val": 3}, seed=4)
    summary = build_version(str(base / "root"), str(src), crop=CropConfig(out_height_px=64, out_width_px=48))
    assert summary["validation"] == "passed"
    return open_version(str(base / "root"), "coco")


class StubVersion:
    """The part of :class:`storage.reader.DatasetVersion` the tasks' evaluation reads, over one table."""

    def __init__(self, table: pa.Table, skeleton: str, dataset: str = "stub") -> None:
        self.table = table
        self.skeleton = skeleton
        self.dataset = dataset
        self.version = "v-stub"
        self.record = "processed_samples"
        self.splits = list(dict.fromkeys(table.column("split").to_pylist()))

    def records(self, split: str | None = None, columns: list[str] | None = None) -> pa.Table:
        t = self.table if split is None else self.table.filter(pa.compute.equal(self.table.column("split"), split))
        return t.select(columns) if columns else t


def _flic_table(gt29: np.ndarray, vis29: np.ndarray, split: str = "test") -> pa.Table:
    n = gt29.shape[0]
    return pa.table({
        "sample_id": [f"flic-{i:03d}" for i in range(n)], "split": [split] * n, "skeleton": ["flic29"] * n,
        "image_path": [f"images/{i}.jpg" for i in range(n)],
        "keypoints_xy_px": [[[float(x), float(y)] for x, y in p] for p in gt29],
        "keypoints_visibility": [list(map(int, v)) for v in vis29],
    })  # fmt: skip


def _flic_people(torso_px: list[float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """FLIC's 11 labelled joints per person; left shoulder to right hip exactly ``torso_px`` apart."""
    rng = np.random.default_rng(seed)
    labelled = [FLIC29.index(j) for j in ("left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
                                           "right_wrist", "left_hip", "right_hip", "left_eye", "right_eye", "nose")]  # fmt: skip
    n = len(torso_px)
    gt = np.full((n, 29, 2), np.nan, np.float32)
    vis = np.zeros((n, 29), np.int8)
    for i, t in enumerate(torso_px):
        gt[i, labelled] = rng.uniform(100, 300, (len(labelled), 2))
        # right hip straight below the left shoulder (a backwards-facing check never flips it: lsho x < rsho x)
        gt[i, FLIC29.index("left_shoulder")] = (250.0, 100.0)
        gt[i, FLIC29.index("right_shoulder")] = (150.0, 100.0)
        gt[i, FLIC29.index("right_hip")] = (250.0, 100.0 + t)
        vis[i, labelled] = 2
    return gt, vis


# --------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------


def test_confusion_matrix_counts_true_rows_predicted_columns() -> None:
    cm = confusion_matrix(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2]), 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_classification_report_explicit_values() -> None:
    r = classification_report(np.array([[2, 1, 0], [0, 1, 1], [0, 0, 1]]), ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert [r["per_class"][c]["precision"] for c in "abc"] == pytest.approx([1.0, 0.5, 0.5])
    assert [r["per_class"][c]["recall"] for c in "abc"] == pytest.approx([2 / 3, 0.5, 1.0])
    assert [r["per_class"][c]["f1"] for c in "abc"] == pytest.approx([0.8, 0.5, 2 / 3])
    assert [r["per_class"][c]["support"] for c in "abc"] == [3, 2, 1]
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert r["weighted_f1"] == pytest.approx(0.8 * 3 / 6 + 0.5 * 2 / 6 + (2 / 3) * 1 / 6)


def test_classification_report_zero_division_and_perfect() -> None:
    # class b never predicted and never true: left out of the macro mean; class c never predicted: precision 0
    r = classification_report(np.array([[2, 0, 0], [0, 0, 0], [1, 0, 0]]), ["a", "b", "c"])
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert r["macro_f1"] == pytest.approx((0.8 + 0.0) / 2)
    perfect = classification_report(np.diag([3, 1, 2]), ["a", "b", "c"])
    assert perfect["accuracy"] == perfect["macro_f1"] == perfect["weighted_f1"] == 1.0


def test_balanced_class_weights_are_sklearns() -> None:
    assert balanced_class_weights(["a", "a", "a", "b"], ["a", "b"]) == pytest.approx((4 / 6, 2.0))
    assert balanced_class_weights(["x", "y", "x", "y"], ["x", "y"]) == (1.0, 1.0)


def test_input_to_crop_px_pixel_centres() -> None:
    # the input's left edge (-0.5) is the crop's left edge; one input px = 2 crop px in x, 4 in y
    out = input_to_crop_px(np.array([[-0.5, -0.5], [0.0, 0.0], [63.5, 63.5]]), (64, 64), (128, 256))
    assert out.tolist() == [[-0.5, -0.5], [0.5, 1.5], [127.5, 255.5]]


# --------------------------------------------------------------------------------------------------
# Registry and parameters
# --------------------------------------------------------------------------------------------------


def test_registry_lists_the_four_tasks_without_loading_tensorflow() -> None:
    assert task_names() == ["action-gru", "action-lstm", "flic-regression", "mpii-activity", "pose-heatmap", "pose-mlp", "skeleton-cnn"]
    code = "import sys, tasks.training.tasks as t; t.get_task('pose-heatmap').params({}); print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="no training task named 'nope'") as exc:
        get_task("nope")
    assert "pose-heatmap" in exc.value.hint


def test_params_are_typed_and_unknown_keys_refused_listing_the_accepted_ones() -> None:
    task = get_task("pose-mlp")
    p = task.params({"hidden_units": "16,8", "epochs": "3", "mixed_precision": "true", "learning_rate": "0.01", "label_column": "activity"})
    assert p["hidden_units"] == (16, 8) and p["epochs"] == 3 and p["mixed_precision"] is True and p["learning_rate"] == 0.01
    assert p["label_column"] == "activity" and p["batch_size"] == 32  # tiny default kept
    with pytest.raises(ConfigError, match="no parameter 'nope'") as exc:
        task.params({"nope": "1"})
    assert "hidden_units=64,32" in exc.value.hint and "label_column=category" in exc.value.hint
    with pytest.raises(ConfigError, match="not a valid int"):
        task.params({"epochs": "many"})
    with pytest.raises(ConfigError, match="not a valid bool"):
        task.params({"mixed_precision": "perhaps"})
    with pytest.raises(ConfigError, match="not one of category, activity, activity_id"):
        task.params({"label_column": "colour"})
    with pytest.raises(ConfigError, match="no preset 'huge'"):
        task.params({}, preset="huge")


def test_presets_tiny_and_full_for_every_task() -> None:
    for name in task_names():
        task = get_task(name)
        tiny, full = task.params({}, "tiny"), task.params({}, "full")
        assert set(tiny) == set(full) and tiny["mixed_precision"] is False
    heat = get_task("pose-heatmap")
    assert heat.params({}, "full")["backbone"] == "resnet50" and get_task("flic-regression").params({}, "full")["backbone"] == "vgg16"
    with pytest.raises(ConfigError, match="not a multiple of the backbone stride 16"):
        heat.params({"input_width_px": "40"})
    with pytest.raises(ConfigError, match="num_deconv must be 3"):
        heat.params({"backbone": "resnet50"})


# --------------------------------------------------------------------------------------------------
# Dataset checks, splits, target specs (real versions)
# --------------------------------------------------------------------------------------------------


def test_flic_regression_refuses_coco_with_a_hint(coco_version: Any) -> None:
    task = get_task("flic-regression")
    with pytest.raises(TaskDataError, match="skeleton flic29.*coco17") as exc:
        task.check_dataset(coco_version, task.params({}))
    assert "pose-heatmap" in exc.value.hint


def test_classification_refuses_a_version_without_label_values(coco_version: Any) -> None:
    for name in ("mpii-activity", "pose-mlp"):
        task = get_task(name)
        with pytest.raises(TaskDataError, match="no values in the label column 'category'") as exc:
            task.check_dataset(coco_version, task.params({}))
        assert "label_column" in exc.value.hint


def test_classification_refuses_an_image_in_two_splits() -> None:
    table = pa.table({"sample_id": ["a-p0", "a-p1", "b-p0"], "split": ["train", "valid", "train"],
                      "image_path": ["images/a.jpg", "images/a.jpg", "images/b.jpg"], "category": ["x", "y", "y"]})  # fmt: skip
    task = get_task("mpii-activity")
    with pytest.raises(TaskDataError, match=r"1 images .* two splits \(first: images/a.jpg \(train, valid\)\)"):
        task.check_dataset(StubVersion(table, "mpii16"), task.params({}))


def test_mpii_fake_passes_the_checks_and_splits_by_the_records(mpii_version: Any) -> None:
    for name in ("pose-heatmap", "mpii-activity", "pose-mlp"):
        task = get_task(name)
        p = task.params({})
        task.check_dataset(mpii_version, p)
        assert task.splits(mpii_version, p) == ("train", "valid")
    task = get_task("pose-heatmap")
    assert task.splits(mpii_version, task.params({"eval_split": "train"})) == ("train", "train")
    with pytest.raises(TaskDataError, match="eval_split='test'"):
        task.splits(mpii_version, task.params({"eval_split": "test"}))


def test_target_specs(mpii_version: Any, coco_version: Any) -> None:
    act = get_task("mpii-activity")
    spec = act.target_spec(mpii_version, act.params({}))
    assert (spec.kind, spec.input_wh, spec.label_column, spec.classes) == ("label", (64, 64), "category", CATEGORIES)
    assert spec.class_weights == pytest.approx((1.0,) * 4)  # balanced classes: weights 1
    by_id = act.target_spec(mpii_version, act.params({"label_column": "activity_id", "class_weights": "none"}))
    assert by_id.classes == ("10", "11", "20", "21", "30", "31", "40", "41") and by_id.class_weights is None
    mlp = get_task("pose-mlp")
    assert mlp.target_spec(mpii_version, mlp.params({})).convert_to == "mpii16"
    heat = get_task("pose-heatmap")
    hs = heat.target_spec(coco_version, heat.params({}))
    assert (hs.kind, hs.input_wh, hs.convert_to, hs.stride, hs.sigma) == ("heatmaps", (48, 64), "coco17", 4, 2.0)
    fs = get_task("flic-regression").target_spec(coco_version, get_task("flic-regression").params({}))
    assert (fs.kind, fs.convert_to) == ("coords", "flic7")


# --------------------------------------------------------------------------------------------------
# Evaluation of hand-made predictions
# --------------------------------------------------------------------------------------------------


def _gt_predictions(version: Any, split: str) -> pa.Table:
    """Ground truth as pose predictions (score 1)."""
    t = version.records(split)
    n = t.num_rows
    sk = version.skeleton
    j = len(t.column("keypoints_visibility")[0].as_py())
    xy = np.asarray(t.column("keypoints_xy_px").to_pylist(), dtype=np.float32).reshape(n, j, 2)
    crop = np.asarray(t.column("keypoints_crop_xy_px").to_pylist(), dtype=np.float32).reshape(n, j, 2)
    return pose_predictions_table(t.column("sample_id").to_pylist(), sk, xy, crop, np.ones((n, j), np.float32))


def test_pose_heatmap_perfect_mpii_predictions_and_the_pckh_files(mpii_version: Any, tmp_path: Path) -> None:
    from tasks.evaluation.metrics import head_norm_from_boxes, mpii_pckh_report
    from tasks.evaluation.readers import read_mpii_gt, read_mpii_predictions

    task = get_task("pose-heatmap")
    m = task.evaluate(_gt_predictions(mpii_version, "valid"), mpii_version, "valid", task.params({}), str(tmp_path))
    assert m["num_samples"] == 16 and m["skeleton"] == "mpii16"
    assert m["pck@0.2_torso"]["mean"] == 1.0 and m["pck@0.2_bbox"]["mean"] == 1.0
    assert m["mpii_pckh"]["pckh@0.5"]["Mean"] == pytest.approx(100.0) and m["mpii_pckh"]["num_people"] == 16
    assert (m["score_name"], m["score"]) == ("pckh@0.5_mean", pytest.approx(1.0))
    # what `posepipe evaluate pckh --gt gt.mat --pred pred.mat` reads gives the same report
    gt = read_mpii_gt(m["files"]["mpii_gt"])
    pred = read_mpii_predictions(m["files"]["mpii_pred"], gt.num_people)
    assert mpii_pckh_report(pred, gt.gt_xy, gt.visible, head_norm_from_boxes(gt.head_boxes_xyxy)).parts_05["Mean"] == pytest.approx(100.0)
    ids = json.loads(Path(m["files"]["mpii_sample_ids"]).read_text())
    assert ids == mpii_version.records("valid").column("sample_id").to_pylist()


def test_pose_heatmap_known_offset_gives_the_expected_pck(mpii_version: Any, tmp_path: Path) -> None:
    task = get_task("pose-heatmap")
    perfect = _gt_predictions(mpii_version, "valid")
    xy = np.asarray(perfect.column("keypoints_xy_px").to_pylist(), np.float32)
    t = mpii_version.records("valid")
    gt = np.asarray(t.column("keypoints_xy_px").to_pylist(), np.float64)
    torso = np.linalg.norm(gt[:, MPII16.index("left_shoulder")] - gt[:, MPII16.index("right_hip")], axis=-1)
    # people 0..7: every joint moved by 0.1 torso (hit at 0.2); people 8..15: by 0.3 torso (miss)
    shift = np.where(np.arange(16) < 8, 0.1, 0.3) * torso
    moved = xy + np.stack([shift, np.zeros(16)], -1)[:, None, :].astype(np.float32)
    pred = pose_predictions_table(t.column("sample_id").to_pylist(), "mpii16", moved, moved, np.ones((16, 16), np.float32))
    m = task.evaluate(pred, mpii_version, "valid", task.params({}), str(tmp_path))
    assert m["pck@0.2_torso"]["mean"] == pytest.approx(0.5)
    assert set(m["pck@0.2_torso"]["per_joint"].values()) == {0.5}
    # the champion gate's per-sample form gives the same number on all samples, and on any resample
    gate = task.gate_samples(pred, mpii_version, "valid", task.params({}))
    f = gate.metrics["pck@0.2_torso/mean"]
    assert gate.sample_ids == tuple(t.column("sample_id").to_pylist())
    assert f(np.arange(16)) == pytest.approx(0.5)
    assert f(np.arange(8)) == 1.0 and f(np.arange(8, 16)) == 0.0 and f(np.array([0, 0, 8])) == pytest.approx(2 / 3)


def test_pose_heatmap_coco_ap_is_one_for_ground_truth_predictions(coco_version: Any, tmp_path: Path) -> None:
    from tasks.evaluation.coco_eval import coco_evaluate

    task = get_task("pose-heatmap")
    m = task.evaluate(_gt_predictions(coco_version, "val"), coco_version, "val", task.params({}), str(tmp_path))
    assert m["coco"]["AP"] == pytest.approx(1.0) and m["coco"]["AR"] == pytest.approx(1.0)
    assert (m["score_name"], m["score"]) == ("coco_ap", pytest.approx(1.0))
    gt = json.loads(Path(m["files"]["coco_gt"]).read_text())
    records = coco_version.records("val")
    extras = [json.loads(e) for e in records.column("extra").to_pylist()]
    assert sorted(img["id"] for img in gt["images"]) == sorted({e["image_id"] for e in extras})  # COCO's own image ids
    assert len(gt["annotations"]) == records.num_rows
    # the written files are what `posepipe evaluate coco --gt --dt` scores
    assert coco_evaluate(m["files"]["coco_gt"], m["files"]["coco_results"]).named["AP"] == pytest.approx(1.0)


def test_pose_evaluation_refuses_missing_predictions(mpii_version: Any, tmp_path: Path) -> None:
    task = get_task("pose-heatmap")
    part = _gt_predictions(mpii_version, "valid").slice(0, 10)
    with pytest.raises(TaskDataError, match="6 of the 16 samples to score have no prediction"):
        task.evaluate(part, mpii_version, "valid", task.params({}), str(tmp_path))


def test_flic_regression_perfect_and_offset_predictions(tmp_path: Path) -> None:
    gt29, vis29 = _flic_people([100.0, 100.0, 20.0])
    version = StubVersion(_flic_table(gt29, vis29), "flic29", dataset="flic")
    gt7, _ = convert_keypoints(gt29, vis29, "flic29", "flic7")
    task = get_task("flic-regression")
    ids = [f"flic-{i:03d}" for i in range(3)]

    perfect = pose_predictions_table(ids, "flic7", gt7, gt7, np.ones((3, 7), np.float32))
    m = task.evaluate(perfect, version, "test", task.params({}), str(tmp_path))
    assert m["rmse_px"] == 0.0 and m["pck@0.2"]["mean"] == 1.0 and m["num_samples"] == 3
    assert m["modec"]["pck@0.2"] == {"elbow": 1.0, "wrist": 1.0} and m["modec"]["num_examples"] == 3
    saved = np.load(m["files"]["flic_pred"])
    assert saved.shape == (3, 6, 2) and np.allclose(saved[:, 0], gt7[:, FLIC7.index("left_shoulder")] + 1.0)  # MATLAB 1-based

    # every joint off by (3, 4) px: RMSE sqrt((9 + 16) / 2); a miss only for the person with a 20 px torso (thr 4 px < 5 px)
    off = gt7 + np.array([3.0, 4.0], np.float32)
    m = task.evaluate(pose_predictions_table(ids, "flic7", off, off, np.ones((3, 7), np.float32)), version, "test", task.params({}), str(tmp_path))
    assert m["rmse_px"] == pytest.approx(np.sqrt(12.5), rel=1e-5)
    assert m["pck@0.2"]["mean"] == pytest.approx(2 / 3) and m["pck@0.2"]["per_joint"]["head"] == pytest.approx(2 / 3)
    assert "left_shoulder-right_hip" in m["pck@0.2"]["norm"]


def test_classification_perfect_and_known_predictions(mpii_version: Any, tmp_path: Path) -> None:
    task = get_task("mpii-activity")
    p = task.params({})
    records = mpii_version.records("valid")
    ids = records.column("sample_id").to_pylist()
    labels = records.column("category").to_pylist()
    onehot = np.eye(4, dtype=np.float32)[[CATEGORIES.index(c) for c in labels]]
    m = task.evaluate(classification_predictions_table(ids, onehot, CATEGORIES, "category"), mpii_version, "valid", p, str(tmp_path))
    assert m["accuracy"] == m["macro_f1"] == m["weighted_f1"] == 1.0 and m["num_samples"] == 16
    assert m["confusion_matrix"] == (np.eye(4, dtype=int) * 4).tolist() and m["classes"] == list(CATEGORIES)
    assert m["baseline_majority"]["accuracy"] == 0.25 and m["score"] == 1.0
    assert m["per_class"]["arms up"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 4}

    # everything predicted as "standing": accuracy 1/4, standing precision 1/4 recall 1 F1 0.4, macro F1 0.1
    always = np.tile(np.eye(4, dtype=np.float32)[3], (16, 1))
    m = task.evaluate(classification_predictions_table(ids, always, CATEGORIES, "category"), mpii_version, "valid", p, str(tmp_path))
    assert m["accuracy"] == 0.25 and m["macro_f1"] == pytest.approx(0.1) and m["per_class"]["standing"]["f1"] == pytest.approx(0.4)
    gate = task.gate_samples(classification_predictions_table(ids, always, CATEGORIES, "category"), mpii_version, "valid", p)
    everything = np.arange(16)
    assert gate.metrics["accuracy"](everything) == 0.25 and gate.metrics["macro_f1"](everything) == pytest.approx(0.1)
    standing = np.array([i for i, c in enumerate(labels) if c == "standing"])
    assert gate.metrics["accuracy"](standing) == 1.0 and gate.metrics["score"](everything) == pytest.approx(0.1)


def test_plots_are_written(mpii_version: Any, tmp_path: Path) -> None:
    from tasks.training import plots

    history = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.2 / e, "sparse_categorical_accuracy": 0.2 * e, "seconds": 1.0} for e in (1, 2, 3)]
    heat = get_task("pose-heatmap")
    paths = heat.plots(_gt_predictions(mpii_version, "valid"), mpii_version, "valid", history, str(tmp_path / "pose"))
    assert [Path(p).name for p in paths] == ["history.png", "pck_per_joint.png", "worst_predictions.png"]
    act = get_task("mpii-activity")
    records = mpii_version.records("valid")
    scores = np.eye(4, dtype=np.float32)[[CATEGORIES.index(c) for c in records.column("category").to_pylist()]]
    preds = classification_predictions_table(records.column("sample_id").to_pylist(), scores, CATEGORIES, "category")
    act_paths = act.plots(preds, mpii_version, "valid", history, str(tmp_path / "act"))
    assert [Path(p).name for p in act_paths] == ["history.png", "confusion_matrix.png", "worst_predictions.png"]
    paths += act_paths
    paths.append(str(plots.plot_confusion_matrix(np.array([[3, 1], [0, 2]]), ["a", "b"], tmp_path / "cm.png")))
    for p in paths:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------
# pose-mlp learns the generated signal (seconds)
# --------------------------------------------------------------------------------------------------


def test_pose_mlp_beats_the_majority_baseline(mpii_version: Any, tmp_path: Path) -> None:
    import keras

    from tasks.training.data import iterate_numpy

    keras.utils.set_random_seed(0)
    task = get_task("pose-mlp")
    p = task.params({"epochs": "40"})
    task.check_dataset(mpii_version, p)
    train, held = task.splits(mpii_version, p)
    spec = task.target_spec(mpii_version, p)
    batches = list(iterate_numpy(mpii_version, train, spec, 64))
    x = np.concatenate([b[1] for b in batches])
    y = np.concatenate([b[2] for b in batches])
    assert x.shape == (48, 16 * 3)
    model = task.build_model(spec, p)
    model.fit(x, y, epochs=p["epochs"], batch_size=p["batch_size"], verbose=0)
    preds = task.predict(model, mpii_version, held, spec, p)
    m = task.evaluate(preds, mpii_version, held, p, str(tmp_path))
    assert m["baseline_majority"]["macro_f1"] == pytest.approx(0.1)
    assert m["accuracy"] >= 0.75 and m["macro_f1"] >= 0.7, m


# --------------------------------------------------------------------------------------------------
# predict(): frames from network output back to original image pixels (an oracle "model")
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flic_version(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """FLIC's on-disk format (tests.datasets.fakes_flic) with blank 720x480 frames: 12 train, 4 test."""
    import cv2

    import posepipe
    from storage.reader import open_version
    from tasks.transforms.geometry import CropConfig
    from tests.datasets.fakes_flic import write_fake_flic

    base = tmp_path_factory.mktemp("flic_fake")
    fake = write_fake_flic(base / "src", n=16)
    for name in fake.filepaths:
        cv2.imwrite(str(base / "src" / "images" / name), np.full((480, 720, 3), 90, np.uint8))
    summary = posepipe.rebuild("flic", root=str(base / "root"), source=str(base / "src"), crop=CropConfig(out_height_px=64, out_width_px=64))
    assert summary["validation"] == "passed" and summary["counts"] == {"test": 4, "train": 12}
    return open_version(str(base / "root"), "flic")


class OracleModel:
    """Answers each batch with the targets the input pipeline encodes for it (what a perfect model outputs)."""

    def __init__(self, version: Any, split: str, spec: Any, batch_size: int, take: Any) -> None:
        from tasks.training.data import iterate_numpy

        self.outputs = [take(y) for _ids, _x, y in iterate_numpy(version, split, spec, batch_size)]
        self.weights = [y for _ids, _x, y in iterate_numpy(version, split, spec, batch_size)]

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        out = self.outputs.pop(0)
        assert len(out) == len(x)
        return out


def test_flic_regression_predictions_map_back_to_image_pixels(flic_version: Any, tmp_path: Path) -> None:
    task = get_task("flic-regression")
    p = task.params({})
    task.check_dataset(flic_version, p)
    assert task.splits(flic_version, p) == ("train", "test")
    spec = task.target_spec(flic_version, p)
    oracle = OracleModel(flic_version, "test", spec, p["batch_size"], lambda y: y[..., :2])
    weight = np.concatenate([y[..., 2] for y in oracle.weights]) > 0  # joints inside the crop
    preds = task.predict(oracle, flic_version, "test", spec, p)
    assert preds.num_rows == 4 and preds.column("skeleton").to_pylist() == ["flic7"] * 4
    records = flic_version.records("test")
    gt29 = np.asarray(records.column("keypoints_xy_px").to_pylist(), np.float32)
    vis29 = np.asarray(records.column("keypoints_visibility").to_pylist(), np.int8)
    gt7, _ = convert_keypoints(gt29, vis29, "flic29", "flic7")
    image_xy = np.asarray(preds.column("keypoints_xy_px").to_pylist(), np.float32)
    np.testing.assert_allclose(image_xy[weight], gt7[weight], atol=0.01)
    crop_xy = np.asarray(preds.column("keypoints_crop_xy_px").to_pylist(), np.float32)
    crop_gt, _ = convert_keypoints(np.asarray(records.column("keypoints_crop_xy_px").to_pylist(), np.float32), vis29, "flic29", "flic7")
    np.testing.assert_allclose(crop_xy[weight], crop_gt[weight], atol=0.01)
    m = task.evaluate(preds, flic_version, "test", p, str(tmp_path))
    assert m["num_samples"] == 4 and m["pck@0.2"]["mean"] == pytest.approx(weight.sum() / weight.size)


def test_pose_heatmap_predictions_map_back_to_image_pixels(mpii_version: Any, tmp_path: Path) -> None:
    task = get_task("pose-heatmap")
    p = task.params({})
    spec = task.target_spec(mpii_version, p)
    oracle = OracleModel(mpii_version, "valid", spec, p["batch_size"], lambda y: y[..., : y.shape[-1] // 2])
    preds = task.predict(oracle, mpii_version, "valid", spec, p)
    gt = np.asarray(mpii_version.records("valid").column("keypoints_xy_px").to_pylist(), np.float32)
    image_xy = np.asarray(preds.column("keypoints_xy_px").to_pylist(), np.float32)
    crop_gt = np.asarray(mpii_version.records("valid").column("keypoints_crop_xy_px").to_pylist(), np.float32)
    inner = ((crop_gt > 8) & (crop_gt < 56)).all(axis=-1)  # 2+ heatmap px inside the 64x64 crop
    err = np.abs(image_xy - gt).max(axis=-1)
    # DARK on the exact Gaussian targets: < 0.1 px away from the border (a Gaussian cut by the border biases it)
    assert inner.mean() > 0.6 and err[inner].max() < 0.1 and err.max() < 2.0
    scores = np.asarray(preds.column("keypoint_scores").to_pylist(), np.float32)
    assert scores.shape == (16, 16) and scores.min() > 0.5
    m = task.evaluate(preds, mpii_version, "valid", p, str(tmp_path))
    assert m["mpii_pckh"]["pckh@0.5"]["Mean"] == pytest.approx(100.0) and m["pck@0.2_torso"]["mean"] == 1.0

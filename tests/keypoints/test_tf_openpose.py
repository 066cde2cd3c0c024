"""The tf-openpose backend on the real tf-pose-estimation MobileNetV2 graph (one TF load per module)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from schemas.errors import ConfigError, ExtractionError, ModelError
from schemas.skeletons import OPENPOSE18
from tasks.evaluation.coco_eval import coco_evaluate, coco_keypoint_results
from tasks.keypoints import load_backend
from tasks.keypoints.batching import probe_batch_invariance
from tasks.keypoints.models import get_model
from tasks.keypoints.tf_openpose import (
    PER_SAMPLE_NORM,
    TfOpenPose,
    batch_dependent_nodes,
    batch_pieces,
    cached_per_sample_graph,
    per_sample_norm_graph,
    read_graph_def,
    training_mode_batch_norms,
)
from tasks.video.decode import VideoReader

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graph_path(shared_data: Path) -> Path:
    return shared_data / "models" / "tf_pose_mobilenet_v2_small" / "graph_opt.pb"


@pytest.fixture(scope="module")
def backend(graph_path: Path, tmp_path_factory: pytest.TempPathFactory) -> TfOpenPose:
    """The default backend: training-mode batch norms rewritten per sample (batch-exact)."""
    cache = tmp_path_factory.mktemp("graphs")
    be = load_backend("tf-openpose", str(graph_path), intra_op_threads=2, inter_op_threads=1, graph_cache_dir=str(cache))
    assert isinstance(be, TfOpenPose)
    return be


@pytest.fixture(scope="module")
def frozen_backend(graph_path: Path) -> TfOpenPose:
    """The graph as frozen (its batch norms use the statistics of the batch)."""
    be = load_backend("tf-openpose", str(graph_path), intra_op_threads=2, inter_op_threads=1, per_sample_norm=False)
    assert isinstance(be, TfOpenPose)
    return be


@pytest.fixture(scope="module")
def clip_frames(shared_data: Path) -> list[np.ndarray]:
    """Nine real frames of the UCF101 test clip (320x240 BGR), spread over the clip."""
    frames = [f for c in VideoReader(shared_data / "media/videos/mmaction2_tests_test.avi").chunks() for f in c.frames]
    return [frames[i] for i in np.linspace(0, len(frames) - 1, 9).astype(int)]


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


def test_batch_dependence_is_detected_and_batches_are_refused(frozen_backend: TfOpenPose, p1: np.ndarray) -> None:
    assert frozen_backend.batch_invariant is False and frozen_backend.max_batch == 1 and frozen_backend.graph_revision == ""
    invariant, diff = probe_batch_invariance(frozen_backend.run_frames, 368, 432, count=3)
    assert not invariant and diff > 0.1  # train-mode batch norm: batch statistics change every output
    with pytest.raises(ExtractionError, match="max_batch"):
        frozen_backend.infer([p1, p1])
    # asking for a batch names the nodes that depend on it
    assert len(frozen_backend.batch_dependent_nodes) == 39
    with pytest.raises(ConfigError, match=r"cannot run batch 8.*39 node\(s\).*MobilenetV2/Conv/BatchNorm/FusedBatchNorm"):
        frozen_backend.choose_batch(8)
    assert frozen_backend.choose_batch(1) == 1


def test_rewritten_graph_is_batch_exact_on_real_frames(backend: TfOpenPose, frozen_backend: TfOpenPose, clip_frames: list[np.ndarray]) -> None:
    """Batch 8 and a ragged last batch give every frame its batch-1 output (within 1e-4; measured 0.0)."""
    assert backend.batch_invariant and backend.graph_revision == PER_SAMPLE_NORM and backend.batch_dependent_nodes == ()
    assert backend.choose_batch(32) == 32
    # the default batch is the fastest the probe allows here, measured once and kept beside the graph
    assert backend.max_batch in (1, 4, 8) and list(backend._cache_dir.glob("*.batch.json"))
    singles = np.concatenate([backend.run_frames(clip_frames[i : i + 1]) for i in range(9)])
    eight = np.concatenate([backend.run_frames(clip_frames[:8]), backend.run_frames(clip_frames[8:])])
    ragged = np.concatenate([backend.run_frames(clip_frames[:5]), backend.run_frames(clip_frames[5:])])  # 4+1, then 4
    nine = backend.run_frames(clip_frames)  # 8+1 in one call
    for batched in (eight, ragged, nine):
        assert np.abs(batched - singles).max() < 1e-4
    # graphs exist for the powers of two sent, not for every ragged size
    assert set(backend._fns) <= {1, 2, 4, 8} and {1, 4, 8} <= set(backend._fns)
    # and batch 1 of the rewrite is what the frozen graph computes at batch 1 (its batch-1 semantics)
    frozen = np.concatenate([frozen_backend.run_frames(clip_frames[i : i + 1]) for i in range(9)])
    assert np.abs(frozen - singles).max() <= 1e-6  # measured 0.0: the same fused kernel on the same numbers
    # people found do not depend on the batch
    one = backend.predict(clip_frames, batch=1)
    many = backend.predict(clip_frames, batch=8)
    for a, b in zip(one, many, strict=True):
        assert a.num_people == b.num_people
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


def test_batch_pieces_are_the_binary_decomposition() -> None:
    assert batch_pieces(1) == [1]
    assert batch_pieces(8) == [8]
    assert batch_pieces(13) == [8, 4, 1]
    assert batch_pieces(7) == [4, 2, 1]
    assert batch_pieces(64) == [64]
    assert batch_pieces(0) == []


def test_the_rewrite_is_cached_by_model_sha256(graph_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.keypoints import tf_openpose

    original = read_graph_def(graph_path)
    monkeypatch.setattr(tf_openpose, "_REWRITE_CACHE", {})
    rewritten, n = cached_per_sample_graph(original, "a" * 64, 8, tmp_path)
    assert n == 39 and training_mode_batch_norms(rewritten) == [] and len(training_mode_batch_norms(original)) == 39
    cached = tmp_path / f"{'a' * 64}.{PER_SAMPLE_NORM}.b8.pb"
    assert cached.is_file() and (tmp_path / f"{cached.name}.sha256").is_file()
    # batch 1 needs no rewrite (a sample is its own batch): the graph as read, nothing cached
    same, n1 = cached_per_sample_graph(original, "a" * 64, 1, tmp_path)
    assert same is original and n1 == 0 and not list(tmp_path.glob("*.b1.pb"))
    # a new process (empty memory cache) reads the file instead of rewriting
    monkeypatch.setattr(tf_openpose, "_REWRITE_CACHE", {})
    monkeypatch.setattr(tf_openpose, "per_sample_norm_graph", lambda _g, _b: (_ for _ in ()).throw(AssertionError("rewrote again")))
    again, n2 = cached_per_sample_graph(original, "a" * 64, 8, tmp_path)
    assert n2 == 39 and again.SerializeToString(deterministic=True) == cached.read_bytes()
    # another model sha256 or batch size is another entry; a corrupt cache file is rebuilt, not trusted
    monkeypatch.undo()
    monkeypatch.setattr(tf_openpose, "_REWRITE_CACHE", {})
    cached.write_bytes(b"garbage")
    rebuilt, _ = cached_per_sample_graph(original, "a" * 64, 8, tmp_path)
    assert rebuilt.SerializeToString(deterministic=True) == cached.read_bytes() != b"garbage"
    cached_per_sample_graph(original, "b" * 64, 8, tmp_path)
    cached_per_sample_graph(original, "a" * 64, 4, tmp_path)
    assert (tmp_path / f"{'b' * 64}.{PER_SAMPLE_NORM}.b8.pb").is_file() and (tmp_path / f"{'a' * 64}.{PER_SAMPLE_NORM}.b4.pb").is_file()


def _tiny_graph(is_training: bool, reduce_batch: bool = False):  # noqa: ANN202 - a GraphDef
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, 3, 4, 2), name="x")
        gamma = tf.constant([1.5, 0.5], name="gamma")
        beta = tf.constant([0.25, -1.0], name="beta")
        y, *_ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, mean=tf.zeros(2), variance=tf.ones(2) if not is_training else None,
                                                 epsilon=1e-3, is_training=is_training, name="bn")  # fmt: skip
        if reduce_batch:
            y = tf.reduce_mean(y, axis=0, keepdims=True, name="batch_mean")
        tf.identity(y, name="y")
    return g.as_graph_def()


def test_per_sample_norm_is_instance_normalisation_on_a_tiny_graph() -> None:
    import tensorflow as tf

    from tasks.keypoints.tf_openpose import load_frozen_graph

    gd = _tiny_graph(is_training=True)
    assert training_mode_batch_norms(gd) == ["bn"] and batch_dependent_nodes(gd) == ["bn"]
    rewritten, names = per_sample_norm_graph(gd, 3)
    assert names == ["bn"] and batch_dependent_nodes(rewritten) == []
    assert per_sample_norm_graph(gd, 1) == (gd, [])
    with pytest.raises(ConfigError, match="batch >= 1"):
        per_sample_norm_graph(gd, 0)
    x = np.random.default_rng(0).normal(2.0, 3.0, (3, 3, 4, 2)).astype(np.float32)
    run_new = load_frozen_graph(Path("tiny.pb"), "x", "y", rewritten)
    run_old = load_frozen_graph(Path("tiny.pb"), "x", "y", gd)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)  # biased, as the fused op
    want = (x - mean) / np.sqrt(var + 1e-3) * np.array([1.5, 0.5], np.float32) + np.array([0.25, -1.0], np.float32)
    np.testing.assert_allclose(run_new(x), want, atol=1e-5)
    np.testing.assert_array_equal(run_new(x), np.concatenate([run_old(x[i : i + 1]) for i in range(3)]))  # the same kernel per sample
    assert np.abs(run_old(x) - np.concatenate([run_old(x[i : i + 1]) for i in range(3)])).max() > 0.01
    # a rewritten graph runs the batch it was made for, no other
    with pytest.raises(tf.errors.InvalidArgumentError):
        run_new(x[:2])
    # an inference-mode batch norm is left alone; a reduction over the batch axis is named
    assert training_mode_batch_norms(_tiny_graph(is_training=False)) == []
    assert batch_dependent_nodes(_tiny_graph(is_training=False, reduce_batch=True)) == ["batch_mean"]


@pytest.mark.parametrize("which", ["frozen", "rewritten"])
def test_batch_composition_never_changes_a_result(which: str, backend: TfOpenPose, frozen_backend: TfOpenPose, p1: np.ndarray) -> None:
    """A batch-dependent graph runs one frame at a time (bit-identical); a batch-exact one to float tolerance."""
    be = frozen_backend if which == "frozen" else backend
    other = cv2.flip(p1, 1)
    together = be.predict([p1, other, p1])
    alone = be.predict([p1])[0]
    check = np.testing.assert_array_equal if which == "frozen" else lambda a, b: np.testing.assert_allclose(a, b, atol=1e-3)
    check(together[0].keypoints, alone.keypoints)
    check(together[2].keypoints, alone.keypoints)
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

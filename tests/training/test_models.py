"""tasks/training/models.py and the tasks' build_model: every tiny-preset model builds, compiles and
runs a forward pass with the right output shape; the losses on explicit values; mixed precision
keeps float32 outputs; VGG16/ResNet50 build without downloading anything; a user's legacy ``.h5``
loads into a backbone by layer name; the distribution strategy on this machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tasks.training import models  # noqa: E402
from tasks.training.data import TargetSpec  # noqa: E402
from tasks.training.tasks import get_task, set_precision, strategy  # noqa: E402


@pytest.fixture(autouse=True)
def _float32_policy() -> None:
    """Every test starts and ends with the float32 policy (mixed precision is global in Keras)."""
    set_precision(False)
    yield
    set_precision(False)


def _layer_names(model: keras.Model) -> set[str]:
    """Names of every layer, nested models included."""
    out: set[str] = set()
    for layer in model.layers:
        out.add(layer.name)
        if isinstance(layer, keras.Model):
            out |= _layer_names(layer)
    return out


def _rgb(n: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (n, h, w, 3)).astype(np.float32)


def test_flic_regression_tiny_forward_pass() -> None:
    task = get_task("flic-regression")
    p = task.params({})
    model = task.build_model(TargetSpec(kind="coords", input_wh=(64, 64), convert_to="flic7"), p)
    out = model.predict_on_batch(_rgb(2, 64, 64))
    assert out.shape == (2, 7, 2) and out.dtype == np.float32
    assert model.loss is models.masked_coord_mse and model.optimizer is not None
    y = np.concatenate([np.full((2, 7, 2), 0.5, np.float32), np.ones((2, 7, 1), np.float32)], axis=-1)
    logs = model.evaluate(_rgb(2, 64, 64), y, verbose=0, return_dict=True)
    assert np.isfinite(logs["loss"]) and "coord_error" in logs


@pytest.mark.parametrize(("skeleton", "joints"), [("coco17", 17), ("mpii16", 16), ("lsp14", 14)])
def test_pose_heatmap_tiny_forward_pass_at_stride_4(skeleton: str, joints: int) -> None:
    task = get_task("pose-heatmap")
    p = task.params({})
    model = task.build_model(TargetSpec(kind="heatmaps", input_wh=(48, 64), convert_to=skeleton), p)
    out = model.predict_on_batch(_rgb(2, 64, 48))
    assert out.shape == (2, 16, 12, joints) and out.dtype == np.float32
    deconvs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert len(deconvs) == p["num_deconv"] == 2


def test_mpii_activity_tiny_forward_pass() -> None:
    task = get_task("mpii-activity")
    model = task.build_model(TargetSpec(kind="label", input_wh=(64, 64), label_column="category", classes=("a", "b", "c")), task.params({}))
    out = model.predict_on_batch(_rgb(3, 64, 64))
    assert out.shape == (3, 3) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_pose_mlp_tiny_forward_pass() -> None:
    task = get_task("pose-mlp")
    spec = TargetSpec(kind="joints", input_wh=(64, 64), convert_to="mpii16", label_column="category", classes=("a", "b"))
    model = task.build_model(spec, task.params({}))
    out = model.predict_on_batch(np.zeros((4, 48), np.float32))
    assert out.shape == (4, 2) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_mixed_precision_only_when_asked_and_outputs_stay_float32() -> None:
    task = get_task("pose-heatmap")
    spec = TargetSpec(kind="heatmaps", input_wh=(48, 64), convert_to="coco17")
    model = task.build_model(spec, task.params({"mixed_precision": "true"}))
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    assert model.get_layer("deconv0").compute_dtype == "float16"
    assert model.output.dtype == "float32" and model.predict_on_batch(_rgb(1, 64, 48)).dtype == np.float32
    task.build_model(spec, task.params({}))
    assert keras.mixed_precision.global_policy().name == "float32"


def test_full_backbones_build_with_no_weights_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # a download would land here
    vgg = models.build_regression_model((32, 32), 7, "vgg16", hidden_units=8)
    assert "block5_conv3" in _layer_names(vgg) and "conv5_block3_out" not in _layer_names(vgg)
    assert vgg.predict_on_batch(_rgb(1, 32, 32)).shape == (1, 7, 2)
    res = models.build_heatmap_model((64, 64), 17, "resnet50", num_deconv=3, deconv_filters=8)
    assert res.predict_on_batch(_rgb(1, 64, 64)).shape == (1, 16, 16, 17) and "conv5_block3_out" in _layer_names(res)
    assert not (tmp_path / "keras_home").exists()


def test_caffe_preprocessing_is_keras_vgg16s() -> None:
    x = _rgb(2, 8, 8)
    ours = keras.ops.convert_to_numpy(models.CaffePreprocess()(x))
    theirs = keras.applications.vgg16.preprocess_input(x.copy())
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-4)


def test_user_h5_weights_load_into_the_backbone_by_name(tmp_path: Path) -> None:
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    source = models.build_backbone((32, 32), "small", stages=2, filters=4)
    path = tmp_path / "user_notop.h5"
    with h5py.File(path, "w") as fh:  # the legacy layout of keras.applications' *_notop.h5 files
        legacy_h5_format.save_weights_to_hdf5_group(fh, source)
    model = models.build_classifier((32, 32), 3, "small", stages=2, filters=4, hidden_units=4, weights=str(path))
    loaded = model.get_layer("small_s1_conv_b").get_weights()[0]
    np.testing.assert_array_equal(loaded, source.get_layer("small_s1_conv_b").get_weights()[0])


def test_masked_coord_mse_explicit_values() -> None:
    y_true = np.array([[[0.5, 0.5, 1.0], [0.0, 0.0, 0.0]]], np.float32)  # joint 1 unlabelled: ignored
    y_pred = np.array([[[0.8, 0.1, 0.0], [9.0, 9.0, 0.0]]], np.float32)[..., :2]
    loss = keras.ops.convert_to_numpy(models.masked_coord_mse(y_true, y_pred))
    np.testing.assert_allclose(loss, [(0.3**2 + 0.4**2) / 2], rtol=1e-6)
    err = keras.ops.convert_to_numpy(models.coord_error(y_true, y_pred))
    np.testing.assert_allclose(err, [0.5], rtol=1e-5)
    none = keras.ops.convert_to_numpy(models.masked_coord_mse(np.zeros((1, 2, 3), np.float32), y_pred))
    assert none.tolist() == [0.0]


def test_heatmap_mse_weights_joints() -> None:
    y = np.zeros((1, 2, 2, 4), np.float32)
    y[..., 0] = 1.0  # joint 0 target all ones, weight 1; joint 1 target zeros, weight 0
    y[..., 2] = 1.0
    pred = np.zeros((1, 2, 2, 2), np.float32)
    pred[..., 1] = 5.0  # a large error on the unweighted joint does not count
    loss = keras.ops.convert_to_numpy(models.heatmap_mse(y, pred))
    np.testing.assert_allclose(loss, [0.5])  # mean over 2x2 pixels x 2 joints of (1 - 0)^2 on joint 0 only


def test_strategy_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    s = strategy()
    expected = tf.distribute.MirroredStrategy if tf.config.list_physical_devices("GPU") else type(tf.distribute.get_strategy())
    assert isinstance(s, expected)
    assert models.strategy is strategy

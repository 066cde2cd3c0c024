"""Keras 3 models of the training tasks: backbones, heads, losses (imported only by ``tasks.training``).

Every model takes what :func:`tasks.training.data.make_dataset` yields: ``x`` float32 RGB 0..255
``(B, H, W, 3)`` (image models) or ``(B, J * 3)`` normalised joints (the MLP). Pixel preprocessing
is a layer inside the model, so a saved model is used on raw crops as is:

* ``vgg16`` / ``resnet50`` backbones: Caffe-style (RGB -> BGR, ImageNet mean subtracted, no
  scaling), as ``keras.applications.vgg16/resnet50.preprocess_input`` do, so a user's ImageNet
  ``.h5`` weights (``--weights FILE``) see the input they were trained on. Backbones are built with
  ``weights=None``: nothing is ever downloaded.
* ``small``: a few conv/BN/ReLU stages for the tiny presets (CPU tests), input scaled to 0..1.

Outputs are float32 even under the ``mixed_float16`` policy (the last layer of each head has
``dtype="float32"``). Losses and metrics are registered Keras serialisables so
``keras.saving.load_model`` restores a compiled model without ``custom_objects``.
"""

from __future__ import annotations

from typing import Any, Literal

import keras
from keras import layers, ops

from tasks.training.tasks import strategy  # re-exported: the distribution strategy lives with the tasks

__all__ = [
    "IMAGENET_MEAN_BGR",
    "Backbone",
    "CaffePreprocess",
    "build_backbone",
    "build_classifier",
    "build_heatmap_model",
    "build_mlp",
    "build_regression_model",
    "coord_error",
    "heatmap_mse",
    "load_backbone_weights",
    "masked_coord_mse",
    "strategy",
]

Backbone = Literal["small", "vgg16", "resnet50"]

#: ImageNet channel means in BGR order (Caffe), as ``keras.applications`` subtract them.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="posepipe")
class CaffePreprocess(layers.Layer):
    """RGB 0..255 -> BGR minus the ImageNet mean (``keras.applications.vgg16.preprocess_input``)."""

    def call(self, inputs: Any) -> Any:
        bgr = ops.flip(inputs, axis=-1)
        mean = ops.convert_to_tensor(IMAGENET_MEAN_BGR, dtype=bgr.dtype)
        return bgr - mean


#: Batch-norm momentum of posepipe's own layers: PyTorch's (and so MMPose's) 0.1, i.e. Keras 0.9.
#: Keras's 0.99 leaves ~20 % of the initial statistics in the moving averages after the ~160 steps a
#: tiny CPU run makes: trained to ~0 loss, mpii-activity then predicted one class at evaluation.
BN_MOMENTUM = 0.9


def _small_backbone(x: Any, filters: int, stages: int) -> Any:
    """``stages`` blocks of (3x3 stride-2 conv, BN, ReLU, 3x3 conv, BN, ReLU): output stride ``2 ** stages``."""
    for s in range(stages):
        f = filters * min(2**s, 8)
        x = layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False, name=f"small_s{s}_conv_a")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"small_s{s}_bn_a")(x)
        x = layers.ReLU(name=f"small_s{s}_relu_a")(x)
        x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"small_s{s}_conv_b")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"small_s{s}_bn_b")(x)
        x = layers.ReLU(name=f"small_s{s}_relu_b")(x)
    return x


def load_backbone_weights(backbone: keras.Model, path: str) -> None:
    """Load a user's legacy Keras ``.h5`` (e.g. ImageNet ``*_notop.h5``) into a backbone by layer name.

    Layers whose names or shapes do not match are skipped (``by_name=True, skip_mismatch=True``), so
    a full ``*_tf_kernels.h5`` with its classifier also fits ``include_top=False``.

    Args:
        backbone: The backbone sub-model (``vgg16``, ``resnet50`` or ``small``).
        path: Local ``.h5`` / ``.hdf5`` file.
    """
    backbone.load_weights(path, by_name=True, skip_mismatch=True)


def build_backbone(
    input_hw: tuple[int, int],
    backbone: Backbone,
    *,
    stages: int = 5,
    filters: int = 16,
    weights: str | None = None,
) -> keras.Model:
    """A feature extractor as one nested model (named after it) with its preprocessing inside.

    Args:
        input_hw: Network input height and width (px).
        backbone: ``small``, ``vgg16`` (stride 32, 512 channels) or ``resnet50`` (stride 32, 2048).
        stages: ``small`` only: number of stride-2 stages (output stride ``2 ** stages``).
        filters: ``small`` only: width of the first stage (doubling per stage, at most 8x).
        weights: Optional legacy ``.h5`` loaded by layer name (see :func:`load_backbone_weights`).

    Returns:
        A model ``(B, H, W, 3)`` RGB 0..255 -> ``(B, H / stride, W / stride, C)`` features.
    """
    h, w = input_hw
    inputs = keras.Input((h, w, 3), name="rgb_0_255")
    if backbone == "small":
        x = layers.Rescaling(1.0 / 255.0, name="scale_0_1")(inputs)
        features = _small_backbone(x, filters, stages)
        model = keras.Model(inputs, features, name="small")
    elif backbone in ("vgg16", "resnet50"):
        x = CaffePreprocess(name="caffe_preprocess")(inputs)
        app = keras.applications.VGG16 if backbone == "vgg16" else keras.applications.ResNet50
        core = app(include_top=False, weights=None, input_shape=(h, w, 3))
        model = keras.Model(inputs, core(x), name=backbone)
        if weights:
            load_backbone_weights(core, weights)
            weights = None
    else:
        raise ValueError(f"unknown backbone {backbone!r}; expected small, vgg16 or resnet50")
    if weights:
        load_backbone_weights(model, weights)
    return model


def _pooled_features(
    input_hw: tuple[int, int], backbone: Backbone, hidden_units: int, dropout: float, stages: int, filters: int, weights: str | None
) -> tuple[keras.Model, Any]:
    """Backbone, global average pooling, one dense ReLU layer, dropout: the trunk of the regression and classifier heads."""
    base = build_backbone(input_hw, backbone, stages=stages, filters=filters, weights=weights)
    x = layers.GlobalAveragePooling2D(name="pool")(base.output)
    x = layers.Dense(hidden_units, activation="relu", name="fc")(x)
    return base, layers.Dropout(dropout, name="fc_dropout")(x)


def build_regression_model(
    input_hw: tuple[int, int],
    num_joints: int,
    backbone: Backbone = "vgg16",
    *,
    hidden_units: int = 512,
    dropout: float = 0.3,
    stages: int = 4,
    filters: int = 16,
    weights: str | None = None,
) -> keras.Model:
    """DeepPose-style joint regression: backbone, global pooling, dense, ``(x / W, y / H)`` per joint.

    Returns:
        ``(B, H, W, 3)`` -> ``(B, J, 2)`` float32 joint coordinates normalised to the input.
    """
    base, x = _pooled_features(input_hw, backbone, hidden_units, dropout, stages, filters, weights)
    # Start at the crop centre: the bias is the mean target (0.5, 0.5).
    x = layers.Dense(num_joints * 2, bias_initializer=keras.initializers.Constant(0.5), name="coords", dtype="float32")(x)
    out = layers.Reshape((num_joints, 2), name="joints_xy", dtype="float32")(x)
    return keras.Model(base.input, out, name="deeppose")


def build_heatmap_model(
    input_hw: tuple[int, int],
    num_joints: int,
    backbone: Backbone = "resnet50",
    *,
    num_deconv: int = 3,
    deconv_filters: int = 256,
    filters: int = 16,
    weights: str | None = None,
) -> keras.Model:
    """SimpleBaseline (Xiao et al. 2018): backbone, ``num_deconv`` 4x4 stride-2 deconvolutions, 1x1 conv.

    The heatmaps are at stride 4 of the input: a ``small`` backbone gets ``2 + num_deconv`` stages
    (stride ``4 * 2 ** num_deconv``), ``vgg16``/``resnet50`` are stride 32 and need ``num_deconv = 3``.

    Returns:
        ``(B, H, W, 3)`` -> ``(B, H / 4, W / 4, J)`` float32 heatmaps.
    """
    stages = 2 + num_deconv
    if backbone != "small" and num_deconv != 3:
        raise ValueError(f"{backbone} has stride 32: SimpleBaseline needs num_deconv=3 for stride-4 heatmaps")
    base = build_backbone(input_hw, backbone, stages=stages, filters=filters, weights=weights)
    x = base.output
    for i in range(num_deconv):
        x = layers.Conv2DTranspose(deconv_filters, 4, strides=2, padding="same", use_bias=False, name=f"deconv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"deconv{i}_bn")(x)
        x = layers.ReLU(name=f"deconv{i}_relu")(x)
    out = layers.Conv2D(num_joints, 1, name="heatmaps", dtype="float32")(x)
    return keras.Model(base.input, out, name="simple_baseline")


def build_classifier(
    input_hw: tuple[int, int],
    num_classes: int,
    backbone: Backbone = "vgg16",
    *,
    hidden_units: int = 256,
    dropout: float = 0.3,
    stages: int = 4,
    filters: int = 16,
    weights: str | None = None,
) -> keras.Model:
    """Image classifier: backbone, global pooling, dense, softmax.

    Returns:
        ``(B, H, W, 3)`` -> ``(B, C)`` float32 class probabilities.
    """
    base, x = _pooled_features(input_hw, backbone, hidden_units, dropout, stages, filters, weights)
    out = layers.Dense(num_classes, activation="softmax", name="class_probs", dtype="float32")(x)
    return keras.Model(base.input, out, name="classifier")


def build_mlp(input_dim: int, num_classes: int, *, hidden_units: tuple[int, ...] = (128, 64), dropout: float = 0.2) -> keras.Model:
    """The FLIC notebook's pose MLP: dense ReLU layers on normalised joints, softmax.

    Returns:
        ``(B, J * 3)`` -> ``(B, C)`` float32 class probabilities.
    """
    inputs = keras.Input((input_dim,), name="joints_xyv")
    x = inputs
    for i, units in enumerate(hidden_units):
        x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
        x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    out = layers.Dense(num_classes, activation="softmax", name="class_probs", dtype="float32")(x)
    return keras.Model(inputs, out, name="pose_mlp")


# --------------------------------------------------------------------------------------------------
# Losses and metrics (per-sample values; Keras averages them over the batch, with sample weights)
# --------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="posepipe")
def masked_coord_mse(y_true: Any, y_pred: Any) -> Any:
    """Masked MSE of normalised coordinates.

    Args:
        y_true: ``(B, J, 3)``: ``x / W``, ``y / H``, joint weight (0 = unlabelled or outside).
        y_pred: ``(B, J, 2)``.

    Returns:
        ``(B,)``: ``sum_j w_j ((dx_j)^2 + (dy_j)^2) / (2 max(sum_j w_j, 1))``, the mean over the x and y
        of the labelled joints (0 for a sample without any).
    """
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(y_true, "float32")
    w = y_true[..., 2]
    se = ops.sum(ops.square(y_pred - y_true[..., :2]), axis=-1)
    return ops.sum(w * se, axis=-1) / (2.0 * ops.maximum(ops.sum(w, axis=-1), 1.0))


@keras.saving.register_keras_serializable(package="posepipe")
def coord_error(y_true: Any, y_pred: Any) -> Any:
    """Mean Euclidean error of the labelled joints, in units of the input size (``(B, J, 3)``, ``(B, J, 2)`` -> ``(B,)``)."""
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(y_true, "float32")
    w = y_true[..., 2]
    d = ops.sqrt(ops.sum(ops.square(y_pred - y_true[..., :2]), axis=-1) + 1e-12)
    return ops.sum(w * d, axis=-1) / ops.maximum(ops.sum(w, axis=-1), 1.0)


@keras.saving.register_keras_serializable(package="posepipe")
def heatmap_mse(y_true: Any, y_pred: Any) -> Any:
    """Per-joint-weighted heatmap MSE (SimpleBaseline's ``JointsMSELoss`` with target weights).

    Args:
        y_true: ``(B, h, w, 2J)``: J target heatmaps, then J channels of the joint weight broadcast.
        y_pred: ``(B, h, w, J)``.

    Returns:
        ``(B,)`` mean over pixels and joints of ``w_j (pred - target)^2``.
    """
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(y_true, "float32")
    j = y_pred.shape[-1]
    target, weight = y_true[..., :j], y_true[..., j:]
    return ops.mean(weight * ops.square(y_pred - target), axis=(1, 2, 3))

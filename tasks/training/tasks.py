"""The training tasks: what each trains on, its model, its predictions and how they are scored.

A task is a :class:`TrainingTask` subclass with a ``name``; subclasses register themselves (like
:mod:`tasks.kinds`), :func:`get_task` / :func:`task_names` look them up. Four are built in:

* ``flic-regression``: DeepPose-style regression of the FLIC notebooks' 7 joints (``flic7``; head =
  mean of the eyes and nose) from ``flic29`` records; VGG16 backbone. Scored by RMSE (px), PCK@0.2
  (torso = left shoulder to right hip of the ground truth) and MODEC's FLIC protocol, all in
  original image pixels.
* ``pose-heatmap``: SimpleBaseline heatmaps (stride 4) for whatever skeleton the version has
  (COCO-17, MPII-16, LSP-14, ...), sub-pixel decoding (DARK by default). Scored by PCK@0.2
  (torso- and bbox-normalised), MPII PCKh (``mpii16`` with head boxes; also writes ``pred.mat`` /
  ``gt.mat`` for ``posepipe evaluate pckh``) and COCO OKS AP (``coco17``; writes ``coco_gt.json``
  and ``coco_results.json`` for ``posepipe evaluate coco``).
* ``mpii-activity``: an image classifier over a label column (``category``: MPII's 20 categories;
  or ``activity`` / ``activity_id``) with balanced class weights. The records' splits are used as
  they are, and refused when an image appears in two of them.
* ``pose-mlp``: the FLIC notebook's second model, an MLP classifying the label column from
  normalised joints (:func:`tasks.transforms.heatmaps.normalise_pose`).

Classification is scored by accuracy, macro/weighted F1, a per-class precision/recall/F1/support
report and the confusion matrix (small numpy functions below), beside the majority-class baseline.

TensorFlow and Keras are imported inside functions only: importing this module (and listing the
tasks) does not load them.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from schemas.errors import ConfigError, TaskDataError
from schemas.skeletons import FLIC7, FLIC29, MPII16, conversion, convert_keypoints, get_skeleton

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from storage.reader import DatasetVersion
    from tasks.training.data import TargetSpec

__all__ = [
    "FlicRegressionTask",
    "MpiiActivityTask",
    "PoseHeatmapTask",
    "PoseMlpTask",
    "TrainingTask",
    "balanced_class_weights",
    "classification_report",
    "confusion_matrix",
    "get_task",
    "input_to_crop_px",
    "set_precision",
    "strategy",
    "task_names",
]

_TASKS: dict[str, type[TrainingTask]] = {}

#: Preference order of held-out splits (first one present with labels is the evaluation split).
EVAL_SPLITS = ("valid", "val", "test")


# --------------------------------------------------------------------------------------------------
# Registry, distribution, precision
# --------------------------------------------------------------------------------------------------


def task_names() -> list[str]:
    """Names of the registered tasks, sorted (no TensorFlow import)."""
    return sorted(_TASKS)


def get_task(name: str) -> TrainingTask:
    """The task registered as ``name``.

    Raises:
        ConfigError: Listing the registered tasks.
    """
    if name not in _TASKS:
        raise ConfigError(f"no training task named {name!r}", hint=f"known: {', '.join(task_names())}")
    return _TASKS[name]()


def strategy() -> tf.distribute.Strategy:
    """The distribution strategy for this process.

    ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is set (several machines; each runs the same
    command with its own ``TF_CONFIG``), else ``MirroredStrategy`` over the visible GPUs, else the
    default (one device) strategy. Build and compile the model inside ``strategy().scope()``.
    """
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_precision(mixed: bool) -> str:
    """Set Keras' global dtype policy: ``mixed_float16`` only when asked, ``float32`` otherwise.

    The models' last layers are float32 whatever the policy, so outputs and losses stay float32.

    Returns:
        The policy name now in force.
    """
    import keras

    name = "mixed_float16" if mixed else "float32"
    keras.mixed_precision.set_global_policy(name)
    return name


# --------------------------------------------------------------------------------------------------
# Pure helpers: frames, classification metrics
# --------------------------------------------------------------------------------------------------


def input_to_crop_px(xy: np.ndarray, input_wh: tuple[int, int], crop_wh: tuple[int, int]) -> np.ndarray:
    """Network-input pixels -> crop pixels (pixel centres; the input is the crop resized edge to edge).

    Args:
        xy: ``(..., 2)`` coordinates in input pixels.
        input_wh: Network input ``(W, H)``.
        crop_wh: Crop ``(W, H)``.

    Returns:
        ``(..., 2) float32``: ``(x + 0.5) * W_crop / W_in - 0.5`` (and y alike).

    Example:
        >>> input_to_crop_px(np.array([[-0.5, 0.0]]), (64, 64), (128, 256)).tolist()
        [[-0.5, 1.5]]
    """
    s = np.array([crop_wh[0] / input_wh[0], crop_wh[1] / input_wh[1]], dtype=np.float64)
    return ((np.asarray(xy, dtype=np.float64) + 0.5) * s - 0.5).astype(np.float32)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class).

    Args:
        y_true: ``(N,)`` int class indices in ``[0, num_classes)``.
        y_pred: ``(N,)`` int class indices.
        num_classes: C.

    Returns:
        ``(C, C) int64``: row = true class, column = predicted class.

    Example:
        >>> confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 2).tolist()
        [[1, 1], [0, 1]]
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def classification_report(cm: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted means (sklearn's definitions).

    A class never predicted has precision 0, a class without support recall 0, and F1 is 0 where
    precision + recall is 0 (sklearn's ``zero_division=0``). Macro means average the classes that
    have support or predictions; weighted means weigh by support.

    Args:
        cm: ``(C, C)`` confusion matrix (rows true, columns predicted).
        classes: C class names.

    Returns:
        ``{"accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall",
        "per_class": {name: {"precision", "recall", "f1", "support"}}, "num_samples"}``.

    Example:
        cm ``[[1, 1], [0, 1]]``: class 0 precision 1, recall 0.5, F1 2/3; class 1 precision 0.5,
        recall 1, F1 2/3; accuracy 2/3, macro F1 2/3.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = (support > 0) | (predicted > 0)
    total = cm.sum()
    weights = support / total if total > 0 else np.zeros_like(support)

    def _mean(v: np.ndarray) -> float:
        return float(v[present].mean()) if present.any() else 0.0

    return {
        "accuracy": float(tp.sum() / total) if total > 0 else 0.0,
        "macro_f1": _mean(f1),
        "weighted_f1": float((f1 * weights).sum()),
        "macro_precision": _mean(precision),
        "macro_recall": _mean(recall),
        "num_samples": int(total),
        "per_class": {
            str(c): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
    }


def balanced_class_weights(labels: Sequence[str], classes: Sequence[str]) -> tuple[float, ...]:
    """sklearn's ``class_weight="balanced"``: ``n_samples / (n_classes * count(c))``.

    Example:
        >>> balanced_class_weights(["a", "a", "a", "b"], ["a", "b"])
        (0.6666666666666666, 2.0)
    """
    counts = Counter(labels)
    n = sum(counts[c] for c in classes)
    return tuple(float(n / (len(classes) * counts[c])) if counts[c] else 0.0 for c in classes)


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_value(key: str, raw: Any, like: Any) -> Any:
    """``raw`` (a string from ``-p key=value``, or an already typed value) as the type of ``like``."""
    try:
        if isinstance(like, bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError("expected true or false")
        if isinstance(like, int):
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            value = int(str(raw).strip()) if not isinstance(raw, int) else raw
            return value
        if isinstance(like, float):
            return float(raw)
        if isinstance(like, tuple):
            if isinstance(raw, (tuple, list)):
                return tuple(int(v) for v in raw)
            return tuple(int(v) for v in str(raw).replace(" ", "").split(",") if v)
        return str(raw)
    except (TypeError, ValueError) as exc:
        kind = type(like).__name__ if not isinstance(like, tuple) else "comma-separated integers"
        raise ConfigError(f"parameter {key}={raw!r} is not a valid {kind}: {exc}", hint=f"e.g. {key}={_show(like)}") from None


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateSamples:
    """Metrics of one model on one evaluation split, as functions of a resample of its samples.

    Attributes:
        sample_ids: The scored samples, in records order.
        metrics: Flat metric name (as in ``metrics.json``, e.g. ``macro_f1``, ``pck@0.2_torso/mean``,
            ``score``) -> ``f(indices)``: the metric on ``sample_ids[indices]`` (indices may repeat).
    """

    sample_ids: tuple[str, ...]
    metrics: Mapping[str, Callable[[np.ndarray], float]]


class TrainingTask(ABC):
    """One trainable task; subclasses with a ``name`` register themselves.

    Class attributes:
        name: Registry key (``flic-regression``...).
        description: One line for listings.
        presets: ``"tiny"`` (CPU tests: seconds per epoch) and ``"full"``: parameter name -> default.
            The ``tiny`` preset's values give the parameters' types.
        choices: Parameters restricted to a set of values.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}

    #: Parameters every task has (merged under each preset).
    COMMON: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"batch_size": 16, "epochs": 2, "learning_rate": 1e-3, "mixed_precision": False,
                 "augment": False, "train_split": "auto", "eval_split": "auto"},
        "full": {"batch_size": 32, "epochs": 50, "learning_rate": 1e-4, "mixed_precision": False,
                 "augment": True, "train_split": "auto", "eval_split": "auto"},
    }  # fmt: skip

    #: The champion gate's default thresholds (``tasks.training.champion.parse_thresholds`` format),
    #: keyed by flat metric names of ``metrics.json``; ``posepipe retrain --thresholds FILE`` replaces them.
    thresholds: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self) -> None:
        self._resolved: dict[str, Any] = {}  # the last params() result: methods called without params use it

    def gate_samples(self, predictions: pa.Table, version: DatasetVersion, split: str, params: Mapping[str, Any]) -> GateSamples:
        """Per-sample pieces of the gate's metrics, for the champion gate's paired bootstrap.

        Two models' :class:`GateSamples` on the same version and split have the same ``sample_ids``
        in the same order, so one resample of indices scores both on the same samples.
        """
        raise NotImplementedError(f"{self.name} has no per-sample gate metrics")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _TASKS[cls.name] = cls

    # --- data and files: image datasets by default; a task of another dataset kind overrides these
    def open_version(self, root: str, dataset: str, version: str | None = None, pixels: bool = False) -> DatasetVersion:
        """The validated version this task trains on (``storage.reader.open_version``, checksums verified).

        Args:
            pixels: Also verify every shard's pixels now (training does, once, before any epoch runs,
                so a tampered shard is refused at once and the input threads never verify concurrently).
        """
        from storage.reader import open_version

        opened = open_version(root, dataset, version, verify=True)
        if pixels:
            opened.verify(pixels=True)
        return opened

    def plan_dataset(self, version: DatasetVersion, split: str, spec: TargetSpec) -> Any:
        """What the input pipeline reads once per run and reuses every epoch (``data.plan_split``)."""
        from tasks.training import data

        return data.plan_split(version, split, spec)

    def make_dataset(
        self, version: DatasetVersion, split: str, spec: TargetSpec, batch_size: int, seed: int, epoch: int,
        augment: Any = None, shuffle: bool = True, plan: Any = None,
    ) -> Any:  # fmt: skip
        """One epoch of ``split`` as a ``tf.data.Dataset`` (:func:`tasks.training.data.make_dataset`)."""
        from tasks.training import data

        return data.make_dataset(version, split, spec, batch_size=batch_size, seed=seed, epoch=epoch, augment=augment, shuffle=shuffle, plan=plan)

    def save_extra(self, model: keras.Model, folder: str) -> None:
        """Write files a model needs beside its Keras weights into ``folder`` (none by default)."""
        return None

    def load_extra(self, model: keras.Model, folder: str) -> None:
        """Reload what :meth:`save_extra` wrote (nothing by default)."""
        return None

    # --- parameters ------------------------------------------------------------------------------
    def defaults(self, preset: str = "tiny") -> dict[str, Any]:
        """The preset's parameters (common ones merged in).

        Raises:
            ConfigError: Unknown preset.
        """
        if preset not in self.presets:
            raise ConfigError(f"task {self.name!r} has no preset {preset!r}", hint=f"presets: {', '.join(sorted(self.presets))}")
        return {**self.COMMON.get(preset, self.COMMON["full"]), **self.presets[preset]}

    def params(self, overrides: Mapping[str, Any] | None = None, preset: str = "tiny") -> dict[str, Any]:
        """The preset's parameters with ``overrides`` (``-p key=value`` strings or typed values) applied.

        Args:
            overrides: Parameter name -> value; strings are parsed to the parameter's type
                (``true``/``false``, integers, floats, ``128,64`` for tuples).
            preset: ``tiny`` or ``full``.

        Returns:
            Parameter name -> typed value, keys sorted.

        Raises:
            ConfigError: Unknown preset or parameter (listing the accepted ones), a value of the
                wrong type or outside the parameter's choices.
        """
        base = self.defaults(preset)
        out = dict(base)
        for key, raw in (overrides or {}).items():
            if key not in base:
                accepted = ", ".join(f"{k}={_show(v)}" for k, v in sorted(base.items()))
                raise ConfigError(f"task {self.name!r} has no parameter {key!r}", hint=f"accepted ({preset} defaults): {accepted}")
            out[key] = _parse_value(key, raw, base[key])
        for key, allowed in self.choices.items():
            if key in out and out[key] not in allowed:
                raise ConfigError(f"parameter {key}={out[key]!r} of task {self.name!r} is not one of {', '.join(allowed)}")
        for key in ("batch_size", "epochs"):
            if out[key] < 1:
                raise ConfigError(f"parameter {key} must be at least 1 (got {out[key]})")
        if out["learning_rate"] <= 0:
            raise ConfigError(f"learning_rate must be positive (got {out['learning_rate']})")
        self._check_params(out)
        self._resolved = dict(sorted(out.items()))
        return dict(self._resolved)

    def _check_params(self, params: dict[str, Any]) -> None:
        """Task-specific consistency checks (raise :class:`ConfigError`); none by default."""
        return None

    # --- dataset ---------------------------------------------------------------------------------
    def check_dataset(self, version: DatasetVersion, params: Mapping[str, Any] | None = None) -> None:
        """Refuse a version that lacks what the task needs (``params``: the resolved parameters, optional).

        Raises:
            TaskDataError: Not processed samples, or no split with usable rows.
        """
        record = getattr(version, "record", "processed_samples")
        if record != "processed_samples":
            raise TaskDataError(
                f"task {self.name!r} trains on processed samples (image crops); {version.dataset}@{version.version} holds {record!r}",
                hint="use an image dataset (flic, mpii, coco, lsp, lspet)",
            )
        if not any(self._usable_rows(version, s) for s in version.splits):
            raise TaskDataError(
                f"{version.dataset}@{version.version} has no split with rows that {self.name!r} can train on",
                hint=self._data_hint(),
            )

    def _data_hint(self) -> str:
        return "check the dataset's annotations"

    def _usable_rows(self, version: DatasetVersion, split: str) -> int:
        """Rows of ``split`` that carry the task's targets."""
        return _labelled_pose_rows(version, split)

    def splits(self, version: DatasetVersion, params: Mapping[str, Any] | None = None) -> tuple[str, str]:
        """``(train split, evaluation split)``.

        ``train`` is ``train`` when present (else the first split with usable rows); the evaluation
        split is the first of ``valid``, ``val``, ``test`` with usable rows, else the training split
        itself (a version without a labelled held-out split: the metrics then say ``split: train``).
        ``params`` ``train_split`` / ``eval_split`` other than ``auto`` name them explicitly.

        Raises:
            TaskDataError: A named split that the version lacks or that has no usable rows.
        """
        p = params or self._resolved
        usable = {s: self._usable_rows(version, s) for s in version.splits}

        def _named(key: str) -> str | None:
            name = p.get(key, "auto")
            if name == "auto":
                return None
            if name not in usable or not usable[name]:
                raise TaskDataError(
                    f"{key}={name!r}: {version.dataset}@{version.version} has no usable rows in that split "
                    f"(splits: {', '.join(f'{s} ({n} usable)' for s, n in usable.items())})",
                    hint="name a split listed here",
                )
            return name

        train = _named("train_split")
        if train is None:
            candidates = ["train"] if usable.get("train") else [s for s in version.splits if usable[s] and s not in EVAL_SPLITS]
            candidates = candidates or [s for s in version.splits if usable[s]]
            if not candidates:
                raise TaskDataError(f"{version.dataset}@{version.version} has no usable rows for {self.name!r}", hint=self._data_hint())
            train = candidates[0]
        held = _named("eval_split")
        if held is None:
            held = next((s for s in EVAL_SPLITS if s != train and usable.get(s)), train)
        return train, held

    # --- model -----------------------------------------------------------------------------------
    @abstractmethod
    def target_spec(self, version: DatasetVersion, params: Mapping[str, Any]) -> TargetSpec:
        """What the input pipeline encodes for this task (classes from the train split, sorted)."""

    @abstractmethod
    def build_model(self, spec: TargetSpec, params: Mapping[str, Any], weights: str | None = None) -> keras.Model:
        """The compiled model (optimizer, loss, metrics); call inside ``strategy().scope()``."""

    def _compile(self, model: keras.Model, params: Mapping[str, Any], loss: Any, metrics: list[Any]) -> keras.Model:
        import keras

        model.compile(optimizer=keras.optimizers.Adam(learning_rate=params["learning_rate"]), loss=loss, metrics=metrics)
        return model

    @abstractmethod
    def predict(self, model: keras.Model, version: DatasetVersion, split: str, spec: TargetSpec, params: Mapping[str, Any]) -> pa.Table:
        """Per-sample predictions of ``split`` (sample id first)."""

    @abstractmethod
    def evaluate(self, predictions: pa.Table, version: DatasetVersion, split: str, params: Mapping[str, Any], out_dir: str) -> dict[str, Any]:
        """Metrics of ``predictions`` against ``split`` of ``version`` (may write files into ``out_dir``)."""

    @abstractmethod
    def plots(self, predictions: pa.Table, version: DatasetVersion, split: str, history: list[dict[str, Any]], out_dir: str) -> list[str]:
        """Pictures for ``out_dir``; returns their paths."""


# --------------------------------------------------------------------------------------------------
# Shared reading helpers (only ``version.records`` / ``version.crops``: any reader that has them works)
# --------------------------------------------------------------------------------------------------


def _labelled_pose_rows(version: DatasetVersion, split: str) -> int:
    vis = version.records(split, columns=["keypoints_visibility"]).column("keypoints_visibility").to_pylist()
    return sum(1 for v in vis if v and max(v) > 0)


def _stack_xy(values: list[Any], num_joints: int) -> np.ndarray:
    """A list column of ``(J, 2)`` lists -> ``(N, J, 2) float32`` (None -> NaN)."""
    out = np.full((len(values), num_joints, 2), np.nan, dtype=np.float32)
    for i, v in enumerate(values):
        if v is not None:
            out[i] = np.asarray([p if p is not None else (np.nan, np.nan) for p in v], dtype=np.float32)
    return out


def _boxes(values: list[Any]) -> np.ndarray:
    """A list column of 4-lists -> ``(N, 4) float64`` (None -> NaN)."""
    return np.asarray([v if v is not None else [np.nan] * 4 for v in values], dtype=np.float64).reshape(-1, 4)


def _ground_truth(version: DatasetVersion, split: str, columns: Sequence[str] = ()) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Records of ``split`` with their keypoints ``(N, J, 2)`` (image px) and visibility ``(N, J) int8``."""
    cols = list(dict.fromkeys(["sample_id", "skeleton", "keypoints_xy_px", "keypoints_visibility", *columns]))
    table = version.records(split, columns=cols)
    sk = get_skeleton(version.skeleton or table.column("skeleton")[0].as_py())
    xy = _stack_xy(table.column("keypoints_xy_px").to_pylist(), sk.num_joints)
    vis = np.asarray(table.column("keypoints_visibility").to_pylist(), dtype=np.int8).reshape(-1, sk.num_joints)
    return table, xy, vis


def _align(predictions: pa.Table, sample_ids: list[str], needed: np.ndarray) -> np.ndarray:
    """Row of ``predictions`` for each of ``sample_ids`` (-1 where absent).

    Raises:
        TaskDataError: A ``needed`` sample has no prediction.
    """
    index = {sid: i for i, sid in enumerate(predictions.column("sample_id").to_pylist())}
    rows = np.array([index.get(s, -1) for s in sample_ids], dtype=np.int64)
    missing = needed & (rows < 0)
    if missing.any():
        first = [sample_ids[i] for i in np.flatnonzero(missing)[:3]]
        raise TaskDataError(
            f"{int(missing.sum())} of the {int(needed.sum())} samples to score have no prediction (first: {', '.join(first)})",
            hint="predict on this version and split first (predictions are matched by sample_id)",
        )
    return rows


def _write_json(path: Path, payload: Any) -> str:
    from storage.fs import filesystem, write_bytes_atomic

    fs, p = filesystem(str(path))
    write_bytes_atomic(fs, p, json.dumps(payload, indent=1, allow_nan=False).encode())
    return str(path)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _per_joint(names: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    return {n: _finite(float(v)) for n, v in zip(names, values, strict=True)}


def _nanmean(values: np.ndarray) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else None


def _pck_block(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, norm: np.ndarray, thr: float, names: Sequence[str], norm_name: str) -> dict[str, Any]:
    """PCK over the people whose normalising size is usable; per joint, mean, and what was used."""
    from tasks.evaluation.metrics import pck

    ok = np.isfinite(norm) & (norm > 0)
    vis = visible & ok[:, None]
    if not vis.any():
        return {"norm": norm_name, "threshold": thr, "num_people": 0, "mean": None, "per_joint": dict.fromkeys(names)}
    values = pck(pred, gt, vis, np.where(ok, norm, 1.0), thr)
    counts = vis.sum(axis=0)
    mean = float((np.nan_to_num(values) * counts).sum() / counts.sum())
    return {"norm": norm_name, "threshold": thr, "num_people": int(ok.sum()), "mean": mean, "per_joint": _per_joint(names, values)}


# --------------------------------------------------------------------------------------------------
# Pose tasks
# --------------------------------------------------------------------------------------------------

#: Schema of pose predictions: image and crop pixels, per-joint scores, the skeleton of the joints.
POSE_PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("skeleton", pa.string(), nullable=False),
        pa.field("keypoints_xy_px", pa.list_(pa.list_(pa.float32(), 2)), nullable=False, metadata={"doc": "(J, 2) original image px"}),
        pa.field("keypoints_crop_xy_px", pa.list_(pa.list_(pa.float32(), 2)), nullable=False, metadata={"doc": "(J, 2) crop px"}),
        pa.field("keypoint_scores", pa.list_(pa.float32()), nullable=False, metadata={"doc": "(J,) confidence"}),
    ]
)


def pose_predictions_table(sample_ids: Sequence[str], skeleton: str, image_xy: np.ndarray, crop_xy: np.ndarray, scores: np.ndarray) -> pa.Table:
    """Pose predictions as a table of :data:`POSE_PREDICTIONS_SCHEMA` (``(N, J, 2)``, ``(N, J, 2)``, ``(N, J)``)."""
    n, j = np.asarray(scores).shape

    def _xy(a: np.ndarray) -> pa.Array:
        flat = pa.array(np.asarray(a, dtype=np.float32).reshape(-1), type=pa.float32())
        return pa.ListArray.from_arrays(
            pa.array(np.arange(0, n * j + 1, j, dtype=np.int32)), pa.FixedSizeListArray.from_arrays(flat, 2)
        ).cast(pa.list_(pa.list_(pa.float32(), 2)))

    sc = pa.ListArray.from_arrays(pa.array(np.arange(0, n * j + 1, j, dtype=np.int32)), pa.array(np.asarray(scores, dtype=np.float32).reshape(-1)))
    return pa.Table.from_arrays(
        [pa.array(list(sample_ids), pa.string()), pa.array([skeleton] * n, pa.string()), _xy(image_xy), _xy(crop_xy), sc],
        schema=POSE_PREDICTIONS_SCHEMA,
    )


class _PoseTask(TrainingTask):
    """Shared predict / evaluate / plots of the keypoint tasks."""

    def _target_skeleton(self, version: DatasetVersion) -> str:
        return str(version.skeleton)

    def _input_wh(self, params: Mapping[str, Any]) -> tuple[int, int]:
        return int(params["input_width_px"]), int(params["input_height_px"])

    @abstractmethod
    def _decode(self, outputs: np.ndarray, spec: TargetSpec, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Model outputs -> ``(n, J, 2)`` input-pixel joints and ``(n, J)`` scores."""

    def predict(self, model: keras.Model, version: DatasetVersion, split: str, spec: TargetSpec, params: Mapping[str, Any]) -> pa.Table:
        """Joints in original image pixels (via the records' ``crop_xyxy_px``) and in crop pixels."""
        from tasks.training.data import iterate_numpy
        from tasks.transforms.heatmaps import crop_to_image_px

        ids: list[str] = []
        xy_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        for batch_ids, x, _y in iterate_numpy(version, split, spec, int(params["batch_size"])):
            out = np.asarray(model.predict_on_batch(x), dtype=np.float32)
            xy, sc = self._decode(out, spec, params)
            ids.extend(batch_ids)
            xy_parts.append(xy)
            score_parts.append(sc)
        sk = get_skeleton(spec.convert_to or self._target_skeleton(version))
        if not ids:
            empty = np.zeros((0, sk.num_joints, 2), np.float32)
            return pose_predictions_table([], sk.name, empty, empty, np.zeros((0, sk.num_joints), np.float32))
        input_xy = np.concatenate(xy_parts)
        scores = np.concatenate(score_parts)
        rec = version.records(split, columns=["sample_id", "crop_xyxy_px", "crop_width_px", "crop_height_px"])
        where = {s: i for i, s in enumerate(rec.column("sample_id").to_pylist())}
        rows = np.array([where[s] for s in ids], dtype=np.int64)
        crops = _boxes(rec.column("crop_xyxy_px").to_pylist())[rows]
        crop_w = np.asarray(rec.column("crop_width_px").to_pylist(), dtype=np.float64)[rows]
        crop_h = np.asarray(rec.column("crop_height_px").to_pylist(), dtype=np.float64)[rows]
        in_wh = spec.input_wh
        image_xy = crop_to_image_px(input_xy, crops, in_wh)
        scale = np.stack([crop_w / in_wh[0], crop_h / in_wh[1]], axis=-1)[:, None, :]
        crop_xy = ((input_xy.astype(np.float64) + 0.5) * scale - 0.5).astype(np.float32)
        return pose_predictions_table(ids, sk.name, image_xy, crop_xy, scores)

    # --- evaluation --------------------------------------------------------------------------------
    def _pose_arrays(self, predictions: pa.Table, version: DatasetVersion, split: str, columns: Sequence[str] = ()) -> dict[str, Any]:
        """Ground truth converted to the predictions' skeleton, and the predictions aligned to it."""
        pred_sk = get_skeleton(predictions.column("skeleton")[0].as_py()) if predictions.num_rows else get_skeleton(self._target_skeleton(version))
        table, gt_src, vis_src = _ground_truth(version, split, columns)
        src_sk = get_skeleton(version.skeleton or table.column("skeleton")[0].as_py())
        if src_sk.name == pred_sk.name:
            gt, vis = gt_src, vis_src
        else:
            gt, vis = convert_keypoints(gt_src, vis_src, src_sk, pred_sk)
        visible = (vis > 0) & np.isfinite(gt).all(axis=-1)
        ids = table.column("sample_id").to_pylist()
        needed = visible.any(axis=1)
        rows = _align(predictions, ids, needed)
        pred = np.full(gt.shape, np.nan, dtype=np.float32)
        scores = np.zeros(gt.shape[:2], dtype=np.float32)
        have = rows >= 0
        if have.any():
            pred[have] = _stack_xy(predictions.column("keypoints_xy_px").take(pa.array(rows[have])).to_pylist(), pred_sk.num_joints)
            scores[have] = np.asarray(predictions.column("keypoint_scores").take(pa.array(rows[have])).to_pylist(), dtype=np.float32)
        if not needed.any():
            raise TaskDataError(
                f"split {split!r} of {version.dataset}@{version.version} has no labelled joint to score",
                hint="evaluate on a split with keypoints (e.g. MPII's valid from split_protocol=single_person)",
            )
        return {"table": table, "skeleton": pred_sk, "src_skeleton": src_sk, "gt": gt, "visible": visible, "gt_src": gt_src,
                "vis_src": vis_src, "pred": pred, "scores": scores, "rows": rows, "ids": ids, "used": needed}  # fmt: skip

    def _pck_samples(self, a: dict[str, Any], norm: np.ndarray, thr: float = 0.2) -> Callable[[np.ndarray], float]:
        """``f(indices)``: PCK@thr (joint-weighted, as :func:`_pck_block`) on a resample of the scored people."""
        ok = np.isfinite(norm) & (norm > 0)
        vis = a["visible"] & ok[:, None] & a["used"][:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            dist = np.linalg.norm(a["pred"] - a["gt"], axis=-1) / np.where(ok, norm, 1.0)[:, None]
        correct = (vis & (dist <= thr)).sum(axis=1).astype(np.float64)
        labelled = vis.sum(axis=1).astype(np.float64)

        def f(idx: np.ndarray) -> float:
            total = labelled[idx].sum()
            return float(correct[idx].sum() / total) if total else float("nan")

        return f

    def gate_samples(self, predictions: pa.Table, version: DatasetVersion, split: str, params: Mapping[str, Any]) -> GateSamples:
        """Torso PCK@0.2 per sample (``pck@0.2/mean`` for FLIC, ``pck@0.2_torso/mean`` otherwise; ``score`` when it is that)."""
        a = self._pose_arrays(predictions, version, split)
        torso, _ = self._torso(a)
        f = self._pck_samples(a, torso)
        name = "pck@0.2/mean" if self.name == "flic-regression" else "pck@0.2_torso/mean"
        return GateSamples(tuple(a["ids"]), {name: f})

    def _torso(self, a: dict[str, Any]) -> tuple[np.ndarray, str]:
        """Torso size (left shoulder to right hip of the ground truth) in the source skeleton, NaN where unknown."""
        from tasks.evaluation.metrics import torso_norm

        sk = a["src_skeleton"]
        if "left_shoulder" not in sk.joints or "right_hip" not in sk.joints:
            return np.full(a["gt"].shape[0], np.nan), "torso (unavailable)"
        gt = np.where((a["vis_src"] > 0)[..., None], a["gt_src"], np.nan)
        return torso_norm(gt, sk), "torso: left_shoulder-right_hip distance of the ground truth"

    def plots(self, predictions: pa.Table, version: DatasetVersion, split: str, history: list[dict[str, Any]], out_dir: str) -> list[str]:
        """Loss/metric curves, per-joint PCK@0.2 bars, and the worst 16 predictions drawn on their crops."""
        from tasks.training import plots

        out = Path(out_dir)
        paths: list[str] = []
        if history:
            paths.append(str(plots.plot_history(history, out / "history.png", title=f"{self.name}: training")))
        a = self._pose_arrays(predictions, version, split, columns=["keypoints_crop_xy_px"])
        norm, norm_name = self._torso(a)
        block = _pck_block(a["pred"], a["gt"], a["visible"], norm, 0.2, a["skeleton"].joints, norm_name)
        if block["num_people"]:
            paths.append(str(plots.plot_per_joint_pck(block["per_joint"], out / "pck_per_joint.png", title=f"{self.name}: PCK@0.2 ({block['norm']})")))
        paths.append(str(self._worst_sheet(predictions, version, split, a, out / "worst_predictions.png")))
        return paths

    def _worst_sheet(self, predictions: pa.Table, version: DatasetVersion, split: str, a: dict[str, Any], path: Path, n: int = 16) -> Path:
        from tasks.training import plots

        sk = a["skeleton"]
        crop_gt_src = _stack_xy(a["table"].column("keypoints_crop_xy_px").to_pylist(), a["src_skeleton"].num_joints)
        crop_gt = crop_gt_src if sk.name == a["src_skeleton"].name else convert_keypoints(crop_gt_src, a["vis_src"], a["src_skeleton"], sk)[0]
        have = np.flatnonzero(a["rows"] >= 0)
        crop_pred = np.full(crop_gt.shape, np.nan, np.float32)
        crop_pred[have] = _stack_xy(predictions.column("keypoints_crop_xy_px").take(pa.array(a["rows"][have])).to_pylist(), sk.num_joints)
        dist = np.sqrt(((crop_pred - crop_gt) ** 2).sum(axis=-1))
        dist = np.where(a["visible"], dist, np.nan)
        with np.errstate(invalid="ignore"):
            err = np.where(a["used"], np.nanmean(np.where(a["visible"], dist, np.nan), axis=1), -np.inf)
        order = [int(i) for i in np.argsort(-np.nan_to_num(err, nan=np.inf), kind="stable")[:n] if np.isfinite(err[i]) and err[i] >= 0]
        crops = version.crops(split, order) if order else np.zeros((0, 8, 8, 3), np.uint8)
        labels = [f"{a['ids'][i]}  {err[i]:.1f} px" for i in order]
        return plots.plot_worst_predictions(crops, crop_gt[order], crop_pred[order], a["visible"][order], sk, path, labels=labels,
                                            title=f"{self.name}: worst {len(order)} of {int(a['used'].sum())} (mean joint error, crop px)")  # fmt: skip


class FlicRegressionTask(_PoseTask):
    """DeepPose-style regression of FLIC's 7 upper-body joints (``flic7``) from ``flic29`` crops."""

    name = "flic-regression"
    thresholds = {
        "pck@0.2/mean": {"change": {"absolute": -0.01}},
        "rmse_px": {"direction": "lower", "change": {"relative": -0.05, "credible": False}},
    }
    description = "DeepPose-style VGG16 regression of FLIC's 7 joints; RMSE, PCK@0.2 (torso), MODEC protocol"
    presets = {
        "tiny": {"input_width_px": 64, "input_height_px": 64, "backbone": "small", "stages": 4, "filters": 8,
                 "hidden_units": 64, "dropout": 0.1, "epochs": 2},
        "full": {"input_width_px": 224, "input_height_px": 224, "backbone": "vgg16", "stages": 4, "filters": 16,
                 "hidden_units": 1024, "dropout": 0.3, "epochs": 50, "learning_rate": 1e-4},
    }  # fmt: skip
    choices = {"backbone": ("small", "vgg16", "resnet50")}

    def _data_hint(self) -> str:
        return "flic-regression trains on FLIC's flic29 records (datasets flic, flic_full); for COCO, MPII or LSP use pose-heatmap"

    def _target_skeleton(self, version: DatasetVersion) -> str:
        return FLIC7.name

    def check_dataset(self, version: DatasetVersion, params: Mapping[str, Any] | None = None) -> None:
        """Refuse versions whose records are not FLIC's ``flic29`` (e.g. COCO).

        Raises:
            TaskDataError: Another skeleton, or no labelled FLIC rows.
        """
        if version.skeleton != FLIC29.name:
            raise TaskDataError(
                f"flic-regression needs FLIC records (skeleton flic29); {version.dataset}@{version.version} has skeleton {version.skeleton!r}",
                hint=self._data_hint(),
            )
        super().check_dataset(version)

    def target_spec(self, version: DatasetVersion, params: Mapping[str, Any]) -> TargetSpec:
        """Coordinates normalised to the input (``x / W``, ``y / H``, weight) of the ``flic7`` joints."""
        from tasks.training.data import TargetSpec

        return TargetSpec(kind="coords", input_wh=self._input_wh(params), convert_to=FLIC7.name)

    def build_model(self, spec: TargetSpec, params: Mapping[str, Any], weights: str | None = None) -> keras.Model:
        """DeepPose regression, masked MSE on normalised coordinates, metric ``coord_error`` (fraction of the input)."""
        from tasks.training import models

        set_precision(bool(params["mixed_precision"]))
        w, h = spec.input_wh
        model = models.build_regression_model(
            (h, w), get_skeleton(spec.convert_to or FLIC7.name).num_joints, params["backbone"], hidden_units=params["hidden_units"],
            dropout=params["dropout"], stages=params["stages"], filters=params["filters"], weights=weights,
        )  # fmt: skip
        return self._compile(model, params, models.masked_coord_mse, [models.coord_error])

    def _decode(self, outputs: np.ndarray, spec: TargetSpec, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        w, h = spec.input_wh
        xy = outputs.astype(np.float64) * np.array([w, h], dtype=np.float64)
        return xy.astype(np.float32), np.ones(outputs.shape[:2], dtype=np.float32)

    def evaluate(self, predictions: pa.Table, version: DatasetVersion, split: str, params: Mapping[str, Any], out_dir: str) -> dict[str, Any]:
        """RMSE (px), PCK@0.2 (torso) and MODEC's protocol, in original image pixels.

        Writes ``flic_pred.npy`` (``(N, 6, 2)`` lsho, lelb, lwri, rsho, relb, rwri in records order,
        MATLAB 1-based like ``examples.mat``, for ``posepipe evaluate flic --pred``) and
        ``flic_pred_sample_ids.json`` (its row order).
        """
        from tasks.evaluation.metrics import flic_report, rmse_px

        a = self._pose_arrays(predictions, version, split)
        if a["src_skeleton"].name != FLIC29.name:
            raise TaskDataError(f"flic-regression scores FLIC (flic29) records; {version.dataset} has {a['src_skeleton'].name}", hint=self._data_hint())
        used = a["used"] & (a["rows"] >= 0)
        pred, gt, vis = a["pred"][used], a["gt"][used], a["visible"][used]
        norm, norm_name = self._torso(a)
        pck02 = _pck_block(pred, gt, vis, norm[used], 0.2, a["skeleton"].joints, norm_name)
        arm = [FLIC7.index(j) for j in ("left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist")]
        gt29 = np.where((a["vis_src"][used] > 0)[..., None], a["gt_src"][used], np.nan)
        report = flic_report(pred[:, arm].astype(np.float64), gt29.astype(np.float64))
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "flic_pred.npy", pred[:, arm].astype(np.float64) + 1.0)
        ids = [a["ids"][i] for i in np.flatnonzero(used)]
        files = {"flic_pred": str(out / "flic_pred.npy"), "flic_pred_sample_ids": _write_json(out / "flic_pred_sample_ids.json", ids)}
        metrics = {
            "task": self.name, "dataset": version.dataset, "version": version.version, "split": split,
            "num_samples": int(used.sum()), "units": "fraction (rmse in px)",
            "rmse_px": rmse_px(pred, gt, vis), "pck@0.2": pck02,
            "modec": {**report.to_dict(), "num_examples": report.num_examples, "num_flipped": report.num_flipped},
            "score_name": "pck@0.2", "score": pck02["mean"], "files": files,
        }  # fmt: skip
        return metrics


class PoseHeatmapTask(_PoseTask):
    """SimpleBaseline heatmaps for the version's own skeleton (COCO-17, MPII-16, LSP-14, ...)."""

    name = "pose-heatmap"
    thresholds = {"pck@0.2_torso/mean": {"change": {"absolute": -0.01}}}
    description = "SimpleBaseline heatmaps (stride 4, DARK decoding); PCK@0.2, MPII PCKh, COCO OKS AP"
    presets = {
        "tiny": {"input_width_px": 48, "input_height_px": 64, "backbone": "small", "num_deconv": 2, "deconv_filters": 32,
                 "filters": 16, "sigma": 2.0, "decode": "dark", "epochs": 5},
        "full": {"input_width_px": 192, "input_height_px": 256, "backbone": "resnet50", "num_deconv": 3, "deconv_filters": 256,
                 "filters": 32, "sigma": 2.0, "decode": "dark", "epochs": 140, "learning_rate": 1e-3},
    }  # fmt: skip
    choices = {"backbone": ("small", "vgg16", "resnet50"), "decode": ("dark", "quarter")}
    STRIDE: ClassVar[int] = 4

    def _data_hint(self) -> str:
        return "pose-heatmap needs labelled keypoints (COCO, MPII, LSP, LSPET, FLIC)"

    def _check_params(self, params: dict[str, Any]) -> None:
        total = self.STRIDE * 2 ** params["num_deconv"] if params["backbone"] == "small" else 32
        if params["backbone"] != "small" and params["num_deconv"] != 3:
            raise ConfigError(f"backbone {params['backbone']} has stride 32: num_deconv must be 3 (got {params['num_deconv']})")
        for key in ("input_width_px", "input_height_px"):
            if params[key] % total:
                raise ConfigError(f"{key}={params[key]} is not a multiple of the backbone stride {total}", hint=f"use a multiple of {total}")

    def target_spec(self, version: DatasetVersion, params: Mapping[str, Any]) -> TargetSpec:
        """Gaussian heatmaps (stride 4, ``sigma``) of the version's own skeleton."""
        from tasks.training.data import TargetSpec

        return TargetSpec(kind="heatmaps", input_wh=self._input_wh(params), convert_to=str(version.skeleton), stride=self.STRIDE, sigma=float(params["sigma"]))

    def build_model(self, spec: TargetSpec, params: Mapping[str, Any], weights: str | None = None) -> keras.Model:
        """SimpleBaseline with the per-joint-weighted heatmap MSE."""
        from tasks.training import models

        set_precision(bool(params["mixed_precision"]))
        w, h = spec.input_wh
        num_joints = get_skeleton(spec.convert_to).num_joints if spec.convert_to else 17
        model = models.build_heatmap_model(
            (h, w), num_joints, params["backbone"], num_deconv=params["num_deconv"], deconv_filters=params["deconv_filters"],
            filters=params["filters"], weights=weights,
        )  # fmt: skip
        return self._compile(model, params, models.heatmap_mse, [])

    def _decode(self, outputs: np.ndarray, spec: TargetSpec, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        from tasks.transforms.heatmaps import decode_heatmaps, heatmap_to_input_px

        xy, maxvals = decode_heatmaps(outputs, method=params["decode"], sigma=float(params["sigma"]))
        return heatmap_to_input_px(xy, spec.stride), maxvals.astype(np.float32)

    def evaluate(self, predictions: pa.Table, version: DatasetVersion, split: str, params: Mapping[str, Any], out_dir: str) -> dict[str, Any]:
        """PCK@0.2 (torso and bbox), plus MPII PCKh for ``mpii16`` and COCO OKS AP for ``coco17``.

        ``pck@0.2_torso`` normalises by the ground truth's left-shoulder-to-right-hip distance (people
        without both are left out); ``pck@0.2_bbox`` by the longer side of the record's
        ``bbox_xyxy_px`` (MMPose's ``PCKAccuracy(norm_item="bbox")``). The score is COCO AP, MPII
        PCKh@0.5 Mean (as a fraction), or else torso PCK@0.2.
        """
        from tasks.evaluation.metrics import bbox_norm

        a = self._pose_arrays(predictions, version, split, columns=["bbox_xyxy_px", "head_box_xyxy_px", "extra", "image_path",
                                                                      "image_width_px", "image_height_px"])  # fmt: skip
        used = a["used"]
        names = a["skeleton"].joints
        torso, torso_name = self._torso(a)
        box = bbox_norm(_boxes(a["table"].column("bbox_xyxy_px").to_pylist()))
        metrics: dict[str, Any] = {
            "task": self.name, "dataset": version.dataset, "version": version.version, "split": split,
            "skeleton": a["skeleton"].name, "num_samples": int(used.sum()), "units": "fraction (MPII PCKh in percent)",
            "pck@0.2_torso": _pck_block(a["pred"][used], a["gt"][used], a["visible"][used], torso[used], 0.2, names, torso_name),
            "pck@0.2_bbox": _pck_block(a["pred"][used], a["gt"][used], a["visible"][used], box[used], 0.2, names,
                                       "bbox: longer side of the record's bbox_xyxy_px"),
            "files": {},
        }  # fmt: skip
        metrics["score_name"], metrics["score"] = "pck@0.2_torso", metrics["pck@0.2_torso"]["mean"]
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if a["skeleton"].name == MPII16.name:
            mpii = self._mpii(a, out)
            if mpii is not None:
                metrics["mpii_pckh"], files = mpii
                metrics["files"].update(files)
                metrics["score_name"], metrics["score"] = "pckh@0.5_mean", metrics["mpii_pckh"]["pckh@0.5"]["Mean"] / 100.0
        if a["skeleton"].name == "coco17":
            coco, files = self._coco(a, out)
            metrics["coco"] = coco
            metrics["files"].update(files)
            metrics["score_name"], metrics["score"] = "coco_ap", coco["AP"]
        return metrics

    @staticmethod
    def _mpii(a: dict[str, Any], out: Path) -> tuple[dict[str, Any], dict[str, str]] | None:
        """MPII PCKh on the people with a head box; writes ``pred.mat``/``gt.mat`` (MATLAB 1-based, ``evaluate pckh``)."""
        import scipy.io

        from tasks.evaluation.metrics import head_norm_from_boxes, mpii_pckh_report

        heads = _boxes(a["table"].column("head_box_xyxy_px").to_pylist())
        ok = a["used"] & np.isfinite(heads).all(axis=1)
        if not ok.any():
            return None
        pred, gt, vis = a["pred"][ok].astype(np.float64), a["gt"][ok].astype(np.float64), a["visible"][ok]
        report = mpii_pckh_report(pred, gt, vis, head_norm_from_boxes(heads[ok]))
        # The official files' layout: pos_gt_src (16, 2, N), jnt_missing (16, N), headboxes_src (2, 2, N); 1-based px.
        gt_m = np.where(vis[..., None], gt + 1.0, 0.0).transpose(1, 2, 0)
        boxes = (heads[ok] + 1.0).reshape(-1, 2, 2).transpose(1, 2, 0)
        scipy.io.savemat(out / "gt.mat", {"pos_gt_src": gt_m, "jnt_missing": (~vis).astype(np.float64).T, "headboxes_src": boxes})
        scipy.io.savemat(out / "pred.mat", {"preds": pred + 1.0})
        ids = [a["ids"][i] for i in np.flatnonzero(ok)]
        files = {"mpii_gt": str(out / "gt.mat"), "mpii_pred": str(out / "pred.mat"), "mpii_sample_ids": _write_json(out / "mpii_sample_ids.json", ids)}
        result = {**report.to_dict(), "num_people": int(ok.sum()), "per_joint_05": _per_joint(MPII16.joints, report.per_joint_05)}
        return result, files

    @staticmethod
    def _coco(a: dict[str, Any], out: Path) -> tuple[dict[str, Any], dict[str, str]]:
        """COCO OKS AP: ground truth rebuilt from the records (image ids from them), results from the predictions."""
        from tasks.evaluation.coco_eval import coco_evaluate, coco_keypoint_results

        gt_json = coco_ground_truth(a["table"], a["gt"], a["visible"], a["used"])
        image_ids = [ann["image_id"] for ann in gt_json["annotations"]]
        results: list[dict[str, Any]] = []
        for k, i in enumerate(np.flatnonzero(a["used"])):
            xyc = np.concatenate([a["pred"][i], a["scores"][i][:, None]], axis=-1)[None]
            person = np.array([float(np.clip(np.mean(a["scores"][i]), 1e-6, None))], np.float32)
            # Every prediction is kept: a joint with score <= 0 would be written as unknown (0, 0, 0).
            xyc[..., 2] = np.maximum(xyc[..., 2], 1e-6)
            results.extend(coco_keypoint_results(xyc, person, image_ids[k], "coco17"))
        gt_path = out / "coco_gt.json"
        res_path = out / "coco_results.json"
        _write_json(gt_path, gt_json)
        _write_json(res_path, results)
        report = coco_evaluate(gt_path, results)
        return {**report.to_dict(), "num_images": report.num_images, "num_detections": report.num_detections}, {
            "coco_gt": str(gt_path), "coco_results": str(res_path)}  # fmt: skip


def coco_ground_truth(table: pa.Table, gt: np.ndarray, visible: np.ndarray, used: np.ndarray) -> dict[str, Any]:
    """A COCO keypoints annotation dict rebuilt from processed records (the ``used`` rows).

    Image ids come from the records' ``extra.image_id`` (COCO versions), else from the sorted image
    paths (1-based). ``area`` is ``extra.area`` where present, else the box area; ``iscrowd`` 0
    (crowds never reach a shard unless ``keep_crowd``; then the record says so).

    Args:
        table: Records with ``sample_id``, ``image_path``, ``image_width_px``, ``image_height_px``,
            ``bbox_xyxy_px``, ``extra``.
        gt: ``(N, 17, 2)`` keypoints (image px).
        visible: ``(N, 17) bool``.
        used: ``(N,) bool`` rows to include.

    Returns:
        ``{"images", "annotations", "categories"}`` (annotation ids 1..).
    """
    from schemas.skeletons import COCO17

    paths = table.column("image_path").to_pylist()
    extras = [json.loads(e) if e else {} for e in table.column("extra").to_pylist()]
    fallback = {p: k + 1 for k, p in enumerate(sorted(set(paths)))}
    widths = table.column("image_width_px").to_pylist()
    heights = table.column("image_height_px").to_pylist()
    boxes = _boxes(table.column("bbox_xyxy_px").to_pylist())
    images: dict[int, dict[str, Any]] = {}
    annotations: list[dict[str, Any]] = []
    for i in np.flatnonzero(used):
        image_id = int(extras[i].get("image_id", fallback[paths[i]]))
        images.setdefault(image_id, {"id": image_id, "file_name": paths[i], "width": widths[i] or 0, "height": heights[i] or 0})
        v = visible[i]
        kps = np.zeros((gt.shape[1], 3), np.float64)
        kps[v, :2] = gt[i][v]
        kps[v, 2] = 2
        x1, y1, x2, y2 = (float(c) for c in boxes[i])
        if not np.isfinite([x1, y1, x2, y2]).all():
            lab = gt[i][v]
            x1, y1 = lab.min(axis=0)
            x2, y2 = lab.max(axis=0)
        area = extras[i].get("area")
        annotations.append({
            "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": int(extras[i].get("iscrowd", 0)),
            "keypoints": [round(float(c), 3) for c in kps.reshape(-1)], "num_keypoints": int(v.sum()),
            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            "area": float(area) if area is not None else float((x2 - x1) * (y2 - y1)),
        })  # fmt: skip
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO17.joints),
                   "skeleton": [[a + 1, b + 1] for a, b in COCO17.limb_indices.tolist()]}]  # fmt: skip
    return {"images": sorted(images.values(), key=lambda d: d["id"]), "annotations": annotations, "categories": categories}


# --------------------------------------------------------------------------------------------------
# Classification tasks
# --------------------------------------------------------------------------------------------------


def classification_predictions_table(
    sample_ids: Sequence[str], scores: np.ndarray, classes: Sequence[str], label_column: str | None = None
) -> pa.Table:
    """``sample_id``, ``scores`` ``(C,)`` and ``predicted_label``; class names (and label column) in the schema metadata."""
    s = np.asarray(scores, dtype=np.float32).reshape(len(sample_ids), len(classes))
    n, c = s.shape
    offsets = pa.array(np.arange(0, n * c + 1, c, dtype=np.int32))
    arr = pa.ListArray.from_arrays(offsets, pa.array(s.reshape(-1), pa.float32()))
    predicted = [classes[i] for i in s.argmax(axis=1)] if c else [None] * n
    schema = pa.schema(
        [pa.field("sample_id", pa.string(), nullable=False), pa.field("scores", pa.list_(pa.float32()), nullable=False),
         pa.field("predicted_label", pa.string())],
        metadata={"posepipe.classes": json.dumps(list(classes)), **({"posepipe.label_column": label_column} if label_column else {})},
    )  # fmt: skip
    return pa.Table.from_arrays([pa.array(list(sample_ids), pa.string()), arr, pa.array(predicted, pa.string())], schema=schema)


def prediction_classes(predictions: pa.Table) -> list[str]:
    """Class names of a classification predictions table (schema metadata ``posepipe.classes``)."""
    meta = predictions.schema.metadata or {}
    raw = meta.get(b"posepipe.classes")
    if raw is None:
        raise TaskDataError("the predictions carry no class names (schema metadata posepipe.classes)", hint="write them with classification_predictions_table")
    return [str(c) for c in json.loads(raw)]


def _label_text(value: Any) -> str | None:
    return None if value is None else str(value)


class _ClassificationTask(TrainingTask):
    """Shared label handling, predict / evaluate / plots of the classifiers."""

    thresholds = {"macro_f1": {"change": {"absolute": -0.01}}}

    def _label_column(self, params: Mapping[str, Any] | None) -> str:
        return str((params or self._resolved).get("label_column") or self.defaults("tiny")["label_column"])

    def _labels(self, version: DatasetVersion, split: str, column: str) -> list[str | None]:
        try:
            table = version.records(split, columns=[column])
        except Exception as exc:  # noqa: BLE001 - the reader's error for an unknown column, whatever its type
            raise TaskDataError(f"{version.dataset}@{version.version} has no column {column!r}: {exc}",
                                hint="label columns: category, activity, activity_id") from exc  # fmt: skip
        if column not in table.column_names:
            raise TaskDataError(f"{version.dataset}@{version.version} has no column {column!r}", hint="label columns: category, activity, activity_id")
        return [_label_text(v) for v in table.column(column).to_pylist()]

    def _usable_rows(self, version: DatasetVersion, split: str) -> int:
        return sum(1 for v in self._labels(version, split, self._current_label) if v is not None)

    _current_label: str = "category"

    def splits(self, version: DatasetVersion, params: Mapping[str, Any] | None = None) -> tuple[str, str]:
        """As :meth:`TrainingTask.splits`, counting rows with a value in the label column."""
        self._current_label = self._label_column(params)
        return super().splits(version, params)

    def check_dataset(self, version: DatasetVersion, params: Mapping[str, Any] | None = None) -> None:
        """Refuse versions without label values, with one class only, or whose splits share an image.

        Raises:
            TaskDataError: No values in the label column, fewer than two classes in the training
                split, or an ``image_path`` in two splits (the split must never cut an image).
        """
        column = self._label_column(params)
        self._current_label = column
        record = getattr(version, "record", "processed_samples")
        if record != "processed_samples":
            super().check_dataset(version)
        owner: dict[str, str] = {}
        shared: list[str] = []
        labelled = 0
        for split in version.splits:
            table = version.records(split, columns=["image_path"])
            for path in set(table.column("image_path").to_pylist()):
                if path in owner and owner[path] != split:
                    shared.append(f"{path} ({owner[path]}, {split})")
                owner.setdefault(path, split)
            labelled += sum(1 for v in self._labels(version, split, column) if v is not None)
        if not labelled:
            raise TaskDataError(
                f"{version.dataset}@{version.version} has no values in the label column {column!r}",
                hint=f"{self.name} needs a labelled dataset (MPII: label_column=category, activity or activity_id)",
            )
        if shared:
            raise TaskDataError(
                f"{len(shared)} images of {version.dataset}@{version.version} are in two splits (first: {'; '.join(shared[:3])}): "
                "the evaluation would see people of training images",
                hint="rebuild the version with a split protocol that splits by image",
            )
        train, _ = self.splits(version, {"label_column": column})
        classes = sorted({v for v in self._labels(version, train, column) if v is not None})
        if len(classes) < 2:
            raise TaskDataError(f"the {train!r} split has {len(classes)} class(es) in {column!r}; classification needs at least two",
                                hint="use a label column with several values")  # fmt: skip

    def _classes_and_weights(self, version: DatasetVersion, params: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
        column = self._label_column(params)
        train, _ = self.splits(version, params)
        labels = [v for v in self._labels(version, train, column) if v is not None]
        classes = tuple(sorted(set(labels)))
        weights = balanced_class_weights(labels, classes) if params["class_weights"] == "balanced" else None
        return classes, weights

    def predict(self, model: keras.Model, version: DatasetVersion, split: str, spec: TargetSpec, params: Mapping[str, Any]) -> pa.Table:
        """Class probabilities of every sample of ``split`` the input pipeline yields."""
        from tasks.training.data import iterate_numpy

        ids: list[str] = []
        parts: list[np.ndarray] = []
        for batch_ids, x, _y in iterate_numpy(version, split, spec, int(params["batch_size"])):
            parts.append(np.asarray(model.predict_on_batch(x), dtype=np.float32))
            ids.extend(batch_ids)
        scores = np.concatenate(parts) if parts else np.zeros((0, len(spec.classes)), np.float32)
        return classification_predictions_table(ids, scores, spec.classes, spec.label_column)

    def evaluate(self, predictions: pa.Table, version: DatasetVersion, split: str, params: Mapping[str, Any], out_dir: str) -> dict[str, Any]:
        """Accuracy, macro/weighted F1, per-class report, confusion matrix, and the majority-class baseline.

        Labels absent from the predictions' classes are kept as extra rows of the confusion matrix
        (never predicted). The baseline predicts the training split's most frequent class.
        """
        column = str(params.get("label_column") or self._label_column_from(predictions))
        classes = prediction_classes(predictions)
        labels = self._labels(version, split, column)
        ids = version.records(split, columns=["sample_id"]).column("sample_id").to_pylist()
        labelled = np.array([v is not None for v in labels], dtype=bool)
        if not labelled.any():
            raise TaskDataError(f"split {split!r} of {version.dataset}@{version.version} has no value in {column!r}", hint="evaluate on a labelled split")
        known = set(classes)
        # Rows whose label the model was never trained on are not scored (the input pipeline skips them too);
        # such a row that has a prediction anyway is scored, as a miss.
        present = np.isin(np.asarray(ids, dtype=object), np.asarray(predictions.column("sample_id").to_pylist(), dtype=object))
        needed = labelled & (np.array([v in known for v in labels], dtype=bool) | present)
        rows = _align(predictions, ids, needed)
        extra = sorted({labels[i] for i in np.flatnonzero(needed)} - known)
        all_classes = [*classes, *extra]
        index = {c: i for i, c in enumerate(all_classes)}
        scores = np.asarray(predictions.column("scores").take(pa.array(rows[needed])).to_pylist(), dtype=np.float32).reshape(-1, len(classes))
        y_true = np.array([index[labels[i]] for i in np.flatnonzero(needed)], dtype=np.int64)
        y_pred = scores.argmax(axis=1)
        cm = confusion_matrix(y_true, y_pred, len(all_classes))
        report = classification_report(cm, all_classes)
        train, _ = self.splits(version, params)
        train_labels = [v for v in self._labels(version, train, column) if v is not None]
        majority = Counter(train_labels).most_common(1)[0][0] if train_labels else all_classes[0]
        base_pred = np.full_like(y_true, index.get(majority, 0))
        baseline = classification_report(confusion_matrix(y_true, base_pred, len(all_classes)), all_classes)
        return {
            "task": self.name, "dataset": version.dataset, "version": version.version, "split": split, "label_column": column,
            "units": "fraction", "num_samples": int(needed.sum()), "num_unseen_label_skipped": int((labelled & ~needed).sum()),
            "classes": all_classes,
            **report, "confusion_matrix": cm.tolist(),
            "baseline_majority": {"class": majority, "accuracy": baseline["accuracy"], "macro_f1": baseline["macro_f1"]},
            "score_name": "macro_f1", "score": report["macro_f1"],
        }  # fmt: skip

    def gate_samples(self, predictions: pa.Table, version: DatasetVersion, split: str, params: Mapping[str, Any]) -> GateSamples:
        """Accuracy, macro-F1 and weighted F1 (and ``score`` = macro-F1) on a resample of the scored samples."""
        column = str(params.get("label_column") or self._label_column_from(predictions))
        classes = prediction_classes(predictions)
        labels = self._labels(version, split, column)
        ids = version.records(split, columns=["sample_id"]).column("sample_id").to_pylist()
        index = {c: i for i, c in enumerate(classes)}
        present = set(predictions.column("sample_id").to_pylist())
        scored = [i for i, (sid, lab) in enumerate(zip(ids, labels, strict=True)) if lab is not None and (lab in index or sid in present)]
        rows = _align(predictions, [ids[i] for i in scored], np.ones(len(scored), dtype=bool))
        extra = sorted({labels[i] for i in scored} - set(classes))
        all_index = {**index, **{c: len(classes) + k for k, c in enumerate(extra)}}
        y_true = np.array([all_index[labels[i]] for i in scored], dtype=np.int64)
        scores = np.asarray(predictions.column("scores").take(pa.array(rows)).to_pylist(), dtype=np.float32).reshape(len(scored), len(classes))
        y_pred = scores.argmax(axis=1) if len(scored) else np.zeros(0, np.int64)
        k = len(all_index)

        def report(idx: np.ndarray) -> dict[str, Any]:
            return classification_report(confusion_matrix(y_true[idx], y_pred[idx], k), list(all_index))

        return GateSamples(
            tuple(ids[i] for i in scored),
            {
                "accuracy": lambda idx: float(np.mean(y_true[idx] == y_pred[idx])) if len(idx) else float("nan"),
                "macro_f1": lambda idx: float(report(idx)["macro_f1"]),
                "weighted_f1": lambda idx: float(report(idx)["weighted_f1"]),
                "score": lambda idx: float(report(idx)["macro_f1"]),
            },
        )

    def plots(self, predictions: pa.Table, version: DatasetVersion, split: str, history: list[dict[str, Any]], out_dir: str) -> list[str]:
        """Loss/accuracy curves, the confusion matrix, and the 16 samples the model was least sure of (their crops)."""
        from tasks.training import plots

        out = Path(out_dir)
        paths: list[str] = []
        if history:
            paths.append(str(plots.plot_history(history, out / "history.png", title=f"{self.name}: training")))
        column = self._label_column_from(predictions)
        m = self.evaluate(predictions, version, split, {"label_column": column}, str(out))
        paths.append(str(plots.plot_confusion_matrix(np.asarray(m["confusion_matrix"]), m["classes"], out / "confusion_matrix.png",
                                                     title=f"{self.name}: {split} (accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f})")))  # fmt: skip
        paths.append(str(self._worst_sheet(predictions, version, split, column, out / "worst_predictions.png")))
        return paths

    def _worst_sheet(self, predictions: pa.Table, version: DatasetVersion, split: str, column: str, path: Path, n: int = 16) -> Path:
        """The ``n`` samples with the lowest probability of their true class, captioned true -> predicted."""
        from tasks.training import plots

        classes = prediction_classes(predictions)
        labels = self._labels(version, split, column)
        ids = version.records(split, columns=["sample_id"]).column("sample_id").to_pylist()
        index = {sid: i for i, sid in enumerate(predictions.column("sample_id").to_pylist())}
        scores = predictions.column("scores").to_pylist()
        candidates: list[tuple[float, int, int]] = []  # (true-class probability, record row, prediction row)
        for row, (sid, label) in enumerate(zip(ids, labels, strict=True)):
            k = index.get(sid)
            if k is not None and label is not None:
                p_true = float(scores[k][classes.index(label)]) if label in classes else 0.0
                candidates.append((p_true, row, k))
        worst = sorted(candidates)[:n]
        crops = version.crops(split, [r for _, r, _ in worst]) if worst else np.zeros((0, 8, 8, 3), np.uint8)
        captions, colours = [], []
        for p_true, row, k in worst:
            guess = classes[int(np.argmax(scores[k]))]
            captions.append(f"{ids[row]}\n{labels[row]} -> {guess} (p true {p_true:.2f})")
            colours.append("black" if guess == labels[row] else "red")
        return plots.plot_labelled_crops(crops, captions, path, title=f"{self.name}: lowest true-class probability, {len(worst)} of {len(candidates)}",
                                         colours=colours)  # fmt: skip

    def _label_column_from(self, predictions: pa.Table) -> str:
        meta = predictions.schema.metadata or {}
        return meta.get(b"posepipe.label_column", self._current_label.encode()).decode()


class MpiiActivityTask(_ClassificationTask):
    """Image classifier over MPII's activity labels (``category`` by default)."""

    name = "mpii-activity"
    description = "image classifier over a label column (MPII category/activity/activity_id); macro/weighted F1"
    presets = {
        "tiny": {"input_width_px": 64, "input_height_px": 64, "backbone": "small", "stages": 4, "filters": 8, "hidden_units": 64,
                 "dropout": 0.1, "label_column": "category", "class_weights": "balanced", "epochs": 3},
        "full": {"input_width_px": 224, "input_height_px": 224, "backbone": "vgg16", "stages": 4, "filters": 16, "hidden_units": 256,
                 "dropout": 0.3, "label_column": "category", "class_weights": "balanced", "epochs": 30, "learning_rate": 1e-4},
    }  # fmt: skip
    choices = {"backbone": ("small", "vgg16", "resnet50"), "label_column": ("category", "activity", "activity_id"),
               "class_weights": ("balanced", "none")}  # fmt: skip

    def target_spec(self, version: DatasetVersion, params: Mapping[str, Any]) -> TargetSpec:
        """Class index of the label column (classes = sorted training values), balanced weights."""
        from tasks.training.data import TargetSpec

        classes, weights = self._classes_and_weights(version, params)
        return TargetSpec(kind="label", input_wh=(int(params["input_width_px"]), int(params["input_height_px"])),
                          label_column=self._label_column(params), classes=classes, class_weights=weights)  # fmt: skip

    def build_model(self, spec: TargetSpec, params: Mapping[str, Any], weights: str | None = None) -> keras.Model:
        """Backbone + dense softmax, sparse categorical cross-entropy, accuracy."""
        from tasks.training import models

        set_precision(bool(params["mixed_precision"]))
        w, h = spec.input_wh
        model = models.build_classifier((h, w), len(spec.classes), params["backbone"], hidden_units=params["hidden_units"],
                                        dropout=params["dropout"], stages=params["stages"], filters=params["filters"], weights=weights)  # fmt: skip
        return self._compile(model, params, "sparse_categorical_crossentropy", ["sparse_categorical_accuracy"])


class PoseMlpTask(_ClassificationTask):
    """MLP on normalised joints classifying the label column (the FLIC notebook's second model)."""

    name = "pose-mlp"
    description = "MLP on normalised pose joints classifying a label column; macro/weighted F1"
    presets = {
        "tiny": {"hidden_units": (64, 32), "dropout": 0.1, "label_column": "category", "class_weights": "balanced",
                 "skeleton": "auto", "epochs": 30, "batch_size": 32, "learning_rate": 3e-3},
        "full": {"hidden_units": (256, 128), "dropout": 0.3, "label_column": "category", "class_weights": "balanced",
                 "skeleton": "auto", "epochs": 200, "batch_size": 64, "learning_rate": 1e-3},
    }  # fmt: skip
    choices = {"label_column": ("category", "activity", "activity_id"), "class_weights": ("balanced", "none")}

    def check_dataset(self, version: DatasetVersion, params: Mapping[str, Any] | None = None) -> None:
        """As the image classifier, and the records must carry labelled joints."""
        super().check_dataset(version, params)
        if not any(_labelled_pose_rows(version, s) for s in version.splits):
            raise TaskDataError(f"{version.dataset}@{version.version} has no labelled joints for pose-mlp", hint="use a dataset with keypoints")

    def _check_params(self, params: dict[str, Any]) -> None:
        if not params["hidden_units"] or min(params["hidden_units"]) < 1:
            raise ConfigError(f"hidden_units={params['hidden_units']} must list positive layer widths", hint="e.g. hidden_units=64,32")
        if params["skeleton"] != "auto":
            get_skeleton(params["skeleton"])

    def target_spec(self, version: DatasetVersion, params: Mapping[str, Any]) -> TargetSpec:
        """``normalise_pose`` joints (of ``skeleton``: ``auto`` = the version's) -> class index."""
        from tasks.training.data import TargetSpec

        classes, weights = self._classes_and_weights(version, params)
        skeleton = str(version.skeleton) if params["skeleton"] == "auto" else params["skeleton"]
        if not any(conversion(str(version.skeleton), skeleton).recipe):
            raise TaskDataError(f"skeleton {version.skeleton!r} has no joint in common with {skeleton!r}")
        # input_wh is not used by kind "joints" (no pixels are read); the crop size keeps it meaningful.
        train, _ = self.splits(version, params)
        first = version.records(train, columns=["crop_width_px", "crop_height_px"]).slice(0, 1).to_pylist()
        crop_wh = (int(first[0]["crop_width_px"]), int(first[0]["crop_height_px"])) if first else (64, 64)
        return TargetSpec(kind="joints", input_wh=crop_wh, convert_to=skeleton, label_column=self._label_column(params),
                          classes=classes, class_weights=weights)  # fmt: skip

    def build_model(self, spec: TargetSpec, params: Mapping[str, Any], weights: str | None = None) -> keras.Model:
        """MLP on ``J * 3`` inputs, sparse categorical cross-entropy, accuracy (``weights`` is not used)."""
        from tasks.training import models

        set_precision(bool(params["mixed_precision"]))
        num_joints = get_skeleton(spec.convert_to).num_joints if spec.convert_to else 0
        model = models.build_mlp(num_joints * 3, len(spec.classes), hidden_units=tuple(params["hidden_units"]), dropout=params["dropout"])
        return self._compile(model, params, "sparse_categorical_crossentropy", ["sparse_categorical_accuracy"])


from tasks.training import action as _action  # noqa: E402,F401  (registers action-gru, action-lstm, skeleton-cnn)

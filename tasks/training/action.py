"""Action recognition on sequence datasets (``NAME-keypoints``): ``action-gru``, ``action-lstm``, ``skeleton-cnn``.

The models of the UCF and MHAD notebooks, trained on the clips of one fold of a sequence dataset:

- ``action-gru``: per-frame pose features (normalised x, y, score of the kept people, flattened per
  frame) -> GRU -> temporal feature vector -> head. ``head=softmax`` trains a Dense softmax end to
  end; ``head=logreg`` (the UCF notebook) trains with a softmax head, then fits an L2-regularised
  multinomial logistic regression (:func:`fit_logreg`) on the temporal features of the training
  clips; its probabilities are the predictions and its coefficients are stored in the model folder
  (``logreg.npz``).
- ``action-lstm``: LSTM on the keypoint sequences (``input=keypoints``) or a small per-frame CNN +
  LSTM on the per-frame skeleton images (``input=skeleton-images``).
- ``skeleton-cnn``: an AlexNet-style CNN (11/5/3 kernels) on the composite skeleton image.

Splits are ``FOLD:train`` / ``FOLD:test`` of the fold ``-p fold=NAME`` (default: the dataset's first
fold). Arrays are read once per (split, params) through :meth:`SequenceVersion.arrays` and kept in
memory; each epoch is shuffled by ``(seed, epoch)``; augmentation (horizontal flip with the
skeleton's flip permutation, scale/translation jitter) is drawn per clip from ``(seed, epoch, clip)``.

TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.errors import ConfigError, TaskDataError
from tasks.sequences.read import SequenceVersion, open_sequences
from tasks.training.tasks import (
    GateSamples,
    TrainingTask,
    classification_predictions_table,
    classification_report,
    confusion_matrix,
    prediction_classes,
    set_precision,
)

if TYPE_CHECKING:
    import keras
    import pyarrow as pa

    from tasks.training.data import TargetSpec

#: File of the logistic-regression head in a registered ``action-gru`` model folder.
LOGREG_FILE = "logreg.npz"


# --------------------------------------------------------------------------- pure functions


def fit_logreg(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float = 1.0, max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """L2-regularised multinomial logistic regression fitted with L-BFGS (scipy).

    Minimises ``sum_i -log softmax(x_i W + b)[y_i] + l2 / 2 * ||W||^2`` (the bias is not penalised).

    Args:
        x: ``(N, D) float`` features.
        y: ``(N,) int`` class indices in ``[0, num_classes)``.
        num_classes: C.
        l2: Penalty strength (>= 0).
        max_iter: L-BFGS iterations.

    Returns:
        ``W`` ``(D, C) float64`` and ``b`` ``(C,) float64``.
    """
    from scipy.optimize import minimize

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.int64)
    if x.ndim != 2 or len(x) != len(y) or num_classes < 2 or l2 < 0:
        raise ConfigError(f"logistic regression needs (N, D) features, N labels, C >= 2, l2 >= 0; got {x.shape}, {y.shape}, {num_classes}, {l2}")
    n, d = x.shape
    onehot = np.zeros((n, num_classes))
    onehot[np.arange(n), y] = 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: d * num_classes].reshape(d, num_classes)
        b = theta[d * num_classes :]
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        value = -(onehot * logp).sum() + 0.5 * l2 * (w * w).sum()
        g = p - onehot
        return float(value), np.concatenate([(x.T @ g + l2 * w).ravel(), g.sum(axis=0)])

    res = minimize(loss, np.zeros(d * num_classes + num_classes), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x[: d * num_classes].reshape(d, num_classes), res.x[d * num_classes :]


def logreg_proba(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Class probabilities ``(N, C) float32`` of :func:`fit_logreg`'s model on ``(N, D)`` features."""
    z = np.asarray(x, np.float64) @ w + b
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def top_k_accuracy(scores: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the ``k`` highest scores (ties: lower index first).

    Example:
        >>> top_k_accuracy(np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]]), np.array([2, 1]), 2)
        1.0
    """
    s = np.asarray(scores, np.float64)
    if len(s) == 0:
        return 0.0
    k = max(1, min(int(k), s.shape[1]))
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == np.asarray(y_true)[:, None]).any(axis=1)))


def mean_class_accuracy(cm: np.ndarray) -> float:
    """Mean over classes with support of recall (rows true, columns predicted).

    Example:
        >>> mean_class_accuracy(np.array([[3, 1], [0, 2]]))
        0.875
    """
    cm = np.asarray(cm, np.float64)
    support = cm.sum(axis=1)
    present = support > 0
    return float((np.diag(cm)[present] / support[present]).mean()) if present.any() else 0.0


def augment_sequences(x: np.ndarray, flip_perm: np.ndarray, seed: int, epoch: int, ids: Sequence[str], scale: float = 0.1, shift: float = 0.1,
                      mirror: float = 0.0) -> np.ndarray:  # fmt: skip
    """Per-clip random horizontal flip (joints swapped by ``flip_perm``) and scale/translation jitter.

    Args:
        x: ``(N, T, M, J, 3) float32`` normalised joints (x, y, score).
        flip_perm: ``(J,) int`` joint index each joint takes after a flip.
        seed, epoch: Run seed and epoch; with the clip id they seed each clip's draw.
        ids: N clip ids.
        scale: Relative scale jitter (uniform in ``1 +- scale``).
        shift: Translation jitter (uniform in ``+- shift``, normalised units).
        mirror: A flip maps x to ``mirror - x`` (0 for body-centred joints, 1 for frame fractions).

    Returns:
        ``(N, T, M, J, 3) float32``; scores and missing joints (score 0) are left as they were.
    """
    out = np.array(x, np.float32, copy=True)
    for i, cid in enumerate(ids):
        digest = int.from_bytes(hashlib.sha256(f"{seed}:{epoch}:{cid}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(digest)
        clip = out[i]
        if rng.random() < 0.5:
            clip = clip[:, :, flip_perm]
            clip[..., 0] = np.where(clip[..., 2] > 0, mirror - clip[..., 0], clip[..., 0])
        s = 1.0 + rng.uniform(-scale, scale)
        t = rng.uniform(-shift, shift, size=2)
        known = clip[..., 2:3] > 0
        clip[..., :2] = np.where(known, clip[..., :2] * s + t, clip[..., :2])
        out[i] = clip
    return out


# --------------------------------------------------------------------------- tasks


class _SequenceTask(TrainingTask):
    """Classification of the clips of a sequence dataset (one fold)."""

    thresholds = {"macro_f1": {"change": {"absolute": -0.01}}}

    COMMON_SEQ: dict[str, dict[str, Any]] = {
        "tiny": {"fold": "auto", "normalise": "body", "num_frames": 16, "max_people": 1, "epochs": 20, "batch_size": 16, "learning_rate": 3e-3, "augment": False},
        "full": {"fold": "auto", "normalise": "body", "num_frames": 48, "max_people": 2, "epochs": 100, "batch_size": 32, "learning_rate": 1e-3, "augment": True},
    }  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, list[str]]] = {}

    # --- dataset ---------------------------------------------------------------------------------
    def open_version(self, root: str, dataset: str, version: str | None = None, pixels: bool = False) -> TrainingSequences:
        """The validated sequence version (:func:`tasks.sequences.read.open_sequences`; ``pixels`` is
        not used: the skeleton images are read through the sequence reader)."""
        import dataclasses

        from storage.fs import filesystem
        from storage.layout import VersionPaths
        opened = open_sequences(root, dataset, version)
        fs, rpath = filesystem(root)
        with fs.open(VersionPaths(rpath, dataset, opened.version).manifest, "rb") as fh:
            sha = hashlib.sha256(fh.read()).hexdigest()
        return TrainingSequences(**{f.name: getattr(opened, f.name) for f in dataclasses.fields(opened)}, manifest_sha256=sha)

    def _fold(self, version: SequenceVersion, params: Mapping[str, Any]) -> str:
        folds = fold_names(version)
        if not folds:
            raise TaskDataError(f"{version.dataset}@{version.version} has no folds", hint="rebuild it from a clip dataset with folds")
        fold = str(params.get("fold", "auto"))
        if fold == "auto":
            return folds[0]
        if fold not in folds:
            raise TaskDataError(f"{version.dataset}@{version.version} has no fold {fold!r}", hint=f"folds: {', '.join(folds)}")
        return fold

    def check_dataset(self, version: Any, params: Mapping[str, Any] | None = None) -> None:
        """Refuse anything but a sequence dataset with the fold and two classes in its training side."""
        if version.manifest.get("record") != "sequences":
            raise TaskDataError(f"task {self.name!r} trains on sequence datasets; {version.dataset} holds {version.manifest.get('record')!r}",
                                hint="use a NAME-keypoints dataset")  # fmt: skip
        p = params or self._resolved
        fold = self._fold(version, p)
        labels = {c.label for c in version.clips(fold, "train")}
        if not any(True for _ in version.clips(fold, "test")):
            raise TaskDataError(f"fold {fold!r} of {version.dataset}@{version.version} has no test clips", hint="name another fold (-p fold=NAME)")
        if len(labels) < 2:
            raise TaskDataError(f"fold {fold!r} of {version.dataset}@{version.version} has {len(labels)} class(es) in train", hint="classification needs at least two")

    def splits(self, version: Any, params: Mapping[str, Any] | None = None) -> tuple[str, str]:
        """``("FOLD:train", "FOLD:test")``."""
        fold = self._fold(version, params or self._resolved)
        return f"{fold}:train", f"{fold}:test"

    def target_spec(self, version: Any, params: Mapping[str, Any]) -> TargetSpec:
        """Class label of each clip; classes: every label of the version, sorted by label index."""
        from tasks.training.data import TargetSpec

        by_index = {c.label_index: c.label for c in version.clips()}
        classes = tuple(by_index[i] for i in sorted(by_index))
        canvas = int(version.manifest.get("build_params", {}).get("canvas_px", 64)) if isinstance(version.manifest.get("build_params"), dict) else 64
        skeleton = version.manifest.get("skeleton") or next(version.clips()).skeleton
        return TargetSpec(kind="label", input_wh=(max(canvas, 8), max(canvas, 8)), convert_to=skeleton, label_column="label", classes=classes)

    def _keypoints(self, version: Any, split: str, params: Mapping[str, Any], seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(N, T, M, J, 3)`` normalised joints, labels and ids of ``split`` (cached per run)."""
        fold, side = split.rsplit(":", 1)
        mode = params.get("normalise", "body")
        key = ("kp", version.version, split, params["num_frames"], params["max_people"], seed, mode)
        if key not in self._cache:
            x, y, ids = version.arrays(int(params["num_frames"]), int(params["max_people"]), seed=seed, normalise=mode == "body", fold=fold, side=side)
            if mode == "frame":  # x / width, y / height: keeps where the body moves in the frame
                hw = {c.clip_id: c.frame_hw for c in version.clips(fold, side)}
                size = np.array([[hw[c][1], hw[c][0]] for c in ids], np.float32).reshape(len(ids), 1, 1, 1, 2)
                x = x.copy()
                x[..., :2] = np.where(x[..., 2:3] > 0, x[..., :2] / np.maximum(size, 1.0), 0.0)
            self._cache[key] = (x, y, ids)
        return self._cache[key]

    def _skeleton_images(self, version: Any, split: str, params: Mapping[str, Any], per_frame: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Composite ``(N, H, W, 3)`` or per-frame ``(N, T, H, W, 3)`` skeleton images (uint8) of ``split``."""
        import h5py
        import pyarrow.parquet as pq

        from storage.fs import filesystem
        from storage.layout import VersionPaths

        fold, side = split.rsplit(":", 1)
        key = ("img", version.version, split, per_frame, params["num_frames"])
        if key in self._cache:
            return self._cache[key]
        wanted = {c.clip_id: c for c in version.clips(fold, side)}
        _, rpath = filesystem(version.root)
        paths = VersionPaths(rpath, version.dataset, version.version)
        xs, ys, ids = [], [], []
        t = int(params["num_frames"])
        for shard in sorted(version.manifest["shards"], key=lambda s: (s["split"], s["index"])):
            cols = ["clip_id", "pixels_row", "num_frames"] + (["frames_offset"] if per_frame else [])
            rows = pq.read_table(paths.file(shard["parquet"]), columns=cols).to_pylist()
            with h5py.File(paths.file(shard["hdf5"]), "r") as h5:
                for r in rows:
                    clip = wanted.get(r["clip_id"])
                    if clip is None:
                        continue
                    if per_frame:
                        if r.get("frames_offset") is None:
                            raise TaskDataError(f"{version.dataset}@{version.version} has no per-frame skeleton images", hint="rebuild with skeleton_frames on")
                        pick = np.linspace(0, r["num_frames"] - 1, t).round().astype(int) + int(r["frames_offset"])
                        xs.append(np.asarray(h5["frames"][np.unique(pick)])[np.searchsorted(np.unique(pick), pick)])
                    else:
                        xs.append(np.asarray(h5["images"][int(r["pixels_row"])]))
                    ys.append(clip.label_index)
                    ids.append(r["clip_id"])
        order = np.argsort(ids, kind="stable")
        x = np.stack([xs[i] for i in order]) if xs else np.zeros((0,), np.uint8)
        out = (x, np.asarray([ys[i] for i in order], np.int32), [ids[i] for i in order])
        self._cache[key] = out
        return out

    def inputs(self, version: Any, split: str, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Model inputs, labels and clip ids of ``split`` (no augmentation)."""
        x, y, ids = self._keypoints(version, split, params)
        return _frame_features(x), y, ids

    def _augmented(self, version: Any, split: str, params: Mapping[str, Any], seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        x, y, ids = self._keypoints(version, split, params)
        if params.get("augment"):
            from schemas.skeletons import get_skeleton

            skel = get_skeleton(version.manifest.get("skeleton") or next(version.clips()).skeleton)
            x = augment_sequences(x, skel.flip_permutation, seed, epoch, ids, mirror=1.0 if params.get("normalise") == "frame" else 0.0)
        return _frame_features(x), y

    def plan_dataset(self, version: Any, split: str, spec: Any) -> None:
        """Nothing to plan: each epoch's arrays come from the sequence reader."""
        return None

    def make_dataset(self, version: Any, split: str, spec: Any, batch_size: int, seed: int, epoch: int, augment: Any = None, shuffle: bool = True, plan: Any = None) -> Any:
        """One epoch's ``tf.data.Dataset`` of ``(x, y)``, shuffled by ``(seed, epoch)``."""
        import tensorflow as tf

        params = self._resolved
        x, y = self._epoch_arrays(version, split, params, seed, epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(y)) if shuffle else np.arange(len(y))
        return tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(batch_size)

    def _epoch_arrays(self, version: Any, split: str, params: Mapping[str, Any], seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        return self._augmented(version, split, params, seed, epoch)

    # --- predictions and metrics -----------------------------------------------------------------
    def predict(self, model: keras.Model, version: Any, split: str, spec: Any, params: Mapping[str, Any]) -> pa.Table:
        """Class probabilities of every clip of ``split`` (``sample_id`` = clip id)."""
        x, _, ids = self.inputs(version, split, params)
        scores = np.asarray(model.predict(x, batch_size=int(params["batch_size"]), verbose=0), np.float32) if len(ids) else np.zeros((0, len(spec.classes)), np.float32)
        return classification_predictions_table(ids, scores, spec.classes, "label")

    def _truth(self, predictions: pa.Table, version: Any, split: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
        fold, side = split.rsplit(":", 1)
        labels = {c.clip_id: c.label for c in version.clips(fold, side)}
        classes = prediction_classes(predictions)
        index = {c: i for i, c in enumerate(classes)}
        pred_ids = predictions.column("sample_id").to_pylist()
        missing = sorted(set(labels) - set(pred_ids))
        if missing:
            raise TaskDataError(f"{len(missing)} clips of {split} have no prediction (first: {missing[0]})", hint="predict on the same version")
        scores = np.asarray(predictions.column("scores").to_pylist(), np.float32).reshape(len(pred_ids), len(classes))
        keep = [i for i, cid in enumerate(pred_ids) if cid in labels]
        y = np.array([index[labels[pred_ids[i]]] for i in keep], np.int64)
        return scores[keep], y, classes, [pred_ids[i] for i in keep]

    def evaluate(self, predictions: pa.Table, version: Any, split: str, params: Mapping[str, Any], out_dir: str) -> dict[str, Any]:
        """Top-1, top-k (k = min(5, C)), mean class accuracy, macro-F1, per-class report, confusion matrix."""
        scores, y, classes, _ = self._truth(predictions, version, split)
        cm = confusion_matrix(y, scores.argmax(axis=1) if len(y) else y, len(classes))
        report = classification_report(cm, classes)
        k = min(5, len(classes))
        top_k = top_k_accuracy(scores, y, k)
        return {
            "task": self.name, "dataset": version.dataset, "version": version.version, "split": split, "fold": split.rsplit(":", 1)[0],
            "units": "fraction", "num_samples": int(len(y)), "classes": classes, **report,
            "top1": report["accuracy"], f"top{k}": top_k, "top5": top_k, "top_k": k,
            "mean_class_accuracy": mean_class_accuracy(cm), "confusion_matrix": cm.tolist(),
            "chance": 1.0 / len(classes), "score_name": "macro_f1", "score": report["macro_f1"],
        }  # fmt: skip

    def gate_samples(self, predictions: pa.Table, version: Any, split: str, params: Mapping[str, Any]) -> GateSamples:
        """Top-1, macro-F1 and ``score`` (= macro-F1) on a resample of the clips."""
        scores, y, classes, ids = self._truth(predictions, version, split)
        pred = scores.argmax(axis=1) if len(y) else y

        def f1(idx: np.ndarray) -> float:
            return float(classification_report(confusion_matrix(y[idx], pred[idx], len(classes)), classes)["macro_f1"])

        def accuracy(idx: np.ndarray) -> float:
            return float(np.mean(y[idx] == pred[idx])) if len(idx) else float("nan")

        return GateSamples(tuple(ids), {"accuracy": accuracy, "top1": accuracy, "macro_f1": f1, "score": f1})

    def plots(self, predictions: pa.Table, version: Any, split: str, history: list[dict[str, Any]], out_dir: str) -> list[str]:
        """Training curves and the confusion matrix."""
        from tasks.training import plots

        out = Path(out_dir)
        paths: list[str] = []
        if history:
            paths.append(str(plots.plot_history(history, out / "history.png", title=f"{self.name}: training")))
        m = self.evaluate(predictions, version, split, self._resolved, out_dir)
        paths.append(str(plots.plot_confusion_matrix(np.asarray(m["confusion_matrix"]), m["classes"], out / "confusion_matrix.png",
                                                     title=f"{self.name}: {split} (top-1 {m['top1']:.3f}, macro F1 {m['macro_f1']:.3f})")))  # fmt: skip
        return paths

    def _compile_softmax(self, model: keras.Model, params: Mapping[str, Any]) -> keras.Model:
        return self._compile(model, params, "sparse_categorical_crossentropy", ["sparse_categorical_accuracy"])


@dataclass
class TrainingSequences(SequenceVersion):
    """A :class:`SequenceVersion` with what training's lineage records (manifest sha256, skeleton)."""

    manifest_sha256: str = ""

    @property
    def skeleton(self) -> str | None:
        """Skeleton of the clips."""
        return self.manifest.get("skeleton") or next((c.skeleton for c in self.clips()), None)

    @property
    def record(self) -> str:
        """Record kind (``sequences``)."""
        return str(self.manifest.get("record"))


def fold_names(version: Any) -> list[str]:
    """Fold names of a sequence version, in the order of its first clip's folds (sorted)."""
    for clip in version.clips():
        return sorted(clip.folds)
    return []


def _feature_dim(spec: Any, params: Mapping[str, Any]) -> int:
    """Per-frame feature width ``M * J * 3`` (J of the spec's skeleton)."""
    from schemas.skeletons import get_skeleton

    return int(params["max_people"]) * get_skeleton(str(spec.convert_to)).num_joints * 3


def _frame_features(x: np.ndarray) -> np.ndarray:
    """``(N, T, M, J, 3)`` -> ``(N, T, M * J * 3) float32`` per-frame features."""
    return np.asarray(x, np.float32).reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:])))


class ActionGruTask(_SequenceTask):
    """Per-frame pose features -> GRU -> temporal features -> softmax or logistic-regression head (UCF notebook)."""

    name = "action-gru"
    description = "GRU on per-frame pose features of a sequence dataset; logistic-regression or softmax head; top-1/top-5/macro-F1"
    presets = {
        "tiny": {**_SequenceTask.COMMON_SEQ["tiny"], "units": 32, "head": "logreg", "l2": 1.0, "dropout": 0.0},
        "full": {**_SequenceTask.COMMON_SEQ["full"], "units": 128, "head": "logreg", "l2": 1.0, "dropout": 0.2},
    }
    choices = {"head": ("logreg", "softmax"), "normalise": ("body", "frame")}

    def build_model(self, spec: Any, params: Mapping[str, Any], weights: str | None = None) -> keras.Model:
        """GRU(units) -> ``features`` layer -> Dense softmax (the head trained end to end)."""
        import keras

        set_precision(bool(params["mixed_precision"]))
        inp = keras.Input((int(params["num_frames"]), _feature_dim(spec, params)), name="frames")
        h = keras.layers.Masking(0.0)(inp)
        h = keras.layers.GRU(int(params["units"]), name="features")(h)
        if params["dropout"]:
            h = keras.layers.Dropout(float(params["dropout"]))(h)
        out = keras.layers.Dense(len(spec.classes), activation="softmax", dtype="float32")(h)
        return self._compile_softmax(keras.Model(inp, out, name="action_gru"), params)

    def predict(self, model: keras.Model, version: Any, split: str, spec: Any, params: Mapping[str, Any]) -> pa.Table:
        """Softmax head: the network's probabilities; logreg head: the fitted regression's (fitted here if not stored)."""
        if params["head"] == "softmax":
            return super().predict(model, version, split, spec, params)
        import keras

        extractor = keras.Model(model.inputs, model.get_layer("features").output)
        w, b = getattr(model, "_posepipe_logreg", (None, None))
        if w is None:
            xt, yt, _ = self.inputs(version, self.splits(version, params)[0], params)
            w, b = fit_logreg(np.asarray(extractor.predict(xt, verbose=0)), yt, len(spec.classes), float(params["l2"]))
            model._posepipe_logreg = (w, b)
        x, _, ids = self.inputs(version, split, params)
        feats = np.asarray(extractor.predict(x, verbose=0)) if len(ids) else np.zeros((0, w.shape[0]))
        return classification_predictions_table(ids, logreg_proba(feats, w, b), spec.classes, "label")

    def save_extra(self, model: keras.Model, folder: str) -> None:
        """Store the logistic-regression coefficients (``logreg.npz``: ``W`` (D, C), ``b`` (C,))."""
        w, b = getattr(model, "_posepipe_logreg", (None, None))
        if w is not None:
            np.savez(str(Path(folder) / LOGREG_FILE), W=w, b=b)

    def load_extra(self, model: keras.Model, folder: str) -> None:
        """Reload what :meth:`save_extra` stored."""
        path = Path(folder) / LOGREG_FILE
        if path.exists():
            with np.load(path) as d:
                model._posepipe_logreg = (d["W"], d["b"])


class ActionLstmTask(_SequenceTask):
    """LSTM on keypoint sequences or per-frame CNN + LSTM on skeleton-image sequences (MHAD notebook)."""

    name = "action-lstm"
    description = "LSTM on keypoint sequences or on per-frame skeleton images (TimeDistributed CNN); top-1/top-5/macro-F1"
    presets = {
        "tiny": {**_SequenceTask.COMMON_SEQ["tiny"], "units": 32, "input": "keypoints", "filters": 8},
        "full": {**_SequenceTask.COMMON_SEQ["full"], "units": 128, "input": "keypoints", "filters": 32},
    }
    choices = {"input": ("keypoints", "skeleton-images"), "normalise": ("body", "frame")}

    def inputs(self, version: Any, split: str, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Keypoint features ``(N, T, F)`` or per-frame images ``(N, T, H, W, 3) float32`` in [0, 1]."""
        if params["input"] == "keypoints":
            return super().inputs(version, split, params)
        x, y, ids = self._skeleton_images(version, split, params, per_frame=True)
        return x.astype(np.float32) / 255.0, y, ids

    def _epoch_arrays(self, version: Any, split: str, params: Mapping[str, Any], seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if params["input"] == "keypoints":
            return super()._epoch_arrays(version, split, params, seed, epoch)
        x, y, _ = self.inputs(version, split, params)
        return x, y

    def build_model(self, spec: Any, params: Mapping[str, Any], weights: str | None = None) -> keras.Model:
        """LSTM(units) -> softmax, on features or on a TimeDistributed conv stack of the frames."""
        import keras

        set_precision(bool(params["mixed_precision"]))
        t = int(params["num_frames"])
        if params["input"] == "keypoints":
            inp = keras.Input((t, _feature_dim(spec, params)), name="frames")
            h = keras.layers.Masking(0.0)(inp)
        else:
            w, hgt = spec.input_wh
            inp = keras.Input((t, hgt, w, 3), name="frames")
            f = int(params["filters"])
            # where the limbs are matters (motion is their displacement): pooled and flattened, not averaged away
            cnn = keras.Sequential([keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu"),
                                    keras.layers.Conv2D(2 * f, 3, strides=2, padding="same", activation="relu"),
                                    keras.layers.MaxPooling2D(4), keras.layers.Flatten(),
                                    keras.layers.Dense(int(params["units"]), activation="relu")])  # fmt: skip
            h = keras.layers.TimeDistributed(cnn)(inp)
        h = keras.layers.LSTM(int(params["units"]), name="features")(h)
        out = keras.layers.Dense(len(spec.classes), activation="softmax", dtype="float32")(h)
        return self._compile_softmax(keras.Model(inp, out, name="action_lstm"), params)


class SkeletonCnnTask(_SequenceTask):
    """AlexNet-style CNN (11/5/3 kernels) on the composite skeleton image of each clip (MHAD notebook)."""

    name = "skeleton-cnn"
    description = "AlexNet-style CNN on composite skeleton images of a sequence dataset; top-1/top-5/macro-F1"
    presets = {
        "tiny": {**_SequenceTask.COMMON_SEQ["tiny"], "filters": 8, "dense": 64},
        "full": {**_SequenceTask.COMMON_SEQ["full"], "filters": 48, "dense": 1024},
    }

    def inputs(self, version: Any, split: str, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Composite images ``(N, H, W, 3) float32`` in [0, 1]."""
        x, y, ids = self._skeleton_images(version, split, params, per_frame=False)
        return x.astype(np.float32) / 255.0, y, ids

    def _epoch_arrays(self, version: Any, split: str, params: Mapping[str, Any], seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        x, y, _ = self.inputs(version, split, params)
        return x, y

    def build_model(self, spec: Any, params: Mapping[str, Any], weights: str | None = None) -> keras.Model:
        """conv 11 (stride 4) -> pool -> conv 5 -> pool -> conv 3 x3 -> pool -> dense -> softmax (AlexNet's layout, scaled by ``filters``)."""
        import keras

        set_precision(bool(params["mixed_precision"]))
        w, h = spec.input_wh
        f = int(params["filters"])
        L = keras.layers
        model = keras.Sequential([
            keras.Input((h, w, 3), name="image"),
            L.Conv2D(f, 11, strides=4 if min(w, h) >= 128 else 2, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(2 * f, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(4 * f, 3, padding="same", activation="relu"), L.Conv2D(4 * f, 3, padding="same", activation="relu"),
            L.Conv2D(2 * f, 3, padding="same", activation="relu"), L.GlobalMaxPooling2D(),
            L.Dense(int(params["dense"]), activation="relu"), L.Dense(len(spec.classes), activation="softmax", dtype="float32"),
        ], name="skeleton_cnn")  # fmt: skip
        return self._compile_softmax(model, params)


# --------------------------------------------------------------------------- cross-validation


def fold_summary(per_fold: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and (population) std of top-1 and macro-F1 across folds, and the per-fold values.

    Example:
        >>> fold_summary({"a": {"top1": 0.5, "macro_f1": 0.4}, "b": {"top1": 1.0, "macro_f1": 0.8}})["top1"]
        {'mean': 0.75, 'std': 0.25}
    """
    out: dict[str, Any] = {"num_folds": len(per_fold), "folds": {k: {m: float(v[m]) for m in ("top1", "macro_f1")} for k, v in per_fold.items()}}
    for m in ("top1", "macro_f1"):
        values = np.array([float(v[m]) for v in per_fold.values()], np.float64)
        out[m] = {"mean": float(values.mean()) if len(values) else None, "std": float(values.std()) if len(values) else None}
    return out


def train_all_folds(request: Any, progress: Any = None) -> dict[str, Any]:
    """Train one registered model per fold of the dataset (``fold`` set per model) and write the summary.

    Folds the task refuses on this version (no test clips, one class) are listed under
    ``skipped_folds``, not trained. The summary (:func:`fold_summary` plus each fold's model version) is written atomically to
    ``{root}/models/{task}/_cv-{dataset}-{version}-{hash}.json``, the hash naming the request's
    params, preset, epochs and seed.

    Args:
        request: A :class:`tasks.training.train.TrainRequest` (its ``fold`` param, if any, is replaced).
        progress: Passed to :func:`tasks.training.train.train`.

    Returns:
        The summary, with ``"path"`` (the JSON file).

    Raises:
        ConfigError: The task is not a sequence task.
    """
    import dataclasses
    import json

    from storage.fs import filesystem, join
    from storage.layout import model_dir
    from storage.manifest import write_json
    from tasks.training.tasks import get_task
    from tasks.training.train import train

    task = get_task(request.task)
    if not isinstance(task, _SequenceTask):
        raise ConfigError(f"--all-folds needs a sequence task (action-gru, action-lstm, skeleton-cnn), not {request.task!r}")
    version = task.open_version(request.root, request.dataset, request.version)
    per_fold: dict[str, dict[str, Any]] = {}
    models: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for fold in fold_names(version):
        try:
            task.check_dataset(version, {"fold": fold})
        except TaskDataError as exc:  # e.g. a fold whose test side is empty in this version
            skipped[fold] = str(exc)
            continue
        result = train(dataclasses.replace(request, version=version.version, params={**dict(request.params), "fold": fold}), progress)
        per_fold[fold], models[fold] = result.metrics, result.model_version
    summary = {"task": request.task, "dataset": version.dataset, "dataset_version": version.version, **fold_summary(per_fold), "models": models, "skipped_folds": skipped}
    key = json.dumps({"params": {k: v for k, v in sorted(dict(request.params).items()) if k != "fold"}, "preset": request.preset,
                      "epochs": request.epochs, "seed": request.seed}, sort_keys=True)  # fmt: skip
    fs, rpath = filesystem(request.root)
    path = join(model_dir(rpath, request.task), f"_cv-{version.dataset}-{version.version}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.json")
    write_json(fs, path, summary)
    return {**summary, "path": path}

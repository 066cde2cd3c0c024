"""One training run: a validated dataset version in, a registered model with lineage out.

:func:`train` is the whole sequence (the CLI and the Prefect ``train`` flow only call it):

1. open the dataset version (:func:`storage.reader.open_version` refuses a missing, unvalidated or
   tampered version) and let the task check it has what it needs (:class:`TaskDataError`);
2. resolve the parameters and name the model: :func:`model_version` hashes the task, the dataset
   version and its manifest sha256, the resolved parameters, epochs, seed, the code version of
   ``tasks.training`` (its import closure) and the initial weights file's sha256. A registered model
   with that version is returned as it is, without training;
3. train in ``{root}/models/{task}/_staging/{model_version}`` with a checkpoint after every epoch
   (all model variables, the optimizer's state, the epoch and the history, in one file written
   atomically). Each epoch is one ``model.fit`` call on that epoch's own dataset
   (``make_dataset(..., epoch=e)``) with Keras' seeds reset from ``(seed, epoch)``, so a run resumed
   from the checkpoint of epoch ``e`` sees exactly the data and randomness an uninterrupted run sees
   and ends with the same weights. A NaN/inf loss stops the run at the step it happened
   (:class:`NonFiniteLossError`);
4. predict and evaluate on the eval split, write predictions, metrics, history, plots and
   ``lineage.json``, then ``_manifest.json`` (every file's sha256) last, and rename the staging folder
   to ``{root}/models/{task}/{model_version}`` in one step.

TensorFlow is imported inside the functions that need it: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import ConfigError, NonFiniteLossError, TrainingError
from storage.fs import atomic_local_path, file_sha256, filesystem, join
from storage.layout import MANIFEST, ModelPaths, model_dir
from storage.manifest import write_json
from tasks.fingerprint import module_closure
from tasks.training import registry
from tasks.training.registry import HISTORY, LINEAGE, METRICS, MODEL, PREDICTIONS, WEIGHTS

#: Progress callback: gets one dict per event (``event``: ``start``, ``epoch_start``, ``epoch``, ``done``).
Progress = Callable[[dict[str, Any]], None]

#: Modules whose code decides a model's bytes (their import closure is hashed into the version).
_TRAINING_CODE_ROOTS = ("tasks.training.train", "tasks.training.tasks", "tasks.training.models", "tasks.training.data", "tasks.training.plots")

CHECKPOINT_PREFIX = "epoch-"


@dataclass(frozen=True)
class TrainRequest:
    """What to train.

    Attributes:
        task: Training task name (``pose-heatmap``, ``flic-regression``, ``mpii-activity``, ``pose-mlp``).
        root: Storage root (local path).
        dataset: Dataset name.
        version: Dataset version; None for ``LATEST``.
        params: ``-p key=value`` overrides of the task's parameters (strings; the task types them).
        preset: The task's preset the overrides apply to (``tiny`` or ``full``).
        epochs: Number of epochs; None for the preset's.
        seed: Run seed (data order, augmentation, initialisation).
        weights: Initial weights file (``.h5``, e.g. ImageNet VGG16) or None.
    """

    task: str
    root: str
    dataset: str
    version: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    preset: str = "tiny"
    epochs: int | None = None
    seed: int = 0
    weights: str | None = None


@dataclass(frozen=True)
class TrainResult:
    """A registered model.

    Attributes:
        task: Task name.
        model_version: ``m-`` + 12 hex.
        dir: The model folder.
        reused: True when the model was already registered and nothing was trained.
        resumed_from_epoch: The last finished epoch a resumed run started from (None: from scratch).
        epochs_trained: Epochs this call ran (0 when reused).
        dataset: Dataset name.
        dataset_version: Dataset version.
        metrics: ``metrics.json``.
        history: Per-epoch records (``history.json``).
    """

    task: str
    model_version: str
    dir: str
    reused: bool
    resumed_from_epoch: int | None
    epochs_trained: int
    dataset: str
    dataset_version: str
    metrics: dict[str, Any]
    history: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the CLI's ``--json``, the flow's result)."""
        return asdict(self)


# --------------------------------------------------------------------------- naming


def _jsonable(obj: Any) -> Any:
    """Parameters as plain JSON (dataclasses as dicts, tuples as lists, numpy scalars as numbers)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    return str(obj)


@functools.lru_cache(maxsize=1)
def training_code_version() -> str:
    """sha256 (16 hex) of the source of every project module the training code imports.

    The import closure of :data:`_TRAINING_CODE_ROOTS` (:func:`tasks.fingerprint.module_closure`):
    a change in a task, a model, a loss, the input pipeline, a transform they use or this file names
    a new model version; modules training does not import (the champion gate) do not. Computed
    once per process, when training first needs it (the modules are imported by then): the code
    that runs, not files edited on disk afterwards.
    """
    h = hashlib.sha256()
    for name in module_closure(_TRAINING_CODE_ROOTS):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            continue
        h.update(name.encode() + b"\0" + Path(spec.origin).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def model_version(
    request: TrainRequest, version: Any, resolved_params: Mapping[str, Any], epochs: int | None = None, code_version: str | None = None,
    workers: int = 1,
) -> str:  # fmt: skip
    """Content hash naming a model, like a dataset version (``m-`` + 12 hex).

    Args:
        request: The request (task, seed, weights file).
        version: The opened :class:`storage.reader.DatasetVersion`.
        resolved_params: The task's typed parameters after overrides.
        epochs: Epochs trained (default: ``request.epochs`` or the params' ``epochs``).
        code_version: :func:`training_code_version` (computed when None).
        workers: Worker processes training it in lock-step (``TF_CONFIG``): part of the name when
            more than one, since per-replica batch statistics differ from one worker's.

    Returns:
        e.g. ``"m-3f2a9c0d1e4b"``. Equal inputs give the same id on every machine.
    """
    epochs = epochs if epochs is not None else _epochs(request, resolved_params)
    blob = {
        "task": request.task,
        "dataset": version.dataset,
        "dataset_version": version.version,
        "manifest_sha256": version.manifest_sha256,
        "params": _jsonable(dict(resolved_params)),
        "epochs": epochs,
        "seed": request.seed,
        "code": code_version or training_code_version(),
        "weights_sha256": file_sha256(request.weights) if request.weights else None,
    }
    if workers > 1:
        blob["workers"] = workers
    text = json.dumps(blob, sort_keys=True, separators=(",", ":"), default=str)
    return "m-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _epochs(request: TrainRequest, params: Mapping[str, Any]) -> int:
    epochs = request.epochs if request.epochs is not None else params.get("epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}", hint="pass --epochs N (N >= 1) or -p epochs=N")
    return epochs


# --------------------------------------------------------------------------- helpers


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _get_task(name: str) -> Any:
    from tasks.training.tasks import get_task

    task = get_task(name)
    return task() if isinstance(task, type) else task


def _strategy() -> Any:
    """The distribution strategy of :func:`tasks.training.tasks.strategy` (TF_CONFIG, GPUs, or default)."""
    from tasks.training.tasks import strategy

    return strategy()


def _augment_config(params: Mapping[str, Any]) -> Any:
    """The augmentation of a task's params: an ``AugmentConfig``, True (defaults) or False/None."""
    aug = params.get("augment")
    if aug is None or aug is False:
        return None
    from tasks.transforms.augment import AugmentConfig

    if isinstance(aug, AugmentConfig):
        return aug
    if isinstance(aug, Mapping):
        return AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
    return AugmentConfig()


def seed_everything(seed: int) -> None:
    """Python, numpy, TF and Keras seeds from ``seed``; deterministic TF ops.

    Called once per run, before the model is built. Not per epoch: changing TF's global seed makes
    ``tf.function`` retrace the train step (measured: 6-10 s per epoch instead of ~1 s). A resumed run
    still matches an uninterrupted one: Keras 3 draws its randomness from seed generators whose state
    is a model variable (checkpointed), and the input pipeline seeds each sample from
    ``(seed, epoch, sample_id)``.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed) % (2**31))
    with contextlib.suppress(Exception):  # already on
        tf.config.experimental.enable_op_determinism()


def _seed_host_rngs(seed: int, epoch: int) -> None:
    """Python's and numpy's global generators from ``(seed, epoch)`` at each epoch start (no TF retrace)."""
    import random

    state = np.random.SeedSequence([seed, epoch]).generate_state(1)[0]
    random.seed(int(state))
    np.random.seed(int(state))


def libraries() -> dict[str, str]:
    """Versions of the libraries a model depends on."""
    import h5py
    import keras
    import tensorflow as tf

    try:
        posepipe_version = importlib.metadata.version("posepipe")
    except importlib.metadata.PackageNotFoundError:
        posepipe_version = "unknown"
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__, "h5py": h5py.__version__, "posepipe": posepipe_version, "python": platform.python_version()}


def hardware() -> dict[str, Any]:
    """CPU count, visible GPUs and platform of this process."""
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            details = dict(tf.config.experimental.get_device_details(device))
        gpus.append({"name": device.name, **{k: str(v) for k, v in details.items()}})
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_count": os.cpu_count(), "cpus_usable": affinity, "gpus": gpus, "machine": platform.machine(), "system": platform.platform()}


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_path(paths: ModelPaths, epoch: int) -> str:
    return join(paths.checkpoints, f"{CHECKPOINT_PREFIX}{epoch:04d}.npz")


def latest_checkpoint(paths: ModelPaths) -> tuple[int, str] | None:
    """``(epoch, path)`` of the newest complete checkpoint in the staging folder, or None."""
    folder = Path(paths.checkpoints)
    if not folder.is_dir():
        return None
    found = []
    for p in folder.glob(f"{CHECKPOINT_PREFIX}*.npz"):
        with contextlib.suppress(ValueError):
            found.append((int(p.stem[len(CHECKPOINT_PREFIX) :]), str(p)))
    return max(found) if found else None


def save_checkpoint(path: str, model: Any, epoch: int, state: dict[str, Any]) -> None:
    """Every model variable (weights, batch-norm statistics, seed generators), the optimizer's
    variables (iterations, moments), the epoch and ``state`` (history, times) in one ``.npz``,
    written to a temporary name and renamed."""
    arrays = {f"model_{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    arrays.update({f"opt_{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)})
    meta = {"epoch": epoch, "model_paths": [v.path for v in model.variables], "optimizer_paths": [v.path for v in model.optimizer.variables], **state}
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=str).encode(), dtype=np.uint8)
    with atomic_local_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_checkpoint(path: str, model: Any) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote into ``model`` (compiled, same architecture).

    Returns:
        The checkpoint's metadata (``epoch``, ``history``, ``start_time_utc``...).

    Raises:
        TrainingError: The checkpoint does not fit the model (the code changed under the same
            staging folder, which the version hash makes impossible unless files were copied).
    """
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        model_arrays = [data[k] for k in sorted(k for k in data.files if k.startswith("model_"))]
        opt_arrays = [data[k] for k in sorted(k for k in data.files if k.startswith("opt_"))]
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    targets = [(list(model.variables), model_arrays, "model"), (list(model.optimizer.variables), opt_arrays, "optimizer")]
    for variables, arrays, what in targets:
        if len(variables) != len(arrays) or any(tuple(v.shape) != a.shape for v, a in zip(variables, arrays, strict=False)):
            raise TrainingError(
                f"checkpoint {path} does not fit the {what} ({len(arrays)} arrays for {len(variables)} variables)",
                hint=f"delete {Path(path).parent.parent} and train again",
            )
        for v, a in zip(variables, arrays, strict=True):
            v.assign(a)
    return meta


# --------------------------------------------------------------------------- callbacks


def _callbacks(epoch: int, steps_hint: int | None, progress: Progress | None) -> list[Any]:
    """The NaN guard and the per-epoch timer, as Keras callbacks (built lazily: Keras import)."""
    import keras

    class NonFiniteGuard(keras.callbacks.Callback):
        """Stops at the first batch whose running loss is NaN or infinite."""

        def __init__(self) -> None:
            super().__init__()
            self.steps = 0

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.steps = batch + 1
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise NonFiniteLossError(
                    f"the loss became {float(loss)} at epoch {epoch}, step {batch + 1}; nothing was registered",
                    hint="lower the learning rate (-p learning_rate=...), check the inputs, or use a smaller batch",
                    epoch=epoch,
                    step=batch + 1,
                )

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, _epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.t0 = time.perf_counter()
            if progress is not None:
                progress({"event": "epoch_start", "epoch": epoch, "steps": steps_hint})

        def on_epoch_end(self, _epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.seconds = time.perf_counter() - self.t0

    return [NonFiniteGuard(), EpochTimer()]


def _dataset_steps(ds: Any) -> int | None:
    import tensorflow as tf

    n = int(tf.data.experimental.cardinality(ds).numpy())
    return n if n >= 0 else None


# --------------------------------------------------------------------------- the run


@contextlib.contextmanager
def _staging_lock(paths: ModelPaths) -> Iterator[None]:
    """One trainer per model version at a time (an OS lock: released when its holder dies)."""
    from filelock import FileLock, Timeout

    os.makedirs(Path(paths.staging).parent, exist_ok=True)
    lock = FileLock(paths.staging + ".lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise TrainingError(
            f"another process is training {paths.task}@{paths.model_version} under {paths.root}",
            hint="wait for it to finish; the lock is released when that process exits",
        ) from None
    try:
        yield
    finally:
        lock.release()


def _reused(record: registry.ModelRecord, dataset: str, version: str) -> TrainResult:
    history = []
    with contextlib.suppress(Exception), open(record.file(HISTORY)) as fh:
        history = json.load(fh)
    leftover = join(record.dir, "checkpoints")  # a commit killed between rename and cleanup
    if os.path.isdir(leftover):
        shutil.rmtree(leftover, ignore_errors=True)
    return TrainResult(record.task, record.model_version, record.dir, True, None, 0, dataset, version, record.metrics, history)


def open_for_training(request: TrainRequest) -> tuple[Any, Any, dict[str, Any], int]:
    """Open and check the dataset version and resolve the parameters (no TensorFlow).

    Returns:
        ``(task, version, params, epochs)``.

    Raises:
        VersionNotFoundError, VersionNotValidatedError, ShardChecksumError: From the reader.
        TaskDataError: The dataset lacks what the task needs.
        ConfigError: Unknown task, parameter or preset.
    """

    task = _get_task(request.task)
    params = dict(task.params(dict(request.params), preset=request.preset))
    epochs = _epochs(request, params)
    if "epochs" in params:
        params["epochs"] = epochs
    version = task.open_version(request.root, request.dataset, request.version, pixels=True)
    task.check_dataset(version, params)
    if request.weights and not os.path.isfile(request.weights):
        raise ConfigError(f"--weights {request.weights} is not a file", hint="give a Keras .h5/.weights.h5 file; nothing is downloaded")
    return task, version, params, epochs


def train(request: TrainRequest, progress: Progress | None = None, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Train (or reuse, or resume) the model ``request`` names and register it.

    Args:
        request: What to train.
        progress: Called with ``{"event": "start" | "epoch_start" | "epoch" | "done", ...}``; an
            ``epoch`` event carries ``epoch``, ``epochs``, ``steps``, ``seconds``, ``steps_per_s``,
            ``loss`` and the compiled metrics.
        callbacks: Extra Keras callbacks for every epoch's ``fit`` (tests inject faults with them).

    Returns:
        The registered model.

    Raises:
        VersionNotValidatedError: The version's gate failed (nothing registered).
        TaskDataError: The dataset lacks what the task needs (nothing registered).
        NonFiniteLossError: The loss became NaN/inf; ``epoch`` and ``step`` (1-based) say where.
        TrainingError: Another process trains the same model.
    """
    fs, rpath = filesystem(request.root)
    from fsspec.implementations.local import LocalFileSystem

    if not isinstance(fs, LocalFileSystem):
        raise ConfigError(f"training writes checkpoints on local disk; {request.root} is not local", hint="train with a local --root and copy the model folder")
    from tasks.training.multiworker import cluster_from_env

    cluster = cluster_from_env()
    task, version, params, epochs = open_for_training(request)
    code = training_code_version()
    mv = model_version(request, version, params, epochs, code, workers=cluster.num_workers)
    existing = registry.find_model(request.root, request.task, mv)
    if existing is not None:
        if progress:
            progress({"event": "reused", "model_version": mv, "dir": existing.dir})
        return _reused(existing, version.dataset, version.version)
    paths = ModelPaths(rpath, request.task, mv)
    if not cluster.is_chief:  # trains in lock-step with the chief; writes only to a scratch folder
        with tempfile.TemporaryDirectory(prefix=f"posepipe-worker{cluster.task_index}-") as scratch:
            return _train_in_staging(request, task, version, params, epochs, code, mv, ModelPaths(scratch, request.task, mv), progress, callbacks, resume_from=paths)
    with _staging_lock(paths):
        existing = registry.find_model(request.root, request.task, mv)  # finished while we waited
        if existing is not None:
            return _reused(existing, version.dataset, version.version)
        if os.path.exists(join(paths.staging, MANIFEST)):  # killed between manifest and rename
            return _commit(paths, request, version, _read_staged_metrics(paths), _read_staged_history(paths), None, 0)
        return _train_in_staging(request, task, version, params, epochs, code, mv, paths, progress, callbacks)


def _read_staged_metrics(paths: ModelPaths) -> dict[str, Any]:
    with open(join(paths.staging, METRICS)) as fh:
        return json.load(fh)


def _read_staged_history(paths: ModelPaths) -> list[dict[str, Any]]:
    with open(join(paths.staging, HISTORY)) as fh:
        return json.load(fh)


def _train_in_staging(
    request: TrainRequest, task: Any, version: Any, params: dict[str, Any], epochs: int, code: str, mv: str,
    paths: ModelPaths, progress: Progress | None, extra_callbacks: Sequence[Any], resume_from: ModelPaths | None = None,
) -> TrainResult:  # fmt: skip
    """Train into ``paths.staging`` and commit; a non-chief worker (``resume_from`` = the chief's
    paths, ``paths`` a scratch folder) resumes from the chief's checkpoint, trains and returns
    without evaluating or committing."""
    from tasks.training.multiworker import keras_fit_fixes

    chief = resume_from is None

    os.makedirs(paths.checkpoints, exist_ok=True)
    train_split, eval_split = task.splits(version, params)
    spec = task.target_spec(version, params)
    strategy = _strategy()  # first: a multi-worker strategy must exist before other TensorFlow ops
    workers = int(getattr(strategy.extended, "_num_workers", 1))  # MultiWorkerMirroredStrategy's cluster size
    multi_worker = workers > 1
    seed_everything(request.seed)
    with strategy.scope():
        model = task.build_model(spec, params, weights=request.weights)
    resumed = latest_checkpoint(resume_from or paths)
    history: list[dict[str, Any]] = []
    start_time = _utc_now()
    resumes: list[dict[str, Any]] = []
    first_epoch = 1
    if resumed is not None:
        with strategy.scope():
            meta = load_checkpoint(resumed[1], model)
        history = list(meta.get("history", []))
        start_time = meta.get("start_time_utc", start_time)
        resumes = [*meta.get("resumes", []), {"from_epoch": resumed[0], "at_utc": _utc_now()}]
        first_epoch = resumed[0] + 1
    if progress:
        progress({"event": "start", "task": request.task, "model_version": mv, "dataset": version.dataset, "dataset_version": version.version,
                  "epochs": epochs, "first_epoch": first_epoch, "resumed_from_epoch": resumed[0] if resumed else None})  # fmt: skip
    batch_size = int(params.get("batch_size", 32))
    augment = _augment_config(params)
    plan = task.plan_dataset(version, train_split, spec)  # records read once
    for epoch in range(first_epoch, epochs + 1):
        _seed_host_rngs(request.seed, epoch)
        ds = task.make_dataset(version, train_split, spec, batch_size=batch_size, seed=request.seed, epoch=epoch, augment=augment, shuffle=True, plan=plan)
        cbs = _callbacks(epoch, _dataset_steps(ds), progress)
        with keras_fit_fixes(model, strategy, next(iter(ds))) if multi_worker else contextlib.nullcontext():
            fit = model.fit(ds, epochs=1, verbose=0, callbacks=[*cbs, *extra_callbacks])
        guard, timer = cbs
        seconds = float(getattr(timer, "seconds", 0.0))
        record: dict[str, Any] = {"epoch": epoch, "steps": guard.steps, "seconds": round(seconds, 3),
                                  "steps_per_s": round(guard.steps / seconds, 3) if seconds > 0 else None}  # fmt: skip
        record.update({k: float(v[-1]) for k, v in fit.history.items()})
        history.append(record)
        save_checkpoint(_checkpoint_path(paths, epoch), model, epoch, {"history": history, "start_time_utc": start_time, "resumes": resumes})
        for old in Path(paths.checkpoints).glob(f"{CHECKPOINT_PREFIX}*.npz"):  # keep the newest only
            if old.name != Path(_checkpoint_path(paths, epoch)).name:
                old.unlink(missing_ok=True)
        if progress:
            progress({"event": "epoch", "epochs": epochs, **record})
    if not chief:
        return TrainResult(request.task, mv, resume_from.dir, False, resumed[0] if resumed else None, epochs - first_epoch + 1, version.dataset, version.version, {}, history)
    if multi_worker:  # evaluate and save a one-device copy: the distributed model's predict needs every worker
        trained_model = model
        model = task.build_model(spec, params, weights=None)
        model.set_weights(trained_model.get_weights())
    # the registered artefacts, all inside staging
    staged = paths.staging
    model.save_weights(join(staged, WEIGHTS))
    model_file_error = None
    try:
        model.save(join(staged, MODEL))
    except Exception as exc:  # noqa: BLE001 - recorded in the lineage; the weights file is the model of record
        model_file_error = f"{type(exc).__name__}: {exc}"
    predictions = task.predict(model, version, eval_split, spec, params)
    task.save_extra(model, staged)  # files of a head fitted outside Keras (action-gru's logreg.npz)
    _write_parquet(join(staged, PREDICTIONS), predictions)
    metrics = _relative_paths(_jsonable(task.evaluate(predictions, version, eval_split, params, staged)), staged)
    fs, _ = filesystem(staged)
    write_json(fs, join(staged, METRICS), metrics)
    write_json(fs, join(staged, HISTORY), history)
    plots_dir = join(staged, "plots")
    os.makedirs(plots_dir, exist_ok=True)
    plot_files = task.plots(predictions, version, eval_split, history, plots_dir)
    lineage = {
        "task": request.task,
        "model_version": mv,
        "dataset": {
            "name": version.dataset,
            "version": version.version,
            "manifest_sha256": version.manifest_sha256,
            "validation": version.manifest.get("validation", {}),
            "counts": version.manifest.get("counts", {}),
            "skeleton": version.skeleton,
            "train_split": train_split,
            "eval_split": eval_split,
        },
        "code_version": code,
        "params": _jsonable(params),
        "preset": request.preset,
        "overrides": dict(request.params),
        "epochs": epochs,
        "seed": request.seed,
        "batch_size": batch_size,
        "target_spec": _jsonable(spec),
        "skeleton": getattr(spec, "convert_to", None) or version.skeleton,
        "weights": {"path": str(request.weights), "sha256": file_sha256(request.weights)} if request.weights else None,
        "parent_model": _parent_model(request),
        "strategy": type(strategy).__name__,
        "workers": workers,
        "replicas": int(getattr(strategy, "num_replicas_in_sync", 1)),
        "libraries": libraries(),
        "hardware": hardware(),
        "start_time_utc": start_time,
        "end_time_utc": _utc_now(),
        "resumes": resumes,
        "model_file": MODEL if model_file_error is None else None,
        "model_file_error": model_file_error,
        "plots": [os.path.relpath(p, staged) for p in plot_files or []],
    }
    write_json(fs, join(staged, LINEAGE), lineage)
    return _commit(paths, request, version, metrics, history, resumed[0] if resumed else None, epochs - first_epoch + 1)


def _relative_paths(obj: Any, folder: str) -> Any:
    """File paths inside ``folder`` (the staging folder) made relative to it: they stay right after the rename."""
    prefix = folder.rstrip("/") + "/"
    if isinstance(obj, dict):
        return {k: _relative_paths(v, folder) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative_paths(v, folder) for v in obj]
    if isinstance(obj, str) and obj.startswith(prefix):
        return obj[len(prefix) :]
    return obj


def _parent_model(request: TrainRequest) -> dict[str, str] | None:
    """The registered model the initial weights came from (a file inside a model folder), if any."""
    if not request.weights:
        return None
    weights = Path(request.weights).resolve()
    models_root = Path(model_dir(filesystem(request.root)[1], "x")).parent.resolve()
    try:
        rel = weights.relative_to(models_root)
    except ValueError:
        return None
    if len(rel.parts) >= 3 and registry.find_model(request.root, rel.parts[0], rel.parts[1]) is not None:
        return {"task": rel.parts[0], "model_version": rel.parts[1]}
    return None


def _write_parquet(path: str, table: Any) -> None:
    import pyarrow.parquet as pq

    with atomic_local_path(path) as tmp:
        pq.write_table(table, tmp)


def _commit(paths: ModelPaths, request: TrainRequest, version: Any, metrics: dict[str, Any], history: list[dict[str, Any]], resumed: int | None, trained: int) -> TrainResult:
    """``_manifest.json`` last (every file's sha256), then one rename staging → model folder."""
    staged = Path(paths.staging)
    fs, _ = filesystem(str(staged))
    manifest_path = staged / MANIFEST
    if not manifest_path.exists():
        files = {
            str(p.relative_to(staged)): file_sha256(p)
            for p in sorted(staged.rglob("*"))
            if p.is_file() and p.relative_to(staged).parts[0] != "checkpoints" and not p.name.startswith(".")
        }
        write_json(fs, str(manifest_path), {"task": request.task, "model_version": paths.model_version, "files": files,
                                             "dataset": version.dataset, "dataset_version": version.version})  # fmt: skip
    final = Path(paths.dir)
    os.replace(staged, final)  # one step: the registry sees all of it or nothing
    shutil.rmtree(final / "checkpoints", ignore_errors=True)
    return TrainResult(request.task, paths.model_version, str(final), False, resumed, trained, version.dataset, version.version, metrics, history)


# --------------------------------------------------------------------------- using a registered model


def target_spec_from_lineage(lineage: Mapping[str, Any]) -> Any:
    """The :class:`tasks.training.data.TargetSpec` a model was trained with (tuples restored)."""
    from tasks.training.data import TargetSpec

    stored = dict(lineage["target_spec"])
    names = {f.name for f in fields(TargetSpec)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in names}
    return TargetSpec(**kwargs)


def load_registered_model(record: registry.ModelRecord) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Rebuild a registered model from its task, target spec and params, and load its weights.

    Returns:
        ``(task, keras model, target spec, params)``.
    """
    task = _get_task(record.task)
    spec = target_spec_from_lineage(record.lineage)
    params = dict(record.lineage.get("params", {}))
    seed_everything(int(record.lineage.get("seed", 0)))
    with _strategy().scope():
        model = task.build_model(spec, params, weights=None)
    model.load_weights(record.file(WEIGHTS))
    task.load_extra(model, record.dir)
    return task, model, spec, params


def evaluate_registered(root: str, ref: str, dataset_ref: str | None = None, out_dir: str | None = None) -> dict[str, Any]:
    """Metrics of a registered model: recomputed from its stored predictions, or on another version.

    Args:
        root: Storage root.
        ref: ``TASK`` or ``TASK@MODEL_VERSION``.
        dataset_ref: ``NAME@VERSION`` (or ``NAME`` for LATEST) to predict on and evaluate (its eval
            split); None recomputes the metrics from ``predictions.parquet`` on the model's own version.
        out_dir: Where evaluation files (COCO results JSON, PCKh file...) go; a temporary folder
            when None.

    Returns:
        ``{"model", "dataset", "dataset_version", "split", "metrics", "stored_metrics", "source"}``.
    """
    import pyarrow.parquet as pq

    from storage.reader import parse_dataset_ref

    record = registry.resolve(root, ref)
    lineage = record.lineage
    with contextlib.ExitStack() as stack:
        if out_dir is None:
            out_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="posepipe-eval-"))
        os.makedirs(out_dir, exist_ok=True)
        if dataset_ref is None:
            task = _get_task(record.task)
            params = dict(lineage.get("params", {}))
            ds = lineage["dataset"]
            version = task.open_version(root, ds["name"], ds["version"])
            split = ds["eval_split"]
            predictions = pq.read_table(record.file(PREDICTIONS))
            source = "stored predictions"
        else:
            name, version_id = parse_dataset_ref(dataset_ref)
            task, model, spec, params = load_registered_model(record)
            version = task.open_version(root, name, version_id)
            task.check_dataset(version, params)
            split = task.splits(version, params)[1]
            predictions = task.predict(model, version, split, spec, params)
            source = "predicted now"
        metrics = _relative_paths(_jsonable(task.evaluate(predictions, version, split, params, out_dir)), out_dir)
    return {"model": record.ref, "dataset": version.dataset, "dataset_version": version.version, "split": split,
            "metrics": metrics, "stored_metrics": record.metrics, "source": source}  # fmt: skip


def fit_image_to_input(image_bgr: np.ndarray, input_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop an image to the model input's aspect ratio and resize it (a whole-image "crop").

    Args:
        image_bgr: ``(H, W, 3) uint8`` BGR image.
        input_wh: Network input ``(width, height)``.

    Returns:
        ``x`` ``(h_in, w_in, 3) float32`` RGB 0..255 and the ``(2, 3)`` affine from input pixels back
        to image pixels (pixel centres).
    """
    import cv2

    h, w = image_bgr.shape[:2]
    w_in, h_in = input_wh
    aspect = w_in / h_in
    if w / h > aspect:  # too wide: keep the full height
        cw, ch = h * aspect, float(h)
    else:
        cw, ch = float(w), w / aspect
    x0, y0 = (w - cw) / 2.0, (h - ch) / 2.0
    sx, sy = cw / w_in, ch / h_in
    # input pixel centre u -> image x = x0 + (u + 0.5) * sx - 0.5
    back = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]], dtype=np.float64)
    forward = cv2.invertAffineTransform(back)
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    x = cv2.warpAffine(rgb, forward, (w_in, h_in), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return x.astype(np.float32), back


def decode_pose_output(spec: Any, raw: np.ndarray, num_joints: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw pose-model outputs → joints in input pixels and a confidence per joint.

    Args:
        spec: The model's target spec (``kind`` heatmaps or coords).
        raw: ``(N, h, w, >=J)`` heatmaps or ``(N, J, >=2)`` / ``(N, 2J)`` normalised coordinates.
        num_joints: J.

    Returns:
        ``(N, J, 2) float32`` input pixels and ``(N, J) float32`` confidence (1 for coordinates).
    """
    from tasks.transforms.heatmaps import decode_heatmaps, heatmap_to_input_px

    raw = np.asarray(raw, dtype=np.float32)
    if spec.kind == "heatmaps":
        xy, conf = decode_heatmaps(raw[..., :num_joints], sigma=float(spec.sigma))
        return heatmap_to_input_px(xy, int(spec.stride)), conf
    if spec.kind == "coords":
        w_in, h_in = spec.input_wh
        xy = raw.reshape(raw.shape[0], num_joints, -1)[..., :2] * np.array([w_in, h_in], np.float32)
        return xy.astype(np.float32), np.ones(xy.shape[:2], np.float32)
    raise ConfigError(f"a {spec.kind!r} model predicts classes, not keypoints", hint="`posepipe predict` draws pose models (pose-heatmap, flic-regression)")


def predict_images(root: str, ref: str, images: Sequence[Path], out_dir: Path, batch_size: int = 8, min_confidence: float = 0.1) -> list[Path]:
    """Predict keypoints on whole images with a registered pose model and draw them.

    Writes ``{out_dir}/{image stem}.png`` (joints with confidence below ``min_confidence`` are left
    out) and ``{out_dir}/predictions.json`` (per image: joints in image pixels and their confidence).

    Returns:
        The files written.
    """
    import cv2

    from schemas.skeletons import get_skeleton
    from tasks.transforms.draw import draw_skeleton

    record = registry.resolve(root, ref)
    kind = record.lineage.get("target_spec", {}).get("kind")
    if kind not in ("heatmaps", "coords"):
        raise ConfigError(f"{record.ref} is a {kind!r} model: it predicts classes, not keypoints", hint="`posepipe predict` draws pose models (pose-heatmap, flic-regression)")
    task, model, spec, params = load_registered_model(record)
    skeleton = get_skeleton(record.lineage["skeleton"])
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    results = []
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        loaded = []
        for p in chunk:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise ConfigError(f"cannot read image {p}", hint="give JPEG/PNG files")
            loaded.append(img)
        fitted = [fit_image_to_input(img, tuple(spec.input_wh)) for img in loaded]
        x = np.stack([f[0] for f in fitted])
        raw = np.asarray(model.predict_on_batch(x), dtype=np.float32)
        if hasattr(task, "_decode"):  # the task's own decoding (DARK or quarter offset, as trained)
            xy_in, conf = task._decode(raw, spec, params)
        else:
            xy_in, conf = decode_pose_output(spec, raw, skeleton.num_joints)
        for p, img, (_, back), kp, c in zip(chunk, loaded, fitted, xy_in, conf, strict=True):
            kp_img = kp @ back[:, :2].T + back[:, 2]
            vis = np.where(c >= min_confidence, 2, 0).astype(np.int8)
            scale = max(1.0, max(img.shape[:2]) / 400.0)
            drawn = draw_skeleton(img, kp_img, vis, skeleton, thickness_px=max(1, round(2 * scale)))
            target = out_dir / f"{p.stem}.png"
            cv2.imwrite(str(target), drawn)
            written.append(target)
            results.append({"image": str(p), "keypoints_xy_px": kp_img.round(2).tolist(), "confidence": c.round(4).tolist()})
    summary = out_dir / "predictions.json"
    summary.write_text(json.dumps({"model": record.ref, "skeleton": skeleton.name, "images": results}, indent=2))
    return [*written, summary]

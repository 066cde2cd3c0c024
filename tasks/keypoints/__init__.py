"""Keypoint extractor backends and the registry that creates them.

``load_backend("tf-openpose", model_path=None, **options)`` returns a
:class:`tasks.keypoints.api.PoseEstimator`. Importing this package imports neither TensorFlow nor a
model: each backend module is imported when a backend is created (in extraction workers).

Options common to the OpenPose backends:

- ``model``: registry entry (:data:`tasks.keypoints.models.MODELS`); default per backend.
- ``input_wh``: network input (width, height); default: the model's training size.
- any field of :class:`tasks.keypoints.paf.DecodeParams` (``upsample``, ``peak_threshold``, ...).

``tf-openpose`` also takes ``intra_op_threads``, ``inter_op_threads``, ``interpolation``,
``per_sample_norm`` (default True: training-mode batch norms rewritten per sample so the graph
batches exactly), ``graph_cache_dir`` and ``batch_invariant`` (skip the probe);
``opencv-openpose`` takes ``config_path`` (the prototxt), ``threads`` and ``batch_invariant``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from schemas.errors import ConfigError
from tasks.keypoints.api import FramePoses, PoseEstimator, RawOutput
from tasks.keypoints.models import DEFAULT_MODEL, MODELS, ModelEntry, get_model, locate_file
from tasks.keypoints.paf import DecodeParams

__all__ = ["BACKENDS", "FramePoses", "PoseEstimator", "RawOutput", "load_backend", "MODELS", "get_model", "expected_graph_revision"]


def expected_graph_revision(backend: str, options: dict[str, Any]) -> str:
    """The ``graph_revision`` a backend created with ``options`` runs (part of every extraction key).

    Computed without loading the backend (the orchestrator has no TensorFlow): ``tf-openpose``
    rewrites training-mode batch norms per sample unless ``per_sample_norm=False``.
    """
    if backend == "tf-openpose" and options.get("per_sample_norm", True) not in (False, "false", "False", 0, "0"):
        from tasks.keypoints.tf_openpose import PER_SAMPLE_NORM

        return PER_SAMPLE_NORM
    return ""

_DECODE_FIELDS = {f.name for f in dataclasses.fields(DecodeParams)}


def _split_options(options: dict[str, Any]) -> tuple[DecodeParams, dict[str, Any]]:
    decode = {k: options.pop(k) for k in list(options) if k in _DECODE_FIELDS}
    return DecodeParams(**decode), options


def _check_options(cls: type, backend: str, options: dict[str, Any]) -> None:
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "entry", "model_path", "decode_params"}
    allowed -= {"weights_path", "config_path"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown option(s) for {backend}: {', '.join(unknown)}",
            hint=f"allowed: model, {', '.join(sorted(allowed | _DECODE_FIELDS))}",
        )


def _entry_for(backend: str, options: dict[str, Any]) -> ModelEntry:
    entry = get_model(options.pop("model", None) or DEFAULT_MODEL[backend])
    if entry.backend != backend:
        raise ConfigError(
            f"model {entry.name!r} runs on backend {entry.backend!r}, not {backend!r}",
            hint=f"models for {backend}: {', '.join(n for n, e in MODELS.items() if e.backend == backend)}",
        )
    return entry


def _backend_class(backend: str) -> type:
    """The backend's class, imported by name only now (in the worker that creates it).

    Imported through :mod:`importlib` on purpose: a static import, even inside a function, would make
    every module that imports this registry (flows, the extraction planner) depend on TensorFlow in
    the import graph that import-linter checks.
    """
    module_name, _, class_name = _BACKEND_CLASSES[backend].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


_BACKEND_CLASSES = {
    "tf-openpose": "tasks.keypoints.tf_openpose:TfOpenPose",
    "opencv-openpose": "tasks.keypoints.opencv_openpose:OpenCvOpenPose",
}


def _load_tf_openpose(model_path: str | None, **options: Any) -> PoseEstimator:
    TfOpenPose = _backend_class("tf-openpose")  # noqa: N806 - a class

    entry = _entry_for("tf-openpose", options)
    params, rest = _split_options(options)
    path = locate_file(entry, entry.filename, entry.url, model_path)
    _check_options(TfOpenPose, "tf-openpose", rest)
    return TfOpenPose(entry, path, decode_params=params, **rest)


def _load_opencv_openpose(model_path: str | None, **options: Any) -> PoseEstimator:
    OpenCvOpenPose = _backend_class("opencv-openpose")  # noqa: N806 - a class

    entry = _entry_for("opencv-openpose", options)
    params, rest = _split_options(options)
    weights = locate_file(entry, entry.filename, entry.url, model_path)
    config = locate_file(entry, entry.config_filename or "", entry.config_url, rest.pop("config_path", None))
    _check_options(OpenCvOpenPose, "opencv-openpose", rest)
    return OpenCvOpenPose(entry, weights, config, decode_params=params, **rest)


#: Backend name -> factory ``(model_path, **options) -> PoseEstimator``.
BACKENDS: dict[str, Callable[..., PoseEstimator]] = {
    "tf-openpose": _load_tf_openpose,
    "opencv-openpose": _load_opencv_openpose,
}


def load_backend(name: str, model_path: str | None = None, **options: Any) -> PoseEstimator:
    """Create the keypoint backend ``name``.

    Args:
        name: ``tf-openpose`` or ``opencv-openpose``.
        model_path: Model file (``--model PATH``); default: looked up by the registry entry's file
            name in ``$POSEPIPE_MODEL_DIR`` and ``~/.cache/posepipe/models``.
        **options: See the module docstring.

    Returns:
        A ready :class:`PoseEstimator` (network loaded; batch invariance measured).

    Raises:
        ConfigError: Unknown backend, model or option.
        ModelError: Model file missing, unreadable or not the expected network.
    """
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown keypoint backend {name!r}", hint=f"known: {', '.join(sorted(BACKENDS))}") from None
    return factory(None if model_path is None else str(model_path), **dict(options))

"""Multi-worker training with ``TF_CONFIG`` (``tf.distribute.MultiWorkerMirroredStrategy``).

Every worker runs the same ``posepipe train ...`` command with its own ``TF_CONFIG``::

    TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
                "task": {"type": "worker", "index": 0}}' posepipe train pose-heatmap --dataset coco ...

Worker 0 (or the ``chief`` task, when the cluster names one) is the chief: it alone takes the
staging lock, writes checkpoints, evaluates and commits the model to the registry. The others train
in lock-step (gradients are all-reduced every step), write their checkpoints to a scratch folder that
is thrown away, and register nothing. All workers resume from the chief's newest checkpoint, so a
restarted cluster continues where it stopped. The root must be the same storage for every worker (a
shared filesystem), as for datasets.

Keras 3 (3.15 here, with TensorFlow 2.21) cannot ``fit`` under this strategy as shipped
(keras-team/keras#20585, tensorflow/tensorflow#72388): ``fit`` builds the model from its first
distributed batch by reducing it eagerly, which fails, and reduces every replica's scalar logs with
``axis=0``, which scalars do not have. :func:`keras_fit_fixes` works around both for one ``fit``:
the model is built from a local batch first, and scalar logs are averaged with ``axis=None``. Training
itself (``train_step``, the optimizer's all-reduce) is Keras' own.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.errors import ConfigError


@dataclass(frozen=True)
class Cluster:
    """This process's place in a ``TF_CONFIG`` cluster.

    Attributes:
        num_workers: Worker processes (chief included) taking part in training; 1 without TF_CONFIG.
        task_type: ``worker`` or ``chief`` (None without TF_CONFIG).
        task_index: Index within ``task_type``.
        has_chief_task: The cluster names a ``chief`` task (then no worker is the chief).
    """

    num_workers: int = 1
    task_type: str | None = None
    task_index: int = 0
    has_chief_task: bool = False

    @property
    def is_chief(self) -> bool:
        """Whether this process writes checkpoints and the registered model."""
        if self.task_type == "chief":
            return True
        return self.task_type in (None, "worker") and self.task_index == 0 and not self.has_chief_task

    @property
    def distributed(self) -> bool:
        return self.num_workers > 1


def cluster_from_env(env: Mapping[str, str] | None = None) -> Cluster:
    """Parse ``TF_CONFIG`` (no TensorFlow import).

    Example:
        ``{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}`` gives
        ``Cluster(num_workers=2, task_type="worker", task_index=1)`` (not the chief).

    Raises:
        ConfigError: TF_CONFIG is not the JSON TensorFlow documents.
    """
    raw = (env if env is not None else os.environ).get("TF_CONFIG", "").strip()
    if not raw:
        return Cluster()
    try:
        cfg = json.loads(raw)
        cluster = dict(cfg.get("cluster") or {})
        task = dict(cfg.get("task") or {})
        task_type = str(task["type"])
        task_index = int(task.get("index", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"TF_CONFIG is not valid: {exc}", hint='e.g. {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}') from exc
    workers = len(cluster.get("worker") or []) + len(cluster.get("chief") or [])
    if task_type not in ("worker", "chief"):
        raise ConfigError(f"TF_CONFIG task type {task_type!r} cannot train here", hint="use type worker (or chief) for MultiWorkerMirroredStrategy")
    members = cluster.get(task_type) or []
    if not 0 <= task_index < len(members):
        raise ConfigError(f"TF_CONFIG task index {task_index} is not in cluster {task_type} list of {len(members)}", hint="index counts from 0")
    return Cluster(max(1, workers), task_type, task_index, bool(cluster.get("chief")))


@contextlib.contextmanager
def keras_fit_fixes(model: Any, strategy: Any, sample_batch: Any) -> Iterator[None]:
    """Make ``model.fit`` work under ``MultiWorkerMirroredStrategy`` for the duration (module docstring).

    Args:
        model: A compiled Keras model created in ``strategy.scope()``.
        strategy: The multi-worker strategy.
        sample_batch: One local (not distributed) batch ``(x, y[, sample_weight])`` of the
            training data, used only for its shapes and dtypes.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if not getattr(model, "_posepipe_built_for_mwms", False):
        with strategy.scope():
            model._symbolic_build(data_batch=sample_batch)
        model._posepipe_built_for_mwms = True
    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strat: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strat):

            def _mean(v: Any) -> Any:
                if not tf_trainer._is_per_replica_instance(v):
                    return v
                rank = v.values[0].shape.rank if hasattr(v, "values") else None
                return strat.reduce("MEAN", v, axis=None if not rank else 0)

            return tf.nest.map_structure(_mean, values)
        return original_reduce(values, strat, reduction)

    def _no_symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        return None  # built above from a local batch

    had_own = "_maybe_symbolic_build" in vars(model)
    model._maybe_symbolic_build = _no_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original_reduce
        if not had_own:
            del model._maybe_symbolic_build

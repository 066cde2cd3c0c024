"""The keypoint-extractor contract shared by the extraction pipeline and the backends.

A backend turns BGR frames into people. It is split in two steps so the pipeline can overlap them:
``infer`` (the network; may hold a lock or a session, runs on one thread) and ``group`` (pure numpy
post-processing of one frame's raw output, safe to run on another thread).

Backends are created with :func:`tasks.keypoints.load_backend` (registry in ``tasks/keypoints``);
TensorFlow, where a backend needs it, is imported inside that backend's module only.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.errors import ConfigError

MAX_BATCH_LIMIT = 1024
"""The largest batch a batch-invariant backend accepts in one :meth:`PoseEstimator.infer` call."""

INTRA_OP_ENV = "POSEPIPE_INTRA_OP_THREADS"
INTER_OP_ENV = "POSEPIPE_INTER_OP_THREADS"


def inference_threads() -> tuple[int | None, int | None]:
    """The (intra-op, inter-op) thread counts a backend should use when its options name none.

    From ``POSEPIPE_INTRA_OP_THREADS`` / ``POSEPIPE_INTER_OP_THREADS``: posepipe's LocalClusters set
    them in each worker to that worker's share of the cores (``cores // workers``, and 1), so that
    two TensorFlow workers do not each start a pool the size of the machine and oversubscribe it.
    Unset (None): the library's default.

    Raises:
        ConfigError: A value that is not a positive integer.
    """
    out: list[int | None] = []
    for name in (INTRA_OP_ENV, INTER_OP_ENV):
        raw = os.environ.get(name, "").strip()
        if not raw:
            out.append(None)
            continue
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{name}={raw!r} is not a positive integer")
        out.append(int(raw))
    return out[0], out[1]


@dataclass(frozen=True)
class FramePoses:
    """People found in one frame.

    Attributes:
        keypoints: ``(P, J, 3) float32`` x, y (original image pixels) and score per joint; joints
            not found are ``(nan, nan, 0)``.
        person_scores: ``(P,) float32`` one score per person.
    """

    keypoints: np.ndarray
    person_scores: np.ndarray

    @property
    def num_people(self) -> int:
        """P."""
        return int(self.keypoints.shape[0])


@dataclass(frozen=True)
class RawOutput:
    """A network's output for one frame, before grouping.

    Attributes:
        heatmaps: ``(h, w, K) float32`` part confidence maps at network resolution.
        pafs: ``(h, w, 2L) float32`` part affinity fields (x, y interleaved per limb).
        image_hw: Original frame (height, width) in pixels.
        input_hw: Network input (height, width) the frame was resized to.
    """

    heatmaps: np.ndarray
    pafs: np.ndarray
    image_hw: tuple[int, int]
    input_hw: tuple[int, int]


class PoseEstimator(ABC):
    """A multi-person pose backend.

    Attributes:
        name: Backend name (``tf-openpose``, ``opencv-openpose``).
        skeleton: Skeleton name of the output joints (``openpose18``...).
        model_sha256: sha256 of the model file(s): part of every resume key and output row.
        batch_invariant: True only if a frame's output does not depend on the other frames in its
            batch (checked per model; see :meth:`max_batch`).
    """

    name: str
    skeleton: str
    model_sha256: str
    batch_invariant: bool = False
    graph_revision: str = ""
    batch_dependent_nodes: tuple[str, ...] = ()

    @property
    def max_batch(self) -> int:
        """The batch the pipeline sends by default: 1 unless the model is batch-invariant."""
        return 8 if self.batch_invariant else 1

    @property
    def batch_limit(self) -> int:
        """The largest batch :meth:`infer` accepts: 1 unless the model is batch-invariant."""
        return MAX_BATCH_LIMIT if self.batch_invariant else 1

    def choose_batch(self, requested: int | None = None) -> int:
        """The batch to send: ``requested`` if this model allows it, else :attr:`max_batch`.

        Args:
            requested: A user's ``--batch N`` (None: the default).

        Raises:
            ConfigError: ``requested`` < 1, above :attr:`batch_limit`, or > 1 for a model whose
                outputs depend on the batch (the message names the nodes that do, when known).
        """
        if requested is None:
            return self.max_batch
        n = int(requested)
        if n < 1:
            raise ConfigError(f"batch must be >= 1, got {n}")
        if n > 1 and not self.batch_invariant:
            nodes = self.batch_dependent_nodes
            why = (
                f": {len(nodes)} node(s) normalise with the statistics of the whole batch, e.g. {', '.join(nodes[:3])}"
                if nodes
                else ": the batch-invariance probe measured different outputs for the same frame in a batch"
            )
            raise ConfigError(f"{self.name} cannot run batch {n}, its outputs depend on the batch{why}", hint="use --batch 1")
        if n > self.batch_limit:
            raise ConfigError(f"batch {n} is above {self.name}'s limit of {self.batch_limit}")
        return n

    @abstractmethod
    def infer(self, frames_bgr: Sequence[np.ndarray]) -> list[RawOutput]:
        """Run the network on ``len(frames_bgr) <= max_batch`` frames, each ``(H, W, 3) uint8`` BGR."""

    @abstractmethod
    def group(self, raw: RawOutput) -> FramePoses:
        """Decode one frame's raw output into people (peaks, PAF scoring, matching, assembly)."""

    def predict(self, frames_bgr: Sequence[np.ndarray], batch: int | None = None) -> list[FramePoses]:
        """``infer`` then ``group`` each frame, in chunks of ``batch`` (default :attr:`max_batch`)."""
        out: list[FramePoses] = []
        step = self.choose_batch(batch)
        for i in range(0, len(frames_bgr), step):
            out.extend(self.group(r) for r in self.infer(frames_bgr[i : i + step]))
        return out

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions or threads (optional)."""

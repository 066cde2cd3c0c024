"""Backend ``tf-openpose``: tf-pose-estimation's OpenPose-style frozen TF1 graphs, run in TensorFlow 2.

The only module of posepipe that imports TensorFlow (inside functions: importing this module is
cheap; TF is loaded when a backend is created, i.e. in extraction workers only).

The frozen GraphDef is imported with ``tf.compat.v1.wrap_function(import_graph_def)`` and pruned to
``image -> Openpose/concat_stage7`` (outputs bit-identical to tf-pose-estimation's own TF1 session).
Input: the frame resized to the model's input size (bicubic, as tf-pose-estimation does, or area
for downscaling when asked), BGR float 0..255, no mean or scaling.

Batch invariance is *measured*, not assumed (:mod:`tasks.keypoints.batching`): a few different
probe frames run one by one and then as one batch are compared, once per model sha256 and input
size. For tf-pose's MobileNet graphs it is False (their batch-norm layers were frozen in
training mode and use the statistics of each batch), so ``max_batch`` is 1.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from schemas.errors import ConfigError, ExtractionError, ModelError
from storage.fs import file_sha256
from tasks.keypoints.batching import cached_batch_invariance
from tasks.keypoints.models import ModelEntry, PafLayout
from tasks.keypoints.openpose_net import OpenPoseNet, channel_indices, check_input_wh
from tasks.keypoints.paf import DecodeParams

log = logging.getLogger(__name__)

_INTERPOLATIONS = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


def configure_threads(intra_op: int | None, inter_op: int | None) -> None:
    """Set TensorFlow's thread pools (only possible before TF's runtime starts; later calls warn)."""
    import tensorflow as tf

    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError as exc:  # TF already initialised in this process: keep its settings
        log.warning("TensorFlow threads already configured, keeping them (%s)", exc)


def load_frozen_graph(path: Path, input_name: str, output_name: str) -> Callable[[Any], Any]:
    """Import a frozen TF1 GraphDef and return a TF2 function ``image (N, H, W, 3) -> output``.

    Raises:
        ModelError: If the file is not a GraphDef or lacks the named tensors.
    """
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf raises its own DecodeError
        raise ModelError(f"{path} is not a frozen TensorFlow GraphDef: {exc}", hint="pass the graph_opt.pb file") from exc

    def _import() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    try:
        wrapped = tf.compat.v1.wrap_function(_import, [])
        graph = wrapped.graph
        pruned = wrapped.prune(graph.as_graph_element(f"{input_name}:0"), graph.as_graph_element(f"{output_name}:0"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(
            f"{path}: cannot import graph with input {input_name!r} and output {output_name!r}: {exc}",
            hint="check the model registry entry (input_name/output_name) for this graph",
        ) from exc

    def run(batch: np.ndarray) -> np.ndarray:
        return pruned(tf.constant(batch, dtype=tf.float32)).numpy()

    return run


class TfOpenPose(OpenPoseNet):
    """OpenPose-style multi-person estimator on a frozen tf-pose-estimation graph.

    Args:
        entry: Registry entry of the model.
        model_path: The frozen graph file.
        input_wh: Network input (width, height); default: the entry's training size.
        decode_params: Decoder parameters.
        intra_op_threads: TensorFlow intra-op threads (None: TF's default, all cores).
        inter_op_threads: TensorFlow inter-op threads.
        interpolation: Frame resize: ``cubic`` (tf-pose-estimation's), ``linear`` or ``area``.
        batch_invariant: Skip the probe and trust this value (tests of the contract only).
    """

    name = "tf-openpose"
    batch_hint = "send at most max_batch frames per infer() call (this model's outputs depend on the batch)"

    def __init__(
        self,
        entry: ModelEntry,
        model_path: Path,
        input_wh: tuple[int, int] | None = None,
        decode_params: DecodeParams | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        interpolation: str = "cubic",
        batch_invariant: bool | None = None,
    ) -> None:
        if interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"unknown interpolation {interpolation!r}", hint=f"one of {sorted(_INTERPOLATIONS)}")
        self.entry = entry
        self.layout: PafLayout = entry.layout
        self.skeleton = entry.layout.skeleton
        self.model_path = Path(model_path)
        self.model_sha256 = file_sha256(self.model_path)
        if entry.sha256 is not None and self.model_sha256 != entry.sha256:
            log.warning(
                "%s: sha256 %s differs from the registered %s (%s); outputs record the file's own sha256",
                self.model_path, self.model_sha256, entry.sha256, entry.name,
            )  # fmt: skip
        self.input_wh = tuple(input_wh or entry.input_wh)
        check_input_wh(self.input_wh, entry.stride)
        self.decode_params = decode_params or DecodeParams()
        self._interp = _INTERPOLATIONS[interpolation]
        configure_threads(intra_op_threads, inter_op_threads)
        self._fn = load_frozen_graph(self.model_path, entry.input_name, entry.output_name)
        self._lock = threading.Lock()
        self._heat_idx, self._paf_idx = channel_indices(self.layout)
        if batch_invariant is None:
            batch_invariant = self._detect_batch_invariance()
        self.batch_invariant = bool(batch_invariant)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self._fn(batch)
        out = np.asarray(out, np.float32)
        if out.ndim != 4 or out.shape[-1] != self.layout.num_channels:
            raise ModelError(
                f"{self.model_path}: output shape {out.shape}, expected (N, h, w, {self.layout.num_channels})",
                hint=f"is {self.model_path.name} the {self.entry.name} graph?",
            )
        return out

    def run_frames(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Preprocess and run ``(N, H, W, 3) uint8`` frames as ONE batch: ``(N, h, w, C) float32`` raw output."""
        return self._run(np.stack([self.preprocess(f) for f in frames_bgr]))

    def _detect_batch_invariance(self) -> bool:
        w, h = self.input_wh
        invariant, diff = cached_batch_invariance((self.model_sha256, h, w), self.run_frames)
        log.info("%s at %dx%d: batch-1 vs batch-3 max diff %.3g -> batch_invariant=%s", self.entry.name, w, h, diff,
                 invariant)  # fmt: skip
        return invariant

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Resize one ``(H, W, 3) uint8`` BGR frame to ``(h_in, w_in, 3) float32`` 0..255 BGR."""
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.size == 0:
            shape = None if frame_bgr is None else frame_bgr.shape
            raise ExtractionError(f"expected an (H, W, 3) BGR frame, got shape {shape}")
        w, h = self.input_wh
        img = frame_bgr
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=self._interp)
        img = img.astype(np.float32)
        if self.entry.swap_rb:
            img = img[..., ::-1]
        if self.entry.input_mean != (0.0, 0.0, 0.0) or self.entry.input_scale != 1.0:
            img = (img - np.asarray(self.entry.input_mean, np.float32)) * self.entry.input_scale
        return np.ascontiguousarray(img)

    def forward(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Preprocess and run up to ``max_batch`` frames as one batch (see :meth:`run_frames`).

        Raises:
            ExtractionError: A frame is not ``(H, W, 3)``.
        """
        return self.run_frames(frames_bgr)

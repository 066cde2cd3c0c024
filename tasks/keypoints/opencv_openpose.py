"""Backend ``opencv-openpose``: OpenPose's own Caffe models (COCO-18, MPI-15, BODY_25) through OpenCV DNN.

``cv2.dnn.readNetFromCaffe(prototxt, caffemodel)``, as the OpenCV OpenPose samples and notebooks
do. OpenCV 5 removed the Caffe importer: this backend needs opencv-python(-headless) 4.x (pinned).

Input: ``blobFromImage`` of the frame resized to the model's input size, BGR, ``(pixel - 128) / 256``
(OpenPose's own normalisation, from the registry entry). Output ``(N, C, h, w)`` is transposed to
``(h, w, C)`` per frame and split into heatmaps and PAFs with the model's channel layout.

These networks have no batch normalisation, but batch invariance is still measured like for every
model (:mod:`tasks.keypoints.batching`), on small probe frames (``probe_wh``) because a full-size
VGG forward pass takes seconds on a CPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from schemas.errors import ExtractionError, ModelError
from storage.fs import file_sha256
from tasks.keypoints.api import inference_threads
from tasks.keypoints.batching import cached_batch_invariance
from tasks.keypoints.models import ModelEntry, PafLayout
from tasks.keypoints.openpose_net import OpenPoseNet, channel_indices, check_input_wh
from tasks.keypoints.paf import DecodeParams

log = logging.getLogger(__name__)


def _require_caffe_importer() -> None:
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise ModelError(
            f"OpenCV {cv2.__version__} has no Caffe importer (cv2.dnn.readNetFromCaffe)",
            hint="OpenCV 5 removed it: install opencv-python-headless<5 (the project pins 4.x)",
        )


class OpenCvOpenPose(OpenPoseNet):
    """OpenPose Caffe model run by OpenCV DNN.

    Args:
        entry: Registry entry (layout, input size, normalisation).
        weights_path: The ``.caffemodel``.
        config_path: The ``.prototxt``.
        input_wh: Network input (width, height); default: the entry's.
        decode_params: Decoder parameters.
        threads: ``cv2.setNumThreads`` (process-wide; None: ``POSEPIPE_INTRA_OP_THREADS`` if set, else
            OpenCV's default).
        probe_wh: Probe frame size for the batch-invariance measurement.
        batch_invariant: Skip the probe and trust this value.
    """

    name = "opencv-openpose"

    def __init__(
        self,
        entry: ModelEntry,
        weights_path: Path,
        config_path: Path,
        input_wh: tuple[int, int] | None = None,
        decode_params: DecodeParams | None = None,
        threads: int | None = None,
        probe_wh: tuple[int, int] = (64, 64),
        batch_invariant: bool | None = None,
    ) -> None:
        _require_caffe_importer()
        self.entry = entry
        self.layout: PafLayout = entry.layout
        self.skeleton = entry.layout.skeleton
        self.weights_path = Path(weights_path)
        self.config_path = Path(config_path)
        self.model_sha256 = file_sha256(self.weights_path)
        self.config_sha256 = file_sha256(self.config_path)  # the network is both files: part of cache keys
        if entry.sha256 is not None and self.model_sha256 != entry.sha256:
            log.warning("%s: sha256 %s differs from the registered %s", self.weights_path, self.model_sha256, entry.sha256)
        self.input_wh = tuple(input_wh or entry.input_wh)
        check_input_wh(self.input_wh, entry.stride)
        self.decode_params = decode_params or DecodeParams()
        if threads is None:
            threads = inference_threads()[0]
        if threads is not None:
            cv2.setNumThreads(int(threads))
        try:
            self._net = cv2.dnn.readNetFromCaffe(str(self.config_path), str(self.weights_path))
        except cv2.error as exc:
            raise ModelError(
                f"OpenCV cannot load {self.config_path.name} with {self.weights_path.name}: {str(exc).strip()[-300:]}",
                hint=f"use the prototxt and caffemodel of {entry.name} ({entry.url})",
            ) from exc
        if self._net.empty():
            raise ModelError(f"OpenCV loaded an empty network from {self.config_path}", hint="check the prototxt")
        self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self._net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self._lock = threading.Lock()
        self._heat_idx, self._paf_idx = channel_indices(self.layout)
        if batch_invariant is None:
            pw, ph = probe_wh
            try:
                invariant, diff = cached_batch_invariance(
                    (f"{self.model_sha256}:{self.config_sha256}", ph, pw),
                    lambda frames: self.run_frames(frames, input_wh=(pw, ph)),
                )
            except ExtractionError as exc:  # the first forward pass: the files do not make a working network
                raise ModelError(
                    f"{self.weights_path.name} with {self.config_path.name} does not run as {entry.name}: {exc.message}",
                    hint=f"use the prototxt and caffemodel of {entry.name} ({entry.url})",
                ) from exc
            log.info("%s: batch-1 vs batch-3 max diff %.3g -> batch_invariant=%s", entry.name, diff, invariant)
            batch_invariant = invariant
        self.batch_invariant = bool(batch_invariant)

    def run_frames(self, frames_bgr: Sequence[np.ndarray], input_wh: tuple[int, int] | None = None) -> np.ndarray:
        """Run frames as ONE batch; returns the raw ``(N, h, w, C) float32`` output (network channel order).

        Raises:
            ExtractionError: A frame is not ``(H, W, 3)``.
            ModelError: The network's output does not have the layout's channel count.
        """
        for f in frames_bgr:
            if f is None or f.ndim != 3 or f.shape[2] != 3 or f.size == 0:
                raise ExtractionError(f"expected an (H, W, 3) BGR frame, got shape {None if f is None else f.shape}")
        w, h = input_wh or self.input_wh
        blob = cv2.dnn.blobFromImages(
            list(frames_bgr), scalefactor=self.entry.input_scale, size=(w, h), mean=self.entry.input_mean,
            swapRB=self.entry.swap_rb, crop=False,
        )  # fmt: skip
        with self._lock:
            self._net.setInput(blob)
            try:
                out = self._net.forward()
            except cv2.error as exc:
                raise ExtractionError(f"OpenCV forward of {self.entry.name} failed: {str(exc).strip()[-300:]}") from exc
        if out.ndim != 4 or out.shape[1] != self.layout.num_channels:
            raise ModelError(
                f"{self.config_path.name}: output shape {out.shape}, expected (N, {self.layout.num_channels}, h, w)",
                hint=f"is this the prototxt of {self.entry.name}?",
            )
        return np.ascontiguousarray(out.transpose(0, 2, 3, 1), dtype=np.float32)

    def forward(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Run up to ``max_batch`` frames as one blob (see :meth:`run_frames`)."""
        return self.run_frames(frames_bgr)

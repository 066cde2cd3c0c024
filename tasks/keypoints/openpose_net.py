"""What the OpenPose-style backends share: the channel layout of the network output, the input size
check, the ``max_batch`` contract of ``infer`` and the grouping of one frame.

A backend subclasses :class:`OpenPoseNet`, sets ``entry``, ``layout``, ``input_wh`` and
``decode_params`` and implements :meth:`OpenPoseNet.forward` (frames in, raw ``(N, h, w, C)``
network output out); ``infer`` and ``group`` are written here once.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np

from schemas.errors import ConfigError, ExtractionError
from tasks.keypoints.api import FramePoses, PoseEstimator, RawOutput
from tasks.keypoints.models import ModelEntry, PafLayout
from tasks.keypoints.paf import DecodeParams, decode_raw


def channel_indices(layout: PafLayout) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap and PAF channel indices in the network output, PAFs reordered to ``layout.pairs``.

    Returns:
        ``(heat_idx, paf_idx)``: ``out[..., heat_idx]`` are the heatmaps (background last) and
        ``out[..., paf_idx][..., 2l:2l+2]`` is limb ``l`` of ``layout.pairs`` (x then y).
    """
    perm = np.asarray([c for xy in layout.paf_channels for c in xy], np.int64)
    nh = layout.num_heatmaps
    if layout.heatmaps_first:
        return np.arange(nh), nh + perm
    return np.arange(perm.size, perm.size + nh), perm


def check_input_wh(input_wh: tuple[int, int], stride: int) -> None:
    """Refuse a network input (width, height) that is not a positive multiple of the output stride.

    Raises:
        ConfigError: If either side is not positive or not a multiple of ``stride``.
    """
    w, h = input_wh
    if w <= 0 or h <= 0 or w % stride or h % stride:
        raise ConfigError(f"input size {w}x{h} must be positive multiples of the stride {stride}")


class OpenPoseNet(PoseEstimator):
    """A backend whose network outputs OpenPose heatmaps and PAFs in ``entry.layout``.

    Attributes:
        entry: Registry entry of the model.
        layout: Its heatmap/PAF channel layout.
        input_wh: Network input (width, height) in pixels.
        decode_params: Decoder parameters used by :meth:`group`.
        batch_hint: Hint of the error raised when more than ``max_batch`` frames are given.
    """

    entry: ModelEntry
    layout: PafLayout
    input_wh: tuple[int, int]
    decode_params: DecodeParams
    batch_hint: str = "send at most max_batch frames per infer() call"
    _heat_idx: np.ndarray
    _paf_idx: np.ndarray

    @abstractmethod
    def forward(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Run ``frames_bgr`` as one batch: the raw ``(N, h, w, C) float32`` output (network order)."""

    def infer(self, frames_bgr: Sequence[np.ndarray]) -> list[RawOutput]:
        """Run the network on up to :attr:`batch_limit` frames (1 unless the model is batch-invariant).

        Raises:
            ExtractionError: If more frames than :attr:`batch_limit` are given or a frame is not
                ``(H, W, 3)``.
        """
        if len(frames_bgr) == 0:
            return []
        if len(frames_bgr) > self.batch_limit:
            raise ExtractionError(
                f"{len(frames_bgr)} frames given to {self.entry.name}, whose max_batch is {self.batch_limit}",
                hint=self.batch_hint,
            )
        out = self.forward(frames_bgr)
        w, h = self.input_wh
        return [
            RawOutput(
                heatmaps=np.ascontiguousarray(o[..., self._heat_idx]),
                pafs=np.ascontiguousarray(o[..., self._paf_idx]),
                image_hw=(int(f.shape[0]), int(f.shape[1])),
                input_hw=(h, w),
            )
            for o, f in zip(out, frames_bgr, strict=True)
        ]

    def group(self, raw: RawOutput) -> FramePoses:
        """Decode one frame (see :func:`tasks.keypoints.paf.decode`)."""
        return decode_raw(raw, self.layout, self.decode_params)

"""Which frames of a clip to keep: every frame, every k-th, a target frame rate, or N uniform frames.

``all``, ``every_k`` and ``fps`` decide frame by frame while the video streams (``fps`` uses the
frames' timestamps, so variable-frame-rate videos are sampled in time, not by index). ``uniform``
is PYSKL's ``UniformSampleFrames`` (training mode, one clip): it needs the frame count first and is
seeded per clip by ``(seed, stable_hash(clip_id))``, so the indices do not depend on the worker or
the order clips are processed in.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.errors import ConfigError
from tasks.common import stable_hash


class SamplingSpec(BaseModel):
    """Frame sampling policy (hashed into the extraction run key).

    Attributes:
        mode: ``all``, ``every_k``, ``fps`` or ``uniform``.
        k: Keep frames ``0, k, 2k, ...`` (``every_k``).
        target_fps: Frames per second to keep (``fps``); must not exceed the source rate to matter.
        num_frames: Frames to draw (``uniform``, PYSKL's ``clip_len``).
        seed: Run seed for ``uniform``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["all", "every_k", "fps", "uniform"] = "all"
    k: int = Field(default=1, ge=1)
    target_fps: float | None = Field(default=None, gt=0)
    num_frames: int | None = Field(default=None, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SamplingSpec:
        if self.mode == "fps" and self.target_fps is None:
            raise ValueError("mode 'fps' needs target_fps")
        if self.mode == "uniform" and self.num_frames is None:
            raise ValueError("mode 'uniform' needs num_frames")
        return self

    @property
    def needs_frame_count(self) -> bool:
        """True when the indices can only be chosen once the clip's length is known."""
        return self.mode == "uniform"


def uniform_sample_frames(total_frames: int, clip_len: int, rng: np.random.Generator) -> np.ndarray:
    """PYSKL ``UniformSampleFrames._get_train_clips`` for one clip.

    Splits the clip into ``clip_len`` equal segments and draws one frame per segment; shorter clips
    are padded by looping (indices wrap modulo ``total_frames``).

    Args:
        total_frames: Frames in the clip (> 0).
        clip_len: Frames to draw.
        rng: Random generator.

    Returns:
        ``(clip_len,) int64`` frame indices in ``[0, total_frames)``, non-decreasing unless wrapped.

    Raises:
        ConfigError: If ``total_frames`` or ``clip_len`` is not positive.
    """
    if total_frames <= 0 or clip_len <= 0:
        raise ConfigError(f"uniform sampling needs positive lengths, got total={total_frames}, clip_len={clip_len}")
    if total_frames < clip_len:
        start = int(rng.integers(0, total_frames))
        inds = np.arange(start, start + clip_len)
    elif total_frames < 2 * clip_len:
        basic = np.arange(clip_len)
        chosen = rng.choice(clip_len + 1, total_frames - clip_len, replace=False)
        offset = np.zeros(clip_len + 1, dtype=np.int64)
        offset[chosen] = 1
        inds = basic + np.cumsum(offset)[:-1]
    else:
        bids = np.array([i * total_frames // clip_len for i in range(clip_len + 1)])
        bsize = np.diff(bids)
        inds = bids[:clip_len] + rng.integers(0, bsize)
    return np.mod(inds, total_frames).astype(np.int64)


def clip_rng(seed: int, clip_id: str) -> np.random.Generator:
    """The per-clip generator: ``default_rng((seed, stable_hash(clip_id)))``."""
    return np.random.default_rng((seed, stable_hash(clip_id)))


class FrameSelector:
    """Streaming decision of which decoded frames to keep, per :class:`SamplingSpec`.

    Args:
        spec: The policy.
        clip_id: Seeds ``uniform``.
        total_frames: Frame count (required for ``uniform``).
    """

    def __init__(self, spec: SamplingSpec, clip_id: str = "", total_frames: int | None = None) -> None:
        self.spec = spec
        self.sequence: np.ndarray | None = None
        self._wanted: frozenset[int] | None = None
        self._next_t_s: float | None = None
        if spec.mode == "uniform":
            if not total_frames:
                raise ConfigError(f"uniform sampling of {clip_id!r} needs the frame count", hint="count frames first")
            self.sequence = uniform_sample_frames(total_frames, spec.num_frames or 1, clip_rng(spec.seed, clip_id))
            self._wanted = frozenset(int(i) for i in self.sequence)

    def wants(self, index: int, t_s: float) -> bool:
        """Whether frame ``index`` (0-based, decode order) at time ``t_s`` seconds is kept."""
        mode = self.spec.mode
        if mode == "all":
            return True
        if mode == "every_k":
            return index % self.spec.k == 0
        if mode == "uniform":
            return index in self._wanted  # type: ignore[operator]
        period_s = 1.0 / float(self.spec.target_fps)  # type: ignore[arg-type]
        if self._next_t_s is None:
            self._next_t_s = t_s
        # a small tolerance absorbs timestamp rounding (e.g. 1/30 s stored in a 1/90000 time base)
        if t_s + 1e-6 >= self._next_t_s:
            while self._next_t_s <= t_s + 1e-6:
                self._next_t_s += period_s
            return True
        return False

    @property
    def last_index(self) -> int | None:
        """Highest index the selector can still want (None: unbounded), so decoding can stop early."""
        return int(max(self._wanted)) if self._wanted else None

"""Uniform sampling of ``T`` time steps of a sequence, seeded per clip (PYSKL's ``UniformSampleFrames``).

The stored sequence keeps every extracted frame; a model that needs a fixed length draws ``T``
steps with :func:`sample_positions`: the clip is cut into ``T`` equal segments and one step is drawn
per segment (shorter clips loop), with the generator ``default_rng((seed, stable_hash(clip_id)))``,
so the draw depends only on the seed and the clip, never on order or worker. This is the same
function the extraction's ``uniform`` frame sampling uses (:func:`tasks.video.sampling.uniform_sample_frames`).
"""

from __future__ import annotations

import numpy as np

from tasks.video.sampling import clip_rng, uniform_sample_frames


def sample_positions(num_steps: int, clip_len: int, seed: int, clip_id: str) -> np.ndarray:
    """``(clip_len,) int64`` positions in ``[0, num_steps)`` (see the module docstring).

    Raises:
        ConfigError: If ``num_steps`` or ``clip_len`` is not positive.
    """
    return uniform_sample_frames(num_steps, clip_len, clip_rng(seed, clip_id))


def sample_sequence(sequence: np.ndarray, clip_len: int, seed: int, clip_id: str) -> np.ndarray:
    """``(clip_len, M, J, 3)``: ``clip_len`` steps of a ``(T, M, J, 3)`` sequence drawn by :func:`sample_positions`."""
    return sequence[sample_positions(sequence.shape[0], clip_len, seed, clip_id)]


def pad_people(sequence: np.ndarray, max_people: int, fill: float = 0.0) -> np.ndarray:
    """``(T, max_people, J, 3)``: the first ``max_people`` people, padded with ``fill`` x/y and score 0."""
    t, m, j, c = sequence.shape
    out = np.full((t, max_people, j, c), fill, np.float32)
    out[..., 2] = 0.0
    out[:, : min(m, max_people)] = sequence[:, :max_people]
    return out

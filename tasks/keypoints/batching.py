"""Measuring whether a network's per-frame outputs depend on the rest of its batch.

Some pose graphs (tf-pose-estimation's MobileNets) froze their batch-norm layers in *training* mode:
they normalise with the statistics of each batch, so the same frame gives different heatmaps in
different batches. Whether a model may be batched is therefore measured, per model file and input
size: :func:`probe_batch_invariance` runs a few different probe frames one by one and then as one
batch, and compares. :func:`cached_batch_invariance` remembers the answer per (model sha256, input
size) for the life of the process (a worker probes once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import cv2
import numpy as np

from schemas.errors import ConfigError

#: Largest max-abs difference between batch-1 and batch-N outputs still counted as "the same"
#: (differently blocked float32 kernels differ by ~1e-5 on maps whose range is ~0..1).
BATCH_INVARIANCE_ATOL = 1e-3

_CACHE: dict[tuple[str, int, int], tuple[bool, float]] = {}
_LOCK = threading.Lock()


def probe_frames(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` different, deterministic, image-like ``(H, W, 3) uint8`` frames.

    Smooth random blobs (not white noise, unlike any photo) of different brightness, so the batch
    statistics of the frames differ clearly.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        small = rng.uniform(0, 255, size=(max(height // 16, 2), max(width // 16, 2), 3)).astype(np.float32)
        frame = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) * (0.4 + 0.6 * (i + 1) / count)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def probe_batch_invariance(
    run: Callable[[np.ndarray], np.ndarray],
    height: int,
    width: int,
    count: int = 3,
    atol: float = BATCH_INVARIANCE_ATOL,
) -> tuple[bool, float]:
    """Compare a network's batch-1 outputs with its outputs for one batch of ``count`` different frames.

    Args:
        run: ``(N, H, W, 3) uint8 -> (N, ...) float32``: preprocessing and network of a backend.
        height: Probe frame height.
        width: Probe frame width.
        count: Frames in the batch (>= 2).
        atol: Largest max-abs difference still counted as equal.

    Returns:
        (invariant, max abs difference).
    """
    if count < 2:
        raise ConfigError(f"a batch-invariance probe needs >= 2 frames, got {count}")
    batch = np.stack(probe_frames(count, height, width))
    singles = np.concatenate([np.asarray(run(batch[i : i + 1]), np.float32) for i in range(count)], axis=0)
    together = np.asarray(run(batch), np.float32)
    diff = float(np.max(np.abs(singles - together)))
    return diff <= atol, diff


def cached_batch_invariance(
    key: tuple[str, int, int], run: Callable[[np.ndarray], np.ndarray], count: int = 3
) -> tuple[bool, float]:
    """:func:`probe_batch_invariance` at ``key = (model sha256, height, width)``, once per process."""
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = probe_batch_invariance(run, key[1], key[2], count=count)
        return _CACHE[key]

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
from pathlib import Path

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


#: Batches :func:`fastest_batch` tries (1 always: a batch-invariant graph need not batch well).
BATCH_CANDIDATES = (1, 4, 8)

_SPEED_CACHE: dict[tuple[str, int, int, int], int] = {}


def fastest_batch(run: Callable[[np.ndarray], np.ndarray], height: int, width: int, candidates: tuple[int, ...] = BATCH_CANDIDATES, rounds: int = 2) -> tuple[int, dict[int, float]]:
    """The batch size that runs ``max(candidates)`` probe frames fastest here (frames/s per candidate).

    Each candidate runs the same frames (warmed up once), rounds interleaved, best round kept: on
    this 2-core VM the batch-exact tf-openpose graph ran batch 8 *slower* than batch 1, so a fixed
    default would have been a regression; on other hardware the answer differs, so it is measured.

    Args:
        run: ``(N, H, W, 3) uint8 -> outputs`` of a batch-invariant backend.
        height: Probe frame height.
        width: Probe frame width.
        candidates: Batch sizes to try.
        rounds: Timed rounds per candidate.

    Returns:
        (the fastest batch, frames/s per candidate).
    """
    import time

    n = max(candidates)
    frames = np.stack(probe_frames(n, height, width, seed=1))
    for b in candidates:
        run(frames[:b])  # warm-up (first call of a shape allocates)
    best: dict[int, float] = dict.fromkeys(candidates, 0.0)
    for _ in range(rounds):
        for b in candidates:
            t0 = time.perf_counter()
            for i in range(0, n, b):
                run(frames[i : i + b])
            best[b] = max(best[b], n / (time.perf_counter() - t0))
    return max(candidates, key=lambda b: (best[b], -b)), best


def cached_fastest_batch(key: tuple[str, int, int, int], run: Callable[[np.ndarray], np.ndarray], cache_file: Path | None = None) -> int:
    """:func:`fastest_batch` at ``key = (graph id, height, width, threads)``, once per process and kept in ``cache_file``."""
    import json

    with _LOCK:
        if key in _SPEED_CACHE:
            if cache_file is not None and not cache_file.is_file():
                _write_batch_file(cache_file, _SPEED_CACHE[key], {})
            return _SPEED_CACHE[key]
        if cache_file is not None and cache_file.is_file():
            try:
                _SPEED_CACHE[key] = int(json.loads(cache_file.read_text())["batch"])
                return _SPEED_CACHE[key]
            except (OSError, ValueError, KeyError, TypeError):
                pass  # rebuilt below
        batch, speeds = fastest_batch(run, key[1], key[2])
        _SPEED_CACHE[key] = batch
        if cache_file is not None:
            _write_batch_file(cache_file, batch, speeds)
        return batch


def _write_batch_file(cache_file: Path, batch: int, speeds: dict[int, float]) -> None:
    """Keep a measured default batch (atomically; an unwritable folder only skips the disk cache)."""
    import json

    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".{cache_file.name}.tmp")
        tmp.write_text(json.dumps({"batch": batch, "frames_per_s": {str(k): round(v, 2) for k, v in speeds.items()}}))
        tmp.replace(cache_file)
    except OSError:
        pass

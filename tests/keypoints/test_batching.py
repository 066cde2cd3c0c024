"""Tests of the batch-invariance probe (tasks/keypoints/batching.py) on tiny numpy 'networks'."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.errors import ConfigError
from tasks.keypoints.batching import cached_batch_invariance, probe_batch_invariance, probe_frames


def test_probe_frames_are_deterministic_and_different() -> None:
    a = probe_frames(3, 32, 48)
    b = probe_frames(3, 32, 48)
    assert [f.shape for f in a] == [(32, 48, 3)] * 3 and a[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[1]) and a[0].mean() != pytest.approx(a[2].mean(), abs=1.0)


def test_per_frame_network_is_invariant() -> None:
    def per_frame(batch: np.ndarray) -> np.ndarray:  # each output depends on its own frame only
        return batch[:, ::8, ::8, :1].astype(np.float32) / 255.0

    assert probe_batch_invariance(per_frame, 64, 64, count=4) == (True, 0.0)


def test_batch_statistics_network_is_not_invariant() -> None:
    def batch_norm(batch: np.ndarray) -> np.ndarray:  # train-mode batch norm: statistics of the whole batch
        x = batch.astype(np.float32)
        return (x - x.mean()) / (x.std() + 1e-6)

    invariant, diff = probe_batch_invariance(batch_norm, 32, 32)
    assert not invariant and diff > 0.01


def test_cache_probes_once_per_key() -> None:
    calls = []

    def net(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch.astype(np.float32)

    key = ("sha-test-cache", 16, 16)
    assert cached_batch_invariance(key, net) == (True, 0.0)
    assert cached_batch_invariance(key, net) == (True, 0.0)
    assert calls == [1, 1, 1, 3]


def test_probe_needs_two_frames() -> None:
    with pytest.raises(ConfigError, match=">= 2 frames"):
        probe_batch_invariance(lambda b: b, 8, 8, count=1)

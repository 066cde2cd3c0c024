"""Frame sampling: tiny inputs with explicit expected indices."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from schemas.errors import ConfigError
from tasks.video.sampling import FrameSelector, SamplingSpec, clip_rng, uniform_sample_frames


def _kept(selector: FrameSelector, times_s: list[float]) -> list[int]:
    return [i for i, t in enumerate(times_s) if selector.wants(i, t)]


def test_all_and_every_k() -> None:
    times = [i / 25 for i in range(10)]
    assert _kept(FrameSelector(SamplingSpec()), times) == list(range(10))
    assert _kept(FrameSelector(SamplingSpec(mode="every_k", k=3)), times) == [0, 3, 6, 9]


def test_target_fps_uses_time_not_index() -> None:
    # 30 fps down to 10 fps: every third frame
    assert _kept(FrameSelector(SamplingSpec(mode="fps", target_fps=10)), [i / 30 for i in range(10)]) == [0, 3, 6, 9]
    # variable rate: frames at 0, .05, .10, .30, .31, .35 s -> 10 fps keeps the first at/after each 0.1 s tick
    vfr = [0.0, 0.05, 0.10, 0.30, 0.31, 0.35, 0.41]
    assert _kept(FrameSelector(SamplingSpec(mode="fps", target_fps=10)), vfr) == [0, 2, 3, 6]
    # a target above the source rate keeps every frame once
    assert _kept(FrameSelector(SamplingSpec(mode="fps", target_fps=100)), [i / 25 for i in range(5)]) == [0, 1, 2, 3, 4]


class _FixedRng:
    """Stands in for a Generator: integers() returns the low end, choice() the first values."""

    def integers(self, low, high):  # noqa: ANN001, ANN201
        return np.zeros_like(np.asarray(high))

    def choice(self, n, size, replace=False):  # noqa: ANN001, ANN201
        return np.arange(size)


def test_uniform_sample_frames_three_regimes_exact() -> None:
    rng = _FixedRng()
    # long clip: segments of 10 frames, first frame of each
    assert uniform_sample_frames(40, 4, rng).tolist() == [0, 10, 20, 30]  # type: ignore[arg-type]
    # clip_len <= total < 2*clip_len: one skipped frame inserted before slots 0 and 1 (chosen = [0, 1]):
    # offset = cumsum([1, 1, 0, 0, 0])[:-1] = [1, 2, 2, 2] -> [0, 1, 2, 3] + offset
    assert uniform_sample_frames(6, 4, rng).tolist() == [1, 3, 4, 5]  # type: ignore[arg-type]
    # short clip: loop from the start (wraps modulo total)
    assert uniform_sample_frames(3, 5, rng).tolist() == [0, 1, 2, 0, 1]  # type: ignore[arg-type]
    assert uniform_sample_frames(4, 4, np.random.default_rng(0)).tolist() == [0, 1, 2, 3]


def test_uniform_with_real_rng_stays_in_segments() -> None:
    inds = uniform_sample_frames(100, 8, np.random.default_rng(3))
    bounds = [i * 100 // 8 for i in range(9)]
    assert all(bounds[k] <= inds[k] < bounds[k + 1] for k in range(8))
    mid = uniform_sample_frames(12, 8, np.random.default_rng(3))
    assert len(mid) == 8 and np.all(np.diff(mid) >= 1) and np.all(np.diff(mid) <= 2) and mid.max() < 12


def test_uniform_is_seeded_per_clip_not_by_order() -> None:
    spec = SamplingSpec(mode="uniform", num_frames=8, seed=7)
    a1 = FrameSelector(spec, "clip_a", 164).sequence
    FrameSelector(spec, "clip_b", 164)
    a2 = FrameSelector(spec, "clip_a", 164).sequence
    assert a1 is not None and a2 is not None and a1.tolist() == a2.tolist()
    assert (
        a1.tolist()
        != FrameSelector(SamplingSpec(mode="uniform", num_frames=8, seed=8), "clip_a", 164).sequence.tolist()
    )
    expected = uniform_sample_frames(164, 8, clip_rng(7, "clip_a"))
    assert a1.tolist() == expected.tolist()
    sel = FrameSelector(spec, "clip_a", 164)
    assert sel.last_index == int(expected.max())
    assert _kept(sel, [i / 25 for i in range(164)]) == sorted(set(expected.tolist()))


def test_bad_specs() -> None:
    with pytest.raises(ValidationError):
        SamplingSpec(mode="fps")
    with pytest.raises(ValidationError):
        SamplingSpec(mode="uniform")
    with pytest.raises(ValidationError):
        SamplingSpec(mode="every_k", k=0)
    with pytest.raises(ConfigError, match="frame count"):
        FrameSelector(SamplingSpec(mode="uniform", num_frames=4), "c", None)

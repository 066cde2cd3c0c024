"""Fake LSP / LSPET ``joints.mat`` files in the real layouts, with known expected values.

LSP: ``joints`` is ``3 × 14 × N`` and the third row is an *occluded* flag (every joint labelled).
LSPET: ``joints`` is ``14 × 3 × N`` and the third column is a *visible* flag (0 = not labelled,
position junk: 0 or negative). Coordinates are MATLAB 1-based.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.datasets.fakes_mpii import write_mat5, write_mat73


@dataclass
class FakeLeeds:
    """What was written and what the adapter must return.

    Attributes:
        root: Source folder (``joints.mat`` + ``images/``).
        raw: The array written, in the file's layout.
        xy: ``(N, 14, 2)`` expected 0-based coordinates (NaN where unknown).
        vis: ``(N, 14)`` expected visibility.
    """

    root: Path
    raw: np.ndarray
    xy: np.ndarray
    vis: np.ndarray


def write_fake_leeds(root: Path, layout: str, n: int, seed: int = 0, v73: bool = False) -> FakeLeeds:
    """Write ``root/joints.mat`` for ``n`` images in the ``lsp`` or ``lspet`` layout.

    Every third image has two occluded joints (LSP) or two unlabelled joints with negative junk
    positions (LSPET); image 2 (0-based) has one flagged-visible joint at a negative position, which
    must be dropped. Image ``n - 1`` in LSPET has no labelled joint at all (a reject).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    xy1 = rng.uniform(5.0, 150.0, size=(n, 14, 2))  # 1-based MATLAB positions
    xy1[:, 0] = np.round(xy1[:, 0])
    vis = np.full((n, 14), 2, dtype=np.int8)
    flag = np.zeros((n, 14))
    if layout == "lsp":
        flag[::3, [3, 7]] = 1.0  # occluded
        vis[::3, [3, 7]] = 1
    else:
        flag[:] = 1.0
        flag[::3, [3, 7]] = 0.0  # not labelled, junk negative positions
        xy1[::3, 3] = [0.0, -26.1]
        xy1[::3, 7] = [-45.3, 0.0]
        vis[::3, [3, 7]] = 0
        flag[n - 1, :] = 0.0
        vis[n - 1, :] = 0
    if n > 2:
        xy1[2, 13, 1] = -1.17  # flagged visible, but off the image: never a position
        vis[2, 13] = 0
    expected = (xy1 - 1.0).astype(np.float32)
    expected[vis == 0] = np.nan
    per_image = np.concatenate([xy1, flag[..., None]], axis=-1)  # (N, 14, 3)
    raw = np.transpose(per_image, (2, 1, 0)) if layout == "lsp" else np.transpose(per_image, (1, 2, 0))
    (write_mat73 if v73 else write_mat5)(root / "joints.mat", {"joints": raw})
    return FakeLeeds(root=root, raw=raw, xy=expected, vis=vis)

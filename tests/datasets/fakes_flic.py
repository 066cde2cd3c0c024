"""Fake FLIC / FLIC-full ``examples.mat`` (1×N MATLAB struct array) and FLIC-plus index files.

Fields and types are those of the real file (see ``../shared/data/README.md`` §1): ``coords`` 2×29
float64 (MATLAB 1-based, NaN where unlabelled; FLIC labels MODEC slots 1-7, 10, 13, 14, 17 1-based),
``filepath``/``moviename`` strings, ``imgdims`` 1×3 uint16 [480 720 3], ``currframe`` uint16,
``torsobox`` 1×4 float32, ``istrain``/``istest`` uint8, and for FLIC-full ``isbad``/``isunchecked``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.datasets.fakes_mpii import write_mat5

LABELLED_SLOTS_0BASED = (0, 1, 2, 3, 4, 5, 6, 9, 12, 13, 16)
MOVIES = ("casablanca", "the-departed", "12-oclock-high-special-edition")


@dataclass
class FakeFlic:
    """The written file and what the adapter must produce.

    Attributes:
        root: Source folder holding ``examples.mat`` (and ``images/``, left empty).
        coords: ``(N, 2, 29)`` the 1-based coordinates written.
        istrain: ``(N,)`` flags written.
        isbad: ``(N,)`` FLIC-full flags (all 0 for FLIC).
        isunchecked: ``(N,)`` FLIC-full flags.
        filepaths: Frame file names (two examples share index 0's frame).
        backwards: Indices of examples built facing away from the camera.
        off_image: (example, slot) of a labelled wrist placed left of the frame.
    """

    root: Path
    coords: np.ndarray
    istrain: np.ndarray
    isbad: np.ndarray
    isunchecked: np.ndarray
    filepaths: list[str]
    backwards: list[int] = field(default_factory=list)
    off_image: tuple[int, int] = (0, 0)


def write_fake_flic(root: Path, n: int = 12, full: bool = False, seed: int = 0, overrides: dict[int, dict] | None = None) -> FakeFlic:
    """Write ``root/examples.mat`` with ``n`` examples (``n >= 6``).

    Example 1 repeats example 0's frame (a second person); example 2 faces away from the camera;
    example 3's right wrist is 5 px left of the frame; every fourth example is in the test set. For
    FLIC-full, example 4 is ``isbad`` and example 5 ``isunchecked``. ``overrides`` replaces fields
    of given examples as written (e.g. ``{0: {"coords": np.full((2, 29), 1e30)}}``).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    coords = np.full((n, 2, 29), np.nan)
    for s in LABELLED_SLOTS_0BASED:
        coords[:, 0, s] = rng.uniform(50, 670, n).round(3)
        coords[:, 1, s] = rng.uniform(40, 440, n).round(3)
    # Facing the camera: the person's left arm is on the image's right (larger x).
    coords[:, 0, 0:3] = np.sort(rng.uniform(400, 600, (n, 3)), axis=1)
    coords[:, 0, 3:6] = np.sort(rng.uniform(100, 300, (n, 3)), axis=1)
    coords[2, 0, 0:3], coords[2, 0, 3:6] = coords[2, 0, 3:6].copy(), coords[2, 0, 0:3].copy()  # facing away
    coords[3, 0, 5] = -4.0  # 1-based x = -4 -> 0-based -5: the right wrist is off the frame
    istrain = np.array([0 if i % 4 == 3 else 1 for i in range(n)], dtype=np.uint8)
    isbad = np.zeros(n, dtype=np.uint8)
    isunchecked = np.zeros(n, dtype=np.uint8)
    if full:
        isbad[4] = 1
        isunchecked[5] = 1
    filepaths = []
    examples = []
    for i in range(n):
        movie = MOVIES[i % len(MOVIES)]
        frame = 1000 + (0 if i == 1 else i) * 7
        if i == 1:
            movie = MOVIES[0]
        fp = f"{movie}-{frame:08d}.jpg"
        filepaths.append(fp)
        ex = {
            "poselet_hit_idx": rng.integers(1, 150, size=(5, 1)).astype(np.uint16),
            "moviename": movie,
            "coords": coords[i],
            "filepath": fp,
            "imgdims": np.array([[480, 720, 3]], dtype=np.uint16),
            "currframe": np.uint16(frame),
            "torsobox": np.array([[200.5, 210.25, 310.0, 360.75]], dtype=np.float32),
            "istrain": np.uint8(istrain[i]),
            "istest": np.uint8(1 - istrain[i]),
        }
        if full:
            ex["isbad"] = np.uint8(isbad[i])
            ex["isunchecked"] = np.uint8(isunchecked[i])
        ex.update((overrides or {}).get(i, {}))
        examples.append(ex)
    write_mat5(root / "examples.mat", {"examples": examples})
    return FakeFlic(
        root=root,
        coords=coords,
        istrain=istrain,
        isbad=isbad,
        isunchecked=isunchecked,
        filepaths=filepaths,
        backwards=[2],
        off_image=(3, 5),
    )


def write_plus_indices(folder: Path, train_1based: list[int], test_1based: list[int] | None) -> None:
    """Write ``tr_plus_indices.mat`` (and ``ts_plus_indices.mat``) as k×1 uint16 columns, as the real ones."""
    folder.mkdir(parents=True, exist_ok=True)
    write_mat5(folder / "tr_plus_indices.mat", {"tr_plus_indices": np.array(train_1based, np.uint16).reshape(-1, 1)})
    if test_1based is not None:
        write_mat5(folder / "ts_plus_indices.mat", {"ts_plus_indices": np.array(test_1based, np.uint16).reshape(-1, 1)})

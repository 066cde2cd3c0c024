"""The PYSKL / MMAction2 skeleton annotation pickle of a sequence dataset.

PYSKL's ``PoseDataset`` (and MMAction2's) loads ``{"split": {name: [frame_dir, ...]}, "annotations":
[...]}``; one annotation per clip::

    frame_dir        clip id (the key the split lists use)
    label            0-based class index
    img_shape        (height, width) of the frames in pixels
    original_shape   (height, width), the same (posepipe never resizes keypoints)
    total_frames     T
    keypoint         (M, T, V, 2) float32, x, y in frame pixels; 0 where a joint is unknown
    keypoint_score   (M, T, V) float32 in [0, 1]; 0 where unknown

Split names: a fold ``splitK`` (UCF101's three official splits) gives ``trainK`` and ``testK``, as
PYSKL's UCF101 files name them; any other fold ``F`` gives ``F_train`` and ``F_test`` (``subject_train``
for MHAD, ``logo01_test`` for UCF11).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

_SPLIT_K = re.compile(r"^split(\d+)$")


def split_name(fold: str, side: str) -> str:
    """PYSKL's split name of one side of a fold.

    Example:
        ``split_name("split2", "test")`` -> ``"test2"``; ``split_name("subject", "train")`` -> ``"subject_train"``.
    """
    m = _SPLIT_K.match(fold)
    return f"{side}{m.group(1)}" if m else f"{fold}_{side}"


def annotation(clip_id: str, label_index: int, frame_hw: tuple[int, int], sequence: np.ndarray) -> dict[str, Any]:
    """One clip's annotation from its ``(T, M, J, 3)`` sequence (see the module docstring).

    Returns:
        The annotation dict (``keypoint`` ``(M, T, V, 2) float32``, ``keypoint_score`` ``(M, T, V) float32``).
    """
    seq = np.asarray(sequence, np.float32).transpose(1, 0, 2, 3)  # (M, T, V, 3)
    xy = np.nan_to_num(seq[..., :2], nan=0.0, posinf=0.0, neginf=0.0)
    score = np.nan_to_num(seq[..., 2], nan=0.0)
    xy[score <= 0] = 0.0
    h, w = int(frame_hw[0]), int(frame_hw[1])
    return {
        "frame_dir": clip_id,
        "label": int(label_index),
        "img_shape": (h, w),
        "original_shape": (h, w),
        "total_frames": int(seq.shape[1]),
        "keypoint": np.ascontiguousarray(xy, np.float32),
        "keypoint_score": np.ascontiguousarray(score, np.float32),
    }


def splits_of(folds: Iterable[tuple[str, Mapping[str, str] | Iterable[tuple[str, str]] | None]]) -> dict[str, list[str]]:
    """``{split name: [clip ids]}`` from ``(clip_id, folds)`` pairs, names sorted, ids in input order."""
    out: dict[str, list[str]] = {}
    for clip_id, f in folds:
        items = f.items() if isinstance(f, Mapping) else (f or [])
        for fold, side in items:
            out.setdefault(split_name(str(fold), str(side)), []).append(clip_id)
    return dict(sorted(out.items()))


def pyskl_payload(clips: Iterable[Any]) -> dict[str, Any]:
    """``{"split": ..., "annotations": [...]}`` of :class:`tasks.sequences.read.ClipSequence` items, in their order."""
    annotations, folds = [], []
    for c in clips:
        annotations.append(annotation(c.clip_id, c.label_index, c.frame_hw, c.sequence))
        folds.append((c.clip_id, c.folds))
    return {"split": splits_of(folds), "annotations": annotations}


def write_pyskl(root: str, dataset: str, out_path: str, version: str | None = None) -> dict[str, Any]:
    """Write a validated sequence version as a PYSKL/MMAction2 annotation pickle (atomically).

    The pickle is one object, as PYSKL loads it (``mmcv.load`` / ``pickle.load``): it holds every
    clip's keypoints at once (UCF101's 13,320 clips: about 2 GB at 2 people, 18 joints); the
    version is read clip by clip while it is built.

    Args:
        root: Storage root.
        dataset: A ``NAME-keypoints`` dataset.
        out_path: Local ``.pkl`` to write.
        version: Version id (default ``LATEST``).

    Returns:
        ``{"version", "clips", "splits": {name: count}, "path"}``.
    """
    import pickle

    from storage.fs import atomic_local_path
    from tasks.sequences.read import open_sequences

    v = open_sequences(root, dataset, version)
    payload = pyskl_payload(v.clips())
    with atomic_local_path(out_path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return {"version": v.version, "clips": len(payload["annotations"]), "splits": {k: len(ids) for k, ids in payload["split"].items()}, "path": out_path}

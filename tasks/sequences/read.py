"""Read a committed sequence dataset back, clip by clip, or as fixed-shape numpy arrays.

::

    from tasks.sequences.read import open_sequences

    v = open_sequences("/data/pp", "ucf101-keypoints")      # LATEST (or version="v-...")
    for clip in v.clips():                                  # one shard's row group at a time
        clip.sequence                                       # (T, M, J, 3) x_px, y_px, score
    x, y, ids = v.arrays(num_frames=48, max_people=2)       # (N, 48, 2, J, 3), (N,), N ids

Only validated versions are read (:class:`~schemas.errors.VersionNotValidatedError` otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from schemas.errors import ConfigError, VersionNotFoundError, VersionNotValidatedError
from storage.fs import filesystem
from storage.layout import VersionPaths
from storage.manifest import read_latest, read_manifest
from tasks.sequences.normalise import normalise_sequence
from tasks.sequences.sampling import pad_people, sample_sequence

#: Every column but the sequence: what :meth:`SequenceVersion.clips` reads besides it.
_SCALARS = (
    "clip_id", "label", "label_index", "group", "subject", "folds", "frame_width_px", "frame_height_px",
    "frame_indices", "num_frames", "num_people", "num_joints", "fps", "skeleton",
)  # fmt: skip


@dataclass(frozen=True)
class ClipSequence:
    """One clip of a sequence dataset.

    Attributes:
        clip_id: Clip id.
        label: Class name.
        label_index: 0-based class index.
        folds: Fold name -> ``train``/``test``.
        frame_hw: Frame (height, width) in pixels.
        frame_indices: ``(T,) int32`` source frame of each time step.
        sequence: ``(T, M, J, 3) float32`` x_px, y_px, score (NaN x/y, score 0 where unknown).
        skeleton: Skeleton name.
        fps: Source frame rate.
        group: Group (UCF) or None.
        subject: Subject (MHAD) or None.
    """

    clip_id: str
    label: str
    label_index: int
    folds: dict[str, str]
    frame_hw: tuple[int, int]
    frame_indices: np.ndarray
    sequence: np.ndarray
    skeleton: str
    fps: float | None = None
    group: str | None = None
    subject: str | None = None


@dataclass
class SequenceVersion:
    """A committed, validated sequence dataset version (see the module docstring)."""

    root: str
    dataset: str
    version: str
    manifest: dict[str, Any] = field(repr=False)

    def _shard_paths(self) -> Iterator[str]:
        _, rpath = filesystem(self.root)
        paths = VersionPaths(rpath, self.dataset, self.version)
        for shard in sorted(self.manifest["shards"], key=lambda s: (s["split"], s["index"])):
            yield paths.file(shard["parquet"])

    def clips(self, fold: str | None = None, side: str | None = None) -> Iterator[ClipSequence]:
        """Every clip in id order (or those on ``side`` of ``fold``), streaming one row group at a time."""
        fs, _ = filesystem(self.root)
        for path in self._shard_paths():
            with fs.open(path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                for i in range(pf.num_row_groups):
                    for row in pf.read_row_group(i, columns=[*_SCALARS, "sequence"]).to_pylist():
                        folds = dict(row["folds"] or [])
                        if fold is not None and (fold not in folds or (side is not None and folds[fold] != side)):
                            continue
                        shape = (row["num_frames"], row["num_people"], row["num_joints"], 3)
                        yield ClipSequence(
                            row["clip_id"], row["label"], row["label_index"], folds,
                            (row["frame_height_px"], row["frame_width_px"]),
                            np.asarray(row["frame_indices"], np.int32),
                            np.asarray(row["sequence"], np.float32).reshape(shape),
                            row["skeleton"], row["fps"], row["group"], row["subject"],
                        )  # fmt: skip

    def arrays(
        self,
        num_frames: int,
        max_people: int = 2,
        seed: int = 0,
        normalise: bool = False,
        fold: str | None = None,
        side: str | None = None,
        missing: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Fixed-shape arrays a model can consume.

        Each clip is sampled to ``num_frames`` steps (:func:`tasks.sequences.sampling.sample_sequence`,
        seeded by ``seed`` and the clip id), padded or cut to ``max_people``, optionally normalised
        (:func:`tasks.sequences.normalise.normalise_sequence`), unknown x/y set to ``missing``.

        Returns:
            ``(N, num_frames, max_people, J, 3) float32``, ``(N,) int32`` label indices, N clip ids.
        """
        if num_frames < 1 or max_people < 1:
            raise ConfigError(f"num_frames and max_people must be positive, got {num_frames}, {max_people}")
        xs, ys, ids = [], [], []
        for clip in self.clips(fold, side):
            seq = sample_sequence(clip.sequence, num_frames, seed, clip.clip_id)
            if normalise:
                seq = normalise_sequence(seq, clip.skeleton)
            seq = pad_people(seq, max_people)
            xs.append(np.nan_to_num(seq, nan=missing))
            ys.append(clip.label_index)
            ids.append(clip.clip_id)
        joints = xs[0].shape[2] if xs else 0
        x = np.stack(xs) if xs else np.zeros((0, num_frames, max_people, joints, 3), np.float32)
        return x.astype(np.float32), np.asarray(ys, np.int32), ids


def open_sequences(root: str, dataset: str, version: str | None = None) -> SequenceVersion:
    """The validated sequence version ``version`` of ``dataset`` (default ``LATEST``).

    Raises:
        VersionNotFoundError: No such committed version (or no ``LATEST``).
        VersionNotValidatedError: Its gate failed.
        ConfigError: It is not a sequence dataset.
    """
    fs, rpath = filesystem(root)
    version = version or read_latest(fs, rpath, dataset)
    if version is None:
        raise VersionNotFoundError(f"{dataset} has no LATEST version under {root}", hint=f"build one: posepipe rebuild {dataset} --from-extract RUN")
    manifest = read_manifest(fs, rpath, dataset, version)
    if manifest.get("record") != "sequences":
        raise ConfigError(f"{dataset}@{version} holds {manifest.get('record')!r} records, not sequences", hint="name a NAME-keypoints dataset")
    if not manifest.get("validation", {}).get("success"):
        failed = "; ".join(manifest.get("validation", {}).get("failures", [])[:5])
        raise VersionNotValidatedError(f"{dataset}@{version} failed its gate: {failed}", hint="fix the extraction run and rebuild")
    return SequenceVersion(root, dataset, version, manifest)

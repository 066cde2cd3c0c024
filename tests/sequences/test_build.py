"""The shard builder's pieces: keypoint rows streamed clip by clip across batch boundaries, frames as
the run recorded them, unlisted frames made visible to the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from schemas.records import KEYPOINTS_SCHEMA
from storage.parquet import write_parquet
from tasks.datasets.keypoints import frames_of
from tasks.kinds.sequences import build_sequence, clip_keypoints


def _part(path: Path, rows: list[tuple[str, int, int]]) -> None:
    kp = [[[float(f), float(p), 0.5]] * 18 for _, f, p in rows]
    table = pa.table({"clip_id": [c for c, _, _ in rows], "frame_index": [f for _, f, _ in rows], "person_index": [p for _, _, p in rows],
                      "keypoints": kp, "person_score": [1.0] * len(rows), "skeleton": ["openpose18"] * len(rows),
                      "backend": ["b"] * len(rows), "model_sha256": ["0"] * len(rows)})  # fmt: skip
    write_parquet(LocalFileSystem(), str(path), table, KEYPOINTS_SCHEMA)


def test_rows_stream_clip_by_clip_across_batches(tmp_path: Path) -> None:
    rows = [("a", 0, 0), ("a", 0, 1), ("a", 1, 0), ("b", 0, 0), ("c", 0, 0), ("c", 2, 0), ("c", 3, 0)]
    _part(tmp_path / "part.parquet", rows)
    got = list(clip_keypoints(LocalFileSystem(), str(tmp_path / "part.parquet"), {"a", "c"}, batch_rows=2))
    assert [g[0] for g in got] == ["a", "c"]
    assert got[0][1].tolist() == [0, 0, 1] and got[0][2].shape == (3, 18, 3) and got[0][2][:, 0, 1].tolist() == [0, 1, 0]
    assert got[1][1].tolist() == [0, 2, 3]


def test_frames_as_recorded_and_unlisted_frames_appended() -> None:
    assert frames_of([0, 2, 4], "every_k") == [0, 2, 4]
    assert frames_of([3, 4, 0, 1, 2, 3], "uniform") == [0, 1, 2, 3, 4]  # PYSKL's loop on a short clip
    assert frames_of([0, 2, 1], "all") == [0, 2, 1]  # kept as recorded: the gate refuses it
    kp = np.full((3, 18, 3), 10.0, np.float32)
    frames, seq, scores, people_max, with_person = build_sequence([0, 2, 4], np.array([0, 2, 3]), kp, 2, 1.0, 5)
    assert frames == [0, 2, 4, 3] and seq.shape == (4, 1, 18, 3)  # frame 3 was not listed: appended, not dropped
    assert people_max == 1 and with_person == 3 and np.isnan(seq[2, 0, 0, 0])

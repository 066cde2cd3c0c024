"""``sequences``: one keypoint sequence per clip of an extraction run, with its skeleton images.

Built by the ``{dataset}-keypoints`` adapters (:mod:`tasks.datasets.keypoints`) from a finished
extraction run. Per clip, streamed from the run's part files one clip at a time:

1. the clip's keypoint rows become one ``(P_t, J, 3)`` array per time step of its frames;
2. people are tracked across frames and the ``M`` tracks with the highest summed score kept
   (:mod:`tasks.sequences.tracking`): the row's ``sequence`` is ``(T, M, J, 3)`` x_px, y_px, score,
   unnormalised (:func:`tasks.sequences.normalise.normalise_sequence` is the model's business);
3. its skeleton images are drawn (:mod:`tasks.sequences.skeleton_images`): the composite over time
   is the clip's row in the shard's HDF5 ``images`` (the layout image versions use, so image
   models read it as a crop), and with ``skeleton_frames`` its ``T`` per-frame images are rows
   ``frames_offset .. frames_offset + T`` of the HDF5 ``frames`` dataset (gzip, one chunk per image).

A clip with nobody detected in any frame is a reject (``no_person``), never a sequence of zeros.
A keypoint row whose frame the clip did not list is appended to the frames, where the gate sees it.

Memory is bounded by a few clips, not by the shard or the run: keypoint rows are read in batches,
records are written in row groups of :data:`ROW_GROUP_CLIPS` clips, per-frame images go to disk
clip by clip, and the gate reads the shard back one row group at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from schemas.errors import RejectReason
from schemas.expectations import sequence_expectations
from schemas.records import REJECTS_SCHEMA, SEQUENCE_SOURCES_SCHEMA, SEQUENCES_SCHEMA, conform
from storage.fs import atomic_local_path, file_sha256, join
from storage.hdf5 import COLOR_ORDER, IMAGES, SAMPLE_IDS, content_digest, open_hdf5, read_sample_ids
from storage.layout import VersionPaths, shard_relpath, staging_relpath
from storage.parquet import ROW_GROUP_SIZE, read_parquet, write_parquet
from tasks.datasets.base import Reject, rejects_table
from tasks.kinds.base import CheckResult, RecordKind, ShardSpec, ShardSummary
from tasks.sequences.skeleton_images import composite_image, frame_images
from tasks.sequences.tracking import is_person, keep_main_people, track_people
from tasks.validate import SequenceShardChecks, SequenceVersionChecks, shard_suite

#: Sequence shards have no split of their own (folds are columns): they live under ``sequences/``.
SEQUENCE_SHARD_FOLDER = "sequences"
#: Clips per Parquet row group (what the builder and the gate hold at once).
ROW_GROUP_CLIPS = 32
#: HDF5 dataset of the per-frame skeleton images, ``(sum T, H, W, 3) uint8``.
FRAMES = "frames"
STAGE = "sequence"

_KP_COLUMNS = ["clip_id", "frame_index", "person_index", "keypoints"]
_LIST_COLUMNS = ("frame_indices", "sequence", "track_scores")


def clip_keypoints(fs: Any, part_path: str, wanted: set[str], batch_rows: int = 8192) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Stream one part file's keypoint rows clip by clip (rows are sorted by clip, frame, person).

    Args:
        fs: Filesystem of ``part_path``.
        part_path: An extraction run's ``part-*.parquet``.
        wanted: Clip ids to yield (others are skipped).
        batch_rows: Rows read at once.

    Yields:
        ``(clip_id, frame_index (R,) int64, keypoints (R, J, 3) float32)`` per wanted clip with rows.
    """
    current: str | None = None
    frames: list[np.ndarray] = []
    kps: list[np.ndarray] = []

    def flush() -> tuple[str, np.ndarray, np.ndarray] | None:
        if current is None or not frames:
            return None
        return current, np.concatenate(frames), np.concatenate(kps)

    with fs.open(part_path, "rb") as fh:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=batch_rows, columns=_KP_COLUMNS):
            ids = batch.column(0).to_pylist()
            fidx = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
            outer = batch.column(3)
            lengths = outer.value_lengths().to_numpy(zero_copy_only=False)
            flat = outer.flatten().flatten().to_numpy(zero_copy_only=False).astype(np.float32)
            starts = np.concatenate([[0], np.cumsum(lengths)]) * 3
            i = 0
            n = len(ids)
            while i < n:
                cid = ids[i]
                k = i
                while k < n and ids[k] == cid:
                    k += 1
                if cid != current:
                    done = flush()
                    if done is not None:
                        yield done
                    current, frames, kps = cid, [], []
                if cid in wanted:
                    joints = int(lengths[i]) if k > i else 0
                    if (lengths[i:k] == joints).all():
                        frames.append(fidx[i:k])
                        kps.append(flat[starts[i] : starts[k]].reshape(k - i, joints, 3))
                    else:  # rows of one clip with different joint counts: keep each as its own shape
                        for r in range(i, k):
                            frames.append(fidx[r : r + 1])
                            kps.append(flat[starts[r] : starts[r + 1]].reshape(1, int(lengths[r]), 3))
                i = k
    done = flush()
    if done is not None:
        yield done


def build_sequence(
    frames: list[int], row_frames: np.ndarray, keypoints: np.ndarray, max_people: int, max_cost: float, max_gap_frames: int
) -> tuple[list[int], np.ndarray, np.ndarray, int, int]:
    """One clip's sequence from its keypoint rows.

    Args:
        frames: The clip's frames (``T``), in order.
        row_frames: ``(R,)`` frame of each keypoint row.
        keypoints: ``(R, J, 3)`` x_px, y_px, score per row.
        max_people: M.
        max_cost: Tracking match cost limit.
        max_gap_frames: Tracking gap limit.

    Returns:
        ``(frame_indices, sequence (T', M', J, 3), track_scores (M',), most people in a frame,
        frames with a person)``; ``T' >= T`` when rows name unlisted frames (appended in row order).
    """
    frame_list = list(frames)
    position = {f: t for t, f in enumerate(frame_list)}
    for f in row_frames.tolist():
        if f not in position:
            position[f] = len(frame_list)
            frame_list.append(f)
    per_step: list[list[np.ndarray]] = [[] for _ in frame_list]
    for f, kp in zip(row_frames.tolist(), keypoints, strict=True):
        if is_person(kp):
            per_step[position[f]].append(kp)
    joints = keypoints.shape[1]
    dets = [np.stack(p) if p else np.zeros((0, joints, 3), np.float32) for p in per_step]
    tracks = track_people(dets, max_cost, max_gap_frames)
    sequence, scores = keep_main_people(tracks, max_people)
    return frame_list, sequence, scores, max((len(p) for p in per_step), default=0), sum(1 for p in per_step if p)


@contextlib.contextmanager
def _local_file(fs: Any, path: str) -> Iterator[str]:
    """A local file name to write ``path`` through (the file itself on local disk, else a temp file uploaded at the end)."""
    if isinstance(fs, LocalFileSystem):
        with atomic_local_path(path, durable=False) as tmp:
            yield tmp
        return
    fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        yield tmp
        fs.put_file(tmp, path + ".tmp")
        fs.mv(path + ".tmp", path)
    finally:
        os.remove(tmp)


def _table(rows: list[dict[str, Any]], sequences: list[np.ndarray]) -> pa.Table:
    """A row group of :data:`SEQUENCES_SCHEMA` built column-wise (the sequences as one flat float32 buffer)."""
    columns: dict[str, Any] = {}
    for f in SEQUENCES_SCHEMA:
        if f.name == "sequence":
            flat = [s.reshape(-1) for s in sequences]
            offsets = np.concatenate([[0], np.cumsum([len(s) for s in flat])]).astype(np.int64)
            values = np.concatenate(flat) if flat else np.zeros(0, np.float32)
            columns[f.name] = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32())).cast(f.type)
        else:
            columns[f.name] = pa.array([r[f.name] for r in rows], f.type)
    return conform(pa.table(columns), SEQUENCES_SCHEMA)


class Sequences(RecordKind):
    """Keypoint sequences of action clips (UCF101, UCF11, Berkeley MHAD) from an extraction run."""

    name = "sequences"
    manifest_record = "sequences"
    input_schema = SEQUENCE_SOURCES_SCHEMA
    output_schema = SEQUENCES_SCHEMA
    id_column = "clip_id"
    media_column = "keypoints_file"
    inputs_key = "keypoint_files"
    refuses_missing_media = True

    def plan(self, records: pa.Table, shard_size: int) -> list[tuple[str, int, int, int]]:
        n = records.num_rows
        return [(SEQUENCE_SHARD_FOLDER, i, start, min(start + shard_size, n)) for i, start in enumerate(range(0, n, shard_size))]

    def build(self, spec: ShardSpec) -> ShardSummary:
        """Stream the shard's clips from the run's part files into records + skeleton images (see the module docstring)."""
        fs, paths = spec.paths_fs()
        records = read_parquet(fs, spec.records_path, SEQUENCE_SOURCES_SCHEMA)
        rel = shard_relpath(spec.split, spec.index, "parquet")
        h5_rel = shard_relpath(spec.split, spec.index, "h5")
        build = json.loads(records.column("build_params")[0].as_py()) if records.num_rows else {}
        canvas = (int(build.get("canvas_px", 64)),) * 2
        with_frames = bool(build.get("skeleton_frames", True))
        rejects: list[Reject] = []
        ids: list[str] = []
        composites: list[np.ndarray] = []
        frames_hash = hashlib.sha256()
        pending: list[dict[str, Any]] = []
        pending_seq: list[np.ndarray] = []
        run_fs = LocalFileSystem()
        with _local_file(fs, paths.file(rel)) as parquet_tmp, _local_file(fs, paths.file(h5_rel)) as h5_tmp:
            writer = pq.ParquetWriter(parquet_tmp, SEQUENCES_SCHEMA, compression="zstd", compression_level=3, use_dictionary=True, write_statistics=True, store_schema=True)
            with writer, h5py.File(h5_tmp, "w", track_order=False) as h5:
                frames_ds = h5.create_dataset(FRAMES, shape=(0, *canvas, 3), maxshape=(None, *canvas, 3), dtype=np.uint8, chunks=(1, *canvas, 3),
                                              compression="gzip", compression_opts=1, track_times=False)  # fmt: skip
                offset = 0
                rows = records.to_pylist()
                streams: dict[str, Iterator[tuple[str, np.ndarray, np.ndarray]]] = {}
                heads: dict[str, tuple[str, np.ndarray, np.ndarray] | None] = {}
                # a part's stream (one decoded row group) is closed after its shard's last clip: shards of a
                # run whose parts interleave its clip ids would otherwise hold every part open at once
                last_use = {r["keypoints_file"]: i for i, r in enumerate(rows)}
                for i_rec, rec in enumerate(rows):
                    part = rec["keypoints_file"]
                    if part not in streams:
                        wanted = {r["clip_id"] for r in rows if r["keypoints_file"] == part}
                        streams[part] = clip_keypoints(run_fs, join(spec.source_root, part), wanted)
                        heads[part] = next(streams[part], None)
                    got = None
                    while heads[part] is not None and heads[part][0] < rec["clip_id"]:  # type: ignore[index]
                        heads[part] = next(streams[part], None)
                    if heads[part] is not None and heads[part][0] == rec["clip_id"]:  # type: ignore[index]
                        got = heads[part]
                        heads[part] = next(streams[part], None)
                    if last_use[part] == i_rec:
                        streams.pop(part).close()  # type: ignore[attr-defined]
                        heads.pop(part)
                    out = self._clip(rec, got, build)
                    if out is None:
                        rejects.append(Reject(rec["clip_id"], RejectReason.NO_PERSON, f"nobody detected in any of its {len(rec['frame_indices'])} frames", STAGE))
                        continue
                    row, sequence = out
                    hw = (row["frame_height_px"] or 1, row["frame_width_px"] or 1)
                    composites.append(composite_image(sequence, row["skeleton"], hw, canvas))
                    row["pixels_file"], row["pixels_row"] = h5_rel, len(ids)
                    if with_frames:
                        images = frame_images(sequence, row["skeleton"], hw, canvas)
                        frames_ds.resize(offset + len(images), axis=0)
                        frames_ds[offset : offset + len(images)] = images
                        frames_hash.update(images.data)
                        row["frames_offset"] = offset
                        offset += len(images)
                    ids.append(rec["clip_id"])
                    pending.append(row)
                    pending_seq.append(sequence)
                    if len(pending) == ROW_GROUP_CLIPS:
                        writer.write_table(_table(pending, pending_seq), row_group_size=ROW_GROUP_SIZE)
                        pending, pending_seq = [], []
                if pending or not ids:
                    writer.write_table(_table(pending, pending_seq), row_group_size=ROW_GROUP_SIZE)
                images = np.stack(composites) if composites else np.zeros((0, *canvas, 3), np.uint8)
                dset = h5.create_dataset(IMAGES, shape=images.shape, dtype=np.uint8, chunks=(1, *canvas, 3) if len(ids) else None, track_times=False)
                for i in range(len(ids)):
                    dset.id.write_direct_chunk((i, 0, 0, 0), np.ascontiguousarray(images[i]))
                h5.create_dataset(SAMPLE_IDS, data=np.array(ids, dtype=object), dtype=h5py.string_dtype(), track_times=False)
                h5.attrs[COLOR_ORDER] = "BGR"
                h5.attrs["frames_sha256"] = frames_hash.hexdigest()
                h5.attrs["canvas_hw"] = list(canvas)
            sha = file_sha256(parquet_tmp)
        rejects_rel = staging_relpath(f"rejects-{spec.split}-{spec.index:05d}.parquet") if rejects else None
        if rejects_rel:
            write_parquet(fs, paths.file(rejects_rel), rejects_table(rejects), REJECTS_SCHEMA, durable=False)
        by_reason: dict[str, int] = {}
        for r in rejects:
            by_reason[str(r.reason)] = by_reason.get(str(r.reason), 0) + 1
        return ShardSummary(spec.split, spec.index, rel, h5_rel, len(ids), len(rejects), by_reason, rejects_rel, sha, content_digest(ids, images), records.num_rows)

    @staticmethod
    def _clip(rec: dict[str, Any], got: tuple[str, np.ndarray, np.ndarray] | None, build: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray] | None:
        """The output row and ``(T, M, J, 3)`` sequence of one clip, or None when nobody is in it."""
        if got is None:
            return None
        _, row_frames, kps = got
        frames, sequence, scores, people_max, with_person = build_sequence(
            rec["frame_indices"], row_frames, kps, int(build.get("max_people", 2)), float(build.get("max_cost", 1.0)), int(build.get("max_gap_frames", 5))
        )
        if sequence.shape[1] == 0:
            return None
        t, m, j, _ = sequence.shape
        row = {k: rec.get(k) for k in SEQUENCES_SCHEMA.names if k in rec}
        row.update(
            frame_indices=frames, num_frames=t, num_people=m, num_joints=j, track_scores=scores.tolist(),
            people_max=people_max, frames_with_person=with_person, frames_offset=None,
            frame_width_px=rec.get("frame_width_px") or 0, frame_height_px=rec.get("frame_height_px") or 0,
        )  # fmt: skip
        return row, sequence

    def checks(self, spec: ShardSpec, summary: ShardSummary) -> list[CheckResult]:
        """GX suite on the scalar columns (list columns by their lengths) + the semantic checks, one row group at a time."""
        fs, paths = spec.paths_fs()
        path = paths.file(summary.parquet)
        with open_hdf5(fs, paths.file(summary.hdf5 or "")) as h5:
            pixel_ids = read_sample_ids(h5)
        semantic = SequenceShardChecks(pixel_ids)
        flat: list[pa.Table] = []
        with fs.open(path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            for i in range(pf.num_row_groups):
                t = pf.read_row_group(i)
                semantic.add(t)
                for name in _LIST_COLUMNS:
                    idx = t.schema.get_field_index(name)
                    t = t.set_column(idx, name, pc.list_value_length(t.column(name)))
                flat.append(t)
        df = pa.concat_tables(flat).to_pandas() if flat else pa.table({n: [] for n in SEQUENCES_SCHEMA.names}).to_pandas()
        return shard_suite(df, sequence_expectations(SEQUENCES_SCHEMA, spec.dataset)) + semantic.results()

    def version_checks(self, paths: VersionPaths, fs: Any, summaries: list[ShardSummary]) -> list[CheckResult]:
        """Across shards: ids unique, one side per fold, no group/subject cut, labels one-to-one, one model."""
        checks = SequenceVersionChecks()
        cols = ["clip_id", "group", "subject", "folds", "label", "label_index", "skeleton", "backend", "model_sha256"]
        for shard in summaries:
            with fs.open(paths.file(shard.parquet), "rb") as fh:
                checks.add(pq.read_table(fh, columns=cols))
        return checks.results()

"""The shard worker: stream decode -> backend.infer -> backend.group -> write, resumable per clip.

Per clip, three things overlap: a decode thread fills a queue of at most ``prefetch`` chunks (PyAV
releases the GIL while FFmpeg decodes), the calling thread runs ``infer`` on batches of
``backend.max_batch`` frames, and one grouping thread runs ``group`` on the previous raw outputs.
Batches never mix clips and are never padded, and a backend that is not batch-invariant has
``max_batch == 1``, so batch composition cannot change a result.

Output layout under ``run_dir``: :class:`storage.layout.ExtractionPaths`. The per-clip files (one
clip's keypoints, then its completion marker, written atomically after them: a killed run resumes
with every marked clip skipped) live in the shard's ``cache_dir`` when it has one
(:func:`storage.layout.extraction_cache_dir`, shared by runs). A shard writes its keypoints, clips
rows and rejects, then its summary last; the run manifest is written after every shard.

Every clip of a shard ends in ``clips`` (its frames in ``part``) or in ``rejects``. Text written
to Parquet is valid UTF-8 whatever the file names (:func:`tasks.common.text_of`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.errors import ExtractionError, PosepipeError, RejectReason, VideoDecodeError
from schemas.records import CLIPS_SCHEMA, KEYPOINTS_SCHEMA, REJECTS_SCHEMA, to_table
from storage.fs import filesystem, write_bytes_atomic
from storage.layout import ExtractionPaths
from storage.parquet import read_parquet, write_parquet
from tasks.common import text_of
from tasks.datasets.base import Reject, rejects_table
from tasks.extract.plan import ClipTask, ExtractShardSpec, clip_key, load_estimator, video_sha256
from tasks.keypoints.api import FramePoses, PoseEstimator
from tasks.video.decode import FrameChunk, VideoReader
from tasks.video.sampling import SamplingSpec

STAGE = "extract"


@dataclass
class ClipResult:
    """One clip's outcome.

    Attributes:
        keypoints: KEYPOINTS_SCHEMA table (empty when rejected).
        clip_row: CLIPS_SCHEMA row (None when rejected).
        reject: The reject (None when extracted).
        frames: Frames run through the network.
        people: People found over all frames.
        timings_s: Seconds spent in ``decode`` (waiting on the decoder), ``infer``, ``group`` and ``write``.
        frame_hw: (height, width) of the frames in pixels.
    """

    keypoints: pa.Table
    clip_row: dict[str, Any] | None
    reject: Reject | None
    frames: int = 0
    people: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    frame_hw: tuple[int, int] = (0, 0)


def poses_table(
    clip_id: str,
    frame_indices: Sequence[int],
    poses: Sequence[FramePoses],
    skeleton: str,
    backend: str,
    model_sha256: str,
) -> pa.Table:
    """KEYPOINTS_SCHEMA rows for frames' people, built column-wise (no per-joint Python objects).

    Args:
        clip_id: Clip id of every row.
        frame_indices: Frame index of each entry of ``poses``.
        poses: People per frame; ``keypoints`` ``(P, J, 3) float32``.
        skeleton: Skeleton name.
        backend: Backend name.
        model_sha256: Model hash.

    Returns:
        One row per (frame, person); frames with no people give no rows.
    """
    kps = [p.keypoints for p in poses if p.num_people]
    n = sum(k.shape[0] for k in kps)
    joints = kps[0].shape[1] if kps else 0
    flat = np.concatenate([k.reshape(-1) for k in kps]).astype(np.float32) if kps else np.zeros(0, np.float32)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), 3)
    outer = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * joints, pa.int32()), inner)
    frame_col = np.concatenate(
        [np.full(p.num_people, f, np.int32) for f, p in zip(frame_indices, poses, strict=True)]
        or [np.zeros(0, np.int32)]
    )
    person_col = np.concatenate([np.arange(p.num_people, dtype=np.int32) for p in poses] or [np.zeros(0, np.int32)])
    scores = np.concatenate([np.asarray(p.person_scores, np.float32) for p in poses] or [np.zeros(0, np.float32)])
    arrays = [
        pa.array([clip_id] * n, pa.string()),
        pa.array(frame_col, pa.int32()),
        pa.array(person_col, pa.int32()),
        outer.cast(KEYPOINTS_SCHEMA.field("keypoints").type),
        pa.array(scores, pa.float32()),
        pa.array([skeleton] * n, pa.string()),
        pa.array([backend] * n, pa.string()),
        pa.array([model_sha256] * n, pa.string()),
    ]
    return pa.Table.from_arrays(arrays, schema=KEYPOINTS_SCHEMA)


def _prefetch(chunks: Iterator[FrameChunk], depth: int) -> Iterator[FrameChunk]:
    """Run ``chunks`` on a daemon thread, at most ``depth`` chunks ahead; re-raise its errors here."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, name="posepipe-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def extract_clip(
    estimator: PoseEstimator,
    clip: ClipTask,
    sampling: SamplingSpec,
    chunk_frames: int = 32,
    prefetch: int = 1,
    grouper: ThreadPoolExecutor | None = None,
    batch: int | None = None,
) -> ClipResult:
    """Extract one clip; a bad clip becomes a reject, never an exception.

    Args:
        estimator: The backend.
        clip: The clip.
        sampling: Which frames.
        chunk_frames: Frames decoded per chunk (memory bound: about ``(prefetch + 2) * chunk_frames``
            frames alive at once).
        prefetch: Chunks decoded ahead of inference.
        grouper: Thread pool for ``group`` (one is made if None).
        batch: Frames per ``infer`` call (None: the backend's default, see
            :meth:`~tasks.keypoints.api.PoseEstimator.choose_batch`).

    Returns:
        A :class:`ClipResult`.
    """
    timings = {"decode": 0.0, "infer": 0.0, "group": 0.0}
    empty = poses_table(clip.clip_id, [], [], estimator.skeleton, estimator.name, estimator.model_sha256)
    own_pool = grouper is None
    pool = grouper or ThreadPoolExecutor(max_workers=1, thread_name_prefix="posepipe-group")
    try:
        reader = VideoReader(
            clip.video_path, chunk_frames=chunk_frames, sequence_fps=float(clip.record.get("fps") or 0.0)
        )
        selector = reader.selector(sampling, clip.clip_id)
        indices: list[int] = []
        futures: list[Future[FramePoses]] = []
        step = estimator.choose_batch(batch)
        stream = _prefetch(reader.chunks(selector), prefetch)
        while True:
            t0 = time.perf_counter()
            chunk = next(stream, None)
            timings["decode"] += time.perf_counter() - t0
            if chunk is None:
                break
            for i in range(0, len(chunk), step):
                t0 = time.perf_counter()
                try:
                    raws = estimator.infer(chunk.frames[i : i + step])
                except PosepipeError:
                    raise
                except Exception as exc:  # a backend bug or a bad frame: reject the clip, keep the shard
                    raise ExtractionError(
                        f"{estimator.name} failed on {clip.clip_id} frame {chunk.indices[i]}: {exc!r}"
                    ) from exc
                timings["infer"] += time.perf_counter() - t0
                futures.extend(pool.submit(_timed_group, estimator, raw) for raw in raws)
            indices.extend(chunk.indices)
            del chunk
        t0 = time.perf_counter()
        poses: list[FramePoses] = []
        for fut in futures:
            pose, seconds = fut.result()  # type: ignore[misc]
            poses.append(pose)
            timings["group"] += seconds
        timings["group_wait"] = time.perf_counter() - t0
    except VideoDecodeError as exc:
        return ClipResult(empty, None, _reject(clip, exc.reason, exc.message), timings_s=timings)
    except ExtractionError as exc:
        return ClipResult(empty, None, _reject(clip, RejectReason.INFERENCE_FAILED, exc.message), timings_s=timings)
    finally:
        if own_pool:
            pool.shutdown(wait=True)
    table = poses_table(clip.clip_id, indices, poses, estimator.skeleton, estimator.name, estimator.model_sha256)
    row = {k: v for k, v in clip.record.items() if k in CLIPS_SCHEMA.names}
    row.update(
        clip_id=clip.clip_id,
        fps=reader.info.fps or None,
        frames_decoded=reader.report.frames_decoded,
        frames_declared=reader.info.frames_declared or None,
        decoder=reader.info.decoder + ("+vfr" if reader.report.variable_frame_rate else ""),
        sampled_frame_indices=[int(i) for i in (selector.sequence if selector.sequence is not None else indices)],
    )
    row.setdefault("video_path", clip.video_path)
    row.setdefault("label", "")
    row.setdefault("label_index", -1)
    row = _text_row(row)
    return ClipResult(
        table, row, None, frames=len(indices), people=table.num_rows, timings_s=timings,
        frame_hw=(reader.info.height, reader.info.width),
    )  # fmt: skip


def _reject(clip: ClipTask, reason: RejectReason, detail: str) -> Reject:
    """A reject of ``clip`` at this stage, its texts valid UTF-8 (file names may not be)."""
    return Reject(text_of(clip.clip_id), reason, text_of(detail), STAGE)


def _text_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every string value valid UTF-8 (a ``video_path`` may hold a non-UTF-8 name)."""
    return {k: text_of(v) if isinstance(v, str) else v for k, v in row.items()}


def _timed_group(estimator: PoseEstimator, raw: Any) -> tuple[FramePoses, float]:
    t0 = time.perf_counter()
    return estimator.group(raw), time.perf_counter() - t0


@dataclass
class ExtractShardSummary:
    """Small summary a shard task returns (no arrays).

    Attributes:
        index: Shard number.
        clips: Clips in the shard.
        extracted: Clips written (including resumed ones).
        resumed: Clips skipped because a completion marker existed.
        rejected: Reject count by reason.
        frames: Frames run through the network (this run, resumed clips included).
        people: Keypoint rows.
        rows: Rows in the shard's keypoints file (:meth:`storage.layout.ExtractionPaths.part`).
        part_sha256: sha256 of the part file.
        seconds: Wall time of this call.
        timings_s: Summed ``decode``/``infer``/``group``/``write`` seconds of clips run now.
        clip_frame_hw: Extracted clip id -> decoded frame ``[height, width]`` in pixels (what a
            sequence dataset checks coordinates against and PYSKL calls ``img_shape``).
        clip_keys: Extracted clip id -> its clip key (the content identity of its keypoints).
    """

    index: int
    clips: int = 0
    extracted: int = 0
    resumed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    people: int = 0
    rows: int = 0
    part_sha256: str = ""
    seconds: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)
    clip_frame_hw: dict[str, list[int]] = field(default_factory=dict)
    clip_keys: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


class RunStore:
    """Filesystem, paths and atomic writes of one extraction run folder (or of the clip cache).

    Attributes:
        fs: The folder's filesystem.
        paths: Its paths, on ``fs`` (no protocol).
    """

    def __init__(self, run_dir: str) -> None:
        self.fs, root = filesystem(run_dir)
        self.paths = ExtractionPaths(root)

    def marker(self, key: str) -> dict[str, Any] | None:
        """The completion marker of ``key``, or None if the clip is not done."""
        path = self.paths.clip_marker(key)
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "rb") as fh:
            return json.loads(fh.read())

    def write_json(self, path: str, payload: dict[str, Any]) -> None:
        """Atomic JSON write (sorted keys, so bytes are stable)."""
        write_bytes_atomic(self.fs, path, json.dumps(payload, sort_keys=True, indent=1, default=str).encode())


def extract_shard(
    spec: ExtractShardSpec,
    on_clip: Callable[[str, dict[str, Any]], None] | None = None,
    estimator: PoseEstimator | None = None,
) -> ExtractShardSummary:
    """Extract every clip of a shard, skipping clips already marked done, then write the shard files.

    Args:
        spec: The shard.
        on_clip: Called after each clip with its id and marker (progress bars).
        estimator: Backend to use (default: created from ``spec.backend``, once per process).

    Returns:
        The shard's :class:`ExtractShardSummary`.
    """
    t_start = time.perf_counter()
    est = estimator or load_estimator(spec.backend)
    est.choose_batch(spec.batch)  # a batch the model cannot run is the request's error, not every clip's reject
    store = RunStore(spec.run_dir)
    cache = RunStore(spec.cache_dir) if spec.cache_dir else store
    summary = ExtractShardSummary(index=spec.index, clips=len(spec.clips))
    timings: Counter[str] = Counter()
    parts: list[pa.Table] = []
    clip_rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="posepipe-group") as pool:
        for clip in spec.clips:
            try:
                vsha = video_sha256(clip.video_path)
            except OSError as exc:
                rejects.append(_reject(clip, RejectReason.VIDEO_MISSING, f"cannot read {clip.video_path}: {exc}"))
                if on_clip:
                    on_clip(clip.clip_id, {"status": "rejected", "reason": str(RejectReason.VIDEO_MISSING)})
                continue
            key = clip_key(vsha, est.name, est.model_sha256, spec.backend, spec.sampling, est.graph_revision)
            marker = cache.marker(key)
            if marker is not None:
                summary.resumed += 1
            else:
                result = extract_clip(est, clip, spec.sampling, spec.chunk_frames, grouper=pool, batch=spec.batch)
                t0 = time.perf_counter()
                marker = {"clip_key": key, "clip_id": text_of(clip.clip_id), "video_sha256": vsha, "frames": result.frames,
                          "people": result.people, "frame_hw": list(result.frame_hw), "timings_s": result.timings_s}  # fmt: skip
                if result.reject is None:
                    write_parquet(cache.fs, cache.paths.clip_keypoints(key), result.keypoints, KEYPOINTS_SCHEMA)
                    marker.update(status="ok", clip=result.clip_row)
                else:
                    marker.update(status="rejected", reject=result.reject.as_row())
                cache.write_json(cache.paths.clip_marker(key), marker)
                result.timings_s["write"] = time.perf_counter() - t0
                timings.update(result.timings_s)
            if marker["status"] == "ok":
                table = read_parquet(cache.fs, cache.paths.clip_keypoints(key), KEYPOINTS_SCHEMA)
                # the part is keyed by content: a duplicate video under another id gets this clip's id
                clip_id = text_of(clip.clip_id)
                parts.append(
                    table.set_column(
                        0, KEYPOINTS_SCHEMA.field("clip_id"), pa.array([clip_id] * table.num_rows, pa.string())
                    )
                )
                row = dict(marker["clip"])
                row.update({k: v for k, v in clip.record.items() if k in CLIPS_SCHEMA.names and k not in _MEASURED})
                row["clip_id"], row["dataset"] = clip_id, row.get("dataset") or spec.dataset
                clip_rows.append(_text_row(row))
                summary.clip_frame_hw[clip_id] = [int(v) for v in marker.get("frame_hw") or (0, 0)]
                summary.clip_keys[clip_id] = key
                summary.extracted += 1
                summary.frames += int(marker["frames"])
                summary.people += int(marker["people"])
            else:
                r = marker["reject"]
                rejects.append(
                    Reject(text_of(clip.clip_id), RejectReason(r["reason"]), text_of(r["detail"] or ""), r["stage"],
                           r.get("split"))
                )  # fmt: skip
            if on_clip:
                on_clip(clip.clip_id, marker)
    keypoints = pa.concat_tables(parts) if parts else poses_table("", [], [], est.skeleton, est.name, est.model_sha256)
    keypoints = keypoints.sort_by(
        [("clip_id", "ascending"), ("frame_index", "ascending"), ("person_index", "ascending")]
    )
    rows, sha = write_parquet(store.fs, store.paths.part(spec.index), keypoints, KEYPOINTS_SCHEMA)
    for row in clip_rows:
        row["folds"] = _as_pairs(row.get("folds"))
    write_parquet(
        store.fs, store.paths.clips(spec.index), to_table(clip_rows, CLIPS_SCHEMA), CLIPS_SCHEMA
    )
    write_parquet(store.fs, store.paths.rejects(spec.index), rejects_table(rejects), REJECTS_SCHEMA)
    summary.rows, summary.part_sha256 = rows, sha
    summary.rejected = dict(sorted(Counter(str(r.reason) for r in rejects).items()))
    summary.timings_s = {k: round(v, 6) for k, v in sorted(timings.items())}
    summary.seconds = time.perf_counter() - t_start
    store.write_json(store.paths.shard_summary(spec.index), summary.to_dict())
    return summary


_MEASURED = frozenset({"fps", "frames_decoded", "frames_declared", "decoder", "sampled_frame_indices"})


def _as_pairs(folds: Any) -> list[tuple[str, str]] | None:
    """Folds as sorted (key, value) pairs, whatever shape (dict, pairs, lists from JSON) they come in."""
    if folds is None:
        return None
    items = folds.items() if isinstance(folds, dict) else folds
    return sorted((str(k), str(v)) for k, v in items)


def write_run_manifest(
    run_dir: str, summaries: Sequence[ExtractShardSummary | dict[str, Any]], request: dict[str, Any]
) -> dict[str, Any]:
    """Write the run manifest last (:attr:`storage.layout.ExtractionPaths.manifest`): per-shard rows and sha256, totals, rejects, the request.

    Args:
        run_dir: The run folder.
        summaries: Every shard's summary.
        request: What was asked (dataset, split, backend, sampling...).

    Returns:
        The manifest.
    """
    shards = sorted(
        (s.to_dict() if isinstance(s, ExtractShardSummary) else dict(s) for s in summaries), key=lambda s: s["index"]
    )
    rejected: Counter[str] = Counter()
    for s in shards:
        rejected.update(s["rejected"])
    manifest = {
        "request": request,
        "shards": [
            {k: s[k] for k in ("index", "clips", "extracted", "rows", "part_sha256", "rejected")} for s in shards
        ],
        "totals": {
            "clips": sum(s["clips"] for s in shards),
            "extracted": sum(s["extracted"] for s in shards),
            "rejected": dict(sorted(rejected.items())),
            "frames": sum(s["frames"] for s in shards),
            "people": sum(s["people"] for s in shards),
        },
    }
    store = RunStore(run_dir)
    store.write_json(store.paths.manifest, manifest)
    return manifest


def extract_local(
    shards: Sequence[ExtractShardSpec],
    run_dir: str,
    request: dict[str, Any],
    on_clip: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run shards one after another in this process, then write the run manifest (``extract video``).

    Args:
        shards: Planned shards.
        run_dir: The run folder.
        request: What was asked, stored in the manifest.
        on_clip: Called after each clip with its id and marker (progress bars).

    Returns:
        The manifest.
    """
    return write_run_manifest(run_dir, [extract_shard(spec, on_clip=on_clip) for spec in shards], request)

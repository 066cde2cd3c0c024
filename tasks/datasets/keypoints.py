"""``{dataset}-keypoints``: a finished extraction run of a clip dataset as a sequence dataset.

``posepipe rebuild ucf101-keypoints --from-extract RUN`` (``--from-extract`` is ``--source`` for
these adapters: RUN is the run folder, or its run key under ``{root}/keypoints/ucf101/``) parses the
run folder (:class:`storage.layout.ExtractionPaths`) instead of a published dataset:

* its ``_manifest.json`` (written after every shard: a run without it is not finished) says which
  clip dataset it extracted (it must be this adapter's) and how it sampled frames;
* per extraction shard, ``clips-*.parquet`` gives each extracted clip's record (label, group,
  subject, folds, fps, frames decoded, sampled frames), ``_shards/*.json`` its frame size and
  clip key, ``part-*.parquet`` (only its small columns) how many keypoint rows it has, and
  ``rejects-*.parquet`` the clips extraction failed on, which become this version's parse rejects
  (every clip of the run ends in a shard or in rejects).

One record per extracted clip (:data:`schemas.records.SEQUENCE_SOURCES_SCHEMA`); the keypoints
themselves are read by the shard builder (:mod:`tasks.kinds.sequences`), clip by clip. The version
hashes the run's clips files and per-clip keys (input checksums) and the content digest of every
part file (the kind's media column), so re-extracting one clip differently makes a new version.

Frames: a run sampled with ``all``/``every_k``/``fps`` lists its frames in decode order, kept as
is (the gate refuses a list that is not strictly increasing); ``uniform`` records PYSKL's draw
order, which may loop on short clips, so its frames are the sorted set the network saw.

Parameters (``-p``): ``max_people`` (M, default 2), ``max_cost`` and ``max_gap_frames`` (tracking,
:mod:`tasks.sequences.tracking`), ``canvas_px`` (skeleton image side, default 64),
``skeleton_frames`` (also store one skeleton image per frame, default true).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from schemas.errors import ConfigError, RejectReason, SourceError
from schemas.records import CLIPS_SCHEMA, REJECTS_SCHEMA, SEQUENCE_SOURCES_SCHEMA, to_table
from storage.fs import file_sha256
from storage.layout import ExtractionPaths
from tasks.datasets.base import AdapterParams, DatasetAdapter, ParseResult, Reject, rejects_table
from tasks.sequences.tracking import DEFAULT_MAX_COST, DEFAULT_MAX_GAP_FRAMES

STAGE = "extract"


class KeypointsParams(AdapterParams):
    """How clips become sequences (hashed into the version).

    Attributes:
        max_people: M, tracks kept per clip (highest summed score first).
        max_cost: Largest tracking match cost (mean joint distance / person size).
        max_gap_frames: Frames a track may go unmatched before it ends.
        canvas_px: Side of the square skeleton images in pixels.
        skeleton_frames: Also store one skeleton image per time step (``frames`` in the HDF5).
    """

    max_people: int = Field(default=2, ge=1, le=16)
    max_cost: float = Field(default=DEFAULT_MAX_COST, gt=0)
    max_gap_frames: int = Field(default=DEFAULT_MAX_GAP_FRAMES, ge=0)
    canvas_px: int = Field(default=64, ge=8, le=1024)
    skeleton_frames: bool = True


def read_run_manifest(run: Path) -> dict[str, Any]:
    """The run's ``_manifest.json``.

    Raises:
        SourceError: When the folder is not a finished extraction run.
    """
    path = Path(ExtractionPaths(str(run)).manifest)
    if not path.is_file():
        raise SourceError(
            f"{run} is not a finished extraction run (no {path.name})",
            hint="pass the folder `posepipe extract clips DATASET` printed (under {root}/keypoints/DATASET/); rerun that command to finish it",
        )
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path} is unreadable: {exc}", hint="rerun the extraction (it resumes from its cache)") from exc


def frames_of(sampled: list[int] | None, mode: str) -> list[int]:
    """The sequence's frames from a clip's recorded ``sampled_frame_indices`` (see the module docstring)."""
    frames = [int(i) for i in sampled or []]
    return sorted(set(frames)) if mode == "uniform" else frames


class ClipKeypoints(DatasetAdapter):
    """Base of the ``{dataset}-keypoints`` adapters (a subclass names ``name`` and ``clip_dataset``)."""

    record_kind = "sequences"
    clip_dataset: ClassVar[str] = ""
    Params: ClassVar[type[AdapterParams]] = KeypointsParams

    @property
    def record_schema(self) -> pa.Schema:
        """:data:`schemas.records.SEQUENCE_SOURCES_SCHEMA` (what ``parse`` returns; ``posepipe parse`` writes it)."""
        return SEQUENCE_SOURCES_SCHEMA

    def parse(self, source: Path, params: AdapterParams) -> ParseResult:
        """Read an extraction run folder (see the module docstring).

        Args:
            source: The run folder.
            params: A :class:`KeypointsParams`.

        Raises:
            SourceError: Not a finished run, or one written before runs recorded frame sizes.
            ConfigError: A run of another dataset.
        """
        p = params if isinstance(params, KeypointsParams) else KeypointsParams(**params.model_dump())
        run = Path(source)
        manifest = read_run_manifest(run)
        request = manifest.get("request") or {}
        if request.get("dataset") != self.clip_dataset:
            raise ConfigError(
                f"{run} is an extraction run of {request.get('dataset')!r}, not {self.clip_dataset!r}",
                hint=f"rebuild it as {request.get('dataset')}-keypoints" if request.get("dataset") else "pass an extraction run folder",
            )
        mode = (request.get("sampling") or {}).get("mode", "all")
        build = json.dumps(p.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        paths = ExtractionPaths(str(run))
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        checksums: dict[str, str] = {}
        keys = hashlib.sha256()
        for shard in sorted(manifest.get("shards") or [], key=lambda s: s["index"]):
            i = int(shard["index"])
            summary_path = Path(paths.shard_summary(i))
            summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
            frame_hw, clip_keys = summary.get("clip_frame_hw"), summary.get("clip_keys") or {}
            clips_path, part_path = Path(paths.clips(i)), Path(paths.part(i))
            for f in (clips_path, part_path):
                if not f.is_file():
                    raise SourceError(f"extraction run {run} lacks {f.name}", hint="rerun the extraction (it resumes from its cache)")
            if frame_hw is None:
                raise SourceError(
                    f"extraction run {run} was written before runs recorded frame sizes ({summary_path.name} has no clip_frame_hw)",
                    hint="rerun the same `posepipe extract` command: every clip resumes from the cache in seconds and the shard summaries are rewritten",
                )
            checksums[f"{clips_path.name}"] = file_sha256(clips_path)
            counts, firsts = _keypoint_rows(part_path)
            for r in pq.read_table(clips_path).to_pylist():
                clip_id = r["clip_id"]
                first = firsts.get(clip_id, {})
                hw = frame_hw.get(clip_id)
                key = clip_keys.get(clip_id)
                keys.update(f"{clip_id}\t{key}\n".encode())
                row = {k: r.get(k) for k in CLIPS_SCHEMA.names}
                row.update(
                    dataset=self.name,
                    folds=_pairs(r.get("folds")),
                    frame_height_px=int(hw[0]) if hw and hw[0] else None,
                    frame_width_px=int(hw[1]) if hw and hw[1] else None,
                    frame_indices=frames_of(r.get("sampled_frame_indices"), mode),
                    keypoints_file=part_path.name,
                    keypoints_rows=int(counts.get(clip_id, 0)),
                    clip_key=key,
                    build_params=build,
                    **first,
                )
                rows.append(row)
            rej_path = Path(paths.rejects(i))
            if rej_path.is_file():
                for r in pq.read_table(rej_path).to_pylist():
                    rejects.append(Reject(r["source_key"], RejectReason(r["reason"]), r.get("detail") or "", r.get("stage") or STAGE, r.get("split")))
        checksums["clip_keys"] = keys.hexdigest()
        table = to_table(rows, SEQUENCE_SOURCES_SCHEMA)
        stats = {"run": str(run), "run_clips": (manifest.get("totals") or {}).get("clips"), "sampling": mode,
                 "extraction_rejects": dict(Counter(str(r.reason) for r in rejects))}  # fmt: skip
        return ParseResult(table, rejects_table(rejects) if rejects else pa.Table.from_pylist([], REJECTS_SCHEMA), checksums, stats)


def _pairs(folds: Any) -> list[tuple[str, str]] | None:
    """Folds as (name, side) pairs, in the order stored (duplicates kept: the gate refuses them)."""
    if folds is None:
        return None
    items = folds.items() if isinstance(folds, dict) else folds
    return [(str(k), str(v)) for k, v in items]


def _keypoint_rows(part: Path) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """Rows per clip of one part file and each clip's first skeleton/backend/model (small columns only)."""
    cols = ["clip_id", "skeleton", "backend", "model_sha256"]
    counts: Counter[str] = Counter()
    firsts: dict[str, dict[str, str]] = {}
    pf = pq.ParquetFile(part)
    for i in range(pf.num_row_groups):
        t = pf.read_row_group(i, columns=cols)
        for rec in t.group_by("clip_id", use_threads=False).aggregate([("clip_id", "count"), ("skeleton", "first"), ("backend", "first"), ("model_sha256", "first")]).to_pylist():
            counts[rec["clip_id"]] += rec["clip_id_count"]
            firsts.setdefault(rec["clip_id"], {"skeleton": rec["skeleton_first"], "backend": rec["backend_first"], "model_sha256": rec["model_sha256_first"]})
    return dict(counts), firsts


class UCF101Keypoints(ClipKeypoints):
    """UCF101 keypoint sequences (folds ``split1..split3``)."""

    name: ClassVar[str] = "ucf101-keypoints"
    clip_dataset: ClassVar[str] = "ucf101"
    description: ClassVar[str] = "UCF101 keypoint sequences from a posepipe extraction run."
    fold_hint: ClassVar[str] = "split1..split3"


class UCF11Keypoints(ClipKeypoints):
    """UCF11 keypoint sequences (leave-one-group-out folds)."""

    name: ClassVar[str] = "ucf11-keypoints"
    clip_dataset: ClassVar[str] = "ucf11"
    description: ClassVar[str] = "UCF11 keypoint sequences from a posepipe extraction run."


class MHADKeypoints(ClipKeypoints):
    """Berkeley MHAD keypoint sequences (fold ``subject``: subjects 1-7 train, 8-12 test)."""

    name: ClassVar[str] = "mhad-keypoints"
    clip_dataset: ClassVar[str] = "mhad"
    description: ClassVar[str] = "Berkeley MHAD keypoint sequences from a posepipe extraction run."
    fold_hint: ClassVar[str] = "subject (subjects 1-7 train, 8-12 test)"


def resolve_run(dataset: str, root: str, run: str) -> str:
    """The run folder ``--from-extract RUN`` names: a folder, or a run key under ``{root}/keypoints/{clip dataset}/``.

    Raises:
        ConfigError: ``dataset`` is not a ``NAME-keypoints`` dataset.
        SourceError: Neither a folder nor a run key of that dataset.
    """
    from storage.layout import extraction_dir
    from tasks.datasets import get_adapter

    adapter = get_adapter(dataset)
    if not isinstance(adapter, ClipKeypoints):
        raise ConfigError(f"--from-extract builds a keypoint sequence dataset; {dataset} is not one", hint="use ucf101-keypoints, ucf11-keypoints or mhad-keypoints")
    if Path(run).is_dir():
        return str(Path(run).resolve())
    by_key = Path(extraction_dir(root, adapter.clip_dataset, run))
    if by_key.is_dir():
        return str(by_key.resolve())
    raise SourceError(f"no extraction run {run!r} (neither a folder nor a run key under {by_key.parent})", hint=f"`ls {by_key.parent}` lists the runs of {adapter.clip_dataset}")

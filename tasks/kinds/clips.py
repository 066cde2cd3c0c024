"""``clips``: one video with its label, group/subject and folds; the shards are the records themselves."""

from __future__ import annotations

from typing import Any

from schemas.expectations import ExpectationSpec, suite_for
from schemas.records import CLIPS_SCHEMA
from storage.layout import shard_relpath
from storage.parquet import read_parquet, write_parquet
from tasks.kinds.base import CheckResult, RecordKind, ShardSpec, ShardSummary
from tasks.validate import clip_checks, shard_suite

#: Clip shards have no split of their own (folds are columns): they live under ``clips/``.
CLIP_SHARD_FOLDER = "clips"


class Clips(RecordKind):
    """Videos of an action dataset (UCF101, UCF11, Berkeley MHAD)."""

    name = "clips"
    manifest_record = "clips"
    input_schema = CLIPS_SCHEMA
    output_schema = CLIPS_SCHEMA
    id_column = "clip_id"
    media_column = "video_path"
    inputs_key = "videos"

    def plan(self, records: Any, shard_size: int) -> list[tuple[str, int, int, int]]:
        n = records.num_rows
        return [(CLIP_SHARD_FOLDER, i, start, min(start + shard_size, n)) for i, start in enumerate(range(0, n, shard_size))]

    def build(self, spec: ShardSpec) -> ShardSummary:
        """Copy the staged, sorted clip records to the shard (no media is decoded at rebuild)."""
        fs, paths = spec.paths_fs()
        records = read_parquet(fs, spec.records_path, CLIPS_SCHEMA)
        rel = shard_relpath(spec.split, spec.index, "parquet")
        n, sha = write_parquet(fs, paths.file(rel), records, CLIPS_SCHEMA, durable=False)
        return ShardSummary(spec.split, spec.index, rel, None, n, 0, {}, None, sha, None, n)

    def checks(self, spec: ShardSpec, summary: ShardSummary) -> list[CheckResult]:
        fs, paths = spec.paths_fs()
        df = read_parquet(fs, paths.file(summary.parquet), CLIPS_SCHEMA).to_pandas()
        specs = suite_for(CLIPS_SCHEMA, dataset=spec.dataset, splits=(), skeleton=None, out_hw=None)
        specs.append(ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "clip_id"}))
        return shard_suite(df, specs) + clip_checks(df)

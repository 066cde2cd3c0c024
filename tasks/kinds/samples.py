"""``samples``: one person in an image; built into a crop (HDF5) plus its processed record (Parquet)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.expectations import ExpectationSpec, suite_for
from schemas.records import PROCESSED_SAMPLES_SCHEMA, SAMPLES_SCHEMA
from schemas.settings import MAX_AUTO_SHARD_ROWS, SHARD_PIXEL_BYTES
from storage.hdf5 import read_hdf5_rows
from storage.parquet import read_parquet
from tasks.checks import geometry_rejects
from tasks.datasets.base import Reject
from tasks.kinds.base import CheckResult, RecordKind, ShardSpec, ShardSummary
from tasks.shards import build_shard, plan_shards, process_shard
from tasks.transforms.geometry import CropConfig
from tasks.validate import semantic_checks


class Samples(RecordKind):
    """Annotated people in images (COCO, MPII, FLIC, LSP/LSPET)."""

    name = "samples"
    manifest_record = "processed_samples"
    input_schema = SAMPLES_SCHEMA
    output_schema = PROCESSED_SAMPLES_SCHEMA
    id_column = "sample_id"
    media_column = "image_path"
    inputs_key = "images"
    refuses_missing_media = True

    def sort(self, records: pa.Table) -> pa.Table:
        """By (split, sample_id): shards never cross splits and membership depends only on ids."""
        return records.sort_by([("split", "ascending"), ("sample_id", "ascending")])

    def parse_checks(self, records: pa.Table) -> tuple[np.ndarray, list[Reject]]:
        """Geometry sanity (:mod:`tasks.checks`): boxes, joints and image sizes nobody should crop."""
        return geometry_rejects(records)

    def version_params(self, crop: CropConfig) -> dict[str, Any]:
        return {"crop": asdict(crop)}

    def shard_size(self, requested: int | None, crop: CropConfig) -> int:
        """``requested``, else as many crops as fill :data:`~schemas.settings.SHARD_PIXEL_BYTES`
        (512 at the default 256 x 192, 2,048 at 128 x 96), between 64 and
        :data:`~schemas.settings.MAX_AUTO_SHARD_ROWS`: a worker's memory per shard stays the same
        whatever the crop size, and the fixed cost of a shard task is spread over more samples."""
        if requested:
            return requested
        crop_bytes = crop.out_width_px * crop.out_height_px * 3
        return int(min(MAX_AUTO_SHARD_ROWS, max(64, SHARD_PIXEL_BYTES // crop_bytes)))

    def plan(self, records: pa.Table, shard_size: int) -> list[tuple[str, int, int, int]]:
        return plan_shards(records, shard_size)

    def build(self, spec: ShardSpec) -> ShardSummary:
        return process_shard(spec)

    gx_at_commit = True

    def expectations(self, spec: ShardSpec) -> list[ExpectationSpec]:
        crop = spec.crop or CropConfig()
        return suite_for(PROCESSED_SAMPLES_SCHEMA, dataset=spec.dataset, splits=spec.splits, skeleton=spec.skeleton, out_hw=(crop.out_height_px, crop.out_width_px))

    def checks(self, spec: ShardSpec, summary: ShardSummary) -> list[CheckResult]:
        """The semantic checks, on the shard as written (its GX suite runs at commit, over all shards)."""
        fs, paths = spec.paths_fs()
        table = read_parquet(fs, paths.file(summary.parquet), PROCESSED_SAMPLES_SCHEMA)
        ids, pixels = read_hdf5_rows(fs, paths.file(summary.hdf5 or ""))
        return semantic_checks(table, ids, pixels)

    def build_in_memory(self, spec: ShardSpec) -> tuple[ShardSummary, Callable[[], list[CheckResult]]]:
        """Build the shard; its semantic checks run on the rows and pixels just written, still in
        memory (the same checks :meth:`checks` runs on the files; nothing is read back)."""
        built = build_shard(spec)
        return built.summary, lambda: semantic_checks(built.table, built.sample_ids, built.pixels)

    def version_checks_on(self, tables: list[pa.Table]) -> list[CheckResult]:
        """Sample ids unique across shards; no image in two splits (on the shards' rows)."""
        ids: list[str] = []
        images: dict[str, set[str]] = {}
        for t in tables:
            ids += t.column("sample_id").to_pylist()
            for split, image in zip(t.column("split").to_pylist(), t.column("image_path").to_pylist(), strict=True):
                images.setdefault(image, set()).add(split)
        overlap = sorted(img for img, sp in images.items() if len(sp) > 1)
        return [self.ids_unique(ids), CheckResult.of("splits_disjoint", overlap)]

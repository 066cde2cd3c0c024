"""Test helpers: run the rebuild stages in-process without the orchestrator."""

from __future__ import annotations

from typing import Any

from tasks import rebuild as stages
from tasks.shards import process_shard
from tasks.transforms.geometry import CropConfig
from tasks.validate import validate_shard


def build_version(root: str, source: str, dataset: str = "coco", crop: CropConfig | None = None, **kwargs: Any) -> dict[str, Any]:
    """prepare → process every shard → validate → commit, sequentially (what the flow wires)."""
    crop = crop or CropConfig()
    max_ratio = kwargs.pop("max_reject_ratio", 0.5)
    prepared = stages.prepare(dataset, source, root, crop=crop, **kwargs)
    if prepared.reused:
        return stages.reused_summary(root, prepared)
    shards = [process_shard(s) for s in prepared.specs] or prepared.clip_shards
    reports = [validate_shard(root, dataset, prepared.version, s, prepared.splits, prepared.skeleton, (crop.out_height_px, crop.out_width_px)) for s in shards]
    return stages.commit(root, prepared, shards, reports, max_ratio)

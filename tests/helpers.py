"""Test helpers: run the whole rebuild in-process, without the orchestrator."""

from __future__ import annotations

from typing import Any

from tasks import rebuild as stages
from tasks.transforms.geometry import CropConfig


def build_version(root: str, source: str, dataset: str = "coco", crop: CropConfig | None = None, **kwargs: Any) -> dict[str, Any]:
    """:func:`tasks.rebuild.run` with the builtin ``map``: the same sequence the flow runs."""
    request = stages.RebuildRequest(dataset=dataset, root=root, source=source, crop=crop or CropConfig(), **kwargs)
    return stages.run(request, map)


def build_shards(prepared: stages.Prepared) -> list[Any]:
    """Build and gate every shard of a prepared version, in order (what ``map_shards`` does)."""
    from tasks.kinds import build_and_validate

    return [build_and_validate(spec) for spec in prepared.specs]

"""Shard planning and shard processing (decode → crop → resize → write), batched per shard.

Only :class:`ShardSpec` (paths and small numbers) goes in, only a small summary dict comes out:
pixels never cross the orchestrator. Output bytes depend only on the rows of the shard, the crop
configuration and the run seed — never on worker count or scheduling.
"""

from __future__ import annotations

import collections
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.errors import RejectReason
from schemas.records import PROCESSED_SAMPLES_SCHEMA, REJECTS_SCHEMA, SAMPLES_SCHEMA, to_table
from schemas.skeletons import get_skeleton
from storage.fs import filesystem, join
from storage.hdf5 import write_hdf5_shard
from storage.parquet import read_parquet, write_parquet
from tasks.datasets.base import Reject, rejects_table, stable_hash
from tasks.transforms.geometry import (
    CropConfig,
    crop_box_xyxy,
    crop_sample,
    decode_reduction,
    make_crop_params,
    sample_rng,
)
from tasks.transforms.image_io import ImageReadError, read_image_bgr

STAGING = "_staging"


@dataclass(frozen=True)
class ShardSpec:
    """Everything a worker needs to build one shard (small and picklable).

    Attributes:
        dataset: Dataset name.
        version: Version id.
        root: Storage root URL.
        split: Split of every row in the shard.
        index: Shard index within the split.
        records_path: Parquet of this shard's parsed records only (sorted by sample_id), so a
            worker reads its own rows and never the whole dataset.
        num_rows: Rows in ``records_path``.
        source_root: Local folder the records' ``image_path`` are relative to.
        crop: :class:`CropConfig` fields.
        seed: Run seed.
    """

    dataset: str
    version: str
    root: str
    split: str
    index: int
    records_path: str
    num_rows: int
    source_root: str
    crop: dict[str, Any]
    seed: int

    @property
    def stem(self) -> str:
        """``{split}/part-{index:05d}`` relative to the version folder."""
        return f"{self.split}/part-{self.index:05d}"


def sort_records(table: pa.Table) -> pa.Table:
    """Rows sorted by (split, sample_id): shard membership depends only on ids."""
    return table.sort_by([("split", "ascending"), ("sample_id", "ascending")])


def plan_shards(sorted_records: pa.Table, shard_size: int) -> list[tuple[str, int, int, int]]:
    """Split sorted records into shards of at most ``shard_size`` rows, never across splits.

    Args:
        sorted_records: Output of :func:`sort_records`.
        shard_size: Maximum rows per shard.

    Returns:
        ``(split, index, start, stop)`` per shard.

    Example:
        splits ``[a, a, a, b]`` with size 2 → ``[(a, 0, 0, 2), (a, 1, 2, 3), (b, 0, 3, 4)]``.
    """
    splits = sorted_records.column("split").to_pylist()
    plan: list[tuple[str, int, int, int]] = []
    i = 0
    while i < len(splits):
        split = splits[i]
        j = i
        while j < len(splits) and splits[j] == split:
            j += 1
        for k, start in enumerate(range(i, j, shard_size)):
            plan.append((split, k, start, min(start + shard_size, j)))
        i = j
    return plan


def _keypoint_box(bbox: list[float], xy: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Union of the person box and the labelled keypoints, so every labelled joint is cropped in."""
    box = np.asarray(bbox, dtype=np.float64)
    ok = (vis > 0) & np.isfinite(xy).all(axis=1)
    if ok.any():
        pts = xy[ok]
        box = np.array([min(box[0], pts[:, 0].min()), min(box[1], pts[:, 1].min()), max(box[2], pts[:, 0].max()), max(box[3], pts[:, 1].max())])
    return box


def process_shard(spec: ShardSpec) -> dict[str, Any]:
    """Build one shard: decode each image once, crop/resize each person, write HDF5 then Parquet.

    Bad samples (missing, truncated or unreadable image, size differing from the annotation,
    missing box) become rejects with a reason code; the shard goes on.

    Returns:
        A small summary: split, index, rows written/rejected, reject counts by reason, relative
        paths and sha256 of the Parquet and HDF5 files, and the rejects file path.
    """
    fs, root = filesystem(spec.root)
    cfg = CropConfig(**spec.crop)
    table = read_parquet(fs, spec.records_path, SAMPLES_SCHEMA)
    rows = table.to_pylist()
    vdir = join(root, "datasets", spec.dataset, spec.version)
    source_root = Path(spec.source_root)
    images: list[np.ndarray] = []
    out_rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for _, group in itertools.groupby(rows, key=lambda r: r["image_path"]):
        people = []
        for row in group:
            if row["bbox_xyxy_px"] is None:
                rejects.append(Reject(row["source_key"], RejectReason.INVALID_BOX, "no person box", stage="process", split=row["split"]))
                continue
            xy = np.asarray(row["keypoints_xy_px"], dtype=np.float32).reshape(-1, 2)
            vis = np.asarray(row["keypoints_visibility"], dtype=np.int8)
            box = _keypoint_box(row["bbox_xyxy_px"], xy, vis)
            params = make_crop_params(sample_rng(spec.seed, stable_hash(row["sample_id"])), cfg)
            people.append((row, xy, vis, box, params))
        if not people:
            continue
        # one decode per image, at the coarsest resolution every person's crop allows
        k = decode_reduction([crop_box_xyxy(box, params, cfg) for _, _, _, box, params in people], cfg)
        try:
            image = read_image_bgr(source_root / people[0][0]["image_path"], reduction=k)
        except ImageReadError as exc:
            rejects.extend(Reject(r["source_key"], exc.reason, exc.detail, stage="process", split=r["split"]) for r, *_ in people)
            continue
        h, w = image.shape[:2]
        for row, xy, vis, box, params in people:
            want = (row["image_width"], row["image_height"])
            if want[0] is not None and (-(-want[0] // k), -(-want[1] // k)) != (w, h):
                detail = f"annotation says {want[0]}x{want[1]}, file decodes to {w}x{h} at 1/{k}"
                rejects.append(Reject(row["source_key"], RejectReason.IMAGE_SIZE_MISMATCH, detail, stage="process", split=row["split"]))
                continue
            result = crop_sample(image, box, xy, vis, get_skeleton(row["skeleton"]), params, cfg, reduction=k)
            out = dict(row)
            out.update(
                crop_xyxy_px=result.crop_xyxy_px.tolist(),
                crop_width=cfg.out_width_px,
                crop_height=cfg.out_height_px,
                keypoints_crop_xy_px=result.keypoints_xy_px.tolist(),
                keypoints_visibility=result.visibility.tolist(),
                pixels_file=f"{spec.stem}.h5",
                pixels_row=len(images),
            )
            if params.flip:
                out["extra"] = json.dumps({**json.loads(row["extra"] or "{}"), "flipped": True})
            out_rows.append(out)
            images.append(result.image)
    pixels = np.stack(images) if images else np.zeros((0, cfg.out_height_px, cfg.out_width_px, 3), np.uint8)
    h5_sha = write_hdf5_shard(fs, join(vdir, f"{spec.stem}.h5"), [r["sample_id"] for r in out_rows], pixels, {"dataset": spec.dataset, "version": spec.version}, durable=False)

    n, pq_sha = write_parquet(fs, join(vdir, f"{spec.stem}.parquet"), to_table(out_rows, PROCESSED_SAMPLES_SCHEMA), PROCESSED_SAMPLES_SCHEMA, durable=False)
    rejects_rel = f"{STAGING}/rejects-{spec.split}-{spec.index:05d}.parquet"
    write_parquet(fs, join(vdir, rejects_rel), rejects_table(rejects), REJECTS_SCHEMA, durable=False)
    return {
        "split": spec.split,
        "index": spec.index,
        "parquet": f"{spec.stem}.parquet",
        "hdf5": f"{spec.stem}.h5",
        "rows": n,
        "rejected": len(rejects),
        "rejects_by_reason": dict(sorted(collections.Counter(str(r.reason) for r in rejects).items())),
        "rejects_file": rejects_rel,
        "parquet_sha256": pq_sha,
        "hdf5_content_sha256": h5_sha,
        "parsed": len(rows),
    }


def stage_shards(
    records: pa.Table,
    *,
    dataset: str,
    version: str,
    root: str,
    shard_size: int,
    source_root: str,
    crop: CropConfig,
    seed: int,
) -> list[ShardSpec]:
    """Plan shards over sorted records and write each shard's input rows to its own staging file.

    Args:
        records: Output of :func:`sort_records`.
        dataset: Dataset name.
        version: Version id.
        root: Storage root URL.
        shard_size: Maximum rows per shard.
        source_root: Folder the records' image paths are relative to.
        crop: Crop configuration.
        seed: Run seed.

    Returns:
        One :class:`ShardSpec` per shard, in (split, index) order.
    """
    fs, path = filesystem(root)
    specs = []
    for split, index, start, stop in plan_shards(records, shard_size):
        records_path = join(path, "datasets", dataset, version, STAGING, f"records-{split}-{index:05d}.parquet")
        write_parquet(fs, records_path, records.slice(start, stop - start), SAMPLES_SCHEMA, durable=False)
        specs.append(ShardSpec(dataset, version, root, split, index, records_path, stop - start, source_root, asdict(crop), seed))
    return specs

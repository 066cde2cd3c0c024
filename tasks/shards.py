"""Sample shards: planning by split and processing (decode → crop → resize → write), batched per shard.

Only a :class:`~tasks.kinds.base.ShardSpec` (paths and small numbers) goes in, only a
:class:`~tasks.kinds.base.ShardSummary` comes out: pixels never cross the orchestrator. Output bytes depend only on the rows of the shard, the crop
configuration and the run seed — never on worker count or scheduling.
"""

from __future__ import annotations

import collections
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from schemas.errors import RejectReason, SchemaError
from schemas.records import PROCESSED_SAMPLES_SCHEMA, REJECTS_SCHEMA, SAMPLES_SCHEMA, conform
from schemas.skeletons import get_skeleton
from storage.fs import prefaulted_memory
from storage.hdf5 import COLOR_ORDER, write_hdf5_shard
from storage.layout import shard_relpath, staging_relpath
from storage.parquet import read_parquet, write_parquet
from tasks.common import stable_hash
from tasks.datasets.base import Reject, rejects_table
from tasks.kinds.base import ShardSpec, ShardSummary
from tasks.transforms.geometry import (
    CropConfig,
    crop_affines,
    crop_boxes_xyxy,
    crop_scales,
    decoded_pixel_affine,
    flip_keypoints,
    make_crop_params,
    reduction_for_scale,
    sample_rng,
    warp_image,
    warp_keypoints,
)
from tasks.transforms.image_io import ImageReadError, check_pixel_budget, decode_bgr, encoded_size_wh, load_encoded


def plan_shards(sorted_records: pa.Table, shard_size: int) -> list[tuple[str, int, int, int]]:
    """Split sorted records into shards of at most ``shard_size`` rows, never across splits.

    Args:
        sorted_records: Records sorted by (split, sample_id).
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


def keypoint_boxes_xyxy(bboxes_xyxy_px: np.ndarray, keypoints_xy_px: np.ndarray, visibility: np.ndarray, row_starts: np.ndarray) -> np.ndarray:
    """Union of each person box and that person's labelled keypoints, so every labelled joint is cropped in.

    Args:
        bboxes_xyxy_px: ``(N, 4) float64`` person boxes.
        keypoints_xy_px: ``(P, 2) float32`` keypoints of all N rows, concatenated.
        visibility: ``(P,) int8``.
        row_starts: ``(N,) int`` index of each row's first keypoint (non-decreasing, < P where the
            row has keypoints).

    Returns:
        ``(N, 4) float64``.

    Example:
        box ``[10, 10, 20, 20]`` with a visible joint at ``(25, 5)`` → ``[10, 5, 25, 20]``.
    """
    boxes = np.array(bboxes_xyxy_px, dtype=np.float64)
    p = len(keypoints_xy_px)
    counts = np.diff(np.append(row_starts, p))
    has = counts > 0
    if not has.any():
        return boxes
    xy = keypoints_xy_px.astype(np.float64)
    ok = (visibility > 0) & np.isfinite(xy).all(axis=1)
    starts = row_starts[has]
    lo = np.where(ok[:, None], xy, np.inf)
    hi = np.where(ok[:, None], xy, -np.inf)
    idx = np.flatnonzero(has)
    boxes[idx, :2] = np.minimum(boxes[idx, :2], np.minimum.reduceat(lo, starts, axis=0))
    boxes[idx, 2:] = np.maximum(boxes[idx, 2:], np.maximum.reduceat(hi, starts, axis=0))
    return boxes


@dataclass
class SampleColumns:
    """``samples`` records as columns: numpy for the geometry, Python lists for the rest (one
    shard's inputs here; the parse-time geometry checks read whole datasets the same way)."""

    table: pa.Table
    sample_id: list[str]
    image_path: list[str]
    image_size: list[tuple[int | None, int | None]]
    source_key: list[str]
    split: list[str]
    skeleton: list[str]
    has_box: np.ndarray  # (N,) bool
    bbox: np.ndarray  # (N, 4) float64, NaN where missing
    xy: np.ndarray  # (P, 2) float32
    vis: np.ndarray  # (P,) int8
    starts: np.ndarray  # (N + 1,) int64 keypoint offsets

    @classmethod
    def from_table(cls, table: pa.Table) -> SampleColumns:
        t = table.combine_chunks()
        n = t.num_rows
        boxes = t.column("bbox_xyxy_px").to_pylist()
        has_box = np.array([b is not None for b in boxes], dtype=bool)
        bbox = np.array([b if b is not None else [np.nan] * 4 for b in boxes], dtype=np.float64).reshape(n, 4)
        kp = t.column("keypoints_xy_px").chunk(0) if n else pa.array([], SAMPLES_SCHEMA.field("keypoints_xy_px").type)
        offsets = kp.offsets.to_numpy().astype(np.int64)
        points = kp.flatten()
        if points.null_count:  # a null point is an unknown one
            xy = np.array([p if p is not None else [np.nan, np.nan] for p in points.to_pylist()], dtype=np.float32).reshape(-1, 2)
        else:
            xy = points.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 2)
        vis_col = t.column("keypoints_visibility").chunk(0) if n else pa.array([], pa.list_(pa.int8()))
        vis_offsets = vis_col.offsets.to_numpy().astype(np.int64)
        vis = vis_col.flatten().to_numpy(zero_copy_only=False).astype(np.int8)
        if n and not np.array_equal(offsets - offsets[0], vis_offsets - vis_offsets[0]):
            raise SchemaError("keypoints_xy_px and keypoints_visibility differ in length in some row", hint="fix the adapter that built the records")
        return cls(
            table=t,
            sample_id=t.column("sample_id").to_pylist(),
            image_path=t.column("image_path").to_pylist(),
            image_size=list(zip(t.column("image_width_px").to_pylist(), t.column("image_height_px").to_pylist(), strict=True)),
            source_key=t.column("source_key").to_pylist(),
            split=t.column("split").to_pylist(),
            skeleton=t.column("skeleton").to_pylist(),
            has_box=has_box,
            bbox=bbox,
            xy=xy,
            vis=vis,
            starts=offsets - offsets[0] if n else np.zeros(1, np.int64),
        )


_local = threading.local()


def _scratch(name: str, nbytes: int) -> np.ndarray:
    """A 1-D ``uint8`` buffer of at least ``nbytes``, kept by this thread across shards.

    Crops are warped straight into one and images decoded into another: no per-image allocation
    and no ``np.stack`` copy. They are reused because first-touching fresh memory is expensive (a
    page fault per 4 KiB; ~9 µs each on the CI VMs, more than the warp of a crop). One shard's
    crops (75 MB at the default 512 × 256 × 192) and the largest image seen stay allocated per
    worker thread.
    """
    buf = getattr(_local, name, None)
    if buf is None or buf.size < nbytes:
        buf = np.frombuffer(prefaulted_memory(nbytes), np.uint8)
        setattr(_local, name, buf)
    return buf


def _processed_table(
    cols: SampleColumns, kept: np.ndarray, crop_boxes: np.ndarray, kp_crop: np.ndarray, flip: np.ndarray, cfg: CropConfig, pixels_file: str
) -> pa.Table:
    """The processed-samples table of the kept rows, built column-wise from the input table.

    Args:
        cols: The shard's input columns.
        kept: ``(K,)`` input row of each output row, in output (= HDF5 row) order.
        crop_boxes: ``(N, 4) float32`` crop box per input row.
        kp_crop: ``(P, 2) float32`` keypoints in crop pixels, concatenated like ``cols.xy``.
        flip: ``(N,) bool`` mirrored rows (their joints swap left/right).
        cfg: Crop configuration.
        pixels_file: HDF5 shard relative to the version folder.
    """
    counts = np.diff(cols.starts)[kept]
    first = cols.starts[:-1][kept]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    point = np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts)  # index within its row
    source = np.repeat(first, counts) + point
    flipped = np.flatnonzero(flip[kept]).tolist()  # output rows that were mirrored
    xy = kp_crop[source]
    vis = cols.vis[source]
    for out_row in flipped:  # left/right swap (the crop affine already mirrored x)
        row = slice(offsets[out_row], offsets[out_row + 1])
        perm = get_skeleton(cols.skeleton[int(kept[out_row])]).flip_permutation
        xy[row], vis[row] = flip_keypoints(xy[row], vis[row], perm, image_width_px=None)
    table = cols.table.take(pa.array(kept, type=pa.int64()))
    if flipped:
        extras = table.column("extra").to_pylist()
        for out_row in flipped:
            extras[out_row] = json.dumps({**json.loads(extras[out_row] or "{}"), "flipped": True})
        table = table.set_column(table.schema.get_field_index("extra"), "extra", pa.array(extras, pa.string()))
        table = table.set_column(
            table.schema.get_field_index("keypoints_visibility"), "keypoints_visibility", pa.ListArray.from_arrays(pa.array(offsets), pa.array(vis, pa.int8()))
        )
    k = len(kept)
    xy_type = PROCESSED_SAMPLES_SCHEMA.field("keypoints_crop_xy_px").type
    table = (
        table.append_column("crop_xyxy_px", pa.FixedSizeListArray.from_arrays(pa.array(crop_boxes[kept].ravel(), pa.float32()), 4))
        .append_column("crop_width_px", pa.array(np.full(k, cfg.out_width_px, np.int32)))
        .append_column("crop_height_px", pa.array(np.full(k, cfg.out_height_px, np.int32)))
        .append_column(
            "keypoints_crop_xy_px",
            pa.ListArray.from_arrays(pa.array(offsets), pa.FixedSizeListArray.from_arrays(pa.array(xy.ravel(), pa.float32()), 2)).cast(xy_type),
        )
        .append_column("pixels_file", pa.array([pixels_file] * k, pa.string()))
        .append_column("pixels_row", pa.array(np.arange(k, dtype=np.int32)))
    )
    return conform(table, PROCESSED_SAMPLES_SCHEMA)


@dataclass(frozen=True)
class BuiltShard:
    """A shard just written, with what was written still in memory (so the gate need not read it back).

    Attributes:
        summary: What was written (paths, rows, checksums, rejects).
        table: The Parquet file's rows (``PROCESSED_SAMPLES_SCHEMA``, as conformed before writing).
        sample_ids: The HDF5 file's ids, in row order.
        pixels: The HDF5 file's crops, ``(N, H, W, 3) uint8``: a view of this thread's scratch
            buffer, valid only until the thread builds its next shard.
    """

    summary: ShardSummary
    table: pa.Table
    sample_ids: list[str]
    pixels: np.ndarray


def process_shard(spec: ShardSpec) -> ShardSummary:
    """Build one shard: decode each image once, crop/resize each person, write HDF5 then Parquet.

    Bad samples (missing, truncated or unreadable image, size differing from the annotation,
    missing box) become rejects with a reason code; the shard goes on.

    Returns:
        What was written: rows written/rejected, reject counts by reason, relative paths and
        sha256 of the Parquet and HDF5 files, and the rejects file (None when it rejected nothing).
    """
    return build_shard(spec).summary


def build_shard(spec: ShardSpec) -> BuiltShard:
    """:func:`process_shard`, also handing back the rows and pixels it wrote (see :class:`BuiltShard`)."""
    fs, paths = spec.paths_fs()
    cfg = spec.crop or CropConfig()
    cols = SampleColumns.from_table(read_parquet(fs, spec.records_path, SAMPLES_SCHEMA))
    n = cols.table.num_rows
    source_root = Path(spec.source_root)
    # randomness first, once per sample (pad, shift, flip), then every box and affine at once
    drawn = [make_crop_params(sample_rng(spec.seed, stable_hash(sid)), cfg) for sid in cols.sample_id]
    pad = np.array([d.pad_ratio for d in drawn], dtype=np.float64)
    shift = np.array([d.shift_xy_px for d in drawn], dtype=np.float64).reshape(n, 2)
    flip = np.array([d.flip for d in drawn], dtype=bool)
    person = keypoint_boxes_xyxy(cols.bbox, cols.xy, cols.vis, cols.starts[:-1])
    crop_boxes = crop_boxes_xyxy(person, pad, shift, cfg)
    affines = crop_affines(crop_boxes, cfg.out_width_px, cfg.out_height_px, flip)
    counts = np.diff(cols.starts)
    kp_crop = warp_keypoints(cols.xy, np.repeat(affines, counts, axis=0))
    scales = crop_scales(crop_boxes, cfg).tolist()

    pixel_bytes = cfg.out_height_px * cfg.out_width_px * 3
    crops = _scratch("crops", n * pixel_bytes)[: n * pixel_bytes].reshape(n, cfg.out_height_px, cfg.out_width_px, 3)
    kept: list[int] = []
    rejects: list[Reject] = []

    def reject(i: int, reason: RejectReason, detail: str) -> None:
        rejects.append(Reject(cols.source_key[i], reason, detail, stage="process", split=cols.split[i]))

    i = 0
    while i < n:  # rows are sorted by sample id, so one image's people are adjacent
        j = i + 1
        while j < n and cols.image_path[j] == cols.image_path[i]:
            j += 1
        people = []
        for r in range(i, j):
            if cols.has_box[r]:
                people.append(r)
            else:
                reject(r, RejectReason.INVALID_BOX, "no person box")
        i = j
        if not people:
            continue
        # one decode per image, at the coarsest resolution every person's crop allows; the real
        # size comes from the file's header, so nothing is sized from the annotation
        k = reduction_for_scale(min(scales[r] for r in people))  # == decode_reduction(crop_boxes[people])
        path = source_root / cols.image_path[people[0]]
        try:
            data = load_encoded(path)
            header_wh = encoded_size_wh(data)
            check_pixel_budget(path, header_wh)
        except ImageReadError as exc:
            for r in people:
                reject(r, exc.reason, exc.detail)
            continue
        if header_wh is not None:  # refuse mismatches before decoding
            matching = []
            for r in people:
                if cols.image_size[r][0] is not None and tuple(cols.image_size[r]) != header_wh:
                    want_w, want_h = cols.image_size[r]
                    reject(r, RejectReason.IMAGE_SIZE_MISMATCH, f"annotation says {want_w}x{want_h}, file is {header_wh[0]}x{header_wh[1]}")
                else:
                    matching.append(r)
            people = matching
            if not people:
                continue
            width, height = header_wh
        else:
            width, height = cols.image_size[people[0]]
        try:
            image = decode_bgr(data, path, reduction=k, out=_scratch("decoded", -(-(width or 0) // k) * -(-(height or 0) // k) * 3))
        except ImageReadError as exc:
            for r in people:
                reject(r, exc.reason, exc.detail)
            continue
        h, w = image.shape[:2]
        for r in people:
            want_w, want_h = cols.image_size[r]
            if want_w is not None and (-(-want_w // k), -(-(want_h or 0) // k)) != (w, h):
                reject(r, RejectReason.IMAGE_SIZE_MISMATCH, f"annotation says {want_w}x{want_h}, file decodes to {w}x{h} at 1/{k}")
                continue
            warp_image(image, decoded_pixel_affine(affines[r], k), cfg.out_width_px, cfg.out_height_px, cfg.fill_value, out=crops[len(kept)])
            kept.append(r)

    pixels = crops[: len(kept)]
    h5_rel, pq_rel = shard_relpath(spec.split, spec.index, "h5"), shard_relpath(spec.split, spec.index, "parquet")
    out_table = _processed_table(cols, np.array(kept, dtype=np.int64), crop_boxes, kp_crop, flip, cfg, h5_rel)
    sample_ids = out_table.column("sample_id").to_pylist()
    attrs = {"dataset": spec.dataset, "version": spec.version, COLOR_ORDER: "BGR"}  # decode_bgr/warp_image keep OpenCV's order
    h5_sha = write_hdf5_shard(fs, paths.file(h5_rel), sample_ids, pixels, attrs, durable=False)  # creates _pixels/{split}/
    written, pq_sha = write_parquet(fs, paths.file(pq_rel), out_table, PROCESSED_SAMPLES_SCHEMA, durable=False)
    rejects_rel = staging_relpath(f"rejects-{spec.split}-{spec.index:05d}.parquet") if rejects else None
    if rejects_rel:
        write_parquet(fs, paths.file(rejects_rel), rejects_table(rejects), REJECTS_SCHEMA, durable=False)
    by_reason = dict(sorted(collections.Counter(str(r.reason) for r in rejects).items()))
    summary = ShardSummary(spec.split, spec.index, pq_rel, h5_rel, written, len(rejects), by_reason, rejects_rel, pq_sha, h5_sha, n)
    return BuiltShard(summary, out_table, sample_ids, pixels)  # out_table is already conformed

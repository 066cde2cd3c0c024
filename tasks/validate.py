"""The validation gate: the schema-generated GX suite plus semantic checks, per shard and per version.

Great Expectations is imported inside :func:`run_gx_suite` only (it takes seconds to import), so
ingest code never pays for it. Results are plain dicts: ``{"check", "success", "unexpected",
"detail"}`` per expectation, so reports and error messages name the failing expectation and shard.
"""

from __future__ import annotations

import html
import logging
import os
import re
from typing import Any

import numpy as np
import pandas as pd

from schemas.expectations import ExpectationSpec, suite_for
from schemas.records import CLIPS_SCHEMA, PROCESSED_SAMPLES_SCHEMA
from schemas.skeletons import get_skeleton
from storage.fs import filesystem, join
from storage.hdf5 import read_hdf5_rows
from storage.parquet import read_parquet

CROP_TOLERANCE_PX = 0.5


def _snake(name: str) -> str:
    """``ExpectColumnValuesToBeUnique`` → ``expect_column_values_to_be_unique``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def run_gx_suite(df: pd.DataFrame, specs: list[ExpectationSpec], suite_name: str) -> list[dict[str, Any]]:
    """Run expectation specs on a DataFrame with Great Expectations 1.x (ephemeral context).

    Returns:
        One result dict per spec, in order.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = ctx.data_sources.add_pandas(f"{suite_name}-source")
    asset = source.add_dataframe_asset(name="shard")
    batch_def = asset.add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add(gx.ExpectationSuite(name=suite_name))
    for spec in specs:
        suite.add_expectation(getattr(gx.expectations, spec.type)(**spec.kwargs))
    # GX cannot hash list cells; nested columns are checked by the semantic checks instead.
    flat = df.copy()
    for col in flat.columns:
        if flat[col].map(lambda v: isinstance(v, list | np.ndarray)).any():
            flat[col] = flat[col].map(lambda v: None if v is None else repr(np.asarray(v).tolist()))
    batch = batch_def.get_batch(batch_parameters={"dataframe": flat})
    result = batch.validate(suite, result_format="SUMMARY")
    # GX does not keep the suite's order in its results: match them back by (type, column).
    by_key = {(_snake(r.expectation_config.type), r.expectation_config.kwargs.get("column")): r for r in result.results}
    out = []
    for spec in specs:
        r = by_key[(_snake(spec.type), spec.kwargs.get("column"))]
        res = r.result or {}
        out.append(
            {
                "check": spec.label,
                "engine": "great_expectations",
                "success": bool(r.success),
                "unexpected": int(res.get("unexpected_count") or 0),
                "detail": repr(res.get("partial_unexpected_list", res.get("details", "")))[:300] if not r.success else "",
            }
        )
    return out


def semantic_checks(df: pd.DataFrame, pixel_ids: list[str], pixels: np.ndarray) -> list[dict[str, Any]]:
    """Checks GX cannot express on nested columns and pixels.

    Args:
        df: The shard's rows (PROCESSED_SAMPLES_SCHEMA).
        pixel_ids: Sample ids stored in the shard's HDF5, in row order.
        pixels: The shard's crops, ``(N, H, W, 3) uint8``.

    Returns:
        Result dicts for :data:`schemas.expectations.SEMANTIC_CHECKS`, in that order.
    """
    results = []

    def add(name: str, bad: list[str]) -> None:
        results.append({"check": name, "engine": "posepipe", "success": not bad, "unexpected": len(bad), "detail": ", ".join(bad[:5])})

    bad_count, bad_vis, bad_crop, bad_finite, bad_box = [], [], [], [], []
    for row in df.itertuples(index=False):
        sk = get_skeleton(row.skeleton)
        xy = np.asarray([list(p) for p in row.keypoints_crop_xy_px], dtype=np.float32).reshape(-1, 2)
        vis = np.asarray(row.keypoints_visibility, dtype=np.int16)
        box = np.asarray(row.crop_xyxy_px, dtype=np.float64)
        w, h = row.image_width, row.image_height
        if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1] or (
            w is not None and h is not None and (box[2] <= 0 or box[3] <= 0 or box[0] >= w or box[1] >= h)
        ):
            bad_box.append(row.sample_id)
        if len(xy) != sk.num_joints or len(vis) != sk.num_joints or len(row.keypoints_xy_px) != sk.num_joints:
            bad_count.append(row.sample_id)
            continue
        if not np.isin(vis, (0, 1, 2)).all():
            bad_vis.append(row.sample_id)
        finite = np.isfinite(xy).all(axis=1)
        if ((vis > 0) & ~finite).any():
            bad_finite.append(row.sample_id)
        pts = xy[(vis > 0) & finite]
        lo = -0.5 - CROP_TOLERANCE_PX
        if len(pts) and ((pts[:, 0] < lo) | (pts[:, 1] < lo) | (pts[:, 0] > row.crop_width - 0.5 + CROP_TOLERANCE_PX) | (pts[:, 1] > row.crop_height - 0.5 + CROP_TOLERANCE_PX)).any():
            bad_crop.append(row.sample_id)
    add("joint_count_matches_skeleton", bad_count)
    add("visibility_in_domain", bad_vis)
    add("visible_keypoints_inside_crop", bad_crop)
    add("visible_keypoints_finite", bad_finite)
    add("crop_box_intersects_image", bad_box)
    missing = []
    aligned = len(pixel_ids) == len(df) and (not len(df) or pixels.shape[0] == len(df))
    if not aligned:
        missing.append(f"{len(df)} rows but {len(pixel_ids)} pixel rows")
    else:
        for row in df.itertuples(index=False):
            if row.pixels_row >= len(pixel_ids) or pixel_ids[row.pixels_row] != row.sample_id:
                missing.append(row.sample_id)
    add("crop_pixels_present", missing)
    constant = []
    if aligned and len(df):
        flat = pixels.reshape(len(pixels), -1)
        same = set((flat.min(axis=1) == flat.max(axis=1)).nonzero()[0].tolist())  # one colour: fill only, no image content
        constant = [sid for sid, r in zip(df["sample_id"], df["pixels_row"], strict=True) if r in same]
    add("crop_pixels_not_constant", constant)
    return results


def clip_checks(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Semantic checks of clip records: no fold puts one group on both sides; one index per label."""
    leaks: list[str] = []
    sides: dict[tuple[str, str], set[str]] = {}
    for group, folds in zip(df["group"], df["folds"], strict=True):
        for fold, side in folds if folds is not None else []:
            if group is not None:
                sides.setdefault((fold, group), set()).add(side)
    leaks = sorted(f"{fold}:{group}" for (fold, group), ss in sides.items() if len(ss) > 1)
    per_label = df.groupby("label")["label_index"].nunique()
    ambiguous = sorted(per_label[per_label > 1].index.astype(str))
    return [
        {"check": "folds_never_cut_a_group", "engine": "posepipe", "success": not leaks, "unexpected": len(leaks), "detail": ", ".join(leaks[:5])},
        {"check": "one_label_index_per_label", "engine": "posepipe", "success": not ambiguous, "unexpected": len(ambiguous), "detail": ", ".join(ambiguous[:5])},
    ]


def validate_shard(root: str, dataset: str, version: str, shard: dict[str, Any], splits: tuple[str, ...], skeleton: str | None, out_hw: tuple[int, int]) -> dict[str, Any]:
    """Validate one shard: processed samples (Parquet rows + HDF5 pixels) or clip records.

    Returns:
        ``{"shard": "val/part-00000", "success": bool, "results": [...]}``.
    """
    fs, path = filesystem(root)
    vdir = join(path, "datasets", dataset, version)
    clips = shard.get("hdf5") is None
    schema = CLIPS_SCHEMA if clips else PROCESSED_SAMPLES_SCHEMA
    df = read_parquet(fs, join(vdir, shard["parquet"]), schema).to_pandas()
    if clips:
        specs = suite_for(schema, dataset=dataset, splits=(), skeleton=None, out_hw=None)
        specs.append(ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "clip_id"}))
    else:
        specs = suite_for(schema, dataset=dataset, splits=splits, skeleton=skeleton, out_hw=out_hw)
    name = shard["parquet"].removesuffix(".parquet")
    results = run_gx_suite(df, specs, f"{dataset}-{name.replace('/', '-')}") if len(df) else []
    if clips:
        results += clip_checks(df)
    else:
        ids, pixels = read_hdf5_rows(fs, join(vdir, shard["hdf5"]))
        results += semantic_checks(df, ids, pixels)
    return {"shard": name, "success": all(r["success"] for r in results), "results": results}


def version_checks(root: str, dataset: str, version: str, shards: list[dict[str, Any]], record: str = "samples") -> list[dict[str, Any]]:
    """Checks across shards: ids unique; for samples also splits disjoint by sample id and by image."""
    fs, path = filesystem(root)
    vdir = join(path, "datasets", dataset, version)
    id_col = "clip_id" if record == "clips" else "sample_id"
    seen: set[str] = set()
    images: dict[str, set[str]] = {}
    dup = []
    for shard in shards:
        t = read_parquet(fs, join(vdir, shard["parquet"]))
        for sid in t.column(id_col).to_pylist():
            if sid in seen:
                dup.append(sid)
            seen.add(sid)
        if record != "clips":
            for split, image in zip(t.column("split").to_pylist(), t.column("image_path").to_pylist(), strict=True):
                images.setdefault(image, set()).add(split)
    out = [{"check": f"{id_col}s_unique_across_shards", "engine": "posepipe", "success": not dup, "unexpected": len(dup), "detail": ", ".join(dup[:5])}]
    if record != "clips":
        overlap = sorted(img for img, sp in images.items() if len(sp) > 1)
        out.append({"check": "splits_disjoint", "engine": "posepipe", "success": not overlap, "unexpected": len(overlap), "detail": ", ".join(overlap[:5])})
    return out


def failures(report: dict[str, Any]) -> list[str]:
    """``"shard: check (n unexpected: detail)"`` for every failed check of a validation report."""
    out = []
    for shard in report["shards"]:
        for r in shard["results"]:
            if not r["success"]:
                out.append(f"{shard['shard']}: {r['check']} ({r['unexpected']} unexpected: {r['detail']})")
    for r in report["version"]:
        if not r["success"]:
            out.append(f"version: {r['check']} ({r['unexpected']} unexpected: {r['detail']})")
    return out


def render_html(report: dict[str, Any], title: str) -> str:
    """A self-contained HTML page of the validation report (one row per shard × check)."""
    rows = []
    for shard in report["shards"] + [{"shard": "(version)", "results": report["version"]}]:
        for r in shard["results"]:
            colour = "#dfd" if r["success"] else "#fdd"
            rows.append(
                f"<tr style='background:{colour}'><td>{html.escape(shard['shard'])}</td><td>{html.escape(r['check'])}</td>"
                f"<td>{r['engine']}</td><td>{'pass' if r['success'] else 'FAIL'}</td><td>{r['unexpected']}</td>"
                f"<td>{html.escape(str(r['detail']))}</td></tr>"
            )
    status = "PASSED" if report["success"] else "FAILED"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}: {status}</h1><table border=1 cellpadding=3>"
        "<tr><th>shard</th><th>check</th><th>engine</th><th>result</th><th>unexpected</th><th>detail</th></tr>"
        + "".join(rows)
        + "</table></body></html>\n"
    )

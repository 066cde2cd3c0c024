"""The validation gate's checks: the schema-generated GX suite runner plus semantic checks.

Great Expectations is imported inside :func:`_gx_runner` only (it takes seconds to import), so
ingest code never pays for it. Every check gives a :class:`~tasks.kinds.base.CheckResult`, so
reports and error messages name the failing expectation and shard. Which checks a shard gets is
its record kind's business (``tasks/kinds/``).
"""

from __future__ import annotations

import html
import logging
import os
import re
import threading
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas.expectations import SEQUENCE_CHECKS, ExpectationSpec
from schemas.skeletons import get_skeleton
from tasks.kinds.base import CheckResult

CROP_TOLERANCE_PX = 0.5


def _snake(name: str) -> str:
    """``ExpectColumnValuesToBeUnique`` → ``expect_column_values_to_be_unique``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_SUITES: dict[str, Any] = {}
_SUITES_LOCK = threading.Lock()


def _gx_runner(specs: list[ExpectationSpec]) -> tuple[Any, Any, threading.Lock]:
    """The GX batch definition and suite for ``specs``: built once per process, reused for every shard.

    Building an ephemeral context and adding the expectations took ~2/3 of a shard's GX time
    (~0.25 s of ~0.4 s per 512-row shard here); the suite depends only on the specs, not on the
    shard's rows, so one per distinct spec list is kept. GX contexts are not thread-safe: each
    runner has its own lock.
    """
    key = repr([(sp.type, sorted(sp.kwargs.items(), key=lambda kv: kv[0])) for sp in specs])
    with _SUITES_LOCK:
        if key in _SUITES:
            return _SUITES[key]
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx

        # GX sets INFO on some of its own child loggers ("Created temporary directory ... docs site"):
        # quiet the whole tree, children with a level of their own included
        for name in ("great_expectations", *(n for n in logging.root.manager.loggerDict if n.startswith("great_expectations."))):
            logging.getLogger(name).setLevel(logging.ERROR)
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        name = f"posepipe-{len(_SUITES)}"
        batch_def = ctx.data_sources.add_pandas(f"{name}-source").add_dataframe_asset(name="shard").add_batch_definition_whole_dataframe("whole")
        suite = ctx.suites.add(gx.ExpectationSuite(name=name))
        for spec in specs:
            suite.add_expectation(getattr(gx.expectations, spec.type)(**spec.kwargs))
        _SUITES[key] = (batch_def, suite, threading.Lock())
        return _SUITES[key]


def flat_frame(table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """The rows as GX can check them: nested (list, struct, map) columns become their length.

    GX cannot hash list cells, and its checks on those columns are only about nullness (the
    semantic checks look inside them), so a null stays null and a value becomes its length: the
    same answer to every not-null expectation, without formatting each cell as text.

    Args:
        table: A shard's rows (an Arrow table, or a DataFrame already converted from one).
    """
    if isinstance(table, pd.DataFrame):
        out = table.copy()
        for col in out.columns:
            if out[col].dtype == object and out[col].map(lambda v: isinstance(v, list | tuple | np.ndarray | dict)).any():
                out[col] = out[col].map(lambda v: None if v is None else len(v))
        return out
    columns = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        t = col.type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_map(t):
            columns[name] = pc.list_value_length(col)
        elif pa.types.is_struct(t):
            columns[name] = pc.if_else(pc.is_null(col), pa.scalar(None, pa.int32()), pa.scalar(1, pa.int32()))
        else:
            columns[name] = col
    return pa.table(columns).to_pandas()


def version_suite(shards: list[tuple[str, pa.Table | pd.DataFrame]], specs: list[ExpectationSpec], max_rows: int = 65_536) -> dict[str, list[CheckResult]]:
    """The GX suite over many shards at once, with each shard's own results.

    GX's cost per ``validate`` call is mostly fixed (building its metric graph for every
    expectation: ~0.5-1 s here, whatever the rows), so the suite runs once per group of shards
    (up to ``max_rows`` rows) on their rows stacked, and every failing row is attributed back to
    its shard by position. Table-level expectations (the column set) hold or fail for every
    shard of the group.

    Args:
        shards: ``(shard name, rows)`` pairs, e.g. ``("val/part-00000", table)``.
        specs: The expectation specs (the same for every shard of the version).
        max_rows: Most rows stacked into one GX call (bounds the commit's memory).

    Returns:
        Shard name → one result per spec, in spec order (a shard without rows gets none).
    """
    out: dict[str, list[CheckResult]] = {name: [] for name, _ in shards}
    group: list[tuple[str, pa.Table | pd.DataFrame]] = []
    rows = 0
    for name, table in [*shards, ("", None)]:
        if table is not None and not len(table):
            continue
        if group and (table is None or rows + len(table) > max_rows):
            out.update(_suite_on_group(group, specs))
            group, rows = [], 0
        if table is not None:
            group.append((name, table))
            rows += len(table)
    return out


def _suite_on_group(group: list[tuple[str, pa.Table | pd.DataFrame]], specs: list[ExpectationSpec]) -> dict[str, list[CheckResult]]:
    batch_def, suite, lock = _gx_runner(specs)
    frames = [flat_frame(t) for _, t in group]
    starts = np.cumsum([0] + [len(f) for f in frames])
    flat = pd.concat(frames, ignore_index=True)
    with lock:
        result = batch_def.get_batch(batch_parameters={"dataframe": flat}).validate(suite, result_format={"result_format": "COMPLETE"})
    by_key = {(_snake(r.expectation_config.type), r.expectation_config.kwargs.get("column")): r for r in result.results}
    out: dict[str, list[CheckResult]] = {name: [] for name, _ in group}
    for spec in specs:
        r = by_key[(_snake(spec.type), spec.kwargs.get("column"))]
        res = r.result or {}
        index = res.get("unexpected_index_list")
        if r.success or index is None:  # passed, or a table-level expectation: the same verdict for every shard
            detail = "" if r.success else repr(res.get("partial_unexpected_list", res.get("details", "")))[:300]
            for name, _ in group:
                out[name].append(CheckResult(spec.label, "great_expectations", bool(r.success), int(res.get("unexpected_count") or 0), detail))
            continue
        positions = np.asarray([i if isinstance(i, int | np.integer) else i.get("index", -1) for i in index], dtype=np.int64)
        values = list(res.get("unexpected_list") or [None] * len(positions))
        owner = np.searchsorted(starts, positions, side="right") - 1
        for g, (name, _) in enumerate(group):
            mine = np.flatnonzero(owner == g)
            detail = repr([values[i] for i in mine[:20]])[:300] if len(mine) else ""
            out[name].append(CheckResult(spec.label, "great_expectations", not len(mine), int(len(mine)), detail))
    return out


def shard_suite(df: pa.Table | pd.DataFrame, specs: list[ExpectationSpec]) -> list[CheckResult]:
    """The GX suite on one shard's rows: :func:`version_suite` of that shard alone (an empty shard has nothing to check).

    Args:
        df: The shard's rows (Arrow table or DataFrame; nested columns go through :func:`flat_frame`).
        specs: Its expectation specs.

    Returns:
        One result per spec, in order.
    """
    return version_suite([("shard", df)], specs)["shard"]


def _xy_rows(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A ``list<fixed_size_list<float32, 2>>`` column as (flat ``(sum J, 2) float64`` points, row offsets ``(N + 1,)``)."""
    arr = col.combine_chunks()
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    values = arr.values  # fixed_size_list<float, 2>, possibly offset-sliced
    flat = np.asarray(values.flatten().to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, 2)
    return flat, offsets - offsets[0] if len(offsets) else offsets


def _int_rows(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    arr = col.combine_chunks()
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    return np.asarray(arr.values.to_numpy(zero_copy_only=False), dtype=np.int64)[offsets[0] : offsets[-1]] if len(offsets) else np.zeros(0, np.int64), offsets - offsets[0]


def semantic_checks(df: pa.Table | pd.DataFrame, pixel_ids: list[str], pixels: np.ndarray) -> list[CheckResult]:
    """Checks GX cannot express on nested columns and pixels, for all rows at once.

    Args:
        df: The shard's rows (PROCESSED_SAMPLES_SCHEMA), as an Arrow table (or a DataFrame).
        pixel_ids: Sample ids stored in the shard's HDF5, in row order.
        pixels: The shard's crops, ``(N, H, W, 3) uint8``.

    Returns:
        Results for :data:`schemas.expectations.SEMANTIC_CHECKS`, in that order.
    """
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    n = table.num_rows
    ids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)

    def named(mask: np.ndarray) -> list[str]:
        return ids[mask].tolist()

    xy, xy_off = _xy_rows(table.column("keypoints_crop_xy_px"))
    src_xy, src_off = _xy_rows(table.column("keypoints_xy_px"))
    vis, vis_off = _int_rows(table.column("keypoints_visibility"))
    joints = np.array([get_skeleton(s).num_joints for s in table.column("skeleton").to_pylist()], dtype=np.int64) if n else np.zeros(0, np.int64)
    bad_count = (np.diff(xy_off) != joints) | (np.diff(vis_off) != joints) | (np.diff(src_off) != joints)
    # crop box: finite, non-empty, and not outside the image
    box = np.array([b if b is not None else [np.nan] * 4 for b in table.column("crop_xyxy_px").to_pylist()], dtype=np.float64).reshape(n, 4)
    w = np.array([np.nan if v is None else v for v in table.column("image_width_px").to_pylist()], dtype=np.float64)
    h = np.array([np.nan if v is None else v for v in table.column("image_height_px").to_pylist()], dtype=np.float64)
    known = np.isfinite(w) & np.isfinite(h)
    with np.errstate(invalid="ignore"):
        outside = known & ((box[:, 2] <= 0) | (box[:, 3] <= 0) | (box[:, 0] >= w) | (box[:, 1] >= h))
        bad_box = ~np.isfinite(box).all(axis=1) | (box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1]) | outside
    # per-joint checks on the rows whose joint counts agree (the others are already reported)
    ok_rows = ~bad_count
    xy_ok = xy[np.repeat(ok_rows, np.diff(xy_off))]
    vis_ok = vis[np.repeat(ok_rows, np.diff(vis_off))]
    row_of_joint = np.repeat(np.arange(n)[ok_rows], joints[ok_rows])
    bad_vis = np.zeros(n, bool)
    bad_finite = np.zeros(n, bool)
    bad_crop = np.zeros(n, bool)
    if len(vis_ok):
        bad_vis[row_of_joint[~np.isin(vis_ok, (0, 1, 2))]] = True
        finite = np.isfinite(xy_ok).all(axis=1)
        labelled = vis_ok > 0
        bad_finite[row_of_joint[labelled & ~finite]] = True
        cw = np.asarray(table.column("crop_width_px").to_numpy(zero_copy_only=False), dtype=np.float64)[row_of_joint]
        ch = np.asarray(table.column("crop_height_px").to_numpy(zero_copy_only=False), dtype=np.float64)[row_of_joint]
        lo = -0.5 - CROP_TOLERANCE_PX
        with np.errstate(invalid="ignore"):
            out = (xy_ok[:, 0] < lo) | (xy_ok[:, 1] < lo) | (xy_ok[:, 0] > cw - 0.5 + CROP_TOLERANCE_PX) | (xy_ok[:, 1] > ch - 0.5 + CROP_TOLERANCE_PX)
        bad_crop[row_of_joint[labelled & finite & out]] = True
    results = [
        CheckResult.of("joint_count_matches_skeleton", named(bad_count)),
        CheckResult.of("visibility_in_domain", named(bad_vis)),
        CheckResult.of("visible_keypoints_inside_crop", named(bad_crop)),
        CheckResult.of("visible_keypoints_finite", named(bad_finite)),
        CheckResult.of("crop_box_intersects_image", named(bad_box)),
    ]
    rows = np.asarray(table.column("pixels_row").to_numpy(zero_copy_only=False), dtype=np.int64) if n else np.zeros(0, np.int64)
    aligned = len(pixel_ids) == n and (not n or pixels.shape[0] == n)
    if not aligned:
        missing = [f"{n} rows but {len(pixel_ids)} pixel rows"]
    else:
        stored = np.asarray(pixel_ids, dtype=object)
        in_range = (rows >= 0) & (rows < len(pixel_ids))
        match = np.zeros(n, bool)
        match[in_range] = stored[rows[in_range]] == ids[in_range]
        missing = named(~match)
    results.append(CheckResult.of("crop_pixels_present", missing))
    constant: list[str] = []
    if aligned and n:
        flat = pixels.reshape(n, -1)
        same = flat.min(axis=1) == flat.max(axis=1)  # one colour: fill only, no image content
        valid = (rows >= 0) & (rows < n)
        hit = np.zeros(n, bool)
        hit[valid] = same[rows[valid]]
        constant = named(hit)
    results.append(CheckResult.of("crop_pixels_not_constant", constant))
    return results


def clip_checks(df: pd.DataFrame) -> list[CheckResult]:
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
    return [CheckResult.of("folds_never_cut_a_group", leaks), CheckResult.of("one_label_index_per_label", ambiguous)]


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


#: Keypoints of a sequence may lie this far outside the frame (pixel centres run from -0.5 to W - 0.5).
FRAME_TOLERANCE_PX = 2.0


class SequenceShardChecks:
    """Semantic checks of a sequence shard, fed one row group at a time (memory: one row group).

    Feed every :class:`pyarrow.Table` of the shard's rows (``SEQUENCES_SCHEMA``) to :meth:`add`, then
    :meth:`results` gives :data:`schemas.expectations.SEQUENCE_CHECKS`, in that order. A failing
    clip is named by its id.
    """

    def __init__(self, pixel_ids: list[str], tolerance_px: float = FRAME_TOLERANCE_PX) -> None:
        self.pixel_ids = pixel_ids
        self.tolerance_px = tolerance_px
        self.bad: dict[str, list[str]] = {name: [] for name in ("shape", "scores", "finite", "inside", "increasing", "within", "labels", "pixels")}
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        """Check one batch of rows."""
        for row in table.to_pylist():
            self._row(row)
            self.rows += 1

    def _row(self, row: dict[str, Any]) -> None:
        cid = row["clip_id"]
        t, m, j = row["num_frames"], row["num_people"], row["num_joints"]
        frames = np.asarray(row["frame_indices"], np.int64)
        seq = np.asarray(row["sequence"], np.float32)
        sk_joints = None
        try:
            sk_joints = get_skeleton(row["skeleton"]).num_joints
        except Exception:  # noqa: BLE001 - an unknown skeleton fails the shape check
            sk_joints = -1
        if seq.size != t * m * j * 3 or len(frames) != t or j != sk_joints:
            self.bad["shape"].append(cid)
            return
        seq = seq.reshape(t, m, j, 3)
        score = seq[..., 2]
        if not (np.isfinite(score).all() and (score >= 0).all() and (score <= 1).all()):
            self.bad["scores"].append(cid)
        xy = seq[..., :2]
        finite = np.isfinite(xy).all(axis=-1)
        if ((np.nan_to_num(score) > 0) & ~finite).any():
            self.bad["finite"].append(cid)
        pts = xy[finite]
        w, h, tol = row["frame_width_px"], row["frame_height_px"], self.tolerance_px
        if len(pts) and (w is None or h is None or (pts[:, 0] < -0.5 - tol).any() or (pts[:, 1] < -0.5 - tol).any()
                         or (pts[:, 0] > w - 0.5 + tol).any() or (pts[:, 1] > h - 0.5 + tol).any()):  # fmt: skip
            self.bad["inside"].append(cid)
        if len(frames) > 1 and not (np.diff(frames) > 0).all():
            self.bad["increasing"].append(cid)
        decoded = row["frames_decoded"]
        if len(frames) and (frames.min() < 0 or decoded is None or frames.max() >= decoded):
            self.bad["within"].append(cid)
        if not row["label"] or row["label_index"] is None or row["label_index"] < 0:
            self.bad["labels"].append(cid)
        r = row["pixels_row"]
        if r is None or not 0 <= r < len(self.pixel_ids) or self.pixel_ids[r] != cid:
            self.bad["pixels"].append(cid)

    def results(self) -> list[CheckResult]:
        """One result per :data:`schemas.expectations.SEQUENCE_CHECKS`."""
        pixels = self.bad["pixels"] or ([f"{self.rows} rows but {len(self.pixel_ids)} skeleton images"] if len(self.pixel_ids) != self.rows else [])
        names = ("shape", "scores", "finite", "inside", "increasing", "within", "labels")
        return [CheckResult.of(n, self.bad[k]) for n, k in zip(SEQUENCE_CHECKS[:-1], names, strict=True)] + [CheckResult.of(SEQUENCE_CHECKS[-1], pixels)]


class SequenceVersionChecks:
    """Checks across every shard of a sequence version, fed the small columns shard by shard.

    Columns needed: ``clip_id``, ``group``, ``subject``, ``folds``, ``label``, ``label_index``,
    ``skeleton``, ``backend``, ``model_sha256``. Gives :data:`schemas.expectations.SEQUENCE_VERSION_CHECKS`.
    Memory: a few small values per clip (ids and folds), never a sequence.
    """

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.dup: list[str] = []
        self.sides: dict[tuple[str, str], set[str]] = {}
        self.group_sides: dict[tuple[str, str, str], set[str]] = {}
        self.labels: dict[str, set[int]] = {}
        self.indices: dict[int, set[str]] = {}
        self.models: set[tuple[str, str, str]] = set()

    def add(self, table: pa.Table) -> None:
        """Account one shard's rows."""
        for row in table.to_pylist():
            cid = row["clip_id"]
            if cid in self.ids:
                self.dup.append(cid)
            self.ids.add(cid)
            for fold, side in row["folds"] or []:
                self.sides.setdefault((cid, fold), set()).add(side)
                for what in ("group", "subject"):
                    if row[what] is not None:
                        self.group_sides.setdefault((what, fold, row[what]), set()).add(side)
            self.labels.setdefault(row["label"], set()).add(row["label_index"])
            self.indices.setdefault(row["label_index"], set()).add(row["label"])
            self.models.add((row["skeleton"], row["backend"], row["model_sha256"]))

    def results(self) -> list[CheckResult]:
        """One result per :data:`schemas.expectations.SEQUENCE_VERSION_CHECKS`."""
        two_sides = sorted(f"{cid}:{fold}" for (cid, fold), s in self.sides.items() if len(s) > 1)
        cut = {what: sorted(f"{fold}:{g}" for (w, fold, g), s in self.group_sides.items() if w == what and len(s) > 1) for what in ("group", "subject")}
        models = [] if len(self.models) <= 1 else [f"{sk}/{be}/{ms[:12]}" for sk, be, ms in sorted(self.models)]
        return [
            CheckResult.of("clip_ids_unique_across_shards", self.dup),
            CheckResult.of("one_side_per_fold", two_sides),
            CheckResult.of("folds_never_cut_a_group", cut["group"]),
            CheckResult.of("folds_never_cut_a_subject", cut["subject"]),
            CheckResult.of("one_label_index_per_label", sorted(k for k, v in self.labels.items() if len(v) > 1)),
            CheckResult.of("one_label_per_label_index", sorted(str(k) for k, v in self.indices.items() if len(v) > 1)),
            CheckResult.of("one_skeleton_backend_model", models),
        ]

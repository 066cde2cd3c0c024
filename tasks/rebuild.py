"""The rebuild sequence as plain functions: parse → plan → process shards → validate → commit.

:func:`run` is the whole sequence; it takes the orchestrator as an argument (``map_shards``, the
builtin ``map`` in tests and benches, Prefect's submit-and-wait in ``flows/rebuild.py``), so
Prefect could be replaced without touching anything here. The stages, each usable alone:

* :func:`check` refuses a mistake in the request before anything starts;
* :func:`plan_version` parses and names the version, writing nothing (``reused`` when a validated
  version with that id exists: an unchanged rebuild ends here);
* :func:`prepare` also stages the records and plans one :class:`~tasks.kinds.base.ShardSpec` per
  shard;
* :func:`tasks.kinds.build_and_validate` builds and gates one shard (what ``map_shards`` runs);
* :func:`commit` checks the version as a whole and writes rejects, the validation report and the
  manifest (last), then moves ``LATEST``.

Nothing here branches on the kind of record: the adapter's record kind (``tasks/kinds/``) knows
its schemas, checks and shard builder.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas.errors import RejectRatioExceededError, RejectReason, SourceError, StorageError, ValidationFailedError
from schemas.records import (
    INPUTS_SCHEMA,
    REJECTS_SCHEMA,
    SCHEMA_VERSION,
    schema_fingerprint,
)
from schemas.settings import DEFAULT_MAX_REJECT_RATIO, DEFAULT_SEED
from storage.fs import FILE_DIGEST, filesystem, flush_to_disk, write_bytes_atomic
from storage.layout import INPUTS, VALIDATION_HTML, VALIDATION_JSON, VersionPaths, digest_cache_path
from storage.manifest import compute_version, dataset_lock, read_json, set_latest, write_json, write_manifest
from storage.parquet import read_parquet, write_parquet
from tasks.common import cyclic_gc_paused
from tasks.datasets import get_adapter
from tasks.datasets.base import rejects_table
from tasks.fingerprint import (
    code_version,
    images_fingerprint,
    inputs_table,
    media_digests,
    read_digest_cache,
    write_digest_cache,
)
from tasks.kinds.base import (
    ShardReport,
    ShardResult,
    ShardSpec,
    ShardSummary,
    StageContext,
    build_and_validate,
    get_kind,
)
from tasks.transforms.geometry import CropConfig
from tasks.validate import failures, render_html, version_suite

#: Reasons that express a dataset policy (not bad data); they do not count towards the reject ratio.
POLICY_REASONS = frozenset(
    {
        RejectReason.CROWD,
        RejectReason.ZERO_KEYPOINTS,
        RejectReason.BOX_TOO_SMALL,
        RejectReason.BAD_FLAG,
        RejectReason.UNCHECKED,
        RejectReason.NO_ANNOTATION,
        RejectReason.NOT_IN_SPLIT,
    }
)

@dataclass(frozen=True)
class RebuildRequest:
    """What a rebuild is asked to do (built once at the entry point, then passed whole).

    Attributes:
        dataset: Adapter name.
        root: Storage root (local path or fsspec URL).
        source: Local folder in the dataset's published layout (or an annotation file); None
            fetches the dataset into ``{root}/raw``.
        adapter_params: Parse policy overrides (validated by the adapter).
        crop: Crop configuration.
        seed: Run seed.
        shard_size: Records per shard; None lets the record kind choose (:meth:`~tasks.kinds.base.RecordKind.shard_size`).
        max_reject_ratio: Fail past this share of data-error rejects.
        mirror: Download mirror prefix (fetch only).
        manual_dir: Folder of manually downloaded files (fetch only).
    """

    dataset: str
    root: str
    source: str | None = None
    adapter_params: dict[str, Any] = field(default_factory=dict)
    crop: CropConfig = field(default_factory=CropConfig)
    seed: int = DEFAULT_SEED
    shard_size: int | None = None
    max_reject_ratio: float = DEFAULT_MAX_REJECT_RATIO
    mirror: str | None = None
    manual_dir: str | None = None


@dataclass
class Prepared:
    """Result of :func:`prepare` (small: crosses the orchestrator).

    Attributes:
        dataset: Dataset name.
        version: Version id.
        reused: True when a validated version with this id already exists (nothing to do).
        specs: Shards to build.
        params: Everything the version hashes besides inputs.
        input_checksums: Inputs the version hashes.
        parsed: Inputs parsed.
        parse_rejects: Rejected at parse time.
        splits: Adapter's split names.
        skeleton: Adapter's skeleton.
        stats: Adapter's counts worth reporting.
        code_version: Hash of the code the version depends on.
        record: Record kind name.
        source: Where the inputs were read from (for ``_run.json``; not hashed).
        planned_before_s: Seconds spent parsing and fingerprinting in :func:`plan_version` before
            the run that took this plan over (0 when the run parsed itself); ``_run.json`` counts
            them in its parse stage.
    """

    dataset: str
    version: str
    reused: bool
    specs: list[ShardSpec] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    input_checksums: dict[str, str] = field(default_factory=dict)
    parsed: int = 0
    parse_rejects: int = 0
    splits: tuple[str, ...] = ()
    skeleton: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    record: str = "samples"
    source: str = ""
    planned_before_s: float = 0.0


@dataclass
class _Plan:
    """What :func:`_plan` found: the small :class:`Prepared` plus the large parts kept in-process."""

    prepared: Prepared
    records: pa.Table
    rejects: pa.Table
    source_root: Path
    digests: dict[str, str | None]
    digest_cache: dict[str, list[Any]]
    seconds: float = 0.0


def check(request: RebuildRequest) -> None:
    """Refuse a mistake in the request before anything starts (no parse, no orchestrator).

    Raises:
        UnknownDatasetError: No adapter of that name (the message lists the known ones).
        ConfigError: An adapter parameter is unknown or invalid.
        SourceError: ``source`` does not exist.
    """
    get_adapter(request.dataset).make_params(request.adapter_params)
    if request.source is not None and not Path(request.source).exists():
        raise SourceError(
            f"source {request.source} does not exist",
            hint=f"pass --source the {request.dataset} folder in its published layout (or its annotation file), or omit it to fetch the dataset",
        )


def _plan(request: RebuildRequest, source: str) -> _Plan:
    """Parse, apply the kind's parse checks, fingerprint the inputs by content, name the version."""
    started = time.perf_counter()
    adapter = get_adapter(request.dataset)
    kind = get_kind(adapter.record_kind)
    p = adapter.make_params(request.adapter_params)
    with cyclic_gc_paused():  # see its docstring: half of a large parse went to collections
        result = adapter.parse(Path(source), p)
    source_root = Path(source).parent if Path(source).is_file() else Path(source)
    fs, rpath = filesystem(request.root)
    cache_path = digest_cache_path(rpath, request.dataset)
    cache = read_digest_cache(fs, cache_path)
    snapshot = dict(cache)
    # the content fingerprint (file reads and hashlib, which release the GIL) runs while this thread
    # sorts and checks the records; files of records the checks refuse are hashed too, then dropped
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fingerprint") as pool:
        hashing = pool.submit(media_digests, source_root, result.records.column(kind.media_column).to_pylist(), cache)
        records = kind.sort(result.records)
        rejects = result.rejects
        keep, refused = kind.parse_checks(records)
        if refused:
            records = records.filter(pa.array(keep))
            rejects = pa.concat_tables([rejects, rejects_table(refused)])
        every_digest = hashing.result()
    digests = {rel: every_digest[rel] for rel in sorted(set(records.column(kind.media_column).to_pylist()))}
    if cache != snapshot:
        write_digest_cache(fs, cache_path, cache)
    inputs = dict(result.input_checksums)
    inputs[kind.inputs_key] = images_fingerprint(digests)
    params = {"adapter": p.model_dump(mode="json"), "seed": request.seed, "shard_size": kind.shard_size(request.shard_size, request.crop), **kind.version_params(request.crop)}
    code = code_version(type(adapter).__module__, type(kind).__module__)
    version = compute_version(inputs, params, SCHEMA_VERSION, code)
    prepared = Prepared(
        dataset=request.dataset,
        version=version,
        reused=False,
        params=params,
        input_checksums=inputs,
        parsed=result.parsed,
        parse_rejects=rejects.num_rows,
        splits=adapter.splits,
        skeleton=adapter.skeleton,
        stats=result.stats,
        code_version=code,
        record=kind.name,
        source=str(source),
    )
    manifest_path = VersionPaths(rpath, request.dataset, version).manifest
    if fs.exists(manifest_path) and read_json(fs, manifest_path).get("validation", {}).get("success"):
        prepared.reused = True
    return _Plan(prepared, records, rejects, source_root, digests, cache, time.perf_counter() - started)


#: The last plan :func:`plan_version` made in this process, for :func:`prepare` of the same request.
_HANDOFF: dict[str, _Plan] = {}


def _handoff_key(request: RebuildRequest, source: str) -> str:
    """What a handed-off plan must match: every field of the request and the source it parsed."""
    return repr((dataclasses.asdict(request), str(source)))


def plan_version(request: RebuildRequest) -> Prepared:
    """Parse ``request.source`` and name its version without writing anything under the version folder.

    Cheap enough to run before an orchestrator starts: a validated version with this id means the
    rebuild has nothing to do (``reused`` is True). The only write is the digest cache.

    A plan that is not reused is kept in this process (one slot) for the :func:`prepare` of the same
    request that follows once the orchestrator has started, so a rebuild parses and fingerprints its
    inputs once, not twice (at 40k samples the second parse was ~11 s of a 92 s rebuild). A later
    :func:`plan_version` replaces it, and :func:`prepare` takes it at most once.

    Returns:
        :class:`Prepared` with ``specs`` empty.
    """
    source = _local_source(request)
    plan = _plan(request, source)
    _HANDOFF.clear()
    if not plan.prepared.reused:
        _HANDOFF[_handoff_key(request, source)] = plan
    return dataclasses.replace(plan.prepared)


def prepare(request: RebuildRequest) -> Prepared:
    """Parse ``request.source``, name the version, and stage records + shard specs unless it exists.

    Returns:
        :class:`Prepared`; ``reused`` is True when a validated manifest for the version exists.

    Raises:
        SourceError: When nothing could be written: every parsed input was rejected at parse, or
            none of the referenced images exists under the source (nothing is staged).
    """
    return _prepare(request, _local_source(request))


def _local_source(request: RebuildRequest) -> str:
    if request.source is None:
        raise SourceError(f"no --source given for {request.dataset}", hint="pass --source DIR, or run through the CLI or the flow, which fetch the dataset")
    return str(request.source)


def _prepare(request: RebuildRequest, source: str) -> Prepared:
    handed = _HANDOFF.pop(_handoff_key(request, source), None)
    _HANDOFF.clear()
    plan = handed or _plan(request, source)
    prepared = plan.prepared
    prepared.planned_before_s = plan.seconds if handed else 0.0
    if prepared.reused:
        return prepared
    kind = get_kind(prepared.record)
    _refuse_if_nothing_writable(plan, kind.refuses_missing_media)
    fs, rpath = filesystem(request.root)
    paths = VersionPaths(rpath, request.dataset, prepared.version)
    if fs.exists(paths.dir):  # an earlier attempt that never committed: start clean (content-addressed)
        fs.rm(paths.dir, recursive=True)
    write_parquet(fs, paths.staged("rejects-parse.parquet"), plan.rejects, REJECTS_SCHEMA)
    write_parquet(fs, paths.staged("inputs.parquet"), inputs_table(plan.digests, plan.source_root, plan.digest_cache), INPUTS_SCHEMA)
    ctx = StageContext(request.dataset, prepared.version, request.root, prepared.params["shard_size"], str(plan.source_root), request.crop, request.seed, prepared.splits, prepared.skeleton)
    prepared.specs = kind.stage(plan.records, ctx)
    return prepared


def _refuse_if_nothing_writable(plan: _Plan, refuses_missing_media: bool) -> None:
    """Fail at parse, with advice that fits, when no input can possibly reach a shard."""
    prepared = plan.prepared
    if plan.records.num_rows == 0:
        reasons = collections.Counter(plan.rejects.column("reason").to_pylist())
        top = ", ".join(f"{r}: {n}" for r, n in reasons.most_common(5)) or "no annotations at all"
        raise SourceError(
            f"{prepared.dataset}: nothing to write from {prepared.source}: {prepared.parsed} inputs parsed, all rejected at parse ({top})",
            hint="check the annotation file (an empty annotations list gives this) and the -p parse policy; nothing was committed, LATEST is unchanged",
        )
    if refuses_missing_media and plan.digests and all(d is None for d in plan.digests.values()):
        example = next(iter(sorted(plan.digests)))
        raise SourceError(
            f"{prepared.dataset}: none of the {len(plan.digests)} images the annotations reference exists under {plan.source_root} (e.g. {example})",
            hint="the images are not in the source: fetch them (posepipe fetch DATASET) or point --source at the folder that holds them; "
            "raising --max-reject-ratio would not help",
        )


def run(
    request: RebuildRequest,
    map_shards: Callable[[Callable[[ShardSpec], ShardResult], list[ShardSpec]], Iterable[ShardResult]] = map,
    fetch: Callable[[RebuildRequest], str] | None = None,
    lock: Callable[[Any, str, str], AbstractContextManager[Any]] = dataset_lock,
) -> dict[str, Any]:
    """The whole rebuild: check → (fetch) → parse and plan → build + gate every shard → commit.

    Args:
        request: What to build.
        map_shards: Applies the shard task to every spec and returns the results in order (the
            builtin ``map``; the flow passes one that submits to Prefect on Dask).
        fetch: Turns a request without ``source`` into a local source folder (the flow passes
            the fetch stage; None makes a missing source an error).
        lock: ``(fs, root, dataset) -> context manager`` holding the dataset's lock for the run
            (a caller that already holds it passes one that does not take it twice).

    Returns:
        The summary: version, reused, counts per split, parsed/written/rejected, rejects by
        reason, validation, location.

    Raises:
        PosepipeError: Every refusal of the sequence (see :func:`check`, :func:`prepare`,
            :func:`commit`); the dataset lock is released in every case.
    """
    started = time.time()
    check(request)
    fs, rpath = filesystem(request.root)
    with lock(fs, rpath, request.dataset):
        source = fetch(request) if request.source is None and fetch is not None else _local_source(request)
        t_parse = time.perf_counter()
        prepared = _prepare(request, str(source))
        if prepared.reused:
            return reused_summary(request.root, prepared)
        t_shards = time.perf_counter()
        results = list(map_shards(build_and_validate, prepared.specs))
        t_commit = time.perf_counter()
        run_info = {
            "seconds": round(time.time() - started, 3),
            "shards": len(results),
            "pid": os.getpid(),
            "stages_s": _stage_seconds(prepared.planned_before_s + t_shards - t_parse, t_commit - t_shards, results),
        }
        return commit(request.root, prepared, results, request.max_reject_ratio, run_info, commit_started=t_commit)


def _stage_seconds(parse_s: float, shards_wall_s: float, results: list[ShardResult]) -> dict[str, float]:
    """Where a rebuild's time went: parse and plan, the shard stage's wall time, and the summed
    worker seconds of building and of gating shards (``commit`` is added when the run record is written)."""
    return {
        "parse": round(parse_s, 3),
        "shards_wall": round(shards_wall_s, 3),
        "build_worker": round(sum(r.timings_s.get("build", 0.0) for r in results), 3),
        "validate_worker": round(sum(r.timings_s.get("validate", 0.0) for r in results), 3),
    }


def commit(
    root: str,
    prepared: Prepared,
    results: list[ShardResult],
    max_reject_ratio: float = DEFAULT_MAX_REJECT_RATIO,
    run_info: dict[str, Any] | None = None,
    commit_started: float | None = None,
) -> dict[str, Any]:
    """Check the version as a whole, write rejects, the validation report and the manifest, move LATEST.

    ``run_info`` goes to ``_run.json`` (with ``stages_s["commit"]``, timed from ``commit_started``,
    a ``time.perf_counter()`` value, when given).

    Idempotent: staging files are removed only after the manifest is written, and a commit that
    finds the manifest already there (a retry after its worker died, or a second call) finishes the
    tail (staging removed, LATEST moved) and returns the same summary, so a retried commit ends with
    the same bytes as an uninterrupted one.

    Raises:
        RejectRatioExceededError: When non-policy rejects / parsed > ``max_reject_ratio``
            (nothing is committed; ``_rejects.parquet`` is left for inspection).
        ValidationFailedError: When any check failed (manifest written with the failure, LATEST
            untouched; the message names each failing expectation and shard), or when the version
            would be empty or a split would have no rows (nothing committed).
        StorageError: When the staging files are gone without a manifest (rerun the rebuild).
    """
    fs, rpath = filesystem(root)
    dataset, version = prepared.dataset, prepared.version
    paths = VersionPaths(rpath, dataset, version)
    if fs.exists(paths.manifest):
        return _finish_commit(fs, rpath, root, read_json(fs, paths.manifest))
    results = sorted(results, key=lambda r: (r.summary.split, r.summary.index))
    shards = [r.summary for r in results]
    rejects = _gather_rejects(fs, paths, shards)
    write_parquet(fs, paths.rejects, rejects, REJECTS_SCHEMA)
    by_reason = dict(sorted(collections.Counter(rejects.column("reason").to_pylist()).items()))
    written = sum(s.rows for s in shards)
    counts: dict[str, int] = {}
    for s in shards:
        counts[s.split] = counts.get(s.split, 0) + s.rows
    if written + rejects.num_rows != prepared.parsed:
        raise ValidationFailedError(f"{dataset} {version}: written {written} + rejected {rejects.num_rows} != parsed {prepared.parsed}", hint="this is a bug; report it")
    _refuse_reject_ratio(dataset, prepared.parsed, by_reason, max_reject_ratio, paths.rejects)
    _refuse_empty(dataset, version, written, counts, by_reason, paths.rejects)
    inputs = read_parquet(fs, paths.staged("inputs.parquet"), INPUTS_SCHEMA)
    _, inputs_sha = write_parquet(fs, paths.inputs, inputs, INPUTS_SCHEMA)
    kind = get_kind(prepared.record)
    report = _validation_report(kind, paths, fs, results, prepared.specs[0] if prepared.specs else None)
    write_json(fs, paths.validation_json, report)
    write_bytes_atomic(fs, paths.validation_html, render_html(report, f"{dataset} {version}").encode())
    manifest = {
        "dataset": dataset,
        "version": version,
        "record": kind.manifest_record,
        "schema_version": SCHEMA_VERSION,
        "schema_fingerprint": schema_fingerprint(kind.output_schema),
        "code_version": prepared.code_version,
        "params": prepared.params,
        "input_checksums": prepared.input_checksums,
        "inputs": {
            "file": INPUTS,
            "sha256": inputs_sha,
            "files": inputs.num_rows,
            "missing": inputs.column("digest").null_count,
            "digest": f"{FILE_DIGEST} of each referenced file's content",
        },
        "counts": dict(sorted(counts.items())),
        "parsed": prepared.parsed,
        "written": written,
        "rejected": rejects.num_rows,
        "rejects_by_reason": by_reason,
        "shards": [s.manifest_entry() for s in shards],
        "validation": {"success": report["success"], "failures": failures(report), "report": VALIDATION_JSON, "html": VALIDATION_HTML},
        "parents": [],
        "stats": prepared.stats,
    }
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    info = dict(run_info or {})
    if commit_started is not None and "stages_s" in info:
        info["stages_s"] = {**info["stages_s"], "commit": round(time.perf_counter() - commit_started, 3)}
    write_json(fs, paths.run_record, {"finished_at": now, "created_at": now, "source": prepared.source, **info})
    flush_to_disk(fs)  # shards were written without per-file fsync: make them durable before the manifest
    write_manifest(fs, rpath, dataset, version, manifest)
    return _finish_commit(fs, rpath, root, manifest)


def _gather_rejects(fs: Any, paths: VersionPaths, shards: list[ShardSummary]) -> pa.Table:
    """Parse-time and per-shard rejects, sorted (stage, source key, reason).

    Raises:
        StorageError: When the staging files are gone without a manifest (rerun the rebuild).
    """
    parse_rejects = paths.staged("rejects-parse.parquet")
    if not fs.exists(parse_rejects):
        raise StorageError(
            f"{paths.dataset} {paths.version}: the staging files of this rebuild are gone and no manifest was written ({parse_rejects})",
            hint="another process cleaned the version folder; run the rebuild again (it starts this version afresh)",
        )
    tables = [read_parquet(fs, parse_rejects, REJECTS_SCHEMA)]
    tables += [read_parquet(fs, paths.file(s.rejects_file), REJECTS_SCHEMA) for s in shards if s.rejects_file]
    return pa.concat_tables(tables).sort_by([("stage", "ascending"), ("source_key", "ascending"), ("reason", "ascending")])


def _refuse_reject_ratio(dataset: str, parsed: int, by_reason: dict[str, int], max_reject_ratio: float, rejects_path: str) -> None:
    """Data-error rejects (not policy ones) past ``max_reject_ratio`` of the parsed inputs: refuse."""
    errors = sum(n for reason, n in by_reason.items() if reason not in POLICY_REASONS)
    ratio = errors / parsed if parsed else 0.0
    if ratio > max_reject_ratio:
        worst = ", ".join(f"{r}: {n}" for r, n in by_reason.items() if r not in POLICY_REASONS)
        raise RejectRatioExceededError(
            f"{dataset}: {errors} of {parsed} inputs rejected for data errors ({ratio:.0%} > {max_reject_ratio:.0%}): {worst}",
            hint=f"inspect {rejects_path}; fix the source or raise --max-reject-ratio",
        )


def _validation_report(kind: Any, paths: VersionPaths, fs: Any, results: list[ShardResult], spec: ShardSpec | None = None) -> dict[str, Any]:
    """The gate's report: every shard's checks plus the kind's checks across shards.

    For a kind whose GX suite runs at commit (``gx_at_commit``), the suite runs here once over
    every shard as written (each shard's GX results come first in its report, as if it had run them).
    """
    shard_reports = sorted((r.report for r in results), key=lambda r: r.shard)
    if kind.gx_at_commit and spec is not None:  # each shard read once, for the suite and the version checks
        rows = {r.shard: read_parquet(fs, paths.file(f"{r.shard}.parquet"), kind.output_schema) for r in shard_reports}
        gx = version_suite(list(rows.items()), kind.expectations(spec))
        shard_reports = [ShardReport(r.shard, (*gx.get(r.shard, []), *r.results)) for r in shard_reports]
        version_results = kind.version_checks_on([rows[r.summary.parquet.removesuffix(".parquet")] for r in results])
    else:
        version_results = kind.version_checks(paths, fs, [r.summary for r in results])
    return {
        "shards": [r.to_dict() for r in shard_reports],
        "version": [c.to_dict() for c in version_results],
        "success": all(r.success for r in shard_reports) and all(c.success for c in version_results),
    }


def _refuse_empty(dataset: str, version: str, written: int, counts: dict[str, int], by_reason: dict[str, int], rejects_path: str) -> None:
    """An empty version, or a split whose every input was rejected, is an error: nothing is committed."""
    top = ", ".join(f"{r}: {n}" for r, n in sorted(by_reason.items(), key=lambda kv: -kv[1])[:5])
    if written == 0:
        raise ValidationFailedError(
            f"{dataset} {version}: no sample was written ({top or 'nothing parsed'}); an empty version is never committed, LATEST was not moved",
            hint=f"see {rejects_path} for why each input was rejected",
        )
    empty = sorted(split for split, n in counts.items() if n == 0)
    if empty:
        raise ValidationFailedError(
            f"{dataset} {version}: split(s) {', '.join(empty)} have no rows after processing ({top}); LATEST was not moved",
            hint=f"see {rejects_path}; fix the source of those splits or drop them with the adapter's -p options",
        )


def _finish_commit(fs: Any, rpath: str, root: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """After the manifest: drop staging, move LATEST (validated versions only). Safe to repeat."""
    dataset, version = manifest["dataset"], manifest["version"]
    paths = VersionPaths(rpath, dataset, version)
    if fs.exists(paths.staging):
        fs.rm(paths.staging, recursive=True)
    if not manifest["validation"]["success"]:
        raise ValidationFailedError(
            f"{dataset} {version} failed validation; LATEST was not moved:\n  " + "\n  ".join(manifest["validation"]["failures"][:20]),
            hint=f"see {paths.validation_html}",
        )
    set_latest(fs, rpath, dataset, version)
    return summary(manifest, root, reused=False)


def summary(manifest: dict[str, Any], root: str, reused: bool) -> dict[str, Any]:
    """The short report printed at the end of a rebuild."""
    return {
        "dataset": manifest["dataset"],
        "version": manifest["version"],
        "reused": reused,
        "counts": manifest["counts"],
        "parsed": manifest["parsed"],
        "written": manifest["written"],
        "rejected": manifest["rejected"],
        "rejects_by_reason": manifest["rejects_by_reason"],
        "validation": "passed" if manifest["validation"]["success"] else "FAILED",
        "location": _location(root, manifest["dataset"], manifest["version"]),
    }


def _location(root: str, dataset: str, version: str) -> str:
    """Where a version lives: a local path, or the full URL on a remote filesystem."""
    fs, path = filesystem(root)
    location = VersionPaths(path, dataset, version).dir
    return fs.unstrip_protocol(location) if "://" in str(root) else location


def reused_summary(root: str, prepared: Prepared) -> dict[str, Any]:
    """Summary of an already-built version; moves LATEST to it."""
    fs, rpath = filesystem(root)
    manifest = read_json(fs, VersionPaths(rpath, prepared.dataset, prepared.version).manifest)
    set_latest(fs, rpath, prepared.dataset, prepared.version)
    return summary(manifest, root, reused=True)

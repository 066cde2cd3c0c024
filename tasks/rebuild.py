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

import ast
import collections
import hashlib
import importlib.util
import json
import os
import stat as stat_module
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
from schemas.settings import DEFAULT_MAX_REJECT_RATIO, DEFAULT_SEED, DEFAULT_SHARD_SIZE
from storage.fs import file_sha256, filesystem, flush_to_disk, write_bytes_atomic
from storage.layout import INPUTS, VALIDATION_HTML, VALIDATION_JSON, VersionPaths, digest_cache_path
from storage.manifest import compute_version, dataset_lock, read_json, set_latest, write_json, write_manifest
from storage.parquet import read_parquet, write_parquet
from tasks.datasets import get_adapter
from tasks.datasets.base import rejects_table
from tasks.kinds.base import ShardResult, ShardSpec, StageContext, build_and_validate, get_kind
from tasks.transforms.geometry import CropConfig
from tasks.validate import failures, render_html

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

#: Top-level packages of this project: the code version follows imports into these only.
_PROJECT_PACKAGES = ("schemas", "storage", "tasks")

#: Modules whose closure shapes a version's bytes or decides its validity, besides the adapter's
#: and its record kind's.
_SHARD_CODE = ("tasks.rebuild", "tasks.validate")


def _module_source(name: str) -> tuple[str, bool] | None:
    """``(source, is_package)`` of a project module, or None when it is not one."""
    if name.split(".")[0] not in _PROJECT_PACKAGES:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin).read_text(encoding="utf-8"), spec.submodule_search_locations is not None


def _imported_names(module: str, source: str, is_package: bool) -> set[str]:
    """Module names a module imports (absolute, relative, ``from pkg import submodule``), statically."""
    out: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[: len(base_parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)  # may be submodules
    # a submodule import runs its parents' __init__ too
    for name in list(out):
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out


def module_closure(roots: tuple[str, ...]) -> list[str]:
    """Every project module reachable by imports from ``roots`` (statically, from the source).

    Args:
        roots: Dotted module names to start from.

    Returns:
        Sorted module names (``schemas``/``storage``/``tasks`` packages only; third-party
        modules are pinned in ``pyproject.toml`` and not followed).

    Example:
        ``module_closure(("tasks.datasets.ucf11",))`` includes ``tasks.datasets.ucf101`` because
        the UCF11 adapter imports helpers from it.
    """
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        found = _module_source(name)
        if found is None:
            continue
        seen.add(name)
        todo.extend(_imported_names(name, *found) - seen)
    return sorted(seen)


def code_version(adapter_module: str, kind_module: str = "tasks.kinds.samples") -> str:
    """sha256 (16 hex) of the source of every project module the adapter, its record kind and the
    rebuild/validation code import.

    Derived from the import graph, never from a hand-kept list: a change in any helper the adapter
    or the shard/validation code reaches (``tasks/datasets/_matlab.py`` for FLIC, ``ucf101.py`` for
    UCF11...) makes a new version.
    """
    h = hashlib.sha256()
    for name in module_closure((*_SHARD_CODE, kind_module, adapter_module)):
        source, _ = _module_source(name)  # type: ignore[misc]
        h.update(name.encode() + b"\0" + source.encode() + b"\0")
    return h.hexdigest()[:16]


def media_digests(source_root: Path, rel_paths: list[str], cache: dict[str, list[Any]] | None = None) -> dict[str, str | None]:
    """Content sha256 of each referenced media file, reusing ``cache`` where the file is unchanged.

    Args:
        source_root: Folder the paths are relative to.
        rel_paths: Referenced files (duplicates allowed).
        cache: ``{absolute path: [size, mtime_ns, inode, sha256]}``; updated in place. A file is
            re-read only when its (size, mtime_ns, inode) changed.

    Returns:
        ``{relative path: sha256 hex, or None when the file is missing or not a regular file}``.
    """
    cache = {} if cache is None else cache
    out: dict[str, str | None] = {}
    todo: list[tuple[str, str, list[Any]]] = []
    for rel in sorted(set(rel_paths)):
        p = source_root / rel
        try:
            st = p.stat()
        except (OSError, ValueError):
            out[rel] = None
            continue
        if not stat_module.S_ISREG(st.st_mode):
            out[rel] = None
            continue
        key = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = cache.get(str(p))
        if hit is not None and hit[:3] == key:
            out[rel] = hit[3]
        else:
            todo.append((rel, str(p), key))
    if todo:  # hashlib releases the GIL: a few threads overlap reads and hashing
        with ThreadPoolExecutor(max_workers=4) as pool:
            for (rel, abs_path, key), digest in zip(todo, pool.map(_sha256_or_none, [t[1] for t in todo]), strict=True):
                out[rel] = digest
                if digest is not None:
                    cache[abs_path] = [*key, digest]
    return out


def _sha256_or_none(path: str) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def images_fingerprint(digests: dict[str, str | None]) -> str:
    """sha256 over sorted ``(path, content sha256)`` pairs (``-`` = missing)."""
    h = hashlib.sha256()
    for rel in sorted(digests):
        h.update(f"{rel}\t{digests[rel] or '-'}\n".encode())
    return h.hexdigest()


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
        shard_size: Records per shard.
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
    shard_size: int = DEFAULT_SHARD_SIZE
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


@dataclass
class _Plan:
    """What :func:`_plan` found: the small :class:`Prepared` plus the large parts kept in-process."""

    prepared: Prepared
    records: pa.Table
    rejects: pa.Table
    source_root: Path
    digests: dict[str, str | None]


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
    adapter = get_adapter(request.dataset)
    kind = get_kind(adapter.record_kind)
    p = adapter.make_params(request.adapter_params)
    result = adapter.parse(Path(source), p)
    source_root = Path(source).parent if Path(source).is_file() else Path(source)
    records = kind.sort(result.records)
    rejects = result.rejects
    keep, refused = kind.parse_checks(records)
    if refused:
        records = records.filter(pa.array(keep))
        rejects = pa.concat_tables([rejects, rejects_table(refused)])
    fs, rpath = filesystem(request.root)
    cache_path = digest_cache_path(rpath, request.dataset)
    cache = _read_digest_cache(fs, cache_path)
    snapshot = dict(cache)
    digests = media_digests(source_root, records.column(kind.media_column).to_pylist(), cache)
    if cache != snapshot:
        _write_digest_cache(fs, cache_path, cache)
    inputs = dict(result.input_checksums)
    inputs["videos" if kind.media_column == "video_path" else "images"] = images_fingerprint(digests)
    params = {"adapter": p.model_dump(mode="json"), "seed": request.seed, "shard_size": request.shard_size, **kind.version_params(request.crop)}
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
    return _Plan(prepared, records, rejects, source_root, digests)


def _read_digest_cache(fs: Any, path: str) -> dict[str, list[Any]]:
    """The stat-keyed digest cache; an unreadable one is treated as empty (it is only a cache)."""
    try:
        with fs.open(path, "rb") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_digest_cache(fs: Any, path: str, cache: dict[str, list[Any]]) -> None:
    write_bytes_atomic(fs, path, json.dumps(cache, sort_keys=True, separators=(",", ":")).encode())


def _request(dataset: str, source: str, root: str, adapter_params: dict[str, Any] | None, crop: CropConfig | None, seed: int, shard_size: int) -> RebuildRequest:
    return RebuildRequest(dataset, root, source, dict(adapter_params or {}), crop or CropConfig(), seed, shard_size)


def plan_version(
    dataset: str,
    source: str,
    root: str,
    adapter_params: dict[str, Any] | None = None,
    crop: CropConfig | None = None,
    seed: int = DEFAULT_SEED,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> Prepared:
    """Parse the source and name its version without writing anything under the version folder.

    Cheap enough to run before an orchestrator starts: a validated version with this id means the
    rebuild has nothing to do (``reused`` is True). The only write is the digest cache.

    Returns:
        :class:`Prepared` with ``specs`` empty.
    """
    return _plan(_request(dataset, source, root, adapter_params, crop, seed, shard_size), source).prepared


def prepare(
    dataset: str,
    source: str,
    root: str,
    adapter_params: dict[str, Any] | None = None,
    crop: CropConfig | None = None,
    seed: int = DEFAULT_SEED,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> Prepared:
    """Parse the source, name the version, and stage records + shard specs unless it already exists.

    Returns:
        :class:`Prepared`; ``reused`` is True when a validated manifest for the version exists.

    Raises:
        SourceError: When nothing could be written: every parsed input was rejected at parse, or
            none of the referenced images exists under the source (nothing is staged).
    """
    return _prepare(_request(dataset, source, root, adapter_params, crop, seed, shard_size), source)


def _prepare(request: RebuildRequest, source: str) -> Prepared:
    plan = _plan(request, source)
    prepared = plan.prepared
    if prepared.reused:
        return prepared
    kind = get_kind(prepared.record)
    _refuse_if_nothing_writable(plan, kind.refuses_missing_media)
    fs, rpath = filesystem(request.root)
    paths = VersionPaths(rpath, request.dataset, prepared.version)
    if fs.exists(paths.dir):  # an earlier attempt that never committed: start clean (content-addressed)
        fs.rm(paths.dir, recursive=True)
    write_parquet(fs, paths.staged("rejects-parse.parquet"), plan.rejects, REJECTS_SCHEMA)
    write_parquet(fs, paths.staged("inputs.parquet"), _inputs_table(plan.digests, plan.source_root), INPUTS_SCHEMA)
    ctx = StageContext(request.dataset, prepared.version, request.root, request.shard_size, str(plan.source_root), request.crop, request.seed, prepared.splits, prepared.skeleton)
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


def _inputs_table(digests: dict[str, str | None], source_root: Path) -> pa.Table:
    """The content digest of every referenced media file, for ``_inputs.parquet``."""
    paths = sorted(digests)
    sizes = []
    for rel in paths:
        try:
            sizes.append((source_root / rel).stat().st_size if digests[rel] else None)
        except OSError:
            sizes.append(None)
    return pa.table({"path": paths, "size_bytes": sizes, "sha256": [digests[r] for r in paths]}, schema=INPUTS_SCHEMA)


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
        source = request.source
        if source is None:
            if fetch is None:
                raise SourceError(f"no --source given for {request.dataset}", hint="pass --source DIR, or run through the CLI/flow, which fetch the dataset")
            source = fetch(request)
        prepared = _prepare(request, str(source))
        if prepared.reused:
            return reused_summary(request.root, prepared)
        results = list(map_shards(build_and_validate, prepared.specs))
        run_info = {"seconds": round(time.time() - started, 3), "shards": len(results), "pid": os.getpid()}
        return commit(request.root, prepared, results, request.max_reject_ratio, run_info)


def commit(
    root: str,
    prepared: Prepared,
    results: list[ShardResult],
    max_reject_ratio: float = DEFAULT_MAX_REJECT_RATIO,
    run_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check the version as a whole, write rejects, the validation report and the manifest, move LATEST.

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
    parse_rejects = paths.staged("rejects-parse.parquet")
    if not fs.exists(parse_rejects):
        raise StorageError(
            f"{dataset} {version}: the staging files of this rebuild are gone and no manifest was written ({parse_rejects})",
            hint="another process cleaned the version folder; run the rebuild again (it starts this version afresh)",
        )
    reject_tables = [read_parquet(fs, parse_rejects, REJECTS_SCHEMA)]
    reject_tables += [read_parquet(fs, paths.file(s.rejects_file), REJECTS_SCHEMA) for s in shards if s.rejects_file]
    rejects = pa.concat_tables(reject_tables).sort_by([("stage", "ascending"), ("source_key", "ascending"), ("reason", "ascending")])
    write_parquet(fs, paths.rejects, rejects, REJECTS_SCHEMA)
    by_reason = dict(sorted(collections.Counter(rejects.column("reason").to_pylist()).items()))
    written = sum(s.rows for s in shards)
    counts: dict[str, int] = {}
    for s in shards:
        counts[s.split] = counts.get(s.split, 0) + s.rows
    if written + rejects.num_rows != prepared.parsed:
        raise ValidationFailedError(f"{dataset} {version}: written {written} + rejected {rejects.num_rows} != parsed {prepared.parsed}", hint="this is a bug; report it")
    errors = sum(n for reason, n in by_reason.items() if reason not in POLICY_REASONS)
    ratio = errors / prepared.parsed if prepared.parsed else 0.0
    if ratio > max_reject_ratio:
        worst = ", ".join(f"{r}: {n}" for r, n in by_reason.items() if r not in POLICY_REASONS)
        raise RejectRatioExceededError(
            f"{dataset}: {errors} of {prepared.parsed} inputs rejected for data errors ({ratio:.0%} > {max_reject_ratio:.0%}): {worst}",
            hint=f"inspect {paths.rejects}; fix the source or raise --max-reject-ratio",
        )
    _refuse_empty(dataset, version, written, counts, by_reason, paths.rejects)
    inputs = read_parquet(fs, paths.staged("inputs.parquet"), INPUTS_SCHEMA)
    _, inputs_sha = write_parquet(fs, paths.inputs, inputs, INPUTS_SCHEMA)
    kind = get_kind(prepared.record)
    shard_reports = sorted((r.report for r in results), key=lambda r: r.shard)
    version_results = kind.version_checks(paths, fs, shards)
    report = {"shards": [r.to_dict() for r in shard_reports], "version": [c.to_dict() for c in version_results]}
    report["success"] = all(r.success for r in shard_reports) and all(c.success for c in version_results)
    write_json(fs, paths.validation_json, report)
    write_bytes_atomic(fs, paths.validation_html, render_html(report, f"{dataset} {version}").encode())
    failed = failures(report)
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
            "missing": inputs.column("sha256").null_count,
            "digest": "sha256 of each referenced file's content",
        },
        "counts": dict(sorted(counts.items())),
        "parsed": prepared.parsed,
        "written": written,
        "rejected": rejects.num_rows,
        "rejects_by_reason": by_reason,
        "shards": [s.manifest_entry() for s in shards],
        "validation": {"success": report["success"], "failures": failed, "report": VALIDATION_JSON, "html": VALIDATION_HTML},
        "parents": [],
        "stats": prepared.stats,
    }
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(fs, paths.run_record, {"finished_at": now, "created_at": now, "source": prepared.source, **(run_info or {})})
    flush_to_disk(fs)  # shards were written without per-file fsync: make them durable before the manifest
    write_manifest(fs, rpath, dataset, version, manifest)
    return _finish_commit(fs, rpath, root, manifest)


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

"""The rebuild stages as plain functions (the Prefect flow in flows/rebuild.py only wires them).

``prepare`` parses and names the version (or finds it already built); ``process_shard`` (in
tasks/shards.py) builds each shard; ``validate_shard`` (tasks/validate.py) gates each shard;
``commit`` checks the whole version, writes rejects, the validation report, the manifest (last) and
moves ``LATEST``.
"""

from __future__ import annotations

import ast
import collections
import hashlib
import importlib.util
import json
import stat as stat_module
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas.errors import RejectRatioExceededError, RejectReason, SourceError, StorageError, ValidationFailedError
from schemas.records import (
    CLIPS_SCHEMA,
    INPUTS_SCHEMA,
    PROCESSED_SAMPLES_SCHEMA,
    REJECTS_SCHEMA,
    SCHEMA_VERSION,
    schema_fingerprint,
)
from storage.fs import file_sha256, filesystem, flush_to_disk, join, write_bytes_atomic
from storage.manifest import compute_version, read_json, set_latest, version_dir, write_json, write_manifest
from storage.parquet import read_parquet, write_parquet
from tasks.checks import geometry_rejects
from tasks.datasets import get_adapter
from tasks.datasets.base import rejects_table
from tasks.shards import STAGING, ShardSpec, sort_records, stage_shards
from tasks.transforms.geometry import CropConfig
from tasks.validate import failures, render_html, version_checks

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

#: Modules whose closure shapes a version's bytes or decides its validity, besides the adapter's.
_SHARD_CODE = ("tasks.rebuild", "tasks.shards", "tasks.validate")


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


def code_version(adapter_module: str) -> str:
    """sha256 (16 hex) of the source of every project module the adapter and the shard code import.

    Derived from the import graph, never from a hand-kept list: a change in any helper the adapter
    or the shard/validation code reaches (``tasks/datasets/_matlab.py`` for FLIC, ``ucf101.py`` for
    UCF11...) makes a new version.
    """
    h = hashlib.sha256()
    for name in module_closure((*_SHARD_CODE, adapter_module)):
        source, _ = _module_source(name)  # type: ignore[misc]
        h.update(name.encode() + b"\0" + source.encode() + b"\0")
    return h.hexdigest()[:16]


def _digest_cache_path(root_path: str, dataset: str) -> str:
    """Where the stat-keyed content digests of a dataset's source files are kept."""
    return join(root_path, "cache", "digests", f"{dataset}.json")


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
    clip_shards: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""


@dataclass
class _Plan:
    """What :func:`_plan` found: the small :class:`Prepared` plus the large parts kept in-process."""

    prepared: Prepared
    records: pa.Table
    rejects: pa.Table
    source_root: Path
    digests: dict[str, str | None]


def _plan(
    dataset: str,
    source: str,
    root: str,
    adapter_params: dict[str, Any] | None,
    crop: CropConfig | None,
    seed: int,
    shard_size: int,
) -> _Plan:
    """Parse, apply the geometry checks, fingerprint the inputs by content, name the version."""
    adapter = get_adapter(dataset)
    p = adapter.make_params(adapter_params)
    crop = crop or CropConfig()
    result = adapter.parse(Path(source), p)
    source_root = Path(source).parent if Path(source).is_file() else Path(source)
    clips = adapter.record_kind == "clips"
    records = result.records.sort_by("clip_id") if clips else sort_records(result.records)
    rejects = result.rejects
    if not clips:
        keep, geometry = geometry_rejects(records)
        if geometry:
            records = records.filter(pa.array(keep))
            rejects = pa.concat_tables([rejects, rejects_table(geometry)])
    fs, rpath = filesystem(root)
    cache_path = _digest_cache_path(rpath, dataset)
    cache = _read_digest_cache(fs, cache_path)
    snapshot = dict(cache)
    media = records.column("video_path" if clips else "image_path").to_pylist()
    digests = media_digests(source_root, media, cache)
    if cache != snapshot:
        _write_digest_cache(fs, cache_path, cache)
    inputs = dict(result.input_checksums)
    inputs["videos" if clips else "images"] = images_fingerprint(digests)
    params = {"adapter": p.model_dump(mode="json"), "seed": seed, "shard_size": shard_size}
    if not clips:
        params["crop"] = asdict(crop)
    code = code_version(type(adapter).__module__)
    version = compute_version(inputs, params, SCHEMA_VERSION, code)
    prepared = Prepared(
        dataset=dataset,
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
        record=adapter.record_kind,
        source=str(source),
    )
    manifest_path = join(version_dir(rpath, dataset, version), "_manifest.json")
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


def plan_version(
    dataset: str,
    source: str,
    root: str,
    adapter_params: dict[str, Any] | None = None,
    crop: CropConfig | None = None,
    seed: int = 0,
    shard_size: int = 512,
) -> Prepared:
    """Parse the source and name its version without writing anything under the version folder.

    Cheap enough to run before an orchestrator starts: a validated version with this id means the
    rebuild has nothing to do (``reused`` is True). The only write is the digest cache.

    Returns:
        :class:`Prepared` with ``specs`` empty.
    """
    return _plan(dataset, source, root, adapter_params, crop, seed, shard_size).prepared


def prepare(
    dataset: str,
    source: str,
    root: str,
    adapter_params: dict[str, Any] | None = None,
    crop: CropConfig | None = None,
    seed: int = 0,
    shard_size: int = 512,
) -> Prepared:
    """Parse the source, name the version, and stage records + shard specs unless it already exists.

    Returns:
        :class:`Prepared`; ``reused`` is True when a validated manifest for the version exists.

    Raises:
        SourceError: When nothing could be written: every parsed input was rejected at parse, or
            none of the referenced images/videos exists under the source (nothing is staged).
    """
    plan = _plan(dataset, source, root, adapter_params, crop, seed, shard_size)
    prepared, records = plan.prepared, plan.records
    if prepared.reused:
        return prepared
    _refuse_if_nothing_writable(plan)
    fs, rpath = filesystem(root)
    vdir = version_dir(rpath, dataset, prepared.version)
    if fs.exists(vdir):  # an earlier attempt that never committed: start clean (content-addressed)
        fs.rm(vdir, recursive=True)
    write_parquet(fs, join(vdir, STAGING, "rejects-parse.parquet"), plan.rejects, REJECTS_SCHEMA)
    write_parquet(fs, join(vdir, STAGING, "inputs.parquet"), _inputs_table(plan.digests, plan.source_root), INPUTS_SCHEMA)
    if prepared.record == "clips":  # clip records carry no pixels: the shards are the records themselves
        prepared.clip_shards = write_clip_shards(fs, vdir, records, shard_size)
        return prepared
    crop = crop or CropConfig()
    prepared.specs = stage_shards(
        records, dataset=dataset, version=prepared.version, root=root, shard_size=shard_size, source_root=str(plan.source_root), crop=crop, seed=seed
    )
    return prepared


def _refuse_if_nothing_writable(plan: _Plan) -> None:
    """Fail at parse, with advice that fits, when no input can possibly reach a shard."""
    prepared = plan.prepared
    if plan.records.num_rows == 0:
        reasons = collections.Counter(plan.rejects.column("reason").to_pylist())
        top = ", ".join(f"{r}: {n}" for r, n in reasons.most_common(5)) or "no annotations at all"
        raise SourceError(
            f"{prepared.dataset}: nothing to write from {prepared.source}: {prepared.parsed} inputs parsed, all rejected at parse ({top})",
            hint="check the annotation file (an empty annotations list gives this) and the -p parse policy; nothing was committed, LATEST is unchanged",
        )
    # clip datasets decide about absent videos themselves (require_videos); images have no such policy
    if prepared.record != "clips" and plan.digests and all(d is None for d in plan.digests.values()):
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


def write_clip_shards(fs: Any, vdir: str, records: pa.Table, shard_size: int) -> list[dict[str, Any]]:
    """Write sorted clip records as ``clips/part-{i:05d}.parquet`` shards; returns shard summaries."""
    shards = []
    for index, start in enumerate(range(0, records.num_rows, shard_size)):
        rel = f"clips/part-{index:05d}.parquet"
        n, sha = write_parquet(fs, join(vdir, rel), records.slice(start, shard_size), CLIPS_SCHEMA, durable=False)
        shards.append({"split": "clips", "index": index, "parquet": rel, "hdf5": None, "rows": n, "rejected": 0,
                       "rejects_by_reason": {}, "rejects_file": None, "parquet_sha256": sha, "hdf5_content_sha256": None, "parsed": n})  # fmt: skip
    return shards


def commit(
    root: str,
    prepared: Prepared,
    shards: list[dict[str, Any]],
    shard_reports: list[dict[str, Any]],
    max_reject_ratio: float = 0.5,
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
    vdir = version_dir(rpath, dataset, version)
    manifest_path = join(vdir, "_manifest.json")
    if fs.exists(manifest_path):
        return _finish_commit(fs, rpath, root, read_json(fs, manifest_path))
    shards = sorted(shards, key=lambda s: (s["split"], s["index"]))
    parse_rejects = join(vdir, STAGING, "rejects-parse.parquet")
    if not fs.exists(parse_rejects):
        raise StorageError(
            f"{dataset} {version}: the staging files of this rebuild are gone and no manifest was written ({parse_rejects})",
            hint="another process cleaned the version folder; run the rebuild again (it starts this version afresh)",
        )
    reject_tables = [read_parquet(fs, parse_rejects, REJECTS_SCHEMA)]
    reject_tables += [read_parquet(fs, join(vdir, s["rejects_file"]), REJECTS_SCHEMA) for s in shards if s["rejects_file"]]
    rejects = pa.concat_tables(reject_tables).sort_by([("stage", "ascending"), ("source_key", "ascending"), ("reason", "ascending")])
    write_parquet(fs, join(vdir, "_rejects.parquet"), rejects, REJECTS_SCHEMA)
    by_reason = dict(sorted(collections.Counter(rejects.column("reason").to_pylist()).items()))
    written = sum(s["rows"] for s in shards)
    counts: dict[str, int] = {}
    for s in shards:
        counts[s["split"]] = counts.get(s["split"], 0) + s["rows"]
    if written + rejects.num_rows != prepared.parsed:
        raise ValidationFailedError(f"{dataset} {version}: written {written} + rejected {rejects.num_rows} != parsed {prepared.parsed}", hint="this is a bug; report it")
    errors = sum(n for reason, n in by_reason.items() if reason not in POLICY_REASONS)
    ratio = errors / prepared.parsed if prepared.parsed else 0.0
    if ratio > max_reject_ratio:
        worst = ", ".join(f"{r}: {n}" for r, n in by_reason.items() if r not in POLICY_REASONS)
        raise RejectRatioExceededError(
            f"{dataset}: {errors} of {prepared.parsed} inputs rejected for data errors ({ratio:.0%} > {max_reject_ratio:.0%}): {worst}",
            hint=f"inspect {join(vdir, '_rejects.parquet')}; fix the source or raise --max-reject-ratio",
        )
    _refuse_empty(dataset, version, written, counts, by_reason, join(vdir, "_rejects.parquet"))
    inputs_rel = "_inputs.parquet"
    inputs = read_parquet(fs, join(vdir, STAGING, "inputs.parquet"), INPUTS_SCHEMA)
    _, inputs_sha = write_parquet(fs, join(vdir, inputs_rel), inputs, INPUTS_SCHEMA)
    report = {"shards": sorted(shard_reports, key=lambda r: r["shard"]), "version": version_checks(root, dataset, version, shards, prepared.record)}
    report["success"] = all(r["success"] for r in report["shards"]) and all(r["success"] for r in report["version"])
    write_json(fs, join(vdir, "_validation.json"), report)
    write_bytes_atomic(fs, join(vdir, "_validation.html"), render_html(report, f"{dataset} {version}").encode())
    failed = failures(report)
    manifest = {
        "dataset": dataset,
        "version": version,
        "record": "clips" if prepared.record == "clips" else "processed_samples",
        "schema_version": SCHEMA_VERSION,
        "schema_fingerprint": schema_fingerprint(CLIPS_SCHEMA if prepared.record == "clips" else PROCESSED_SAMPLES_SCHEMA),
        "code_version": prepared.code_version,
        "params": prepared.params,
        "input_checksums": prepared.input_checksums,
        "inputs": {
            "file": inputs_rel,
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
        "shards": [
            {k: s[k] for k in ("split", "index", "parquet", "hdf5", "rows", "parquet_sha256", "hdf5_content_sha256")} for s in shards
        ],
        "validation": {"success": report["success"], "failures": failed, "report": "_validation.json", "html": "_validation.html"},
        "parents": [],
        "stats": prepared.stats,
    }
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(fs, join(vdir, "_run.json"), {"finished_at": now, "created_at": now, "source": prepared.source, **(run_info or {})})
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
    vdir = version_dir(rpath, dataset, version)
    if fs.exists(join(vdir, STAGING)):
        fs.rm(join(vdir, STAGING), recursive=True)
    if not manifest["validation"]["success"]:
        raise ValidationFailedError(
            f"{dataset} {version} failed validation; LATEST was not moved:\n  " + "\n  ".join(manifest["validation"]["failures"][:20]),
            hint=f"see {join(vdir, '_validation.html')}",
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
    location = version_dir(path, dataset, version)
    return fs.unstrip_protocol(location) if "://" in str(root) else location


def reused_summary(root: str, prepared: Prepared) -> dict[str, Any]:
    """Summary of an already-built version; moves LATEST to it."""
    fs, rpath = filesystem(root)
    manifest = read_json(fs, join(version_dir(rpath, prepared.dataset, prepared.version), "_manifest.json"))
    set_latest(fs, rpath, prepared.dataset, prepared.version)
    return summary(manifest, root, reused=True)


"""The rebuild stages as plain functions (the Prefect flow in flows/rebuild.py only wires them).

``prepare`` parses and names the version (or finds it already built); ``process_shard`` (in
tasks/shards.py) builds each shard; ``validate_shard`` (tasks/validate.py) gates each shard;
``commit`` checks the whole version, writes rejects, the validation report, the manifest (last) and
moves ``LATEST``.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import inspect
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas.errors import RejectRatioExceededError, RejectReason, ValidationFailedError
from schemas.records import CLIPS_SCHEMA, PROCESSED_SAMPLES_SCHEMA, REJECTS_SCHEMA, SCHEMA_VERSION, schema_fingerprint
from storage.fs import filesystem, flush_to_disk, join, write_bytes_atomic
from storage.manifest import compute_version, read_json, set_latest, version_dir, write_json, write_manifest
from storage.parquet import read_parquet, write_parquet
from tasks.datasets import get_adapter
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

_CODE_MODULES = (
    "schemas.records",
    "schemas.skeletons",
    "storage.parquet",
    "storage.hdf5",
    "tasks.datasets.base",
    "tasks.shards",
    "tasks.transforms.geometry",
    "tasks.transforms.image_io",
)


def code_version(adapter_module: str) -> str:
    """sha256 (16 hex) of the source of every module that shapes the shards' bytes."""
    h = hashlib.sha256()
    for name in (*_CODE_MODULES, adapter_module):
        h.update(name.encode())
        h.update(inspect.getsource(importlib.import_module(name)).encode())
    return h.hexdigest()[:16]


def images_fingerprint(source_root: Path, image_paths: list[str]) -> str:
    """Cheap fingerprint of the referenced images: sha256 of sorted (path, size) pairs (-1 = missing)."""
    h = hashlib.sha256()
    for rel in sorted(set(image_paths)):
        p = source_root / rel
        size = p.stat().st_size if p.is_file() else -1
        h.update(f"{rel}\t{size}\n".encode())
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
    """
    adapter = get_adapter(dataset)
    p = adapter.make_params(adapter_params)
    crop = crop or CropConfig()
    result = adapter.parse(Path(source), p)
    source_root = Path(source).parent if Path(source).is_file() else Path(source)
    clips = adapter.record_kind == "clips"
    records = result.records.sort_by("clip_id") if clips else sort_records(result.records)
    inputs = dict(result.input_checksums)
    media = records.column("video_path" if clips else "image_path").to_pylist()
    inputs["videos" if clips else "images"] = images_fingerprint(source_root, media)
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
        parse_rejects=result.rejects.num_rows,
        splits=adapter.splits,
        skeleton=adapter.skeleton,
        stats=result.stats,
        code_version=code,
        record=adapter.record_kind,
    )
    fs, rpath = filesystem(root)
    vdir = version_dir(rpath, dataset, version)
    manifest_path = join(vdir, "_manifest.json")
    if fs.exists(manifest_path) and read_json(fs, manifest_path).get("validation", {}).get("success"):
        prepared.reused = True
        return prepared
    if fs.exists(vdir):  # an earlier attempt that never committed: start clean (content-addressed)
        fs.rm(vdir, recursive=True)
    write_parquet(fs, join(vdir, STAGING, "rejects-parse.parquet"), result.rejects, REJECTS_SCHEMA)
    if clips:  # clip records carry no pixels: the shards are the records themselves
        prepared.clip_shards = write_clip_shards(fs, vdir, records, shard_size)
        return prepared
    prepared.specs = stage_shards(
        records, dataset=dataset, version=version, root=root, shard_size=shard_size, source_root=str(source_root), crop=crop, seed=seed
    )
    return prepared


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

    Raises:
        RejectRatioExceededError: When non-policy rejects / parsed > ``max_reject_ratio``
            (nothing is committed; ``_rejects.parquet`` is left for inspection).
        ValidationFailedError: When any check failed (manifest written with the failure, LATEST
            untouched); the message names each failing expectation and shard.
    """
    fs, rpath = filesystem(root)
    dataset, version = prepared.dataset, prepared.version
    vdir = version_dir(rpath, dataset, version)
    shards = sorted(shards, key=lambda s: (s["split"], s["index"]))
    reject_tables = [read_parquet(fs, join(vdir, STAGING, "rejects-parse.parquet"), REJECTS_SCHEMA)]
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
    if fs.exists(join(vdir, STAGING)):
        fs.rm(join(vdir, STAGING), recursive=True)
    write_json(fs, join(vdir, "_run.json"), {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(run_info or {})})
    flush_to_disk(fs)  # shards were written without per-file fsync: make them durable before the manifest
    write_manifest(fs, rpath, dataset, version, manifest)
    if not report["success"]:
        raise ValidationFailedError(
            f"{dataset} {version} failed validation; LATEST was not moved:\n  " + "\n  ".join(failed[:20]),
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


"""The record-kind contract and the small typed values that travel between rebuild stages.

A *record kind* is what one row of a dataset version is: ``samples`` (a person in an image, with a
crop), ``clips`` (a video with its label and folds); keypoint sequences and model predictions are
the next ones. Each kind is one module in ``tasks/kinds/`` defining a :class:`RecordKind` subclass
with a ``name``; it holds the kind's schemas, id column, parse-time checks, version parameters,
shard builder, expectation suite and semantic checks. The rebuild sequence (``tasks/rebuild.py``)
never asks "samples or clips?": it asks the kind.

Only :class:`ShardSpec` (paths and small numbers) goes to a shard worker and only
:class:`ShardResult` comes back: pixels never cross the orchestrator.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from schemas.errors import ConfigError
from schemas.settings import DEFAULT_SHARD_SIZE
from storage.fs import filesystem
from storage.layout import VersionPaths, staging_relpath
from storage.parquet import read_parquet, write_parquet
from tasks.datasets.base import Reject
from tasks.transforms.geometry import CropConfig

_KINDS: dict[str, type[RecordKind]] = {}


@dataclass(frozen=True)
class CheckResult:
    """One expectation or semantic check on one shard (or on the whole version).

    Attributes:
        check: Its name (``ExpectColumnValuesToBeUnique(sample_id)``, ``splits_disjoint``...).
        engine: ``great_expectations`` or ``posepipe``.
        success: Whether it passed.
        unexpected: Rows (or items) that broke it.
        detail: The first offending ids or values, for the report.
    """

    check: str
    engine: str
    success: bool
    unexpected: int = 0
    detail: str = ""

    @classmethod
    def of(cls, check: str, bad: list[str]) -> CheckResult:
        """A posepipe check that passed when ``bad`` is empty (its first five items are the detail)."""
        return cls(check, "posepipe", not bad, len(bad), ", ".join(bad[:5]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShardReport:
    """The gate's verdict on one shard: ``shard`` is ``{split}/part-{i:05d}``."""

    shard: str
    results: tuple[CheckResult, ...]

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "success": self.success, "results": [r.to_dict() for r in self.results]}


@dataclass(frozen=True)
class ShardSummary:
    """What building one shard wrote (paths relative to the version folder).

    Attributes:
        split: Split of every row.
        index: Shard index within the split.
        parquet: Records file.
        hdf5: Pixels file (None for kinds without pixels).
        rows: Rows written.
        rejected: Inputs of this shard rejected while building it.
        rejects_by_reason: Reason code → count.
        rejects_file: Staged rejects of this shard (None when it rejected nothing).
        parquet_sha256: sha256 of the Parquet file's bytes.
        hdf5_content_digest: :func:`storage.hdf5.content_digest` of the pixels (ids + shape + pixels),
            ``"{algorithm}:{hex}"``.
        parsed: Inputs the shard started from (``rows + rejected``).
    """

    split: str
    index: int
    parquet: str
    hdf5: str | None
    rows: int
    rejected: int
    rejects_by_reason: dict[str, int]
    rejects_file: str | None
    parquet_sha256: str
    hdf5_content_digest: str | None
    parsed: int

    def manifest_entry(self) -> dict[str, Any]:
        """The shard's entry in ``_manifest.json``."""
        return {k: getattr(self, k) for k in ("split", "index", "parquet", "hdf5", "rows", "parquet_sha256", "hdf5_content_digest")}


@dataclass(frozen=True)
class ShardSpec:
    """Everything a worker needs to build and check one shard (small and picklable).

    Attributes:
        kind: Record kind name.
        dataset: Dataset name.
        version: Version id.
        root: Storage root URL.
        split: Split of every row in the shard.
        index: Shard index within the split.
        records_path: Parquet of this shard's parsed records only (sorted by id), so a worker
            reads its own rows and never the whole dataset.
        num_rows: Rows in ``records_path``.
        source_root: Local folder the records' media paths are relative to.
        crop: Crop configuration (kinds with pixels).
        seed: Run seed.
        splits: The adapter's split names (what the gate allows).
        skeleton: The adapter's skeleton (what the gate allows).
    """

    kind: str
    dataset: str
    version: str
    root: str
    split: str
    index: int
    records_path: str
    num_rows: int
    source_root: str
    crop: CropConfig | None = None
    seed: int = 0
    splits: tuple[str, ...] = ()
    skeleton: str | None = None

    def paths_fs(self) -> tuple[Any, VersionPaths]:
        """The root's filesystem and this version's paths on it."""
        fs, path = filesystem(self.root)
        return fs, VersionPaths(path, self.dataset, self.version)


@dataclass(frozen=True)
class ShardResult:
    """What one shard task returns: what was written, the gate's verdict on it, and how long each took.

    ``timings_s`` holds ``build`` and ``validate`` seconds (wall, in the worker): they go to
    ``_run.json``, never into the manifest.
    """

    summary: ShardSummary
    report: ShardReport
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StageContext:
    """What staging needs besides the records (the request's knobs and the adapter's facts)."""

    dataset: str
    version: str
    root: str
    shard_size: int
    source_root: str
    crop: CropConfig
    seed: int
    splits: tuple[str, ...] = ()
    skeleton: str | None = None


class RecordKind(ABC):
    """One kind of dataset row; subclasses with a ``name`` register themselves.

    Class attributes:
        name: The kind's name (adapters declare it as ``record_kind``).
        manifest_record: What the manifest calls the committed rows.
        input_schema: Schema of an adapter's parsed records of this kind.
        output_schema: Schema of the committed shards.
        id_column: Stable id column (sorting it decides shard membership).
        media_column: Column naming the image/video each row was read from.
        inputs_key: Name of the media fingerprint among the version's input checksums.
        refuses_missing_media: Whether a source whose every referenced file is absent is an error
            at parse (False where the adapter has its own policy, e.g. clips' ``require_videos``).
        gx_at_commit: Whether the kind's GX suite (:meth:`expectations`) runs once over all shards
            at commit (each shard still gets its own results) instead of inside every shard task:
            GX's cost per call is mostly fixed, so this takes it off the shards' critical path.
    """

    name: ClassVar[str] = ""
    manifest_record: ClassVar[str] = ""
    input_schema: ClassVar[pa.Schema]
    output_schema: ClassVar[pa.Schema]
    id_column: ClassVar[str] = ""
    media_column: ClassVar[str] = ""
    inputs_key: ClassVar[str] = "media"
    refuses_missing_media: ClassVar[bool] = False
    gx_at_commit: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _KINDS[cls.name] = cls

    # --- parse side --------------------------------------------------------------------------
    def sort(self, records: pa.Table) -> pa.Table:
        """Rows in shard order (by id only: output never depends on input order)."""
        return records.sort_by(self.id_column)

    def parse_checks(self, records: pa.Table) -> tuple[np.ndarray, list[Reject]]:
        """Rows usable at all (``(N,) bool``) and a reject for each one that is not."""
        return np.ones(records.num_rows, dtype=bool), []

    def version_params(self, crop: CropConfig) -> dict[str, Any]:
        """Parameters of this kind that the version id hashes (besides adapter params, seed, shard size)."""
        return {}

    def shard_size(self, requested: int | None, crop: CropConfig) -> int:
        """Records per shard: ``requested``, or this kind's default when None (part of the version id)."""
        return requested or DEFAULT_SHARD_SIZE

    def plan(self, records: pa.Table, shard_size: int) -> list[tuple[str, int, int, int]]:
        """``(split, index, start, stop)`` per shard over sorted records."""
        return [("all", i, start, min(start + shard_size, records.num_rows)) for i, start in enumerate(range(0, records.num_rows, shard_size))]

    def stage(self, records: pa.Table, ctx: StageContext) -> list[ShardSpec]:
        """Write each planned shard's input rows to its own staging file; one spec per shard."""
        fs, path = filesystem(ctx.root)
        paths = VersionPaths(path, ctx.dataset, ctx.version)
        specs = []
        for split, index, start, stop in self.plan(records, ctx.shard_size):
            records_path = paths.file(staging_relpath(f"records-{split}-{index:05d}.parquet"))
            write_parquet(fs, records_path, records.slice(start, stop - start), self.input_schema, durable=False)
            specs.append(
                ShardSpec(self.name, ctx.dataset, ctx.version, ctx.root, split, index, records_path, stop - start, ctx.source_root, ctx.crop, ctx.seed, ctx.splits, ctx.skeleton)
            )
        return specs

    # --- shard side --------------------------------------------------------------------------
    @abstractmethod
    def build(self, spec: ShardSpec) -> ShardSummary:
        """Build one shard from its staged records (bad inputs become rejects, never a crash)."""

    @abstractmethod
    def checks(self, spec: ShardSpec, summary: ShardSummary) -> list[CheckResult]:
        """The expectation suite and semantic checks of one built shard."""

    def expectations(self, spec: ShardSpec) -> list[Any]:
        """The GX expectation specs of this kind's shards (used when :attr:`gx_at_commit`)."""
        return []

    def validate(self, spec: ShardSpec, summary: ShardSummary) -> ShardReport:
        """The gate's report on one built shard."""
        return ShardReport(summary.parquet.removesuffix(".parquet"), tuple(self.checks(spec, summary)))

    def build_in_memory(self, spec: ShardSpec) -> tuple[ShardSummary, Callable[[], list[CheckResult]] | None]:
        """Build one shard; also, for a kind whose builder keeps what it wrote in memory, a function
        running :meth:`checks` on that instead of the files (None: the gate reads the shard back)."""
        return self.build(spec), None

    def build_and_check(self, spec: ShardSpec) -> tuple[ShardSummary, ShardReport, dict[str, float]]:
        """Build one shard and gate it: ``(summary, report, {"build": s, "validate": s})`` (the checks
        on what :meth:`build_in_memory` kept, else on the shard as read back: :meth:`validate`)."""
        t0 = time.perf_counter()
        summary, in_memory_checks = self.build_in_memory(spec)
        t1 = time.perf_counter()
        if in_memory_checks is None:
            report = self.validate(spec, summary)
        else:
            report = ShardReport(summary.parquet.removesuffix(".parquet"), tuple(in_memory_checks()))
        return summary, report, {"build": round(t1 - t0, 4), "validate": round(time.perf_counter() - t1, 4)}

    def version_checks(self, paths: VersionPaths, fs: Any, summaries: list[ShardSummary]) -> list[CheckResult]:
        """Checks across all shards of the version, run at commit: ids unique across shards."""
        return self.version_checks_on([read_parquet(fs, paths.file(shard.parquet)) for shard in summaries])

    def version_checks_on(self, tables: list[pa.Table]) -> list[CheckResult]:
        """:meth:`version_checks` on the shards' rows already read (the commit reads each shard once
        for the GX suite and these)."""
        return [self.ids_unique([i for t in tables for i in t.column(self.id_column).to_pylist()])]

    def ids_unique(self, ids: list[str]) -> CheckResult:
        """``{id_column}s_unique_across_shards``: every id that appears again is named."""
        seen: set[str] = set()
        dup: list[str] = []
        for i in ids:
            if i in seen:
                dup.append(i)
            seen.add(i)
        return CheckResult.of(f"{self.id_column}s_unique_across_shards", dup)


def _discover() -> None:
    """Import every kind module of the package once (they register on class creation)."""
    import importlib
    import pkgutil

    import tasks.kinds as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def get_kind(name: str) -> RecordKind:
    """The record kind registered as ``name``.

    Raises:
        ConfigError: Listing the registered kinds.
    """
    _discover()
    if name not in _KINDS:
        raise ConfigError(f"no record kind named {name!r}", hint=f"known: {', '.join(sorted(_KINDS))}")
    return _KINDS[name]()


def build_and_validate(spec: ShardSpec) -> ShardResult:
    """Build one shard and run the gate on it: the unit of work one orchestrator task runs."""
    summary, report, timings_s = get_kind(spec.kind).build_and_check(spec)
    return ShardResult(summary, report, timings_s)

"""The dataset adapter contract, as TFDS builders: one module per dataset, auto-registered.

An adapter is pure: it reads annotation files under a source folder and returns canonical records
(``samples`` for image datasets, ``clips`` for video datasets) plus ``rejects``. It never decodes
pixels, never writes to the store, and never imports Prefect, Dask or TensorFlow.

Adding a dataset = one module in ``tasks/datasets/`` defining a subclass of :class:`DatasetAdapter`
with a ``name``, plus one test module. Registration happens on subclass creation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.errors import ConfigError, RejectReason
from schemas.records import CLIPS_SCHEMA, REJECTS_SCHEMA, SAMPLES_SCHEMA, to_table
from tasks.common import text_of

#: Name of a record kind registered in ``tasks/kinds/`` (``samples``, ``clips``...).
RecordKind = str

_REGISTRY: dict[str, type[DatasetAdapter]] = {}


class AdapterParams(BaseModel):
    """Base of every adapter's parse policy. Subclass it with typed fields and defaults.

    Params are frozen and forbid unknown keys, so a typo on the command line is an error, and
    ``model_dump()`` is what the dataset version hashes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Source:
    """One downloadable file of a dataset, as its owners publish it.

    Attributes:
        name: Logical name inside the dataset (``annotations``, ``images_val``...).
        url: The owner's public URL.
        filename: File name stored under ``{root}/raw/{dataset}/``.
        size_bytes: Expected size when known.
        sha256: Expected sha256 when known (usually filled from the checksum registry).
        extract: How to unpack: ``zip``, ``tar``, ``rar`` or None (use the file as is).
        extract_to: Sub-folder of the dataset's extracted tree to unpack into ("" = its root).
        required: Whether a rebuild needs it (optional sources may be skipped with a warning).
        description: What the file holds.
    """

    name: str
    url: str
    filename: str
    size_bytes: int | None = None
    sha256: str | None = None
    extract: Literal["zip", "tar", "rar"] | None = None
    extract_to: str = ""
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class Reject:
    """A parsed input that will not reach a shard.

    Attributes:
        source_key: The input's key in the source (annotation id, file name...).
        reason: A :class:`RejectReason` code.
        detail: Human-readable specifics (values, file, position).
        stage: Pipeline stage that rejected it (``parse``, ``process``, ``extract``...).
        split: The split the input belonged to, when known.
    """

    source_key: str
    reason: RejectReason
    detail: str = ""
    stage: str = "parse"
    split: str | None = None

    def as_row(self) -> dict[str, Any]:
        """The row for :data:`schemas.records.REJECTS_SCHEMA` (texts valid UTF-8, see :func:`text_of`)."""
        return {
            "source_key": text_of(self.source_key),
            "stage": self.stage,
            "reason": str(self.reason),
            "detail": text_of(self.detail),
            "split": self.split,
        }


def rejects_table(rejects: Iterable[Reject]) -> pa.Table:
    """Table of rejects conforming to :data:`REJECTS_SCHEMA`."""
    return to_table((r.as_row() for r in rejects), REJECTS_SCHEMA)


@dataclass
class ParseResult:
    """What an adapter's ``parse`` returns.

    Attributes:
        records: ``samples`` or ``clips`` table (schema per the adapter's ``record_kind``).
        rejects: Table conforming to :data:`REJECTS_SCHEMA`.
        input_checksums: Annotation file (relative path) -> sha256, for the dataset version.
        stats: Free-form small counts worth reporting (movies, images, groups...).
    """

    records: pa.Table
    rejects: pa.Table
    input_checksums: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def parsed(self) -> int:
        """Number of parsed inputs: written + rejected."""
        return self.records.num_rows + self.rejects.num_rows


class DatasetAdapter(ABC):
    """Base class of dataset adapters; subclasses with a ``name`` register themselves.

    Class attributes describe the dataset (like ``tfds.core.DatasetInfo``); :meth:`parse` does the
    conversion. A clip dataset also names its folds (the keys of its ``folds`` column) in
    ``fold_hint``, as a message shows them (``split1..split3``), and may add facts about a fold to
    an extraction request (:meth:`fold_request`).
    """

    name: ClassVar[str] = ""
    record_kind: ClassVar[RecordKind] = "samples"
    skeleton: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    homepage: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    #: The terms the dataset is published under, as its site states them ("" when it states none).
    licence: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ()
    sources: ClassVar[tuple[Source, ...]] = ()
    fold_hint: ClassVar[str] = ""
    Params: ClassVar[type[AdapterParams]] = AdapterParams

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name in _REGISTRY and _REGISTRY[cls.name].__qualname__ != cls.__qualname__:
                raise ConfigError(f"two adapters are registered as {cls.name!r}")
            _REGISTRY[cls.name] = cls

    # --- contract ---------------------------------------------------------------------------
    @abstractmethod
    def parse(self, source: Path, params: AdapterParams) -> ParseResult:
        """Read annotations under ``source`` and convert them to canonical records.

        Args:
            source: Folder holding the dataset in its published on-disk layout (or an annotation
                file, where the adapter accepts one).
            params: Validated parse policy (an instance of ``self.Params``).

        Returns:
            Records and rejects; every parsed input is in exactly one of them.
        """

    def fold_request(self, fold: str) -> dict[str, Any]:
        """Fields an extraction run over ``fold`` records in its request beside the fold's name.

        Args:
            fold: A fold name of this dataset's ``folds`` column.

        Returns:
            Extra request fields (none by default).
        """
        return {}

    # --- helpers ----------------------------------------------------------------------------
    def make_params(self, overrides: Mapping[str, Any] | None = None) -> AdapterParams:
        """Validate user overrides (strings from the CLI are coerced) into ``self.Params``.

        Raises:
            ConfigError: Naming the bad parameter and the accepted ones.
        """
        try:
            return self.Params(**dict(overrides or {}))
        except ValidationError as exc:
            fields = ", ".join(f"{k} (default {v.default!r})" for k, v in self.Params.model_fields.items())
            raise ConfigError(f"invalid parameters for {self.name}: {exc.errors()}", hint=f"accepted: {fields}") from exc

    @property
    def record_schema(self) -> pa.Schema:
        """Schema of :attr:`ParseResult.records` for this adapter."""
        return SAMPLES_SCHEMA if self.record_kind == "samples" else CLIPS_SCHEMA

    def table(self, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
        """Build the records table from row dicts, enforcing the schema."""
        return to_table(rows, self.record_schema)


def registered() -> dict[str, type[DatasetAdapter]]:
    """All registered adapters by name (after importing every module of the package)."""
    from tasks.datasets import discover

    discover()
    return dict(_REGISTRY)

"""Schema-enforcing Parquet shard writer and reader.

Bytes are deterministic for the same rows: no timestamps, fixed compression, fixed row-group size,
statistics on. Tables are cast to the record schema before writing, so a writer cannot drift from
``schemas/records.py``.
"""

from __future__ import annotations

import hashlib
import io

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import SchemaError, StorageError
from schemas.records import conform, upgrade_legacy_columns
from storage.fs import atomic_open

ROW_GROUP_SIZE = 4096


def parquet_bytes(table: pa.Table, schema: pa.Schema) -> bytes:
    """Serialise ``table`` (cast to ``schema``) to deterministic Parquet bytes."""
    table = conform(table, schema)
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        compression_level=3,
        row_group_size=ROW_GROUP_SIZE,
        write_statistics=True,
        use_dictionary=True,
        store_schema=True,
    )
    return buf.getvalue()


def write_parquet(fs: fsspec.AbstractFileSystem, path: str, table: pa.Table, schema: pa.Schema, durable: bool = True) -> tuple[int, str]:
    """Write a shard atomically.

    Args:
        fs: Filesystem.
        path: Final path of the shard.
        table: Rows to write.
        schema: Record schema they must conform to.
        durable: fsync before the rename (see :func:`storage.fs.atomic_open`).

    Returns:
        (rows written, sha256 hex of the file bytes).

    Raises:
        SchemaError: If the rows do not conform.
    """
    data = parquet_bytes(table, schema)
    with atomic_open(fs, path, "wb", durable=durable) as fh:
        fh.write(data)
    return table.num_rows, hashlib.sha256(data).hexdigest()


def read_parquet(fs: fsspec.AbstractFileSystem, path: str, schema: pa.Schema | None = None) -> pa.Table:
    """Read a shard, optionally checking it against ``schema``."""
    try:
        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh)
    except FileNotFoundError as exc:
        raise StorageError(f"shard not found: {path}") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise StorageError(f"cannot read Parquet file {path}: {exc}", hint="the file is corrupt; rebuild the version") from exc
    if schema is not None:
        try:
            table = conform(upgrade_legacy_columns(table, schema), schema)
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc.message}", hint="the shard was written by another schema version") from exc
    return table

"""pyarrow schemas of the canonical records: the single source of truth for writers and checks.

Writers cast to these schemas (storage/), the validation suite is generated from them
(schemas/expectations.py), and the manifest stores their fingerprint. Any change to a field here
must bump :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from schemas.errors import SchemaError

#: 1.1.0: pixel sizes carry their unit (``image_width_px``, ``image_height_px``, ``crop_width_px``,
#: ``crop_height_px``); 1.0.0 shards are still read (:func:`upgrade_legacy_columns`).
SCHEMA_VERSION = "1.1.0"

#: Column names of earlier schema versions → today's (readers accept both).
LEGACY_COLUMNS = {
    "image_width": "image_width_px",
    "image_height": "image_height_px",
    "crop_width": "crop_width_px",
    "crop_height": "crop_height_px",
}

_XY = pa.list_(pa.float32(), 2)
_BOX = pa.list_(pa.float32(), 4)

#: One row per annotated person in an image (DESIGN.md "samples").
SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False, metadata={"doc": "stable id from the source key"}),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("image_path", pa.string(), nullable=False, metadata={"doc": "relative to the raw root"}),
        pa.field("image_width_px", pa.int32(), nullable=True),
        pa.field("image_height_px", pa.int32(), nullable=True),
        pa.field("person_index", pa.int32(), nullable=False),
        pa.field("source_key", pa.string(), nullable=False, metadata={"doc": "annotation id in the source"}),
        pa.field("activity", pa.string(), nullable=True),
        pa.field("category", pa.string(), nullable=True),
        pa.field("activity_id", pa.int32(), nullable=True),
        pa.field("bbox_xyxy_px", _BOX, nullable=True),
        pa.field("center_xy_px", _XY, nullable=True),
        pa.field("scale", pa.float32(), nullable=True),
        pa.field("head_box_xyxy_px", _BOX, nullable=True),
        pa.field("torso_box_xyxy_px", _BOX, nullable=True),
        pa.field("is_backwards_facing", pa.bool_(), nullable=True),
        pa.field("skeleton", pa.string(), nullable=False),
        pa.field("keypoints_xy_px", pa.list_(_XY), nullable=False, metadata={"doc": "(J, 2) float32, NaN unknown"}),
        pa.field("keypoints_visibility", pa.list_(pa.int8()), nullable=False, metadata={"doc": "(J,) 0/1/2"}),
        pa.field("extra", pa.string(), nullable=True, metadata={"doc": "dataset-specific JSON"}),
    ],
    metadata={"posepipe.record": "samples", "posepipe.schema_version": SCHEMA_VERSION},
)

#: Processed samples: the canonical fields plus the crop and where its pixels live.
PROCESSED_SAMPLES_SCHEMA = pa.schema(
    list(SAMPLES_SCHEMA)
    + [
        pa.field("crop_xyxy_px", _BOX, nullable=False, metadata={"doc": "crop box in source pixels"}),
        pa.field("crop_width_px", pa.int32(), nullable=False),
        pa.field("crop_height_px", pa.int32(), nullable=False),
        pa.field("keypoints_crop_xy_px", pa.list_(_XY), nullable=False, metadata={"doc": "(J, 2) in crop pixels"}),
        pa.field("pixels_file", pa.string(), nullable=False, metadata={"doc": "HDF5 shard, relative to version"}),
        pa.field("pixels_row", pa.int32(), nullable=False),
    ],
    metadata={"posepipe.record": "processed_samples", "posepipe.schema_version": SCHEMA_VERSION},
)

#: One row per video clip (DESIGN.md "clips").
CLIPS_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("label_index", pa.int32(), nullable=False),
        pa.field("group", pa.string(), nullable=True, metadata={"doc": "what splits must not cut across"}),
        pa.field("subject", pa.string(), nullable=True),
        pa.field("folds", pa.map_(pa.string(), pa.string()), nullable=True, metadata={"doc": "split name -> split"}),
        pa.field("video_path", pa.string(), nullable=False),
        pa.field("fps", pa.float32(), nullable=True),
        pa.field("frames_decoded", pa.int32(), nullable=True),
        pa.field("frames_declared", pa.int32(), nullable=True),
        pa.field("decoder", pa.string(), nullable=True),
        pa.field("sampled_frame_indices", pa.list_(pa.int32()), nullable=True),
    ],
    metadata={"posepipe.record": "clips", "posepipe.schema_version": SCHEMA_VERSION},
)

#: One row per detected person per frame (DESIGN.md "keypoints").
KEYPOINTS_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("person_index", pa.int32(), nullable=False),
        pa.field("keypoints", pa.list_(pa.list_(pa.float32(), 3)), nullable=False, metadata={"doc": "(J, 3) x, y, score"}),
        pa.field("person_score", pa.float32(), nullable=True),
        pa.field("skeleton", pa.string(), nullable=False),
        pa.field("backend", pa.string(), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
    ],
    metadata={"posepipe.record": "keypoints", "posepipe.schema_version": SCHEMA_VERSION},
)

#: A clip of a finished extraction run, as the ``{dataset}-keypoints`` adapters parse it: the clip's
#: record from the run plus where its keypoint rows are (what a sequence shard is built from).
SEQUENCE_SOURCES_SCHEMA = pa.schema(
    list(CLIPS_SCHEMA)
    + [
        pa.field("frame_width_px", pa.int32(), nullable=True, metadata={"doc": "decoded frame size (the run's shard summary)"}),
        pa.field("frame_height_px", pa.int32(), nullable=True),
        pa.field("frame_indices", pa.list_(pa.int32()), nullable=False, metadata={"doc": "(T,) frames of the sequence, as the run sampled them"}),
        pa.field("keypoints_file", pa.string(), nullable=False, metadata={"doc": "the run's part file holding the clip's rows, relative to the run"}),
        pa.field("keypoints_rows", pa.int32(), nullable=False, metadata={"doc": "rows of the clip in keypoints_file"}),
        pa.field("clip_key", pa.string(), nullable=True, metadata={"doc": "the extraction's per-clip key (video content + model + params)"}),
        pa.field("skeleton", pa.string(), nullable=True),
        pa.field("backend", pa.string(), nullable=True),
        pa.field("model_sha256", pa.string(), nullable=True),
        pa.field("build_params", pa.string(), nullable=False, metadata={"doc": "JSON: the adapter's sequence parameters (same on every row)"}),
    ],
    metadata={"posepipe.record": "sequence_sources", "posepipe.schema_version": SCHEMA_VERSION},
)

#: One row per clip of a sequence dataset (``posepipe rebuild NAME-keypoints --from-extract RUN``).
SEQUENCES_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("label_index", pa.int32(), nullable=False),
        pa.field("group", pa.string(), nullable=True, metadata={"doc": "what splits must not cut across"}),
        pa.field("subject", pa.string(), nullable=True),
        pa.field("folds", pa.map_(pa.string(), pa.string()), nullable=True, metadata={"doc": "fold name -> train/test"}),
        pa.field("video_path", pa.string(), nullable=False),
        pa.field("fps", pa.float32(), nullable=True),
        pa.field("frames_decoded", pa.int32(), nullable=True),
        pa.field("frame_width_px", pa.int32(), nullable=False),
        pa.field("frame_height_px", pa.int32(), nullable=False),
        pa.field("frame_indices", pa.list_(pa.int32()), nullable=False, metadata={"doc": "(T,) source frame of each time step"}),
        pa.field("num_frames", pa.int32(), nullable=False, metadata={"doc": "T"}),
        pa.field("num_people", pa.int32(), nullable=False, metadata={"doc": "M: tracks kept (<= max_people)"}),
        pa.field("num_joints", pa.int32(), nullable=False, metadata={"doc": "J"}),
        pa.field(
            "sequence", pa.list_(pa.float32()), nullable=False,
            metadata={"doc": "(T, M, J, 3) x_px, y_px, score, flat in C order; NaN x/y and score 0 where unknown"},
        ),
        pa.field("track_scores", pa.list_(pa.float32()), nullable=False, metadata={"doc": "(M,) summed joint score of each kept track"}),
        pa.field("people_max", pa.int32(), nullable=False, metadata={"doc": "most people detected in one frame"}),
        pa.field("frames_with_person", pa.int32(), nullable=False),
        pa.field("skeleton", pa.string(), nullable=False),
        pa.field("backend", pa.string(), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
        pa.field("pixels_file", pa.string(), nullable=False, metadata={"doc": "HDF5 of the skeleton images, relative to the version"}),
        pa.field("pixels_row", pa.int32(), nullable=False, metadata={"doc": "row of the composite skeleton image in images"}),
        pa.field("frames_offset", pa.int64(), nullable=True, metadata={"doc": "first row of the clip's T per-frame images in frames"}),
    ],
    metadata={"posepipe.record": "sequences", "posepipe.schema_version": SCHEMA_VERSION},
)

#: Every parsed input that did not reach a shard.
REJECTS_SCHEMA = pa.schema(
    [
        pa.field("source_key", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=True),
        pa.field("split", pa.string(), nullable=True),
    ],
    metadata={"posepipe.record": "rejects", "posepipe.schema_version": SCHEMA_VERSION},
)

#: ``_inputs.parquet`` of a version: the content digest of every image/video the records reference.
INPUTS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False, metadata={"doc": "relative to the source folder"}),
        pa.field("size_bytes", pa.int64(), nullable=True),
        pa.field("digest", pa.string(), nullable=True, metadata={"doc": "content digest, xxh3_128:{hex}; null: missing or not a regular file"}),
    ],
    metadata={"posepipe.record": "inputs", "posepipe.schema_version": SCHEMA_VERSION},
)

SCHEMAS: dict[str, pa.Schema] = {
    "samples": SAMPLES_SCHEMA,
    "processed_samples": PROCESSED_SAMPLES_SCHEMA,
    "clips": CLIPS_SCHEMA,
    "keypoints": KEYPOINTS_SCHEMA,
    "sequence_sources": SEQUENCE_SOURCES_SCHEMA,
    "sequences": SEQUENCES_SCHEMA,
    "rejects": REJECTS_SCHEMA,
}


def schema_fingerprint(schema: pa.Schema) -> str:
    """sha256 (hex, 16 chars) of the schema's field names, types and nullability.

    Args:
        schema: A pyarrow schema.

    Returns:
        A short stable hex digest; equal schemas give equal fingerprints across processes.
    """
    text = ";".join(f"{f.name}:{f.type}:{int(f.nullable)}" for f in schema)
    return hashlib.sha256(f"{SCHEMA_VERSION}|{text}".encode()).hexdigest()[:16]


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table from row dicts, enforcing ``schema`` (missing nullable fields become null).

    Args:
        rows: Row mappings; keys not in the schema are an error (a typo must not vanish).
        schema: Target schema.

    Returns:
        A table with exactly ``schema``.

    Raises:
        SchemaError: On unknown keys, missing non-nullable fields or values of the wrong type.
    """
    rows = list(rows)
    names = frozenset(schema.names)
    # column by column (one comprehension per field, not a Python step per cell); the first bad row
    # is found only when there is one, and reported as a row-by-row check would (unknown keys
    # before the row's missing fields, fields in schema order)
    columns = {f.name: [row.get(f.name) for row in rows] for f in schema}
    problems: list[tuple[int, int, str]] = []
    if any(not names.issuperset(keys) for keys in {frozenset(row) for row in rows}):
        i = next(i for i, row in enumerate(rows) if not names.issuperset(row))
        unknown = set(rows[i]) - names
        problems.append((i, -1, f"row {i} has fields not in the {schema.metadata.get(b'posepipe.record', b'?').decode()} schema: {sorted(unknown)}"))
    for k, f in enumerate(schema):
        if not f.nullable:
            i = next((i for i, value in enumerate(columns[f.name]) if value is None), None)
            if i is not None:
                problems.append((i, k, f"row {i}: non-nullable field {f.name!r} is missing"))
    if problems:
        i, k, message = min(problems)
        raise SchemaError(message) if k < 0 else SchemaError(message, hint="fix the adapter that built it")
    try:
        arrays = [pa.array(columns[f.name], type=f.type) for f in schema]
        return pa.Table.from_arrays(arrays, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise SchemaError(f"records do not conform to the schema: {exc}") from exc


def upgrade_legacy_columns(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Rename columns of an earlier schema version that ``schema`` knows under today's name.

    Example:
        a 1.0.0 shard's ``crop_width`` column comes back as ``crop_width_px``.
    """
    renames = {old: new for old, new in LEGACY_COLUMNS.items() if old in table.column_names and new in schema.names and new not in table.column_names}
    if not renames:
        return table
    return table.rename_columns([renames.get(name, name) for name in table.column_names])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast ``table`` to ``schema`` (same column set, order from the schema).

    Raises:
        SchemaError: If columns are missing/extra or a cast is impossible.
    """
    if set(table.column_names) != set(schema.names):
        missing = set(schema.names) - set(table.column_names)
        extra = set(table.column_names) - set(schema.names)
        raise SchemaError(f"table columns differ from schema: missing {sorted(missing)}, extra {sorted(extra)}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"cannot cast table to schema: {exc}") from exc

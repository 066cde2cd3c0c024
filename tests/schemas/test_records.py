import pyarrow as pa
import pytest

from schemas.errors import SchemaError
from schemas.records import REJECTS_SCHEMA, SAMPLES_SCHEMA, conform, schema_fingerprint, to_table


def test_to_table_fills_nullable_and_enforces_types():
    t = to_table([{"source_key": "1", "stage": "parse", "reason": "crowd"}], REJECTS_SCHEMA)
    assert t.schema == REJECTS_SCHEMA and t.column("detail").to_pylist() == [None]


def test_to_table_rejects_unknown_and_missing_fields():
    with pytest.raises(SchemaError, match="not in the rejects schema"):
        to_table([{"source_key": "1", "stage": "p", "reason": "r", "typo": 1}], REJECTS_SCHEMA)
    with pytest.raises(SchemaError, match="non-nullable field 'reason'"):
        to_table([{"source_key": "1", "stage": "p"}], REJECTS_SCHEMA)


def test_to_table_reports_the_first_bad_row_as_a_row_by_row_check_would():
    ok = {"source_key": "1", "stage": "p", "reason": "r"}
    with pytest.raises(SchemaError, match=r"row 1: non-nullable field 'stage'"):  # row 1's missing field comes before row 2's typo
        to_table([ok, {"source_key": "2", "reason": "r"}, {**ok, "typo": 1}], REJECTS_SCHEMA)
    with pytest.raises(SchemaError, match=r"row 1 has fields not in"):  # in one row, unknown keys first
        to_table([ok, {"source_key": "2", "typo": 1}], REJECTS_SCHEMA)
    with pytest.raises(SchemaError, match=r"row 0: non-nullable field 'source_key'"):  # fields in schema order
        to_table([{"stage": None}], REJECTS_SCHEMA)


def test_conform_detects_column_drift():
    with pytest.raises(SchemaError, match="missing"):
        conform(pa.table({"source_key": ["a"]}), REJECTS_SCHEMA)


def test_fingerprint_is_stable_and_distinguishes_schemas():
    assert schema_fingerprint(SAMPLES_SCHEMA) == schema_fingerprint(pa.schema(list(SAMPLES_SCHEMA)))
    assert schema_fingerprint(SAMPLES_SCHEMA) != schema_fingerprint(REJECTS_SCHEMA)

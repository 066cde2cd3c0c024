"""tasks/kinds: a record kind is data the rebuild sequence asks; a new kind needs no other change.

The test defines a third kind (one row per annotated text file, the shape a "predictions" kind will
have) and an adapter producing it, and runs the unchanged ``tasks.rebuild.run`` on it end to end.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from schemas.errors import ConfigError
from storage.fs import filesystem
from storage.layout import shard_relpath
from storage.manifest import read_latest, read_manifest
from storage.parquet import read_parquet, write_parquet
from tasks import rebuild as stages
from tasks.datasets import base as adapter_base
from tasks.datasets.base import DatasetAdapter, ParseResult, rejects_table
from tasks.kinds import base as kind_base
from tasks.kinds.base import CheckResult, RecordKind, ShardSpec, ShardSummary, get_kind

NOTES = pa.schema([pa.field("note_id", pa.string(), False), pa.field("dataset", pa.string(), False), pa.field("file_path", pa.string(), False), pa.field("words", pa.int32(), False)])


@pytest.fixture
def registered():
    """Define (and so register) the kind and its adapter for one test only: the registries are global."""

    class Notes(RecordKind):
        name = "test-notes"
        manifest_record = "notes"
        input_schema = NOTES
        output_schema = NOTES
        id_column = "note_id"
        media_column = "file_path"
        inputs_key = "notes"

        def plan(self, records: pa.Table, shard_size: int) -> list[tuple[str, int, int, int]]:
            return [("notes", i, s, min(s + shard_size, records.num_rows)) for i, s in enumerate(range(0, records.num_rows, shard_size))]

        def build(self, spec: ShardSpec) -> ShardSummary:
            fs, paths = spec.paths_fs()
            rel = shard_relpath(spec.split, spec.index, "parquet")
            n, sha = write_parquet(fs, paths.file(rel), read_parquet(fs, spec.records_path, NOTES), NOTES)
            return ShardSummary(spec.split, spec.index, rel, None, n, 0, {}, None, sha, None, n)

        def checks(self, spec: ShardSpec, summary: ShardSummary) -> list[CheckResult]:
            fs, paths = spec.paths_fs()
            t = read_parquet(fs, paths.file(summary.parquet), NOTES)
            return [CheckResult.of("words_positive", [i for i, w in zip(t.column("note_id").to_pylist(), t.column("words").to_pylist(), strict=True) if w <= 0])]


    class NotesAdapter(DatasetAdapter):
        name = "test-notes-dataset"
        record_kind = "test-notes"

        def parse(self, source: Path, params) -> ParseResult:
            rows = [{"note_id": p.stem, "dataset": self.name, "file_path": p.name, "words": len(p.read_text().split())} for p in sorted(Path(source).glob("*.txt"))]
            return ParseResult(pa.Table.from_pylist(rows, NOTES), rejects_table([]), {})

    yield Notes, NotesAdapter
    adapter_base._REGISTRY.pop("test-notes-dataset", None)
    kind_base._KINDS.pop("test-notes", None)


def test_a_new_kind_rebuilds_through_the_unchanged_sequence(tmp_path, registered):
    src = tmp_path / "notes"
    src.mkdir()
    for i, text in enumerate(["a b c", "d e", "f"]):
        (src / f"n{i}.txt").write_text(text)
    root = str(tmp_path / "root")
    s = stages.run(stages.RebuildRequest("test-notes-dataset", root, str(src), shard_size=2), map)
    assert s["validation"] == "passed" and s["counts"] == {"notes": 3} and s["written"] == s["parsed"] == 3
    fs, path = filesystem(root)
    m = read_manifest(fs, path, "test-notes-dataset", s["version"])
    assert m["record"] == "notes" and [sh["rows"] for sh in m["shards"]] == [2, 1] and "notes" in m["input_checksums"]
    assert read_latest(fs, path, "test-notes-dataset") == s["version"]
    (src / "n1.txt").write_text("changed words here")  # content-addressed through the kind's media column
    assert stages.run(stages.RebuildRequest("test-notes-dataset", root, str(src), shard_size=2), map)["version"] != s["version"]


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known: clips, samples"):
        get_kind("nope")

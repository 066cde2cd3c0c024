"""tasks/fetch/registry.py: the per-dataset checksum TSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ConfigError
from tasks.fetch.registry import ENV_DIR, Checksum, checksums_dir, load_checksums, registry_path, save_checksums

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def test_missing_registry_is_empty(tmp_path: Path) -> None:
    assert load_checksums("nothing", tmp_path) == {}


def test_save_merges_sorts_and_round_trips(tmp_path: Path) -> None:
    save_checksums("ds", [Checksum("http://z/b.zip", 10, SHA_B, "b.zip")], tmp_path)
    path = save_checksums("ds", [Checksum("http://a/a.zip", 5, SHA_A, "a.zip")], tmp_path)
    assert path == tmp_path / "ds.tsv"
    assert path.read_text().splitlines() == [
        "# url\tsize_bytes\tsha256\tfilename",
        f"http://a/a.zip\t5\t{SHA_A}\ta.zip",
        f"http://z/b.zip\t10\t{SHA_B}\tb.zip",
    ]
    assert load_checksums("ds", tmp_path) == {
        "http://a/a.zip": Checksum("http://a/a.zip", 5, SHA_A, "a.zip"),
        "http://z/b.zip": Checksum("http://z/b.zip", 10, SHA_B, "b.zip"),
    }
    save_checksums("ds", [Checksum("http://a/a.zip", 6, SHA_B, "a.zip")], tmp_path)  # new value wins
    assert load_checksums("ds", tmp_path)["http://a/a.zip"].size_bytes == 6


@pytest.mark.parametrize(
    "line",
    ["http://x/a.zip\t5\tnothex\ta.zip", "http://x/a.zip\tfive\t" + SHA_A + "\ta.zip", "http://x/a.zip 5 " + SHA_A],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str) -> None:
    (tmp_path / "bad.tsv").write_text("# header\n\n" + line + "\n")
    with pytest.raises(ConfigError, match=r"bad\.tsv:3: expected 'url<TAB>size_bytes"):
        load_checksums("bad", tmp_path)


def test_conflicting_duplicate_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dup.tsv").write_text(f"u\t1\t{SHA_A}\tf\nu\t1\t{SHA_B}\tf\n")
    with pytest.raises(ConfigError, match="registered twice"):
        load_checksums("dup", tmp_path)


def test_default_folder_is_beside_the_adapters_and_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)
    assert checksums_dir() == Path(__file__).resolve().parents[2] / "tasks" / "datasets" / "checksums"
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    assert registry_path("coco") == tmp_path / "coco.tsv"
    assert registry_path("coco", tmp_path / "x") == tmp_path / "x" / "coco.tsv"

"""tasks/fingerprint.py: content digests with a stat cache, and the code version from the import graph."""

import hashlib
import os
from pathlib import Path

import xxhash

from tasks.fingerprint import _SHARD_CODE, code_version, media_digests, module_closure


def test_digest_cache_rereads_only_files_whose_stat_changed(tmp_path):
    """The stat cache is keyed by (size, mtime_ns, inode): same stat → cached digest, no read."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"A" * 100)
    (src / "b.jpg").write_bytes(b"B" * 100)
    cache: dict = {}
    first = media_digests(src, ["a.jpg", "b.jpg", "a.jpg", "gone.jpg"], cache)
    assert first == {"a.jpg": _xxh3(b"A" * 100), "b.jpg": _xxh3(b"B" * 100), "gone.jpg": None}
    st = (src / "a.jpg").stat()
    # rewrite a.jpg in place (same inode and size) and put its mtime back: the cache answers
    with open(src / "a.jpg", "r+b") as fh:
        fh.write(b"Z" * 100)
    os.utime(src / "a.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert media_digests(src, ["a.jpg"], cache)["a.jpg"] == first["a.jpg"]  # not re-read: the cache is used
    os.utime(src / "a.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # any stat change → read again
    assert media_digests(src, ["a.jpg"], cache)["a.jpg"] == _xxh3(b"Z" * 100)


def _xxh3(data: bytes) -> str:
    return f"xxh3_128:{xxhash.xxh3_128(data).hexdigest()}"


def test_a_cache_entry_of_another_digest_algorithm_is_rehashed(tmp_path):
    """A cache written when inputs were hashed with sha256 (bare hex) is not trusted for xxh3-128."""
    (tmp_path / "a.jpg").write_bytes(b"A" * 10)
    st = (tmp_path / "a.jpg").stat()
    cache = {str(tmp_path / "a.jpg"): [st.st_size, st.st_mtime_ns, st.st_ino, hashlib.sha256(b"A" * 10).hexdigest()]}
    assert media_digests(tmp_path, ["a.jpg"], cache) == {"a.jpg": _xxh3(b"A" * 10)}
    assert cache[str(tmp_path / "a.jpg")][3] == _xxh3(b"A" * 10)


def test_code_version_follows_every_imported_project_module():
    """FLIC/MPII/LSP import tasks/datasets/_matlab.py and UCF11 imports ucf101.py: both are hashed."""
    flic = module_closure(("tasks.datasets.flic",))
    assert "tasks.datasets._matlab" in flic and "tasks.datasets.base" in flic and "schemas.errors" in flic
    assert "tasks.datasets.ucf101" in module_closure(("tasks.datasets.ucf11",))
    shard_code = module_closure((*_SHARD_CODE, "tasks.kinds.samples"))
    for module in ("tasks.transforms.geometry", "tasks.transforms.image_io", "storage.hdf5", "storage.parquet", "tasks.checks", "schemas.expectations"):
        assert module in shard_code
    assert not any(m.split(".")[0] in ("prefect", "dask", "numpy") for m in shard_code)  # project modules only
    assert code_version("tasks.datasets.flic") != code_version("tasks.datasets.coco")


def test_digests_over_several_hashing_blocks_match_each_file_and_name_missing_ones(tmp_path):
    names = [f"d{i % 3}/f{i:03d}.bin" for i in range(150)]  # > 2 blocks of 64
    for i, name in enumerate(names):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(bytes([i % 251]) * (i * 37 + 1))
    cache: dict = {}
    out = media_digests(tmp_path, [*names, names[0], "absent.jpg", "d0"], cache)  # a duplicate, a missing file, a folder
    assert out == {**{n: _xxh3((tmp_path / n).read_bytes()) for n in names}, "absent.jpg": None, "d0": None}
    assert len(cache) == 150


def test_a_relative_source_root_keys_the_cache_as_inputs_table_reads_it(tmp_path, monkeypatch):
    from tasks.fingerprint import inputs_table

    (tmp_path / "a.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    cache: dict = {}
    digests = media_digests(Path("."), ["a.jpg", "./a.jpg"], cache)
    assert inputs_table(digests, Path("."), cache).column("size_bytes").to_pylist() == [1, 1]  # one cache entry serves both spellings

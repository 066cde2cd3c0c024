"""Content addressing: what a dataset version's id hashes besides its parameters.

* the **inputs** by content: every referenced image/video's xxh3-128 (:func:`media_digests`), with a
  stat-keyed cache so an unchanged rebuild does not re-read every byte, folded into one
  fingerprint (:func:`images_fingerprint`) and listed in ``_inputs.parquet`` (:func:`inputs_table`);
* the **code** by its import graph (:func:`code_version`): every project module the adapter, its
  record kind and the rebuild/validation code reach, never a hand-kept list.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import stat as stat_module
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas.records import INPUTS_SCHEMA
from storage.fs import FILE_DIGEST, file_digest, write_bytes_atomic

#: Top-level packages of this project: the code version follows imports into these only.
_PROJECT_PACKAGES = ("schemas", "storage", "tasks")

#: Modules whose closure shapes a version's bytes or decides its validity, besides the adapter's
#: and its record kind's.
_SHARD_CODE = ("tasks.rebuild", "tasks.validate")


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


def code_version(adapter_module: str, kind_module: str = "tasks.kinds.samples") -> str:
    """sha256 (16 hex) of the source of every project module the adapter, its record kind and the
    rebuild/validation code import.

    Derived from the import graph, never from a hand-kept list: a change in any helper the adapter
    or the shard/validation code reaches (``tasks/datasets/_matlab.py`` for FLIC, ``ucf101.py`` for
    UCF11...) makes a new version.
    """
    h = hashlib.sha256()
    for name in module_closure((*_SHARD_CODE, kind_module, adapter_module)):
        source, _ = _module_source(name)  # type: ignore[misc]
        h.update(name.encode() + b"\0" + source.encode() + b"\0")
    return h.hexdigest()[:16]


def media_digests(source_root: Path, rel_paths: list[str], cache: dict[str, list[Any]] | None = None) -> dict[str, str | None]:
    """Content digest (:func:`storage.fs.file_digest`) of each referenced media file, reusing ``cache`` where the file is unchanged.

    Args:
        source_root: Folder the paths are relative to.
        rel_paths: Referenced files (duplicates allowed).
        cache: ``{absolute path: [size, mtime_ns, inode, digest]}``; updated in place. A file is
            re-read only when its (size, mtime_ns, inode) changed, or when its entry holds another
            algorithm's digest (a cache written before the digest was xxh3-128 held bare sha256 hex).

    Returns:
        ``{relative path: "xxh3_128:{hex}", or None when the file is missing or not a regular file}``.
    """
    cache = {} if cache is None else cache
    out: dict[str, str | None] = {}
    todo: list[tuple[str, str, list[Any]]] = []
    for rel in sorted(set(rel_paths)):
        p = str(source_root / rel)  # the cache's key (and inputs_table's): pathlib's normal form
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            out[rel] = None
            continue
        if not stat_module.S_ISREG(st.st_mode):
            out[rel] = None
            continue
        key = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = cache.get(p)
        if hit is not None and hit[:3] == key and str(hit[3]).startswith(_DIGEST_PREFIX):
            out[rel] = hit[3]
        else:
            todo.append((rel, p, key))
    # file reads and xxhash release the GIL: one thread per core hashes a block of files at a time (a
    # future per file cost more than hashing a small image: 16,000 JPEGs took 1.7 s that way, 1.0 s
    # so). Stat and cache lookups stay in this one thread: spread over the pool as well, they fought a
    # parse running beside them for the GIL and the fingerprint finished later (0.62 s vs 0.44 s).
    blocks = [todo[i : i + _HASH_BLOCK_FILES] for i in range(0, len(todo), _HASH_BLOCK_FILES)]
    if blocks:
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for block, digests in zip(blocks, pool.map(_digest_each, [[t[1] for t in b] for b in blocks]), strict=True):
                for (rel, abs_path, key), digest in zip(block, digests, strict=True):
                    out[rel] = digest
                    if digest is not None:
                        cache[abs_path] = [*key, digest]
    return out


_HASH_BLOCK_FILES = 64
_DIGEST_PREFIX = f"{FILE_DIGEST}:"


def _digest_each(paths: list[str]) -> list[str | None]:
    """:func:`storage.fs.file_digest` of each file, None where it cannot be read."""
    out: list[str | None] = []
    for path in paths:
        try:
            out.append(file_digest(path))
        except OSError:
            out.append(None)
    return out


def images_fingerprint(digests: dict[str, str | None]) -> str:
    """sha256 over sorted ``(path, content digest)`` pairs (``-`` = missing)."""
    h = hashlib.sha256()
    for rel in sorted(digests):
        h.update(f"{rel}\t{digests[rel] or '-'}\n".encode())
    return h.hexdigest()


def read_digest_cache(fs: Any, path: str) -> dict[str, list[Any]]:
    """The stat-keyed digest cache; an unreadable one is treated as empty (it is only a cache)."""
    try:
        with fs.open(path, "rb") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_digest_cache(fs: Any, path: str, cache: dict[str, list[Any]]) -> None:
    """Write the digest cache atomically (compact JSON)."""
    write_bytes_atomic(fs, path, json.dumps(cache, sort_keys=True, separators=(",", ":")).encode())


def inputs_table(digests: dict[str, str | None], source_root: Path, cache: dict[str, list[Any]]) -> pa.Table:
    """The content digest of every referenced media file, for ``_inputs.parquet``.

    Args:
        digests: :func:`media_digests`' result.
        source_root: Folder the paths are relative to.
        cache: The cache :func:`media_digests` filled: each size is the one its digest was keyed
            by (no second ``stat``).
    """
    paths = sorted(digests)
    sizes = [cache[str(source_root / rel)][0] if digests[rel] else None for rel in paths]
    return pa.table({"path": paths, "size_bytes": sizes, "digest": [digests[r] for r in paths]}, schema=INPUTS_SCHEMA)

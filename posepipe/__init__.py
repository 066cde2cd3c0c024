"""posepipe's Python entry point: ``import posepipe``.

The project's work lives in the top-level packages ``schemas``, ``storage``, ``tasks`` and ``flows``
(the project's contract); this package is the documented surface a user imports::

    import posepipe

    summary = posepipe.rebuild("coco", root="/data/pp", source="/data/coco_mini")  # in this process
    posepipe.versions("/data/pp", "coco")          # manifests of the committed versions
    m = posepipe.manifest("/data/pp", "coco")      # LATEST's manifest (counts, shards, checksums)
    posepipe.version_dir("/data/pp", "coco")       # its folder: {split}/part-*.parquet, _pixels/{split}/part-*.h5

    v = posepipe.open_version("/data/pp", "coco")  # read it back (LATEST; refuses unvalidated or tampered versions)
    v.records("val"), v.crops("val", [0, 1]), v.keypoints("val"), v.batches("train", 64)
    posepipe.parse_dataset_ref("coco@v-0123456789ab")   # ("coco", "v-0123456789ab")

``rebuild`` runs the whole sequence in the calling process with the builtin ``map`` (no Prefect,
no Dask); ``posepipe rebuild`` on the command line and the Prefect deployments run the same
sequence on Dask. Nothing here imports Prefect, Dask or TensorFlow.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from schemas.settings import DEFAULT_MAX_REJECT_RATIO, DEFAULT_SEED
from storage.reader import Batch, DatasetVersion, ShardRef, open_version, parse_dataset_ref
from tasks.rebuild import RebuildRequest, run
from tasks.transforms.geometry import CropConfig

try:
    __version__ = importlib.metadata.version("posepipe")
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def rebuild(
    dataset: str,
    root: str,
    source: str,
    adapter_params: dict[str, Any] | None = None,
    crop: CropConfig | None = None,
    seed: int = DEFAULT_SEED,
    shard_size: int | None = None,
    max_reject_ratio: float = DEFAULT_MAX_REJECT_RATIO,
) -> dict[str, Any]:
    """Build (or reuse) a validated version of ``dataset`` from ``source`` under ``root``, in-process.

    Returns:
        The summary: version, reused, counts per split, parsed/written/rejected, rejects by
        reason, validation, location.

    Raises:
        schemas.errors.PosepipeError: Every refusal (unknown dataset or parameter, missing
            source, nothing writable, reject ratio, failed gate), with a hint.
    """
    request = RebuildRequest(dataset, root, source, dict(adapter_params or {}), crop or CropConfig(), seed, shard_size, max_reject_ratio)
    return run(request, map)


def versions(root: str, dataset: str) -> list[dict[str, Any]]:
    """Manifests of the committed versions of ``dataset`` (uncommitted folders are not versions)."""
    from storage.fs import filesystem
    from storage.manifest import list_versions

    fs, path = filesystem(root)
    return list_versions(fs, path, dataset)


def manifest(root: str, dataset: str, version: str | None = None) -> dict[str, Any]:
    """The manifest of ``version`` (default: the one ``LATEST`` points at).

    Raises:
        schemas.errors.VersionNotFoundError: No such committed version (or no LATEST yet).
    """
    from tasks.inspect import resolve_version

    return resolve_version(root, dataset, version)


def version_dir(root: str, dataset: str, version: str | None = None) -> str:
    """The folder of ``version`` (default: LATEST) on its filesystem."""
    from storage.fs import filesystem
    from storage.layout import VersionPaths

    m = manifest(root, dataset, version)
    return VersionPaths(filesystem(root)[1], dataset, m["version"]).dir


__all__ = [
    "Batch",
    "CropConfig",
    "DatasetVersion",
    "RebuildRequest",
    "ShardRef",
    "__version__",
    "manifest",
    "open_version",
    "parse_dataset_ref",
    "rebuild",
    "version_dir",
    "versions",
]

"""Reading committed versions back: find a sample, draw it, make a contact sheet."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pyarrow.compute as pc

from schemas.errors import VersionNotFoundError
from schemas.records import PROCESSED_SAMPLES_SCHEMA
from schemas.skeletons import get_skeleton
from storage.fs import filesystem, join
from storage.hdf5 import read_hdf5_rows
from storage.manifest import read_latest, read_manifest, version_dir
from storage.parquet import read_parquet
from tasks.transforms.draw import contact_sheet, draw_skeleton


def resolve_version(root: str, dataset: str, version: str | None) -> dict[str, Any]:
    """Manifest of ``version`` (default: LATEST)."""
    fs, path = filesystem(root)
    version = version or read_latest(fs, path, dataset)
    if version is None:
        raise VersionNotFoundError(f"dataset {dataset!r} has no LATEST version under {root}", hint=f"run `posepipe rebuild {dataset}` first")
    return read_manifest(fs, path, dataset, version)


def load_sample(root: str, dataset: str, sample_id: str, version: str | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """The processed row and its ``(H, W, 3) uint8`` crop for ``sample_id``.

    Raises:
        VersionNotFoundError: If the version or the sample does not exist.
    """
    manifest = resolve_version(root, dataset, version)
    fs, path = filesystem(root)
    vdir = version_dir(path, dataset, manifest["version"])
    for shard in manifest["shards"]:
        table = read_parquet(fs, join(vdir, shard["parquet"]), PROCESSED_SAMPLES_SCHEMA)
        hit = table.filter(pc.equal(table.column("sample_id"), sample_id))
        if hit.num_rows:
            row = hit.to_pylist()[0]
            _, pixels = read_hdf5_rows(fs, join(vdir, row["pixels_file"]), [row["pixels_row"]])
            return row, pixels[0]
    raise VersionNotFoundError(f"sample {sample_id!r} is not in {dataset} {manifest['version']}", hint="`posepipe parse` lists sample ids")


def render_sample(row: dict[str, Any], pixels: np.ndarray) -> np.ndarray:
    """The crop with its keypoints drawn: ``(H, W, 3) uint8`` BGR."""
    sk = get_skeleton(row["skeleton"])
    xy = np.asarray(row["keypoints_crop_xy_px"], dtype=np.float32).reshape(-1, 2)
    return draw_skeleton(pixels, xy, np.asarray(row["keypoints_visibility"]), sk)


def write_png(path: str, image: np.ndarray) -> None:
    """Write a PNG (BGR input)."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise VersionNotFoundError(f"cannot encode PNG for {path}")
    with open(path, "wb") as fh:
        fh.write(data.tobytes())


def version_contact_sheet(root: str, dataset: str, n: int = 8, version: str | None = None, columns: int = 4) -> np.ndarray:
    """A contact sheet of the first ``n`` processed samples of a version, skeletons drawn."""
    manifest = resolve_version(root, dataset, version)
    fs, path = filesystem(root)
    vdir = version_dir(path, dataset, manifest["version"])
    tiles, labels = [], []
    for shard in manifest["shards"]:
        if len(tiles) >= n:
            break
        table = read_parquet(fs, join(vdir, shard["parquet"]), PROCESSED_SAMPLES_SCHEMA).slice(0, n - len(tiles))
        _, pixels = read_hdf5_rows(fs, join(vdir, shard["hdf5"]), list(table.column("pixels_row").to_pylist()))
        for row, image in zip(table.to_pylist(), pixels, strict=True):
            tiles.append(render_sample(row, image))
            labels.append(row["sample_id"])
    return contact_sheet(tiles, columns=columns, labels=labels)

"""Reading committed versions back: list versions and sample ids, find a sample, draw it, contact sheets."""

from __future__ import annotations

import datetime as dt
from typing import Any

import cv2
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.errors import ConfigError, StorageError, VersionNotFoundError
from schemas.records import PROCESSED_SAMPLES_SCHEMA
from schemas.skeletons import get_skeleton
from storage.fs import filesystem, join, write_bytes_atomic
from storage.hdf5 import read_hdf5_rows
from storage.layout import MANIFEST, VersionPaths, dataset_dir
from storage.manifest import list_datasets, list_versions, read_json, read_latest, read_manifest
from storage.parquet import read_parquet
from tasks.transforms.draw import SIDE_COLOURS_BGR, contact_sheet, draw_skeleton

#: Largest ``show --scale`` (a 192x256 crop at 8x is a 1536x2048 picture).
MAX_SCALE = 8.0


def resolve_version(root: str, dataset: str, version: str | None) -> dict[str, Any]:
    """Manifest of ``version`` (default: LATEST)."""
    fs, path = filesystem(root)
    version = version or read_latest(fs, path, dataset)
    if version is None:
        raise VersionNotFoundError(f"dataset {dataset!r} has no LATEST version under {root}", hint=f"run `posepipe rebuild {dataset}` first")
    return read_manifest(fs, path, dataset, version)


def _created_at(manifest: dict[str, Any], run: dict[str, Any]) -> str | None:
    """ISO 8601 UTC creation time: the manifest's, else the run record's (created, then finished)."""
    for value in (manifest.get("created_at"), run.get("created_at"), run.get("finished_at")):
        if isinstance(value, str) and value:
            return value
    return None


def _source(manifest: dict[str, Any], run: dict[str, Any]) -> str:
    """Where the inputs came from: the manifest's ``source``, else the run record's, else ``"?"``."""
    for value in (manifest.get("source"), run.get("source")):
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):  # a structured source: prefer its location
            for key in ("uri", "url", "path", "root"):
                if isinstance(value.get(key), str) and value[key]:
                    return value[key]
    return "?"


def _run_record(fs: Any, path: str) -> dict[str, Any]:
    """The version's ``_run.json`` (run facts kept out of the manifest), or ``{}`` if absent or unreadable."""
    try:
        run = read_json(fs, path) if fs.exists(path) else {}
    except StorageError:  # a damaged run record must not hide the version; it only loses the fallbacks
        return {}
    return run if isinstance(run, dict) else {}


def uncommitted_versions(root: str, dataset: str | None = None) -> list[dict[str, Any]]:
    """Version folders with no manifest: rebuilds that failed (or are running now).

    Nothing reads them (readers trust only manifested versions); ``ls`` shows them so a failed run
    is not invisible.

    Args:
        root: Storage root.
        dataset: Only this dataset's folders; None looks at every dataset.

    Returns:
        ``{"dataset", "version", "modified_at"}`` per folder, sorted by dataset and version;
        ``modified_at`` is ISO 8601 UTC, or None where the filesystem keeps no times.
    """
    fs, path = filesystem(root)
    if not fs.exists(path):
        return []
    out = []
    for name in [dataset] if dataset else list_datasets(fs, path):
        base = dataset_dir(path, name)
        if not fs.exists(base):
            continue
        for p in sorted(fs.ls(base, detail=False)):
            version = p.rstrip("/").rsplit("/", 1)[-1]
            if version.startswith((".", "_")) or not fs.isdir(p) or fs.exists(join(p, MANIFEST)):
                continue
            mtime = fs.info(p).get("mtime")
            when = dt.datetime.fromtimestamp(float(mtime), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(mtime, int | float) else None
            out.append({"dataset": name, "version": version, "modified_at": when})
    return out


def version_overview(root: str, dataset: str | None = None) -> list[dict[str, Any]]:
    """One row per committed version under ``root`` (of ``dataset``, or of every dataset).

    Args:
        root: Storage root (path or fsspec URL).
        dataset: Only this dataset's versions; None lists all.

    Returns:
        Rows with ``dataset``, ``version``, ``latest``, ``created_at`` (ISO 8601 UTC or None),
        ``source`` (``"?"`` when unknown), ``counts``, ``rejected``, ``validation``, ``params``,
        sorted by dataset, then creation time (oldest first), then version.

    Raises:
        StorageError: If ``root`` does not exist.
        VersionNotFoundError: If ``dataset`` is given and has no committed version there.
    """
    fs, path = filesystem(root)
    if not fs.exists(path):
        raise StorageError(
            f"storage root {root} does not exist",
            hint="pass the --root a rebuild wrote to (or set POSEPIPE_ROOT); `posepipe rebuild NAME --root DIR` creates one",
        )
    names = [dataset] if dataset else list_datasets(fs, path)
    rows: list[dict[str, Any]] = []
    for name in names:
        latest = read_latest(fs, path, name)
        manifests = list_versions(fs, path, name)
        if dataset and not manifests:
            present = list_datasets(fs, path)
            failed = [u["version"] for u in uncommitted_versions(root, name)]
            raise VersionNotFoundError(
                f"dataset {name!r} has no committed version under {root}"
                + (f" ({len(failed)} uncommitted: {', '.join(failed)}; a rebuild failed or is running)" if failed else ""),
                hint=(f"datasets there: {', '.join(present)}" if present else "the root holds no dataset yet")
                + f"; `posepipe rebuild {name} --root {root}` builds one",
            )
        for m in manifests:
            run = _run_record(fs, VersionPaths(path, name, m["version"]).run_record)
            rows.append(
                {
                    "dataset": name,
                    "version": m["version"],
                    "latest": m["version"] == latest,
                    "created_at": _created_at(m, run),
                    "source": _source(m, run),
                    "record": m.get("record", "processed_samples"),
                    "counts": m["counts"],
                    "rejected": m["rejected"],
                    "validation": "passed" if m["validation"]["success"] else "FAILED",
                    "params": m["params"],
                }
            )
    rows.sort(key=lambda r: (r["dataset"], r["created_at"] or "", r["version"]))
    return rows


def format_created_at(value: str | None) -> str:
    """``"2026-12-02T03:55:37Z"`` → ``"2026-12-02 03:55"`` (UTC); ``"?"`` when unknown."""
    if not value:
        return "?"
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M")


def list_sample_ids(
    root: str, dataset: str, version: str | None = None, split: str | None = None, limit: int | None = None
) -> tuple[list[str], int]:
    """Sample ids (``clip_id`` for clip versions) of a committed version, in shard order.

    Args:
        root: Storage root.
        dataset: Dataset name.
        version: Version id (default LATEST).
        split: Only this split.
        limit: At most this many ids (None: all).

    Returns:
        ``(ids, total)``: the ids listed and how many the version (or split) holds.

    Raises:
        VersionNotFoundError: Unknown version, or a split the version does not have.
        ConfigError: A negative limit.
    """
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit {limit} is negative", hint="pass a count >= 0 (0 lists none, omit it for all)")
    manifest = resolve_version(root, dataset, version)
    fs, path = filesystem(root)
    vpaths = VersionPaths(path, dataset, manifest["version"])
    shards = manifest["shards"]
    if split is not None:
        splits = sorted({s["split"] for s in shards})
        shards = [s for s in shards if s["split"] == split]
        if not shards:
            raise VersionNotFoundError(
                f"{dataset} {manifest['version']} has no split {split!r}", hint=f"splits there: {', '.join(splits) or 'none'}"
            )
    column = "clip_id" if manifest.get("record") == "clips" else "sample_id"
    total = sum(int(s["rows"]) for s in shards)
    ids: list[str] = []
    for shard in shards:
        if limit is not None and len(ids) >= limit:
            break
        shard_path = vpaths.file(shard["parquet"])
        try:
            with fs.open(shard_path, "rb") as fh:
                values = pq.read_table(fh, columns=[column]).column(column).to_pylist()
        except FileNotFoundError as exc:
            raise StorageError(f"shard not found: {shard_path}", hint="the version is damaged; rebuild it") from exc
        ids.extend(values if limit is None else values[: limit - len(ids)])
    return ids, total


def load_sample(root: str, dataset: str, sample_id: str, version: str | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """The processed row and its ``(H, W, 3) uint8`` crop for ``sample_id``.

    Raises:
        VersionNotFoundError: If the version or the sample does not exist.
    """
    manifest = resolve_version(root, dataset, version)
    fs, path = filesystem(root)
    vpaths = VersionPaths(path, dataset, manifest["version"])
    for shard in manifest["shards"]:
        table = read_parquet(fs, vpaths.file(shard["parquet"]), PROCESSED_SAMPLES_SCHEMA)
        hit = table.filter(pc.equal(table.column("sample_id"), sample_id))
        if hit.num_rows:
            row = hit.to_pylist()[0]
            _, pixels = read_hdf5_rows(fs, vpaths.file(row["pixels_file"]), [row["pixels_row"]])
            return row, pixels[0]
    listing = f"posepipe ls {dataset} --samples --root {root}" + (f" --version {version}" if version else "")
    raise VersionNotFoundError(f"sample {sample_id!r} is not in {dataset} {manifest['version']}", hint=f"`{listing}` lists its sample ids")


def render_sample(row: dict[str, Any], pixels: np.ndarray) -> np.ndarray:
    """The crop with its keypoints drawn: ``(H, W, 3) uint8`` BGR."""
    sk = get_skeleton(row["skeleton"])
    xy = np.asarray(row["keypoints_crop_xy_px"], dtype=np.float32).reshape(-1, 2)
    return draw_skeleton(pixels, xy, np.asarray(row["keypoints_visibility"]), sk)


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT = (255, 255, 255)
_BAND = (40, 40, 40)
_MIN_CARD_WIDTH_PX = 360


def _text_block(lines: list[str], width: int, scale: float) -> np.ndarray:
    """A dark band holding ``lines`` of white text, each shrunk to fit ``width``."""
    line_h = int(round(22 * scale))
    band = np.full((line_h * len(lines) + int(round(8 * scale)), width, 3), _BAND, np.uint8)
    for i, line in enumerate(lines):
        font_scale = 0.5 * scale
        (w, _), _ = cv2.getTextSize(line, _FONT, font_scale, 1)
        if w > width - 12:
            font_scale *= (width - 12) / w
        cv2.putText(band, line, (6, line_h * (i + 1)), _FONT, font_scale, _TEXT, 1, cv2.LINE_AA)
    return band


def _legend(width: int, scale: float) -> np.ndarray:
    """A band with the drawing's key: left, right, centre (filled = visible), hollow = occluded."""
    h = int(round(30 * scale))
    band = np.full((h, width, 3), _BAND, np.uint8)
    entries = [(SIDE_COLOURS_BGR["left"], -1, "left"), (SIDE_COLOURS_BGR["right"], -1, "right"),
               (SIDE_COLOURS_BGR["centre"], -1, "centre"), ((220, 220, 220), max(1, int(round(scale))), "occluded")]  # fmt: skip
    slot = width // len(entries)
    radius = max(4, int(round(5 * scale)))
    font_scale = 0.45 * scale
    for i, (colour, fill, label) in enumerate(entries):
        x0 = i * slot + 8
        cv2.circle(band, (x0 + radius, h // 2), radius, colour, fill, cv2.LINE_AA)
        (tw, _), _ = cv2.getTextSize(label, _FONT, font_scale, 1)
        room = slot - 2 * radius - 16
        fs_i = font_scale * min(1.0, room / tw) if tw > 0 else font_scale
        cv2.putText(band, label, (x0 + 2 * radius + 6, h // 2 + int(round(5 * scale))), _FONT, fs_i, _TEXT, 1, cv2.LINE_AA)
    return band


def render_sample_card(row: dict[str, Any], pixels: np.ndarray, scale: float = 2.0, caption: str = "") -> np.ndarray:
    """A readable picture of one processed sample: title, the crop scaled up with its skeleton, legend.

    The crop is enlarged first (nearest neighbour: every stored pixel stays visible as a block) and
    the keypoints mapped with the pixel-centre convention, ``x' = (x + 0.5) * scale - 0.5``, so the
    skeleton is drawn at full resolution rather than enlarged with the pixels.

    Args:
        row: The processed record (``sample_id``, ``skeleton``, crop keypoints, visibility).
        pixels: ``(H, W, 3) uint8`` BGR crop.
        scale: Enlargement factor, in ``(0, MAX_SCALE]``.
        caption: Second title line (e.g. dataset, version, split).

    Returns:
        ``(title + H * scale + legend, max(W * scale, 360), 3) uint8`` BGR.

    Raises:
        ConfigError: If ``scale`` is out of range.
    """
    if not (np.isfinite(scale) and 0 < scale <= MAX_SCALE):
        raise ConfigError(f"--scale {scale} is out of range", hint=f"pass a factor in (0, {MAX_SCALE:g}], e.g. 2 or 3")
    h, w = pixels.shape[:2]
    out_w, out_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    big = cv2.resize(pixels, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
    sx, sy = out_w / w, out_h / h
    xy = np.asarray(row["keypoints_crop_xy_px"], dtype=np.float32).reshape(-1, 2)
    xy_big = np.stack([(xy[:, 0] + 0.5) * sx - 0.5, (xy[:, 1] + 0.5) * sy - 0.5], axis=1)
    ui = max(1.0, min(scale, 3.0))  # line and text size grow with the picture, up to a point
    drawn = draw_skeleton(
        big, xy_big, np.asarray(row["keypoints_visibility"]), get_skeleton(row["skeleton"]),
        radius_px=max(3, int(round(2.5 * ui))), thickness_px=max(2, int(round(ui))),
    )  # fmt: skip
    width = max(out_w, _MIN_CARD_WIDTH_PX)
    body = np.full((out_h, width, 3), _BAND, np.uint8)
    left = (width - out_w) // 2
    body[:, left : left + out_w] = drawn
    lines = [str(row["sample_id"])] + ([caption] if caption else [])
    text_scale = max(1.0, min(width / 480, 2.0))
    return np.concatenate([_text_block(lines, width, text_scale), body, _legend(width, text_scale)], axis=0)


def write_png(path: str, image: np.ndarray) -> None:
    """Write a PNG (BGR input) to a local path or fsspec URL, atomically."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise StorageError(f"cannot encode PNG for {path}", hint="the picture is empty or not 8-bit BGR")
    fs, fpath = filesystem(path)
    write_bytes_atomic(fs, fpath, data.tobytes())


def version_contact_sheet(root: str, dataset: str, n: int = 8, version: str | None = None, columns: int = 4) -> np.ndarray:
    """A contact sheet of the first ``n`` processed samples of a version, skeletons drawn."""
    manifest = resolve_version(root, dataset, version)
    fs, path = filesystem(root)
    vpaths = VersionPaths(path, dataset, manifest["version"])
    tiles, labels = [], []
    for shard in manifest["shards"]:
        if len(tiles) >= n:
            break
        table = read_parquet(fs, vpaths.file(shard["parquet"]), PROCESSED_SAMPLES_SCHEMA).slice(0, n - len(tiles))
        _, pixels = read_hdf5_rows(fs, vpaths.file(shard["hdf5"]), list(table.column("pixels_row").to_pylist()))
        for row, image in zip(table.to_pylist(), pixels, strict=True):
            tiles.append(render_sample(row, image))
            labels.append(row["sample_id"])
    return contact_sheet(tiles, columns=columns, labels=labels)

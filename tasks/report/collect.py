"""Read a dataset version or a registered model into the plain data :mod:`tasks.report.html` renders.

Nothing here writes; images become PNG ``data:`` URIs (OpenCV encodes them), so the card is one file.
TensorFlow is never imported (the registry, the champion alias and the plots are plain files).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from schemas.errors import PosepipeError, VersionNotValidatedError
from storage.fs import filesystem, join
from storage.layout import REJECTS, VersionPaths, model_dir
from storage.manifest import read_latest, read_manifest
from storage.reader import flags_array, open_version, parse_dataset_ref, points_array
from tasks.report.html import png_data_uri

__all__ = ["dataset_card_data", "model_card_data", "sample_rows", "tile_uri"]

#: Samples drawn in the dataset card's grid, and reject examples per reason.
MAX_SAMPLES = 12
MAX_REJECT_EXAMPLES = 4
#: Longest side of a tile in the card (px); smaller crops are enlarged by an integer factor.
TILE_PX = 192
_IMAGE_RE = re.compile(r"[\w./-]+\.(?:jpe?g|png|bmp|webp)", re.IGNORECASE)


def tile_uri(image_bgr: np.ndarray) -> str:
    """A ``(H, W, 3) uint8`` BGR image as a PNG ``data:`` URI."""
    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ValueError("OpenCV could not encode the tile as PNG")
    return png_data_uri(buf.tobytes())


def _scale_for(h: int, w: int) -> int:
    return max(1, TILE_PX // max(h, w, 1))


def sample_rows(n: int, k: int = MAX_SAMPLES) -> np.ndarray:
    """``k`` row positions spread evenly over ``n`` rows (all of them when ``n <= k``), ``(min(n, k),) int64``."""
    if n <= k:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _read_json(fs: Any, path: str) -> dict[str, Any] | None:
    try:
        with fs.open(path, "rb") as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):  # a card shows what is there
        return None


def _about(dataset: str, run: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> dict[str, Any]:
    from tasks.datasets import get_adapter

    about: dict[str, Any] = {"dataset": dataset, "version": manifest.get("version"), "record": manifest.get("record")}
    try:
        adapter = get_adapter(dataset)
    except PosepipeError:
        adapter = None
    if adapter is not None:
        about["description"] = adapter.description or None
        about["homepage"] = adapter.homepage or None
        about["licence"] = adapter.licence or "not stated by the source (see the homepage's terms)"
        about["citation"] = adapter.citation or None
        about["skeleton"] = adapter.skeleton
    else:
        about["licence"] = "not recorded (no adapter registered under this name)"
    about["source folder"] = (run or {}).get("source")
    about["parents"] = ", ".join(str(p) for p in manifest.get("parents") or []) or None
    about["created (UTC)"] = (run or {}).get("created_at")
    about["code version"] = manifest.get("code_version")
    about["schema version"] = manifest.get("schema_version")
    return about


def _validation(fs: Any, paths: VersionPaths, manifest: Mapping[str, Any]) -> dict[str, Any]:
    gate = manifest.get("validation") or {}
    out: dict[str, Any] = {
        "success": bool(gate.get("success")),
        "failures": list(gate.get("failures") or []),
        "checks": [],
    }
    report = _read_json(fs, paths.file(gate.get("report") or "_validation.json")) or {}
    for c in report.get("version", []):
        out["checks"].append({"scope": "version", **c})
    # one row per (check) over the shards: success only when every shard passed it, unexpected summed
    merged: dict[str, dict[str, Any]] = {}
    for shard in report.get("shards", []):
        for c in shard.get("results", []):
            m = merged.setdefault(
                c["check"],
                {"scope": "every shard", "check": c["check"], "success": True, "unexpected": 0, "detail": ""},
            )
            m["success"] = m["success"] and bool(c.get("success"))
            m["unexpected"] += int(c.get("unexpected") or 0)
            if not c.get("success") and c.get("detail") and not m["detail"]:
                m["detail"] = f"{shard.get('shard')}: {c['detail']}"
    out["checks"].extend(merged.values())
    return out


def _reject_thumbnail(
    source: str | None, key: str, detail: str, inputs: Mapping[str, str] | None = None
) -> tuple[str, int] | None:
    """A thumbnail of the source image a reject names, as (PNG URI, width px), or None.

    Args:
        source: The source folder the version was built from.
        key: The reject's source key (MPII's ``000000001.jpg:0`` names the image).
        detail: The reject's detail (may name a path relative to the source).
        inputs: File name → path relative to the source, for keys that give a bare file name
            (from the version's ``_inputs.parquet``).
    """
    if not source:
        return None
    for candidate in _IMAGE_RE.findall(f"{key} {detail}"):
        if inputs and candidate in inputs:
            candidate = inputs[candidate]
        path = Path(source) / candidate
        if ".." in Path(candidate).parts or not path.is_file():
            continue
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            return None
        h, w = img.shape[:2]
        f = 160.0 / max(h, w)
        img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        return tile_uri(img), img.shape[1]
    return None


def _rejects(fs: Any, paths: VersionPaths, manifest: Mapping[str, Any], source: str | None) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    by_reason = dict(manifest.get("rejects_by_reason") or {})
    examples: dict[str, list[dict[str, Any]]] = {}
    if by_reason and fs.exists(paths.file(REJECTS)):
        with fs.open(paths.file(REJECTS), "rb") as fh:
            rows = pq.read_table(fh).to_pylist()
        inputs: dict[str, str] = {}
        if source and fs.exists(paths.file("_inputs.parquet")):
            with fs.open(paths.file("_inputs.parquet"), "rb") as fh:
                inputs = {
                    p.rsplit("/", 1)[-1]: p for p in pq.read_table(fh, columns=["path"]).column("path").to_pylist()
                }
        for r in rows:
            bucket = examples.setdefault(str(r["reason"]), [])
            if len(bucket) >= MAX_REJECT_EXAMPLES:
                continue
            e = {"source_key": r.get("source_key"), "stage": r.get("stage"), "detail": r.get("detail") or ""}
            thumb = _reject_thumbnail(source, str(e["source_key"]), str(e["detail"]), inputs)
            if thumb is not None:
                e["uri"], e["width_px"] = thumb
            bucket.append(e)
    return [
        {"reason": reason, "count": int(n), "examples": examples.get(reason, [])}
        for reason, n in sorted(by_reason.items(), key=lambda kv: -int(kv[1]))
    ]


def _sample_tiles(version: Any, splits: Sequence[str]) -> list[dict[str, Any]]:
    """Tiles of a few records per split: crops with their skeleton drawn, or a sequence's composite image."""
    from tasks.transforms.draw import draw_skeleton

    tiles: list[dict[str, Any]] = []
    per_split = max(1, MAX_SAMPLES // max(1, len(splits)))
    for split in splits:
        n = version.num_rows(split)
        if n == 0:
            continue
        rows = sample_rows(n, per_split)
        images_rgb = version.crops(split, rows)  # (k, H, W, 3) uint8 RGB
        names = version.column_names
        id_col = next((c for c in ("sample_id", "clip_id") if c in names), None)
        label_col = next((c for c in ("label", "category", "activity") if c in names), None)
        draw = version.record != "sequences" and "keypoints_crop_xy_px" in names and version.skeleton
        joints = ["keypoints_crop_xy_px", "keypoints_visibility"] if draw else []
        picked = version.take(split, rows, [c for c in (id_col, label_col, *joints) if c])  # one read of the sampled rows' shards
        ids = picked.column(id_col).to_pylist() if id_col else [""] * len(rows)
        labels = picked.column(label_col).to_pylist() if label_col else [None] * len(rows)
        if draw:
            kp = points_array(picked.column("keypoints_crop_xy_px"), len(rows), "keypoints_crop_xy_px")  # (k, J, 2) crop px
            vis = flags_array(picked.column("keypoints_visibility"), len(rows), "keypoints_visibility")  # (k, J)
        for i in range(len(rows)):
            img = np.ascontiguousarray(images_rgb[i][..., ::-1])  # RGB -> BGR
            s = _scale_for(*img.shape[:2])
            big = (
                cv2.resize(img, (img.shape[1] * s, img.shape[0] * s), interpolation=cv2.INTER_NEAREST) if s > 1 else img
            )
            if draw:
                big = draw_skeleton(big, kp[i], vis[i], version.skeleton, scale=float(s))
            label = labels[i]
            caption = f"{split} · {ids[i]}" + (f" · {label}" if label not in (None, "") else "")
            tiles.append({"uri": tile_uri(big), "caption": caption, "width_px": big.shape[1]})
    return tiles


def dataset_card_data(root: str, ref: str) -> dict[str, Any]:
    """Everything the dataset card shows for ``DATASET[@VERSION]`` (default: ``LATEST``).

    A version whose gate failed still gets a card (source, counts, rejects, the failed checks); its
    records are not read (the reader refuses them), so it has no sample grid.

    Raises:
        VersionNotFoundError: No such version (or no ``LATEST``).
    """
    dataset, version_id = parse_dataset_ref(ref)
    fs, rpath = filesystem(root)
    version = None
    samples_note = ""
    try:
        version = open_version(root, dataset, version_id, verify=False)
        version_id, manifest = version.version, version.manifest
    except VersionNotValidatedError:
        version_id = version_id or read_latest(fs, rpath, dataset)
        manifest = read_manifest(fs, rpath, dataset, str(version_id))
        samples_note = "the version failed its gate: its records are not read"
    paths = VersionPaths(rpath, dataset, version_id)
    run = _read_json(fs, paths.file("_run.json"))
    source = (run or {}).get("source")
    samples: list[dict[str, Any]] = []
    if version is not None:
        try:
            samples = _sample_tiles(version, list(manifest.get("counts", {})))
            if version.record == "sequences":
                samples_note = "each tile is one sequence's composite skeleton image (every time step on one canvas)"
            else:
                samples_note = f"crops with their {version.skeleton or 'labelled'} skeleton drawn (filled dot: visible, ring: occluded)"
        except PosepipeError as exc:
            samples_note = f"no pixels to show: {exc}"
        finally:
            version.close()
    return {
        "dataset": dataset,
        "version": version_id,
        "record": manifest.get("record"),
        "about": _about(dataset, run, manifest),
        "counts": dict(manifest.get("counts", {})),
        "totals": {k: manifest.get(k) for k in ("parsed", "written", "rejected")},
        "rejects": _rejects(fs, paths, manifest, source),
        "validation": _validation(fs, paths, manifest),
        "samples": samples,
        "samples_note": samples_note,
        "params": json.dumps(manifest.get("params", {}), indent=2, sort_keys=True),
        "subtitle": f"folder {paths.dir}",
    }


def _file_uri(fs: Any, path: str) -> str | None:
    try:
        return png_data_uri(fs.cat_file(path))
    except FileNotFoundError:
        return None


def _lineage_rows(lineage: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, Any]:
    ds = lineage.get("dataset") or {}
    hw = lineage.get("hardware") or {}
    libs = lineage.get("libraries") or {}
    out: dict[str, Any] = {
        "dataset": f"{ds.get('name')}@{ds.get('version')}",
        "splits (train / eval)": f"{ds.get('train_split')} / {ds.get('eval_split')}",
        "dataset counts": ", ".join(f"{k} {v}" for k, v in (ds.get("counts") or {}).items()) or None,
        "dataset manifest sha256": ds.get("manifest_sha256"),
        "epochs": lineage.get("epochs"),
        "seed": lineage.get("seed"),
        "preset": lineage.get("preset"),
        "strategy / replicas": f"{lineage.get('strategy')} / {lineage.get('replicas')}",
        "code version": lineage.get("code_version"),
        "parent model": lineage.get("parent_model"),
        "params": json.dumps(lineage.get("params") or {}, sort_keys=True),
        "overrides": json.dumps(lineage.get("overrides") or {}, sort_keys=True),
        "libraries": ", ".join(f"{k} {v}" for k, v in libs.items()) or None,
        "hardware": ", ".join(f"{k} {v}" for k, v in hw.items()) or None,
    }
    for k, v in lineage.items():
        if k.endswith(("_time_utc", "_s")) and not isinstance(v, (dict, list)):
            out[k] = v
    out["files"] = ", ".join(sorted((manifest.get("files") or {}).keys())) or None
    return out


def _per_item(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    for key in ("per_joint_pck", "per_joint"):
        v = metrics.get(key)
        if isinstance(v, Mapping) and v:
            vals = {str(k): (float(x) if isinstance(x, (int, float)) else None) for k, x in v.items()}
            return {"title": f"{key} (fraction)", "values": vals, "scale": 1.0}
    per_class = metrics.get("per_class")
    if isinstance(per_class, Mapping) and per_class:
        vals = {
            f"{k} (n={c.get('support')})": (
                float(c["f1"]) if isinstance(c, Mapping) and isinstance(c.get("f1"), (int, float)) else None
            )
            for k, c in per_class.items()
        }
        return {"title": "F1 per class", "values": vals, "scale": 1.0}
    return None


def latest_decision(root: str, task: str, model_version: str) -> dict[str, Any] | None:
    """The newest ``_decisions/{utc}-{model_version}.json`` of ``task`` (None when no retrain decided on it)."""
    fs, rpath = filesystem(root)
    base = join(model_dir(rpath, task), "_decisions")
    try:
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(base, detail=False))
    except FileNotFoundError:
        return None
    mine = [n for n in names if n.endswith(f"-{model_version}.json")]
    return _read_json(fs, join(base, mine[-1])) if mine else None


def model_card_data(root: str, ref: str) -> dict[str, Any]:
    """Everything the model card shows for ``TASK[@VERSION]`` (default: the latest registered).

    Raises:
        ModelNotFoundError: No such model.
    """
    from tasks.training import champion, registry

    record = registry.resolve(root, ref)
    fs, _ = filesystem(root)
    history = _read_json(fs, record.file("history.json"))
    if isinstance(history, Mapping):
        history = history.get("history") or history.get("epochs") or []
    plots = {key: _file_uri(fs, record.file(f"plots/{name}")) for key, name in
             (("history", "history.png"), ("per_joint", "per_joint_pck.png"), ("confusion", "confusion_matrix.png"), ("worst", "worst_predictions.png"))}  # fmt: skip
    return {
        "task": record.task,
        "model_version": record.model_version,
        "lineage": _lineage_rows(record.lineage, record.manifest),
        "metrics": registry.flat_metrics(record.metrics),
        "history": list(history or []),
        "plots": {k: v for k, v in plots.items() if v},
        "per_item": _per_item(record.metrics),
        "decision": latest_decision(root, record.task, record.model_version),
        "champion": champion.read_champion(root, record.task),
        "subtitle": f"folder {record.dir}",
    }

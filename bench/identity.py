"""Fingerprint what a rebuild writes, to prove a refactor changed no output.

Rebuilds (in-process, no orchestrator) a synthetic COCO dataset (with flips), the real COCO-mini
fixture and the real UCF101 clip lists, and prints per dataset: counts, parsed/written/rejected,
rejects by reason and, per shard, rows, Parquet sha256 and HDF5 content digest (ids + shape +
pixels). Version ids are left out on purpose: they hash the code, which a refactor changes.

    python bench/identity.py --out before.json     # on the old commit
    python bench/identity.py --out after.json      # on the new one
    python bench/identity.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def fingerprint(root: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The output facts of one committed version (no ids that hash the code)."""
    from storage.fs import filesystem
    from storage.manifest import read_manifest

    fs, path = filesystem(root)
    m = read_manifest(fs, path, summary["dataset"], summary["version"])
    return {
        "counts": m["counts"],
        "parsed": m["parsed"],
        "written": m["written"],
        "rejected": m["rejected"],
        "rejects_by_reason": m["rejects_by_reason"],
        "shards": [[s["split"], s["index"], s["rows"], s["parquet_sha256"], s.get("hdf5_content_digest") or s.get("hdf5_content_sha256")] for s in m["shards"]],
    }


def run(work: Path) -> dict[str, Any]:
    from tasks.synthetic import write_synthetic_coco
    from tasks.transforms.geometry import CropConfig
    from tests.helpers import build_version

    out: dict[str, Any] = {}
    syn = write_synthetic_coco(work / "syn", {"train": 40, "val": 12}, seed=11)
    for name, kwargs in {
        "synthetic": {"source": str(syn), "crop": CropConfig(flip_prob=0.5), "shard_size": 32},
        "coco_mini": {"source": str(SHARED / "coco/coco_mini_val2017")},
        "ucf101_clips": {"source": str(SHARED / "ucf101"), "dataset": "ucf101", "shard_size": 5000, "adapter_params": {"require_videos": "false"}},
    }.items():
        root = str(work / f"root-{name}")
        out[name] = fingerprint(root, build_version(root, **kwargs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="write the fingerprints here (JSON)")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        same = before == after
        for name in sorted(set(before) | set(after)):
            print(f"{name}: {'identical' if before.get(name) == after.get(name) else 'DIFFERENT'}")
        sys.exit(0 if same else 1)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp))
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

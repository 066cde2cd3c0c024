"""``posepipe rebuild coco --mirror http://127.0.0.1:PORT/...`` end to end, from served COCO-format archives.

The archives are built here from the real ``../shared/data/coco/coco_mini_val2017`` with the official
file names and inner layout: ``annotations_trainval2017.zip`` holding
``annotations/person_keypoints_val2017.json``, ``val2017.zip`` holding ``val2017/*.jpg``.
``train2017.zip`` is not served (a 404 on an optional source: warning + skip). The rebuild must
give the same counts as parsing the folder itself: 68 written, 50 rejected (published for this
subset: 118 person annotations, 68 with keypoints, 1 crowd).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from schemas.errors import ChecksumMismatchError
from tasks.datasets import get_adapter
from tasks.fetch.registry import ENV_DIR, load_checksums
from tasks.fetch.resolve import fetch_dataset

from .conftest import Server

REPO = Path(__file__).resolve().parents[2]


def coco_archives(coco_mini: Path, out: Path) -> dict[str, Path]:
    """The official archive names and layouts, holding the coco_mini subset."""
    out.mkdir(parents=True, exist_ok=True)
    ann = out / "annotations_trainval2017.zip"
    with zipfile.ZipFile(ann, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(coco_mini / "person_keypoints_val2017.json", "annotations/person_keypoints_val2017.json")
    val = out / "val2017.zip"
    with zipfile.ZipFile(val, "w", zipfile.ZIP_STORED) as zf:
        for img in sorted((coco_mini / "images").glob("*.jpg")):
            zf.write(img, f"val2017/{img.name}")
    return {"annotations": ann, "images_val": val}


@pytest.fixture
def coco_mirror(server: Server, shared_data: Path, tmp_path: Path) -> str:
    prefix = f"coco-mirror-{tmp_path.name}"
    for path in coco_archives(shared_data / "coco" / "coco_mini_val2017", tmp_path / "archives").values():
        server.put(f"{prefix}/{path.name}", path.read_bytes())
    return f"{server.base}/plain/{prefix}/"


def test_committed_registry_refuses_archives_that_are_not_the_official_ones(coco_mirror: str, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)
    official = load_checksums("coco")["http://images.cocodataset.org/annotations/annotations_trainval2017.zip"]
    with pytest.raises(ChecksumMismatchError, match=official.sha256) as err:
        fetch_dataset("coco", str(tmp_path / "root"), mirror=coco_mirror)
    assert "annotations_trainval2017.zip" in str(err.value)
    assert list((tmp_path / "root" / "raw" / "coco" / "downloads").glob("annotations_trainval2017.zip.bad-*"))


@pytest.mark.slow
def test_rebuild_coco_from_mirror_matches_the_folder(server: Server, coco_mirror: str, shared_data: Path,
                                                     tmp_path: Path) -> None:
    folder = shared_data / "coco" / "coco_mini_val2017"
    adapter = get_adapter("coco")
    from_folder = adapter.parse(folder, adapter.make_params())
    assert (from_folder.records.num_rows, from_folder.rejects.num_rows) == (68, 50)

    env = {
        **os.environ,
        ENV_DIR: str(tmp_path / "registry"),  # the served archives are not the official bytes: register them
        "POSEPIPE_FETCH_ATTEMPTS": "2",  # the owner URL of the optional train2017.zip is unreachable offline
        "POSEPIPE_FETCH_BACKOFF_S": "0.1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_HOME": str(tmp_path / "prefect_home"),  # keep the run's database and results out of ~
    }
    posepipe = [sys.executable, "-m", "flows.cli"]
    root = tmp_path / "root"
    reg = subprocess.run(
        [*posepipe, "fetch", "coco", "--mirror", coco_mirror, "--root", str(root), "--register-checksums"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert reg.returncode == 0, reg.stderr
    assert "2 downloaded, 0 reused, 0 from the manual folder, 1 skipped" in reg.stderr
    assert "optional source images_train (train2017.zip)" in reg.stderr
    registered = load_checksums("coco", tmp_path / "registry")
    assert sorted(c.filename for c in registered.values()) == ["annotations_trainval2017.zip", "val2017.zip"]
    server.reset()

    fresh = tmp_path / "fresh"  # a new root: the rebuild itself fetches (and verifies) everything
    run = subprocess.run(
        [*posepipe, "rebuild", "coco", "--mirror", coco_mirror, "--root", str(fresh), "--workers", "1", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    summary = json.loads(run.stdout)
    assert (summary["written"], summary["rejected"], summary["parsed"]) == (68, 50, 118)
    assert summary["counts"] == {"val": from_folder.records.num_rows}
    assert summary["rejects_by_reason"] == {"crowd": 1, "zero_keypoints": 49}
    assert summary["validation"] == "passed"
    served = [(e["path"].rsplit("/", 1)[-1], e["status"]) for e in server.log()]
    assert served == [("annotations_trainval2017.zip", 200), ("val2017.zip", 200), ("train2017.zip", 404)]
    extracted = fresh / "raw" / "coco" / "extracted"
    assert (extracted / "annotations" / "person_keypoints_val2017.json").read_bytes() == (
        folder / "person_keypoints_val2017.json"
    ).read_bytes()
    assert len(list((extracted / "val2017").glob("*.jpg"))) == 39

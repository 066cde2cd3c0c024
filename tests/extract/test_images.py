"""``extract images``: ids settled before inference, ordinary names, the image list beside the results.

Real photos with ordinary names (tf-pose-estimation's examples) through the plain functions and once
through the command line; the test-double backend keeps TensorFlow out of the process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.errors import AnnotationFormatError, ConfigError
from tasks.extract.ids import STABLE_ID_BASE, stable_image_id
from tasks.extract.images import (
    extract_images,
    image_files,
    images_sidecar_path,
    resolve_image_ids,
    write_coco_outputs,
)
from tasks.extract.plan import BackendSpec, load_estimator
from tests.extract.doubles import BLOB, BlobBackend

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def photos(shared_data: Path, tmp_path: Path) -> Path:
    """Three real photos with ordinary names, a COCO-named copy, and a truncated JPEG."""
    src = shared_data / "media" / "tf_pose_images"
    out = tmp_path / "photos"
    out.mkdir()
    for name in ("apink2.jpg", "p1.jpg", "golf.jpg"):
        shutil.copy(src / name, out / name)
    shutil.copy(src / "ski.jpg", out / "000000000785.jpg")
    data = (src / "handsup1.jpg").read_bytes()
    (out / "cut.jpg").write_bytes(data[: len(data) // 2])
    return out


def test_stable_ids() -> None:
    assert stable_image_id("000000000785.jpg") == 785
    assert stable_image_id("COCO_val2014_000000000785.jpg") == 785
    apink = stable_image_id("apink2.jpg")
    assert apink == stable_image_id("apink2.jpg") and STABLE_ID_BASE <= apink < 2 * STABLE_ID_BASE < 2**53
    assert len({stable_image_id(n) for n in ("apink2.jpg", "apink2.png", "p1.jpg", "img_1.jpg", "frame_1.jpg")}) == 5
    assert stable_image_id(os.fsdecode(b"caf\xe9.jpg")) != stable_image_id("café.jpg")


def test_ordinary_names_keep_their_results_and_ids(photos: Path, tmp_path: Path) -> None:
    """2u: before, coco_results raised 'no COCO image id for apink2.jpg' after inference."""
    files = image_files([photos])
    ids = resolve_image_ids(files)
    backend = BlobBackend(batch=2)
    result = extract_images(files, backend, ids)
    assert sorted(n for n, _ in result.found) == ["000000000785.jpg", "apink2.jpg", "golf.jpg", "p1.jpg"]
    assert result.failures == {"cut.jpg": "image_unreadable"} and "truncated" in result.details["cut.jpg"]
    assert max(backend.calls) <= 2 and sum(backend.calls) == 4
    out, sidecar, detections = write_coco_outputs(result, backend.skeleton, tmp_path / "r.json")
    assert sidecar == images_sidecar_path(out) == tmp_path / "r.images.json"
    results = json.loads(out.read_text())
    assert len(results) == detections == result.people > 0
    doc = json.loads(sidecar.read_text())
    listed = {im["file_name"]: im for im in doc["images"]}
    assert {n: im["id"] for n, im in listed.items()} == {n: ids[n] for n in listed} and listed["000000000785.jpg"]["id"] == 785
    assert (listed["apink2.jpg"]["width"], listed["apink2.jpg"]["height"]) == result.sizes_wh["apink2.jpg"]
    assert {r["image_id"] for r in results} <= {im["id"] for im in doc["images"]}
    assert doc["failed"][0]["file_name"] == "cut.jpg" and doc["failed"][0]["reason"] == "image_unreadable"
    # pycocotools takes the image list as its GT and the results against it
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(sidecar))
        res = coco.loadRes(str(out))
    assert sorted(coco.getImgIds()) == sorted(im["id"] for im in doc["images"]) and len(res.getAnnIds()) == detections


def test_gt_problems_are_found_before_inference(photos: Path, tmp_path: Path) -> None:
    files = image_files([photos])
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 5, "file_name": "p1.jpg"}], "annotations": []}))
    with pytest.raises(ConfigError, match="not in --gt") as info:
        resolve_image_ids(files, gt)
    assert "--gt" in info.value.hint and "apink2.jpg" in info.value.message
    assert resolve_image_ids([photos / "p1.jpg"], gt) == {"p1.jpg": 5}
    gt.write_text(json.dumps({"images": [{"id": "abc", "file_name": "p1.jpg"}]}))
    with pytest.raises(AnnotationFormatError, match=r"images\[0\]"):
        resolve_image_ids(files, gt)
    gt.write_text("[]")
    with pytest.raises(AnnotationFormatError, match="no 'images' list"):
        resolve_image_ids(files, gt)
    (tmp_path / "b").mkdir()
    shutil.copy(photos / "p1.jpg", tmp_path / "b" / "p1.jpg")
    with pytest.raises(ConfigError, match="more than one folder"):
        resolve_image_ids(image_files([photos, tmp_path / "b"]))
    shutil.copy(photos / "p1.jpg", tmp_path / "b" / "785.png")
    with pytest.raises(ConfigError, match="share an id"):
        resolve_image_ids(image_files([photos / "000000000785.jpg", tmp_path / "b" / "785.png"]))


def test_non_utf8_image_name(photos: Path, tmp_path: Path) -> None:
    """cv2.imread segfaults on such a name; the image is read and listed with its exact bytes."""
    name = b"caf\xe9.jpg"
    os.rename(os.fsencode(photos / "p1.jpg"), os.fsencode(photos) + b"/" + name)
    files = image_files([photos / os.fsdecode(name), photos / "golf.jpg"])
    result = extract_images(files, load_estimator(BackendSpec.create(BLOB)), resolve_image_ids(files))
    assert len(result.found) == 2 and not result.failures
    _, sidecar, _ = write_coco_outputs(result, "openpose18", tmp_path / "r.json")
    (entry,) = [im for im in json.loads(sidecar.read_text())["images"] if im["file_name"] != "golf.jpg"]
    assert entry["file_name"] == "caf\\xe9.jpg" and bytes.fromhex(entry["file_name_bytes_hex"]) == name


def test_cli_extract_images_on_ordinary_names(photos: Path, tmp_path: Path) -> None:
    """As a user runs it (2u, 2v): results kept, ids listed beside them, the summary speaks of images."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    out = tmp_path / "res" / "r.json"
    args = [str(Path(sys.executable).parent / "posepipe"), "extract", "images", str(photos), "--backend", BLOB, "--coco-json", str(out)]
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 extracted of 5" in res.stdout and "image_unreadable: 1" in res.stdout and "people per image" in res.stdout
    assert "clips" not in res.stdout and "frames" not in res.stdout
    assert json.loads(out.read_text()) and len(json.loads((tmp_path / "res" / "r.images.json").read_text())["images"]) == 4
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "p1.jpg"}]}))
    res = subprocess.run([*args, "--gt", str(gt)], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode != 0 and "not in --gt" in res.stdout + res.stderr and "Traceback" not in res.stderr

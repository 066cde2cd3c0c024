import collections
import json

import numpy as np
import pyarrow as pa
import pytest

from schemas.errors import RejectRatioExceededError, SourceError, ValidationFailedError
from schemas.records import PROCESSED_SAMPLES_SCHEMA
from storage.fs import filesystem
from storage.hdf5 import read_hdf5_rows
from storage.manifest import read_latest, read_manifest
from storage.parquet import read_parquet, write_parquet
from tasks import rebuild as stages
from tasks.kinds import ShardResult, get_kind
from tasks.shards import plan_shards, process_shard
from tasks.synthetic import write_synthetic_coco
from tasks.transforms.geometry import CropConfig
from tests.helpers import build_version


def test_plan_shards_never_crosses_splits():
    t = pa.table({"split": ["a", "a", "a", "b"]})
    assert plan_shards(t, 2) == [("a", 0, 0, 2), ("a", 1, 2, 3), ("b", 0, 3, 4)]
    assert plan_shards(t.slice(0, 0), 2) == []


@pytest.fixture()
def source(tmp_path):
    return write_synthetic_coco(tmp_path / "src", {"train": 4, "val": 2}, seed=3)


def test_build_commits_a_valid_version(tmp_path, source):
    root = str(tmp_path / "root")
    s = build_version(root, str(source), shard_size=3)
    assert s["validation"] == "passed" and s["written"] + s["rejected"] == s["parsed"]
    fs, path = filesystem(root)
    m = read_manifest(fs, path, "coco", s["version"])
    assert read_latest(fs, path, "coco") == s["version"]
    assert sum(sh["rows"] for sh in m["shards"]) == m["written"] == sum(m["counts"].values())
    assert m["rejects_by_reason"] == {"crowd": 2, "zero_keypoints": 2}
    shard = m["shards"][0]
    t = read_parquet(fs, f"{s['location']}/{shard['parquet']}", PROCESSED_SAMPLES_SCHEMA)
    ids, px = read_hdf5_rows(fs, f"{s['location']}/{shard['hdf5']}")
    assert ids == t.column("sample_id").to_pylist() and px.shape[1:] == (256, 192, 3)
    assert t.column("sample_id").to_pylist() == sorted(t.column("sample_id").to_pylist())
    # unchanged inputs → the same version is reused; a changed parameter → a new version
    again = build_version(root, str(source), shard_size=3)
    assert again["reused"] and again["version"] == s["version"]
    other = build_version(root, str(source), shard_size=3, crop=CropConfig(out_height_px=128, out_width_px=96))
    assert other["version"] != s["version"] and read_latest(fs, path, "coco") == other["version"]


def test_bad_images_become_rejects(tmp_path, source):
    files = sorted((source / "train2017").glob("*.jpg"))
    files[0].unlink()  # missing
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 2])  # truncated JPEG
    import cv2

    cv2.imwrite(str(files[2]), np.zeros((10, 10, 3), np.uint8))  # size differs from the annotation
    s = build_version(str(tmp_path / "root"), str(source), shard_size=4)
    assert s["written"] + s["rejected"] == s["parsed"]
    reasons = s["rejects_by_reason"]
    assert reasons["image_missing"] >= 1 and reasons["image_unreadable"] >= 1 and reasons["image_size_mismatch"] >= 1
    fs, _ = filesystem(str(tmp_path))
    rej = read_parquet(fs, f"{s['location']}/_rejects.parquet")
    detail = dict(zip(rej.column("reason").to_pylist(), rej.column("detail").to_pylist(), strict=True))
    assert "truncated" in detail["image_unreadable"]


def test_reject_ratio_gate(tmp_path, source):
    for f in (source / "train2017").glob("*.jpg"):
        f.unlink()
    root = str(tmp_path / "root")
    with pytest.raises(RejectRatioExceededError, match="image_missing"):
        build_version(root, str(source), max_reject_ratio=0.2)
    fs, path = filesystem(root)
    assert read_latest(fs, path, "coco") is None


def test_failing_expectation_leaves_latest_untouched(tmp_path, source):
    root = str(tmp_path / "root")
    good = build_version(root, str(source), shard_size=3)
    # a second version whose shard is corrupted after processing: a keypoint far outside the crop
    crop = CropConfig(out_height_px=128, out_width_px=96)
    prepared = stages.prepare(stages.RebuildRequest("coco", root, str(source), crop=crop, shard_size=3))
    shards = [process_shard(s) for s in prepared.specs]
    fs, path = filesystem(root)
    target = f"{path}/datasets/coco/{prepared.version}/{shards[1].parquet}"
    rows = read_parquet(fs, target, PROCESSED_SAMPLES_SCHEMA).to_pylist()
    rows[0]["keypoints_crop_xy_px"][0] = [500.0, -90.0]
    rows[0]["keypoints_visibility"][0] = 2
    write_parquet(fs, target, pa.Table.from_pylist(rows, PROCESSED_SAMPLES_SCHEMA), PROCESSED_SAMPLES_SCHEMA)
    samples = get_kind("samples")
    results = [ShardResult(summary, samples.validate(spec, summary)) for spec, summary in zip(prepared.specs, shards, strict=True)]
    with pytest.raises(ValidationFailedError) as exc:
        stages.commit(root, prepared, results)
    shard_name = shards[1].parquet.removesuffix(".parquet")
    assert f"{shard_name}: visible_keypoints_inside_crop (1 unexpected: {rows[0]['sample_id']})" in exc.value.message
    assert read_latest(fs, path, "coco") == good["version"]
    report = json.loads(open(f"{path}/datasets/coco/{prepared.version}/_validation.json").read())
    assert not report["success"]
    assert (tmp_path / "root/datasets/coco" / prepared.version / "_validation.html").read_text().count("<td>FAIL</td>") == 1


def test_gx_suite_catches_schema_level_problems(tmp_path, source):
    root = str(tmp_path / "root")
    prepared = stages.prepare(stages.RebuildRequest("coco", root, str(source), shard_size=50))
    shard = process_shard(prepared.specs[0])
    fs, path = filesystem(root)
    target = f"{path}/datasets/coco/{prepared.version}/{shard.parquet}"
    rows = read_parquet(fs, target, PROCESSED_SAMPLES_SCHEMA).to_pylist()
    rows[1]["sample_id"] = rows[0]["sample_id"]
    rows[2]["split"] = "holdout"
    write_parquet(fs, target, pa.Table.from_pylist(rows, PROCESSED_SAMPLES_SCHEMA), PROCESSED_SAMPLES_SCHEMA)
    samples = get_kind("samples")
    report = samples.validate(prepared.specs[0], shard)
    failed = collections.Counter(r.check for r in report.results if not r.success)
    assert "crop_pixels_present" in failed  # the duplicated id no longer matches its pixel row
    # the GX suite runs once over every shard at commit, and names this shard and the bad values
    others = [process_shard(s) for s in prepared.specs[1:]]
    results = [ShardResult(shard, report)] + [ShardResult(o, samples.validate(s, o)) for s, o in zip(prepared.specs[1:], others, strict=True)]
    with pytest.raises(ValidationFailedError) as exc:
        stages.commit(root, prepared, results)
    name = shard.parquet.removesuffix(".parquet")
    assert f"{name}: ExpectColumnValuesToBeUnique(sample_id) (2 unexpected: ['{rows[0]['sample_id']}', '{rows[0]['sample_id']}'])" in exc.value.message
    assert f"{name}: ExpectColumnValuesToBeInSet(split) (1 unexpected: ['holdout'])" in exc.value.message
    gx_failures = [line for line in exc.value.message.splitlines() if "Expect" in line]
    assert all(line.strip().startswith(f"{name}:") or name in line for line in gx_failures), gx_failures  # other shards passed
    saved = json.loads(open(f"{path}/datasets/coco/{prepared.version}/_validation.json").read())
    assert [r["check"] for r in saved["shards"][0]["results"]][:2] == ["ExpectTableColumnsToMatchSet", "ExpectColumnValuesToNotBeNull(sample_id)"]


def test_gate_catches_absurd_crops_that_slipped_past_parse(tmp_path, source):
    """Even if a bad record reached a shard, the gate refuses it: a visible joint with NaN crop
    coordinates, a crop box off the image, and a crop of one flat colour (fill only)."""
    from storage.hdf5 import write_hdf5_shard

    root = str(tmp_path / "root")
    prepared = stages.prepare(stages.RebuildRequest("coco", root, str(source), shard_size=50))
    shard = process_shard(prepared.specs[0])
    fs, path = filesystem(root)
    vdir = f"{path}/datasets/coco/{prepared.version}"
    rows = read_parquet(fs, f"{vdir}/{shard.parquet}", PROCESSED_SAMPLES_SCHEMA).to_pylist()
    visible = next(j for j, v in enumerate(rows[0]["keypoints_visibility"]) if v > 0)
    rows[0]["keypoints_crop_xy_px"][visible] = [float("nan"), float("nan")]
    rows[1]["crop_xyxy_px"] = [float("nan"), float("nan"), float("inf"), float("inf")]
    rows[2]["crop_xyxy_px"] = [-1e9, -1e9, -1e9 + 50, -1e9 + 50]
    rows[4]["keypoints_visibility"] = [5] + rows[4]["keypoints_visibility"][1:]
    far = next(j for j, v in enumerate(rows[5]["keypoints_visibility"]) if v > 0)
    rows[5]["keypoints_crop_xy_px"][far] = [rows[5]["crop_width_px"] + 10.0, 3.0]
    for col in ("keypoints_crop_xy_px", "keypoints_xy_px", "keypoints_visibility"):
        rows[6][col] = rows[6][col][:-1]  # one joint short of the skeleton
    rows[7]["pixels_row"] = rows[8]["pixels_row"]  # points at another sample's pixels
    write_parquet(fs, f"{vdir}/{shard.parquet}", pa.Table.from_pylist(rows, PROCESSED_SAMPLES_SCHEMA), PROCESSED_SAMPLES_SCHEMA)
    ids, pixels = read_hdf5_rows(fs, f"{vdir}/{shard.hdf5}")
    pixels = pixels.copy()
    pixels[rows[3]["pixels_row"]] = 0  # all black: what a box far outside the image produced
    write_hdf5_shard(fs, f"{vdir}/{shard.hdf5}", ids, pixels)
    report = get_kind("samples").validate(prepared.specs[0], shard)
    failed = {r.check: r.detail for r in report.results if not r.success}
    assert failed == {
        "visible_keypoints_finite": rows[0]["sample_id"],
        "crop_box_intersects_image": f"{rows[1]['sample_id']}, {rows[2]['sample_id']}",
        "crop_pixels_not_constant": rows[3]["sample_id"],
        "visibility_in_domain": rows[4]["sample_id"],
        "visible_keypoints_inside_crop": rows[5]["sample_id"],
        "joint_count_matches_skeleton": rows[6]["sample_id"],
        "crop_pixels_present": rows[7]["sample_id"],
    }
    assert all(r.success for r in report.results if r.engine == "great_expectations")


def test_gx_sees_nested_columns_as_their_length_and_nulls_as_nulls() -> None:
    from tasks.validate import flat_frame

    table = pa.table({"id": ["a", "b", "c"], "xy": pa.array([[[1.0, 2.0]], None, []], pa.list_(pa.list_(pa.float32(), 2))),
                      "box": pa.array([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 2.0], None], pa.list_(pa.float32(), 4))})  # fmt: skip
    df = flat_frame(table)
    assert df["id"].tolist() == ["a", "b", "c"]
    assert df["xy"].tolist()[0] == 1 and df["xy"].isna().tolist() == [False, True, False] and df["xy"].tolist()[2] == 0
    assert df["box"].isna().tolist() == [False, False, True]
    as_pandas = flat_frame(table.to_pandas())
    assert as_pandas["xy"].isna().tolist() == [False, True, False]


def test_flic_rebuild_without_images_fails_at_parse(tmp_path, shared_data):
    """FLIC's real examples.mat has no images here: the rebuild stops at parse, before any shard
    is processed, and says the images are missing (raising the reject ratio would not help)."""
    src = shared_data / "flic"
    root = str(tmp_path / "root")
    with pytest.raises(SourceError, match=r"none of the 4552 images the annotations reference exists under .*flic") as err:
        build_version(root, str(src), dataset="flic", shard_size=2000)
    assert "max-reject-ratio would not help" in err.value.hint
    fs, path = filesystem(root)
    assert not list((tmp_path / "root/datasets/flic").glob("v-*"))  # nothing staged
    assert read_latest(fs, path, "flic") is None


def test_clip_dataset_rebuild_from_real_ucf101_lists(tmp_path, shared_data):
    """Video datasets rebuild to clip-record shards, gated by the clips suite (no pixels involved)."""
    root = str(tmp_path / "root")
    s = build_version(root, str(shared_data / "ucf101"), dataset="ucf101", shard_size=5000, adapter_params={"require_videos": "false"})
    assert s["counts"] == {"clips": 13320} and s["rejected"] == 0 and s["validation"] == "passed"
    fs, path = filesystem(root)
    m = read_manifest(fs, path, "ucf101", s["version"])
    assert m["record"] == "clips" and [sh["rows"] for sh in m["shards"]] == [5000, 5000, 3320]


def test_clip_gate_catches_a_group_cut_by_a_fold(tmp_path, shared_data):
    root = str(tmp_path / "root")
    prepared = stages.prepare(stages.RebuildRequest("ucf101", root, str(shared_data / "ucf101"), shard_size=20000, adapter_params={"require_videos": "false"}))
    (spec,) = prepared.specs
    clips = get_kind("clips")
    shard = clips.build(spec)
    fs, path = filesystem(root)
    target = f"{path}/datasets/ucf101/{prepared.version}/{shard.parquet}"
    from schemas.records import CLIPS_SCHEMA

    rows = read_parquet(fs, target, CLIPS_SCHEMA).to_pylist()
    first = rows[0]  # v_ApplyEyeMakeup_g01_c01: split1 test; move one clip of its group to train
    rows[0]["folds"] = [("split1", "train") if k == "split1" else (k, v) for k, v in first["folds"]]
    write_parquet(fs, target, pa.Table.from_pylist(rows, CLIPS_SCHEMA), CLIPS_SCHEMA)
    report = clips.validate(spec, shard)
    failed = {r.check: r.detail for r in report.results if not r.success}
    assert failed == {"folds_never_cut_a_group": "split1:g01"}


def test_any_fsspec_root_gives_the_same_version(tmp_path, source):
    """The store is any fsspec URL: an in-memory root builds the same bytes as local disk."""
    import fsspec

    local = build_version(str(tmp_path / "root"), str(source), shard_size=4)
    remote = build_version("memory://posepipe-test-root", str(source), shard_size=4)
    assert remote["version"] == local["version"] and remote["location"].startswith("memory://")
    mem = fsspec.filesystem("memory")
    fs, path = filesystem(str(tmp_path / "root"))
    remote_manifest = json.loads(mem.cat(f"/posepipe-test-root/datasets/coco/{remote['version']}/_manifest.json"))
    assert remote_manifest == read_manifest(fs, path, "coco", local["version"])
    assert mem.cat("/posepipe-test-root/datasets/coco/LATEST").decode().strip() == remote["version"]
    mem.rm("/posepipe-test-root", recursive=True)


def test_real_lspet_subset_rebuild(tmp_path, shared_data):
    """400 annotations, 20 images present: 20 crops written and validated, 380 image_missing rejects."""
    src = str(shared_data / "lspet_subset400")
    with pytest.raises(RejectRatioExceededError, match="380 of 400"):
        build_version(str(tmp_path / "strict"), src, dataset="lspet")
    s = build_version(str(tmp_path / "root"), src, dataset="lspet", max_reject_ratio=1.0)
    assert s["counts"] == {"train": 20} and s["rejects_by_reason"] == {"image_missing": 380} and s["validation"] == "passed"


def test_real_mpii_images_rebuild(tmp_path, shared_data):
    """MMPose's 5 real MPII validation images in HRNet JSON format: 5 crops written and validated."""
    src = str(shared_data / "mpii/mmpose_tests/test_mpii.json")
    s = build_version(str(tmp_path / "root"), src, dataset="mpii", adapter_params={"image_dir": "."})
    assert s["written"] == 5 and s["rejected"] == 0 and s["validation"] == "passed"


def test_keypoint_boxes_union_only_labelled_finite_joints():
    from tasks.shards import keypoint_boxes_xyxy

    boxes = np.array([[10, 10, 20, 20], [0, 0, 5, 5], [1, 1, 2, 2]], dtype=np.float64)
    xy = np.array([[25, 5], [15, 30], [100, 100], [np.nan, -50], [-3, 4]], dtype=np.float32)
    vis = np.array([2, 1, 0, 2, 1], dtype=np.int8)
    # row 0: joints 0-2 (the third unlabelled); row 1: joints 3-4 (the first not finite); row 2: none
    out = keypoint_boxes_xyxy(boxes, xy, vis, np.array([0, 3, 5]))
    np.testing.assert_array_equal(out, [[10, 5, 25, 30], [-3, 0, 5, 5], [1, 1, 2, 2]])


def _union_box(row: dict) -> np.ndarray:
    xy = np.asarray(row["keypoints_xy_px"], np.float32)
    ok = np.asarray(row["keypoints_visibility"]) > 0
    box = np.asarray(row["bbox_xyxy_px"], np.float64)
    return np.concatenate([np.minimum(box[:2], xy[ok].min(0)), np.maximum(box[2:], xy[ok].max(0))]) if ok.any() else box


def test_batched_shard_equals_the_per_sample_kernels(tmp_path):
    """process_shard (vectorised boxes, affines, keypoints; one decode per image) == crop_sample per row."""
    from schemas.skeletons import get_skeleton
    from tasks.common import stable_hash
    from tasks.transforms.geometry import crop_box_xyxy, crop_sample, decode_reduction, make_crop_params, sample_rng
    from tasks.transforms.image_io import read_image_bgr

    src = write_synthetic_coco(tmp_path / "src", {"train": 12}, seed=5, size_wh=(320, 240))
    cfg = CropConfig(out_height_px=64, out_width_px=48, flip_prob=0.5)
    prepared = stages.prepare(stages.RebuildRequest("coco", str(tmp_path / "root"), str(src), crop=cfg, shard_size=64, seed=11))
    fs, _ = filesystem(str(tmp_path / "root"))
    (spec,) = prepared.specs
    summary = process_shard(spec)
    vdir = f"{tmp_path}/root/datasets/coco/{spec.version}"
    out = read_parquet(fs, f"{vdir}/{summary.parquet}", PROCESSED_SAMPLES_SCHEMA).to_pylist()
    _, pixels = read_hdf5_rows(fs, f"{vdir}/{summary.hdf5}")
    assert len(out) == summary.rows > 5 and any(json.loads(r["extra"] or "{}").get("flipped") for r in out)
    rows = {r["sample_id"]: r for r in read_parquet(fs, spec.records_path).to_pylist()}
    by_image = collections.defaultdict(list)
    for r in rows.values():
        by_image[r["image_path"]].append(r)

    def params_of(row):
        return make_crop_params(sample_rng(11, stable_hash(row["sample_id"])), cfg)

    for i, got in enumerate(out):
        row = rows[got["sample_id"]]
        k = decode_reduction([crop_box_xyxy(_union_box(peer), params_of(peer), cfg) for peer in by_image[row["image_path"]]], cfg)
        image = read_image_bgr(src / row["image_path"], reduction=k)
        xy, vis = np.asarray(row["keypoints_xy_px"], np.float32), np.asarray(row["keypoints_visibility"], np.int8)
        ref = crop_sample(image, _union_box(row), xy, vis, get_skeleton(row["skeleton"]), params_of(row), cfg, reduction=k)
        assert got["pixels_row"] == i
        assert np.array_equal(pixels[i], ref.image)
        np.testing.assert_array_equal(np.asarray(got["keypoints_crop_xy_px"], np.float32), ref.keypoints_xy_px)
        assert got["keypoints_visibility"] == ref.visibility.tolist()
        np.testing.assert_array_equal(np.asarray(got["crop_xyxy_px"], np.float32), ref.crop_xyxy_px)
        assert bool(json.loads(got["extra"] or "{}").get("flipped")) == ref.params.flip

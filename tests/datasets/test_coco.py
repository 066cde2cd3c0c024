import collections
import json
from pathlib import Path

import numpy as np
import pytest

from schemas.errors import AnnotationFormatError, ConfigError, SourceError
from tasks.datasets import get_adapter
from tasks.synthetic import write_synthetic_coco


@pytest.fixture(scope="module")
def coco():
    return get_adapter("coco")


def _reasons(result):
    return collections.Counter(result.rejects.column("reason").to_pylist())


def test_real_coco_mini_counts(coco, shared_data):
    r = coco.parse(shared_data / "coco/coco_mini_val2017", coco.make_params())
    assert (r.records.num_rows, r.rejects.num_rows, r.parsed) == (68, 50, 118)
    assert _reasons(r) == {"zero_keypoints": 49, "crowd": 1}
    assert set(r.records.column("split").to_pylist()) == {"val"}
    labelled = sum(int((np.asarray(v) > 0).sum()) for v in r.records.column("keypoints_visibility").to_pylist())
    assert labelled == 652  # the README's published total of labelled keypoints
    row = next(x for x in r.records.to_pylist() if x["source_key"] == "200887")
    assert row["image_path"] == "images/000000397133.jpg" and row["image_width_px"] == 640
    np.testing.assert_allclose(row["keypoints_xy_px"][0], [433, 94])
    assert np.isnan(row["keypoints_xy_px"][2]).all() and row["keypoints_visibility"][2] == 0
    np.testing.assert_allclose(row["bbox_xyxy_px"], [388.66, 69.92, 388.66 + 109.41, 69.92 + 277.62], rtol=1e-5)
    assert len(set(r.records.column("sample_id").to_pylist())) == 68


def test_real_mmpose_test_coco_matches_mmpose(coco, shared_data):
    r = coco.parse(shared_data / "coco/mmpose_tests/test_coco.json", coco.make_params())
    assert r.records.num_rows == 12 and _reasons(r) == {"zero_keypoints": 2}


def test_policies_are_parameters(coco, shared_data):
    r = coco.parse(shared_data / "coco/coco_mini_val2017", coco.make_params({"keep_crowd": "true", "min_keypoints": "0"}))
    assert r.records.num_rows == 118
    r = coco.parse(shared_data / "coco/coco_mini_val2017", coco.make_params({"min_box_side_px": "50"}))
    assert _reasons(r)["box_too_small"] > 0 and r.parsed == 118
    with pytest.raises(ConfigError, match="accepted"):
        coco.make_params({"keep_crowds": "1"})


def test_synthetic_data_in_official_layout(coco, tmp_path):
    src = write_synthetic_coco(tmp_path / "coco", {"train": 3, "val": 2}, seed=1)
    assert (src / "annotations/person_keypoints_train2017.json").is_file() and any((src / "val2017").glob("*.jpg"))
    r = coco.parse(src, coco.make_params())
    assert set(r.records.column("split").to_pylist()) == {"train", "val"}
    assert _reasons(r) == {"crowd": 2, "zero_keypoints": 2}
    assert all(p.startswith(("train2017/", "val2017/")) for p in r.records.column("image_path").to_pylist())
    assert r.input_checksums.keys() == {"annotations/person_keypoints_train2017.json", "annotations/person_keypoints_val2017.json"}


def _write(tmp_path: Path, doc) -> Path:
    p = tmp_path / "person_keypoints_val2017.json"
    p.write_text(json.dumps(doc))
    return tmp_path


def _doc(**ann_overrides):
    ann = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [10, 10, 50, 80], "keypoints": [20, 20, 2] + [0] * 48}
    ann.update(ann_overrides)
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}], "annotations": [ann]}


def test_malformed_json_names_file_and_position(coco, tmp_path):
    (tmp_path / "person_keypoints_val2017.json").write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(AnnotationFormatError, match=r"person_keypoints_val2017.json: invalid JSON at line 2, column 12"):
        coco.parse(tmp_path, coco.make_params())


def test_missing_top_level_key(coco, tmp_path):
    with pytest.raises(AnnotationFormatError, match="'annotations' missing"):
        coco.parse(_write(tmp_path, {"images": []}), coco.make_params())


def test_no_annotation_file(coco, tmp_path):
    with pytest.raises(SourceError, match="no person_keypoints"):
        coco.parse(tmp_path, coco.make_params())


def test_path_escaping_source_is_rejected(coco, tmp_path):
    doc = _doc()
    doc["images"][0]["file_name"] = "../../etc/passwd"
    r = coco.parse(_write(tmp_path, doc), coco.make_params())
    assert _reasons(r) == {"path_escapes_source": 1}


def test_duplicate_annotation_ids(coco, tmp_path):
    doc = _doc()
    doc["annotations"].append(dict(doc["annotations"][0]))
    r = coco.parse(_write(tmp_path, doc), coco.make_params())
    assert r.records.num_rows == 1 and _reasons(r) == {"duplicate_id": 1}


def test_keypoints_outside_image(coco, tmp_path):
    r = coco.parse(_write(tmp_path, _doc(keypoints=[150, 20, 2] + [0] * 48)), coco.make_params())
    assert _reasons(r) == {"keypoints_out_of_image": 1}


def test_malformed_annotation_and_unknown_image(coco, tmp_path):
    doc = _doc(keypoints=[1, 2, 3])
    doc["annotations"].append({"id": 2, "image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "keypoints": [1, 1, 2] + [0] * 48})
    doc["annotations"].append({"id": 3, "image_id": 1, "category_id": 1, "bbox": "oops", "keypoints": [1, 1, 2] + [0] * 48})
    r = coco.parse(_write(tmp_path, doc), coco.make_params())
    assert r.parsed == 3 and _reasons(r) == {"malformed_annotation": 2, "unknown_image": 1}


def test_records_and_rejects_keep_annotation_order_across_both_checking_passes(coco, tmp_path):
    doc = _doc(area=123.5)
    nan_and_outside = [30, 30, 2, float("nan"), 5, 2, 150, 20, 1] + [0] * 42  # x NaN never counts as outside
    doc["annotations"] += [
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": "oops", "keypoints": [1, 1, 2] + [0] * 48},  # second pass raises
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "keypoints": nan_and_outside},
        {"id": 4, "image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "keypoints": [1, 1, 2] + [0] * 48},  # first pass
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [20, 30, 40, 50], "keypoints": [25, 35, 1, 26, 36, 0] + [0] * 45},
    ]
    r = coco.parse(_write(tmp_path, doc), coco.make_params({"min_box_side_px": 0}))
    assert r.records.column("source_key").to_pylist() == ["1", "5"]
    assert r.rejects.column("source_key").to_pylist() == ["2", "3", "4"]
    assert r.rejects.column("reason").to_pylist() == ["malformed_annotation", "keypoints_out_of_image", "malformed_annotation"]
    assert r.rejects.column("detail").to_pylist()[1] == "1 labelled keypoints outside 100x100"
    first, last = r.records.to_pylist()
    assert first["extra"] == json.dumps({"image_id": 1, "area": 123.5, "iscrowd": 0})
    assert last["extra"] == json.dumps({"image_id": 1, "area": None, "iscrowd": 0})
    assert last["keypoints_visibility"][:3] == [1, 0, 0] and last["keypoints_xy_px"][0] == [25.0, 35.0]
    assert np.isnan(last["keypoints_xy_px"][1]).all() and last["bbox_xyxy_px"] == [20.0, 30.0, 60.0, 80.0]

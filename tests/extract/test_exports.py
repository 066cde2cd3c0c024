"""Exports: OpenPose JSON, COCO results, skeleton images in HDF5, overlay video."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from schemas.errors import ExtractionError
from tasks.extract.exports import (
    coco_results,
    openpose_frame_json,
    poses_from_table,
    skeleton_image,
    write_openpose_json,
    write_overlay_video,
    write_skeleton_images_h5,
)
from tasks.extract.worker import poses_table
from tasks.keypoints.api import FramePoses
from tasks.video.decode import VideoReader
from tests.video.fakes import write_video

NAN = np.nan


def _person(**joints: tuple[float, float, float]) -> np.ndarray:
    from schemas.skeletons import get_skeleton

    sk = get_skeleton("openpose18")
    kp = np.full((18, 3), NAN, np.float32)
    kp[:, 2] = 0
    for name, v in joints.items():
        kp[sk.index(name)] = v
    return kp


def test_openpose_json_layout() -> None:
    kp = _person(nose=(10.0, 20.0, 0.9), neck=(11.0, 30.0, 0.8))
    doc = openpose_frame_json(FramePoses(kp[None], np.array([0.7], np.float32)))
    assert doc["version"] == 1.3 and len(doc["people"]) == 1  # type: ignore[arg-type]
    flat = doc["people"][0]["pose_keypoints_2d"]  # type: ignore[index]
    assert len(flat) == 54 and flat[:6] == [10.0, 20.0, 0.9, 11.0, 30.0, 0.8] and flat[6:9] == [0.0, 0.0, 0.0]
    assert openpose_frame_json(FramePoses(np.zeros((0, 18, 3), np.float32), np.zeros(0, np.float32))) == {
        "version": 1.3,
        "people": [],
    }


def test_openpose_json_files(tmp_path: Path) -> None:
    kp = _person(nose=(1.0, 2.0, 0.5))
    files = write_openpose_json(
        tmp_path,
        "clip",
        [(0, FramePoses(kp[None], np.ones(1, np.float32))), (12, FramePoses(kp[:0], np.zeros(0, np.float32)))],
    )
    assert [f.name for f in files] == ["clip_000000000000_keypoints.json", "clip_000000000012_keypoints.json"]
    assert json.loads(files[1].read_text())["people"] == []


def test_coco_results_convert_openpose18_to_coco17() -> None:
    kp = _person(
        nose=(10.0, 20.0, 0.9), left_shoulder=(5.0, 6.0, 0.4), right_ankle=(7.0, 8.0, 0.3), neck=(1.0, 1.0, 1.0)
    )
    res = coco_results([("000000000785.jpg", FramePoses(kp[None], np.array([0.6], np.float32)))], "openpose18")
    assert len(res) == 1 and res[0]["image_id"] == 785 and res[0]["category_id"] == 1 and res[0]["score"] == 0.6
    flat = res[0]["keypoints"]
    assert len(flat) == 51  # type: ignore[arg-type]
    assert flat[0:3] == [10.0, 20.0, 0.9]  # type: ignore[index]  # COCO 0 = nose
    assert flat[15:18] == [5.0, 6.0, 0.4]  # type: ignore[index]  # COCO 5 = left_shoulder
    assert flat[48:51] == [7.0, 8.0, 0.3]  # type: ignore[index]  # COCO 16 = right_ankle
    assert flat[3:6] == [0.0, 0.0, 0.0]  # type: ignore[index]  # left_eye unknown
    from tasks.extract.ids import stable_image_id

    # an ordinary name gets its stable id; a map that lacks an image says which option to fix
    one = [("p1.jpg", FramePoses(kp[None], np.ones(1, np.float32)))]
    assert coco_results(one, "openpose18")[0]["image_id"] == stable_image_id("p1.jpg")
    with pytest.raises(ExtractionError, match="no image id for 'p1.jpg'") as info:
        coco_results(one, "openpose18", {"other.jpg": 1})
    assert "--gt" in info.value.hint
    assert (
        coco_results([("p1.jpg", FramePoses(kp[None], np.ones(1, np.float32)))], "openpose18", {"p1.jpg": 3})[0][
            "image_id"
        ]
        == 3
    )


def test_skeleton_image_draws_limb_on_blank_canvas() -> None:
    kp = _person(neck=(50.0, 20.0, 1.0), right_hip=(50.0, 80.0, 1.0))
    img = skeleton_image(FramePoses(kp[None], np.ones(1, np.float32)), "openpose18", (100, 100), (50, 50))
    assert img.shape == (50, 50, 3) and img.dtype == np.uint8
    assert img[25, 25].max() > 0  # on the neck-right_hip limb (scaled by 0.5)
    assert img[5, 5].max() == 0 and img[25, 5].max() == 0  # background stays blank


def test_skeleton_images_h5_is_byte_stable(tmp_path: Path) -> None:
    kp = _person(neck=(10.0, 10.0, 1.0), right_hip=(10.0, 40.0, 1.0))
    frames = [
        ("c", 0, FramePoses(kp[None], np.ones(1, np.float32))),
        ("c", 3, FramePoses(kp[:0], np.zeros(0, np.float32))),
    ]
    write_skeleton_images_h5(tmp_path / "a.h5", frames, "openpose18", {"c": (48, 64)}, (32, 32))
    write_skeleton_images_h5(tmp_path / "b.h5", frames, "openpose18", {"c": (48, 64)}, (32, 32))
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["images"].shape == (2, 32, 32, 3) and f["frame_index"][:].tolist() == [0, 3]
        assert f["images"][0].max() > 0 and f["images"][1].max() == 0
        assert f.attrs["skeleton"] == "openpose18"


def test_poses_from_table_inverts_poses_table() -> None:
    kp = np.arange(2 * 18 * 3, dtype=np.float32).reshape(2, 18, 3)
    table = poses_table("c", [4, 9], [FramePoses(kp, np.array([1, 2], np.float32)), FramePoses(kp[:1], np.array([3], np.float32))],
                        "openpose18", "b", "m")  # fmt: skip
    back = poses_from_table(table, "c", 18)
    assert (
        sorted(back) == [4, 9] and back[4].keypoints.tolist() == kp.tolist() and back[9].person_scores.tolist() == [3.0]
    )


def test_overlay_video(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", 10, width=64, height=48)
    kp = _person(neck=(32.0, 5.0, 1.0), right_hip=(32.0, 40.0, 1.0))
    n = write_overlay_video(
        str(video), {2: FramePoses(kp[None], np.ones(1, np.float32))}, "openpose18", tmp_path / "o.mp4"
    )
    assert n == 10
    reader = VideoReader(tmp_path / "o.mp4")
    frames = [f for c in reader.chunks() for f in c.frames]
    assert len(frames) == 10 and reader.info.decoder.endswith("/h264")
    # the drawn limb (x = 32, y 5..40) shows on frame 2 only
    assert frames[2][20, 31:34].max() > 100 and frames[1][20, 31:34].max() < 100

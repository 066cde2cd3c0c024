"""Tests of the pose-model registry and channel layouts (tasks/keypoints/models.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ConfigError, ModelError
from schemas.skeletons import get_skeleton
from storage.fs import file_sha256
from tasks.keypoints.models import (
    BODY25_LAYOUT,
    COCO18_LAYOUT,
    MODELS,
    MPI15_LAYOUT,
    PafLayout,
    get_model,
    locate_file,
)


def _names(layout: PafLayout) -> list[tuple[str, str]]:
    sk = get_skeleton(layout.skeleton)
    return [(sk.joints[a], sk.joints[b]) for a, b in layout.pairs]


def test_coco18_pairs_and_paf_channels_match_openpose() -> None:
    # OpenPose's limb for PAF channels (12, 13) is neck -> right shoulder; (0, 1) neck -> right hip
    by_channel = {xy: pair for pair, xy in zip(_names(COCO18_LAYOUT), COCO18_LAYOUT.paf_channels, strict=True)}
    assert by_channel[(12, 13)] == ("neck", "right_shoulder")
    assert by_channel[(0, 1)] == ("neck", "right_hip")
    assert by_channel[(28, 29)] == ("neck", "nose")
    assert by_channel[(18, 19)] == ("right_shoulder", "right_ear")
    # The skeleton lists openpose18's limbs in PAF-channel order: both tables agree on every limb
    sk = get_skeleton("openpose18")
    ordered = [by_channel[(2 * i, 2 * i + 1)] for i in range(19)]
    assert ordered == list(sk.limbs)
    assert COCO18_LAYOUT.num_channels == 57 and COCO18_LAYOUT.seed_pairs == 17
    # the two redundant limbs (ear-shoulder) are last: they never start a person
    assert _names(COCO18_LAYOUT)[17:] == [("right_shoulder", "right_ear"), ("left_shoulder", "left_ear")]


def test_mpi15_and_body25_layouts() -> None:
    assert MPI15_LAYOUT.num_channels == 44 and MPI15_LAYOUT.num_joints == 15
    assert _names(MPI15_LAYOUT)[0] == ("head", "neck")
    assert BODY25_LAYOUT.num_channels == 78 and len(BODY25_LAYOUT.pairs) == 26
    names = dict(zip(BODY25_LAYOUT.paf_channels, _names(BODY25_LAYOUT), strict=True))
    assert names[(0, 1)] == ("neck", "mid_hip")
    assert names[(50, 51)] == ("right_ankle", "right_heel")


def test_layout_validation() -> None:
    with pytest.raises(ConfigError, match="background"):
        PafLayout("openpose18", 18, COCO18_LAYOUT.pairs, COCO18_LAYOUT.paf_channels)
    with pytest.raises(ConfigError, match="once"):
        PafLayout("openpose18", 19, COCO18_LAYOUT.pairs, ((0, 0),) + COCO18_LAYOUT.paf_channels[1:])
    with pytest.raises(ConfigError, match="outside"):
        PafLayout("openpose18", 19, ((0, 18),) + COCO18_LAYOUT.pairs[1:], COCO18_LAYOUT.paf_channels)


def test_registry_entry_matches_the_real_fixture(shared_data: Path) -> None:
    entry = get_model("tf_pose_mobilenet_v2_small")
    assert entry.input_wh == (432, 368) and entry.stride == 8 and entry.layout is COCO18_LAYOUT
    assert entry.url.startswith("https://") and entry.output_name == "Openpose/concat_stage7"
    assert file_sha256(shared_data / "models" / "tf_pose_mobilenet_v2_small" / "graph_opt.pb") == entry.sha256
    for name in ("openpose_coco", "openpose_mpi", "openpose_mpi_faster", "openpose_body25"):
        e = MODELS[name]
        proto = shared_data / "models" / "openpose_prototxt" / str(e.config_filename)
        assert file_sha256(proto) == e.config_sha256, name


def test_unknown_model_and_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown pose model"):
        get_model("nope")
    entry = get_model("tf_pose_mobilenet_v2_small")
    monkeypatch.setenv("POSEPIPE_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError, match="not found") as err:
        locate_file(entry, entry.filename, entry.url)
    assert entry.url in err.value.hint
    (tmp_path / entry.name).mkdir()
    (tmp_path / entry.name / entry.filename).write_bytes(b"x")
    assert locate_file(entry, entry.filename, entry.url) == tmp_path / entry.name / entry.filename
    with pytest.raises(ModelError, match="does not exist"):
        locate_file(entry, entry.filename, entry.url, tmp_path / "other.pb")

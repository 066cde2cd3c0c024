"""UCF11 adapter: a generated folder of real videos in the published layout, and the real lists."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from schemas.errors import SourceError
from schemas.records import CLIPS_SCHEMA
from tasks.datasets import get_adapter
from tests.video.fakes import write_video

VIDEOS = [
    "basketball/v_shooting_01/v_shooting_01_01.mpg",
    "basketball/v_shooting_02/v_shooting_02_01.mpg",
    "walking/v_walk_dog_01/v_walk_dog_01_02.mpg",
    "walking/v_walk_dog_25/v_walk_dog_25_01.mpg",
]


@pytest.fixture()
def fake_ucf11(tmp_path: Path) -> Path:
    (tmp_path / "classInd.txt").write_text("basketball\nwalking")  # no trailing newline, like the real file
    for rel in VIDEOS:
        write_video(tmp_path / "UCF11_updated_mpg" / rel, num_frames=2, fourcc="MJPG")
    return tmp_path


def test_scan_builds_logo_folds(fake_ucf11: Path) -> None:
    adapter = get_adapter("ucf11")
    result = adapter.parse(fake_ucf11, adapter.make_params({}))
    assert result.records.schema == CLIPS_SCHEMA and result.rejects.num_rows == 0
    rows = {r["clip_id"]: r for r in result.records.to_pylist()}
    assert sorted(rows) == ["v_shooting_01_01", "v_shooting_02_01", "v_walk_dog_01_02", "v_walk_dog_25_01"]
    walk = rows["v_walk_dog_25_01"]
    assert walk["label"] == "walking" and walk["label_index"] == 1 and walk["group"] == "25"
    folds = dict(walk["folds"])
    assert len(folds) == 25 and folds["logo25"] == "test" and folds["logo01"] == "train"
    assert Counter(folds.values()) == {"train": 24, "test": 1}
    assert walk["video_path"] == "UCF11_updated_mpg/walking/v_walk_dog_25/v_walk_dog_25_01.mpg"
    # leave-one-group-out: the test side of fold logoGG is exactly group GG
    for g in range(1, 26):
        tested = {r["group"] for r in rows.values() if dict(r["folds"])[f"logo{g:02d}"] == "test"}
        assert tested <= {f"{g:02d}"}


def test_listfile_rejects_missing_and_malformed(fake_ucf11: Path) -> None:
    lines = VIDEOS + ["swing/v_swing_03/v_swing_03_01.mpg", "basketball/v_shooting_03/v_shooting_04_01.mpg",
                      "walking/v_walk_dog_02/v_walk_dog_02_01.mpg"]  # fmt: skip
    (fake_ucf11 / "listfile.txt").write_text("\n".join(lines) + "\n")
    adapter = get_adapter("ucf11")
    result = adapter.parse(fake_ucf11, adapter.make_params({"clip_list": "listfile"}))
    reasons = {r["source_key"]: r["reason"] for r in result.rejects.to_pylist()}
    assert reasons == {"listfile.txt:5": "unknown_label", "listfile.txt:6": "malformed_annotation",
                       "v_walk_dog_02_01": "video_missing"}  # fmt: skip
    assert result.records.num_rows == 4 and result.parsed == len(lines)


def test_scan_without_videos_folder_says_where(tmp_path: Path) -> None:
    adapter = get_adapter("ucf11")
    with pytest.raises(SourceError, match="UCF11_updated_mpg"):
        adapter.parse(tmp_path, adapter.make_params({}))


def test_real_listfile_counts_and_third_party_split(shared_data: Path) -> None:
    adapter = get_adapter("ucf11")
    params = adapter.make_params({"clip_list": "listfile", "require_videos": False, "third_party_split": True})
    result = adapter.parse(shared_data / "ucf11", params)
    assert result.records.num_rows == 1600 and result.rejects.num_rows == 0
    rows = result.records.to_pylist()
    assert Counter(r["label"] for r in rows) == {
        "basketball": 141, "biking": 145, "diving": 156, "golf_swing": 142, "horse_riding": 198,
        "soccer_juggling": 156, "swing": 137, "tennis_swing": 167, "trampoline_jumping": 119,
        "volleyball_spiking": 116, "walking": 123,
    }  # fmt: skip
    assert len({r["group"] for r in rows}) == 25
    assert Counter(dict(r["folds"])["twostream"] for r in rows) == {"train": 1120, "test": 480}
    assert sum(dict(r["folds"])["logo01"] == "test" for r in rows) == sum(r["group"] == "01" for r in rows) > 0
    basketball = next(r for r in rows if r["label"] == "basketball")
    assert basketball["label_index"] == 0


def test_fold_hint_names_the_folds_the_records_carry(fake_ucf11: Path) -> None:
    adapter = get_adapter("ucf11")
    rows = adapter.parse(fake_ucf11, adapter.make_params({})).records.to_pylist()
    assert {k for r in rows for k, _ in r["folds"]} == {f"logo{g:02d}" for g in range(1, 26)}
    assert adapter.fold_hint.startswith("logo01..logo25") and "third_party_split" in adapter.fold_hint

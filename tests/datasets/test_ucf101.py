"""UCF101 adapter: generated lists + real MJPG videos in the published layout, and the real split files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from schemas.errors import AnnotationFormatError, SourceError
from schemas.records import CLIPS_SCHEMA
from tasks.datasets import get_adapter
from tests.video.fakes import write_video

CLASSES = ["ApplyEyeMakeup", "HandstandPushups"]


def _write_lists(root: Path, train: list[str], test: list[str], labels: dict[str, int] | None = None) -> None:
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_bytes("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(CLASSES)).encode())
    labels = labels or {}
    for k in (1, 2, 3):
        lines = [f"{p} {labels[p] if p in labels else CLASSES.index(p.split('/')[0]) + 1}\r\n" for p in train]
        (lists / f"trainlist0{k}.txt").write_bytes("".join(lines).encode())
        (lists / f"testlist0{k}.txt").write_bytes("".join(f"{p}\r\n" for p in test).encode())


TRAIN = [
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi",
    "HandstandPushups/v_HandStandPushups_g08_c01.avi",
]
TEST = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "HandstandPushups/v_HandStandPushups_g01_c01.avi"]


@pytest.fixture()
def fake_ucf101(tmp_path: Path) -> Path:
    _write_lists(tmp_path, TRAIN, TEST)
    for rel in TRAIN + TEST:
        if rel != TRAIN[1]:  # one listed clip has no video
            write_video(tmp_path / "UCF-101" / rel, num_frames=3)
    return tmp_path


def test_fake_clips_labels_groups_and_missing_video(fake_ucf101: Path) -> None:
    adapter = get_adapter("ucf101")
    result = adapter.parse(fake_ucf101, adapter.make_params({}))
    assert result.records.schema == CLIPS_SCHEMA
    rows = {r["clip_id"]: r for r in result.records.to_pylist()}
    assert sorted(rows) == [
        "v_ApplyEyeMakeup_g01_c01",
        "v_ApplyEyeMakeup_g08_c01",
        "v_HandStandPushups_g01_c01",
        "v_HandStandPushups_g08_c01",
    ]
    hsp = rows["v_HandStandPushups_g08_c01"]
    assert hsp["label"] == "HandstandPushups" and hsp["label_index"] == 1  # classInd "2" -> 0-based 1
    assert hsp["video_path"] == "UCF-101/HandstandPushups/v_HandStandPushups_g08_c01.avi"
    assert hsp["group"] == "g08"
    assert dict(rows["v_ApplyEyeMakeup_g01_c01"]["folds"]) == {"split1": "test", "split2": "test", "split3": "test"}
    assert rows["v_ApplyEyeMakeup_g01_c01"]["label_index"] == 0
    rejects = result.rejects.to_pylist()
    assert [(r["source_key"], r["reason"]) for r in rejects] == [("v_ApplyEyeMakeup_g08_c02", "video_missing")]
    assert result.parsed == 5


def test_video_lookup_is_case_insensitive(tmp_path: Path) -> None:
    _write_lists(tmp_path, TRAIN[:1], TEST[:1])
    write_video(tmp_path / "UCF-101/applyeyemakeup/v_ApplyEyeMakeup_g08_c01.avi", 2)
    write_video(tmp_path / "UCF-101/applyeyemakeup/V_APPLYEYEMAKEUP_G01_C01.AVI", 2)
    adapter = get_adapter("ucf101")
    rows = adapter.parse(tmp_path, adapter.make_params({})).records.to_pylist()
    assert [r["video_path"] for r in rows] == [
        "UCF-101/applyeyemakeup/V_APPLYEYEMAKEUP_G01_C01.AVI",
        "UCF-101/applyeyemakeup/v_ApplyEyeMakeup_g08_c01.avi",
    ]


def test_bad_lines_are_rejected_not_dropped(tmp_path: Path) -> None:
    bad = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi", "Nope/v_Nope_g09_c01.avi", "../x/v_A_g09_c01.avi"]
    _write_lists(tmp_path, TRAIN[:1] + bad, TEST[:1], labels={bad[0]: 2, bad[1]: 1, bad[2]: 1})
    adapter = get_adapter("ucf101")
    result = adapter.parse(tmp_path, adapter.make_params({"require_videos": False}))
    reasons = Counter(r["reason"] for r in result.rejects.to_pylist())
    # three bad train lines in each of the three splits
    assert reasons == {"unknown_label": 6, "path_escapes_source": 3}
    assert result.records.num_rows == 2


def test_group_cut_across_split_is_an_error(tmp_path: Path) -> None:
    _write_lists(tmp_path, TRAIN[:1], ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c05.avi"])
    adapter = get_adapter("ucf101")
    with pytest.raises(AnnotationFormatError, match="cut groups"):
        adapter.parse(tmp_path, adapter.make_params({"require_videos": False}))


def test_missing_split_file_names_it(tmp_path: Path) -> None:
    _write_lists(tmp_path, TRAIN, TEST)
    (tmp_path / "ucfTrainTestlist/testlist02.txt").unlink()
    adapter = get_adapter("ucf101")
    with pytest.raises(SourceError, match="testlist02.txt"):
        adapter.parse(tmp_path, adapter.make_params({}))


def test_real_split_lists_give_published_counts(shared_data: Path) -> None:
    adapter = get_adapter("ucf101")
    result = adapter.parse(shared_data / "ucf101", adapter.make_params({"require_videos": False}))
    assert result.records.num_rows == 13320 and result.rejects.num_rows == 0
    rows = result.records.to_pylist()
    for k, (train, test) in {1: (9537, 3783), 2: (9586, 3734), 3: (9624, 3696)}.items():
        sides = Counter(dict(r["folds"])[f"split{k}"] for r in rows)
        assert sides == {"train": train, "test": test}
        # no group (per class) on both sides of any split
        seen: dict[tuple[str, str], set[str]] = {}
        for r in rows:
            seen.setdefault((r["label"], r["group"]), set()).add(dict(r["folds"])[f"split{k}"])
        assert all(len(v) == 1 for v in seen.values())
    assert len({r["label"] for r in rows}) == 101 and len({r["group"] for r in rows}) == 25
    assert {r["label_index"] for r in rows} == set(range(101))
    by_id = {r["clip_id"]: r for r in rows}
    assert by_id["v_HandStandPushups_g01_c01"]["label"] == "HandstandPushups"
    assert by_id["v_HandStandPushups_g01_c01"]["label_index"] == 36  # classInd "37 HandstandPushups"
    assert by_id["v_YoYo_g25_c05"]["label_index"] == 100


def test_real_lists_without_videos_reject_every_clip(shared_data: Path) -> None:
    adapter = get_adapter("ucf101")
    result = adapter.parse(shared_data / "ucf101", adapter.make_params({}))
    assert result.records.num_rows == 0
    assert Counter(result.rejects.column("reason").to_pylist()) == {"video_missing": 13320}


def test_fold_names_and_request_facts(shared_data: Path) -> None:
    adapter = get_adapter("ucf101")
    rows = adapter.parse(shared_data / "ucf101", adapter.make_params({"require_videos": "false"})).records.to_pylist()
    # the hint names exactly the folds the records carry
    assert {k for r in rows for k, _ in r["folds"]} == {"split1", "split2", "split3"} and adapter.fold_hint == "split1..split3"
    assert adapter.fold_request("split3") == {"split": 3} and adapter.fold_request("other") == {}
    assert get_adapter("mhad").fold_request("subject") == {} and get_adapter("mhad").fold_hint.startswith("subject")

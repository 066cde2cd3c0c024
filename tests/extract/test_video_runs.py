"""``extract video`` runs: outputs keyed by their inputs, and file names that are not UTF-8.

The command-line tests run the installed entry point in its own process, with the file names as raw
bytes in ``argv`` (as a shell passes ``$'caf\\xe9.avi'``); ``extract video`` starts no Prefect flow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from storage.layout import extraction_cache_dir
from tasks.common import text_of
from tasks.extract.plan import BackendSpec, plan_dataset, plan_videos
from tasks.extract.worker import extract_shard, write_run_manifest
from tasks.video.sampling import SamplingSpec
from tests.extract.doubles import BLOB
from tests.video.fakes import write_video

REPO = Path(__file__).resolve().parents[2]
POSEPIPE = os.fsencode(Path(sys.executable).parent / "posepipe")


def _named(folder: Path, name: bytes, frames: int, people: int = 1) -> bytes:
    """Write a real video, then give it the raw file name ``name`` (bytes, maybe not UTF-8)."""
    tmp = write_video(folder / "tmp.avi", frames, people=people)
    target = os.fsencode(folder) + b"/" + name
    os.rename(os.fsencode(tmp), target)
    return target


def _cli(*args: bytes | str, root: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    argv = [POSEPIPE, b"extract", b"video", *(os.fsencode(a) for a in args), b"--backend", BLOB.encode(), b"--root",
            os.fsencode(root)]  # fmt: skip
    return subprocess.run(argv, env=env, capture_output=True, timeout=300, cwd=REPO)


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "keypoints" / "videos").iterdir())


def _rows_by_clip(run_dir: Path) -> dict[str, int]:
    table = pq.read_table(run_dir / "part-00000.parquet")
    return {r["clip_id"]: r["frame_index_count"] for r in table.group_by("clip_id").aggregate([("frame_index", "count")]).to_pylist()}


def test_non_utf8_names_are_extracted_with_the_good_videos(tmp_path: Path) -> None:
    """#45: before, the whole run died with UnicodeEncodeError and the good video was lost."""
    videos = tmp_path / "videos"
    latin1 = _named(videos, b"caf\xe9_latin1.avi", 6)
    ff = _named(videos, b"\xff\xfeclip.avi", 5, people=2)
    good = write_video(videos / "good.avi", 8)
    data = write_video(videos / "full.avi", 30).read_bytes()
    cut = os.fsencode(videos) + b"/cut_\xe9.avi"
    Path(os.fsdecode(cut)).write_bytes(data[: len(data) // 2])
    files = [os.fsdecode(latin1), os.fsdecode(ff), str(good), os.fsdecode(cut)]
    plan = plan_videos(files, str(tmp_path / "root"), BackendSpec.create(BLOB), SamplingSpec())
    summary = extract_shard(plan.shard)
    manifest = write_run_manifest(plan.run_dir, [summary], plan.request)
    assert (summary.extracted, summary.rejected) == (3, {"video_truncated": 1})
    run_dir = Path(plan.run_dir)
    assert _rows_by_clip(run_dir) == {"caf\\xe9_latin1": 6, "\\xff\\xfeclip": 10, "good": 8}
    clips = {r["clip_id"]: r["video_path"] for r in pq.read_table(run_dir / "clips-00000.parquet").to_pylist()}
    assert clips["caf\\xe9_latin1"].endswith("/caf\\xe9_latin1.avi")
    (reject,) = pq.read_table(run_dir / "rejects-00000.parquet").to_pylist()
    assert reject["source_key"] == "cut_\\xe9" and "cut_\\xe9.avi" in reject["detail"]
    # the exact name bytes come back from the manifest, byte for byte
    by_id = {e["clip_id"]: e for e in manifest["request"]["inputs"]}
    assert bytes.fromhex(by_id["caf\\xe9_latin1"]["path_bytes_hex"]) == latin1
    assert bytes.fromhex(by_id["\\xff\\xfeclip"]["path_bytes_hex"]) == ff
    assert "path_bytes_hex" not in by_id["good"]
    json.loads((run_dir / "_manifest.json").read_text())  # valid JSON for any reader


def test_text_of_keeps_valid_text_and_escapes_name_bytes() -> None:
    assert text_of("café.avi") == "café.avi"
    assert text_of(os.fsdecode(b"caf\xe9.avi")) == "caf\\xe9.avi"
    assert text_of("\ud800x") == "\\ud800x"  # a surrogate that is no escaped byte


def test_cli_extracts_the_good_video_next_to_a_latin1_name(tmp_path: Path) -> None:
    """#45 as reported: ``posepipe extract video $'caf\\xe9_latin1.avi' good.avi``."""
    latin1 = _named(tmp_path / "v", b"caf\xe9_latin1.avi", 6)
    good = write_video(tmp_path / "v" / "good.avi", 8)
    res = _cli(latin1, str(good), root=tmp_path / "root")
    assert res.returncode == 0, (res.stdout + res.stderr).decode(errors="replace")
    assert b"Traceback" not in res.stderr
    (run_dir,) = _run_dirs(tmp_path / "root")
    assert _rows_by_clip(run_dir) == {"caf\\xe9_latin1": 6, "good": 8}


def test_each_set_of_videos_gets_its_own_folder_and_reruns_reuse_it(tmp_path: Path) -> None:
    """2t': before, both runs wrote keypoints/videos/<backend+sampling key>, the second replacing the first."""
    a = write_video(tmp_path / "v" / "arm_wrestling.avi", 9)
    b = write_video(tmp_path / "v" / "video.avi", 7, people=2)
    root = tmp_path / "root"
    assert _cli(str(a), root=root).returncode == 0
    (dir_a,) = _run_dirs(root)
    before = {name: (dir_a / name).read_bytes() for name in ("part-00000.parquet", "clips-00000.parquet", "_manifest.json")}
    assert _cli(str(b), root=root).returncode == 0
    dirs = _run_dirs(root)
    assert len(dirs) == 2
    (dir_b,) = [d for d in dirs if d != dir_a]
    assert _rows_by_clip(dir_a) == {"arm_wrestling": 9} and _rows_by_clip(dir_b) == {"video": 14}
    again = _cli(str(a), root=root)
    assert again.returncode == 0 and os.fsencode(dir_a) in again.stdout
    assert _run_dirs(root) == dirs
    assert {name: (dir_a / name).read_bytes() for name in before} == before
    # the same content under another backend option is another folder
    other = plan_videos([str(a)], str(root), BackendSpec.create(BLOB, batch=2), SamplingSpec())
    assert Path(other.run_dir) not in dirs


def test_a_run_reuses_clips_any_earlier_run_extracted(tmp_path: Path) -> None:
    a = write_video(tmp_path / "v" / "a.avi", 9)
    b = write_video(tmp_path / "v" / "b.avi", 7)
    root, backend, sampling = str(tmp_path / "root"), BackendSpec.create(BLOB), SamplingSpec()
    first = plan_videos([str(a)], root, backend, sampling)
    extract_shard(first.shard)
    both = plan_videos([str(b), str(a)], root, backend, sampling)
    assert both.run_dir != first.run_dir and both.shard.cache_dir == extraction_cache_dir(root)
    summary = extract_shard(both.shard)
    assert (summary.resumed, summary.extracted) == (1, 2)
    assert _rows_by_clip(Path(both.run_dir)) == {"a": 9, "b": 7}
    # a changed video under the same name is another input: another folder
    write_video(tmp_path / "v" / "a.avi", 4)
    assert plan_videos([str(a)], root, backend, sampling).run_dir != first.run_dir


def test_dataset_runs_of_other_folds_get_their_own_folders(tmp_path: Path) -> None:
    """Same clobbering for ``extract clips``: the run key had no fold, part or source in it."""
    from tasks.datasets.mhad import MHADParams, sequence_dir
    from tests.video.fakes import write_frame_folder

    p = MHADParams()
    write_frame_folder(tmp_path / "src" / sequence_dir(p, 1, 1, 1), "img_l01_c01_s01_a01_r01_{:05d}.pgm", 3)
    write_frame_folder(tmp_path / "src" / sequence_dir(p, 8, 11, 2), "img_l01_c01_s08_a11_r02_{:05d}.pgm", 4)
    root, backend, sampling = str(tmp_path / "root"), BackendSpec.create(BLOB), SamplingSpec()
    plans = {part: plan_dataset("mhad", tmp_path / "src", root, backend, sampling, fold="subject", part=part, shard_size=50)
             for part in ("train", "test")}  # fmt: skip
    assert plans["train"].run_dir != plans["test"].run_dir
    for plan in plans.values():
        extract_shard(plan.shards[0])
    sides = {part: pq.read_table(f"{plan.run_dir}/clips-00000.parquet")["clip_id"].to_pylist() for part, plan in plans.items()}
    assert sides == {"train": ["camera_cluster01_cam01_s01_a01_r01"], "test": ["camera_cluster01_cam01_s08_a11_r02"]}
    again = plan_dataset("mhad", tmp_path / "src", root, backend, sampling, fold="subject", part="test", shard_size=50)
    assert again.run_dir == plans["test"].run_dir and extract_shard(again.shards[0]).resumed == 1


def test_extract_clips_planning_survives_a_non_utf8_name(tmp_path: Path) -> None:
    """``extract clips ucf11`` on a folder holding a Latin-1 name: the reject row of that name used to
    fail the whole parse (``SchemaError ... surrogates not allowed``); now it is a reject, the rest extracted."""
    src = tmp_path / "ucf11"
    src.mkdir()
    (src / "classInd.txt").write_text("basketball\nwalking")
    write_video(src / "UCF11_updated_mpg/basketball/v_shooting_01/v_shooting_01_01.mpg", 4, fourcc="PIM1")
    _named(src / "UCF11_updated_mpg/walking/v_walk_dog_01", b"v_walk_dog_01_02\xe9.mpg", 4)
    plan = plan_dataset("ucf11", src, str(tmp_path / "root"), BackendSpec.create(BLOB), SamplingSpec(), shard_size=50)
    assert (plan.clips, plan.rejected_at_parse) == (1, 1)
    assert extract_shard(plan.shards[0]).extracted == 1
    from tasks.datasets import get_adapter

    adapter = get_adapter("ucf11")
    (reject,) = adapter.parse(src, adapter.make_params({})).rejects.to_pylist()
    assert "v_walk_dog_01_02" in reject["detail"] and reject["reason"] == "malformed_annotation"


def test_reject_rows_store_any_name() -> None:
    from schemas.errors import RejectReason
    from tasks.datasets.base import Reject, rejects_table

    name = os.fsdecode(b"caf\xe9.avi")
    (row,) = rejects_table([Reject(name, RejectReason.VIDEO_MISSING, f"no video at {name}")]).to_pylist()
    assert row["source_key"] == "caf\\xe9.avi" and row["detail"] == "no video at caf\\xe9.avi"


def test_kill_minus_9_mid_video_run_then_rerun_gives_the_clean_bytes(tmp_path: Path) -> None:
    """#43 with the shared clip cache: markers in ``{root}/keypoints/_cache``, resume from them."""
    import pickle
    import signal
    import time

    files = [str(write_video(tmp_path / "v" / f"v{i}.avi", 8 + i, people=i % 3)) for i in range(5)]
    slow = BackendSpec.create(BLOB, sleep_s=0.03)
    plan = plan_videos(files, str(tmp_path / "root"), slow, SamplingSpec())
    script = "import pickle, sys; from tasks.extract.worker import extract_shard; extract_shard(pickle.loads(sys.stdin.buffer.read()))"
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdin is not None
    proc.stdin.write(pickle.dumps(plan.shard))
    proc.stdin.close()
    done = Path(extraction_cache_dir(str(tmp_path / "root"))) / "_done"
    deadline = time.monotonic() + 120
    while len(list(done.glob("*.json"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "worker ended before the kill"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(done.glob("*.json")))
    assert 2 <= finished < 5 and not (Path(plan.run_dir) / "part-00000.parquet").exists()
    again = plan_videos(files, str(tmp_path / "root"), slow, SamplingSpec())
    assert again.run_dir == plan.run_dir
    summary = extract_shard(again.shard)
    assert (summary.resumed, summary.extracted) == (finished, 5)
    clean = plan_videos(files, str(tmp_path / "clean"), slow, SamplingSpec())
    extract_shard(clean.shard)
    for name in ("part-00000.parquet", "clips-00000.parquet"):
        assert (Path(plan.run_dir) / name).read_bytes() == (Path(clean.run_dir) / name).read_bytes()

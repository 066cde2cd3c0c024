"""``posepipe extract clips``: any clip dataset, one fold side, through Prefect and a real LocalCluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import flows.extract  # noqa: F401  (Prefect sets up its log handlers at import: not inside CliRunner's temporary streams)
from flows.cli import _register_commands, app
from tests.extract.doubles import BLOB
from tests.video.fakes import write_video

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
_register_commands()


@pytest.fixture()
def fake_ucf11(tmp_path: Path) -> Path:
    src = tmp_path / "ucf11"
    (src / "classInd.txt").parent.mkdir(parents=True)
    (src / "classInd.txt").write_text("basketball\nwalking")
    for rel, people in [("basketball/v_shooting_01/v_shooting_01_01.mpg", 1), ("walking/v_walk_dog_01/v_walk_dog_01_02.mpg", 2),
                        ("walking/v_walk_dog_25/v_walk_dog_25_01.mpg", 2)]:  # fmt: skip
        write_video(src / "UCF11_updated_mpg" / rel, num_frames=4, people=people, fourcc="PIM1")  # MPEG-1, as UCF11
    return src


@pytest.mark.slow
def test_extract_one_side_of_a_ucf11_fold(fake_ucf11: Path, tmp_path: Path) -> None:
    """As a user runs it: the installed entry point in its own process (its own ephemeral Prefect API)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING", DO_NOT_TRACK="1")
    env.pop("PREFECT_API_URL", None)
    root = tmp_path / "root"
    args = [str(Path(sys.executable).parent / "posepipe"), "extract", "clips", "ucf11", "--source", str(fake_ucf11), "--fold", "logo01",
            "--part", "train", "--backend", BLOB, "--root", str(root), "--workers", "1", "--sample", "every_k", "--k", "2"]  # fmt: skip
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 clips in 1 shards" in res.stdout
    (run_dir,) = (root / "keypoints" / "ucf11").iterdir()
    manifest = json.loads((run_dir / "_manifest.json").read_text())
    # logo01 tests on group 01: its training side is the group-25 clip, nothing from group 01
    clips = pq.read_table(run_dir / "clips-00000.parquet").column("clip_id").to_pylist()
    assert clips == ["v_walk_dog_25_01"] and manifest["totals"]["extracted"] == 1
    assert manifest["request"]["fold"] == "logo01" and manifest["request"]["part"] == "train"
    assert pq.read_table(run_dir / "part-00000.parquet").num_rows == 2 * 2  # frames 0 and 2, two squares each


def test_extract_clips_says_what_is_wrong(fake_ucf11: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["extract", "clips", "ucf11", "--source", str(fake_ucf11), "--part", "test", "--root", str(tmp_path)])
    assert res.exit_code != 0 and "--fold" in str(res.exception)
    res = runner.invoke(app, ["extract", "clips", "coco", "--source", str(tmp_path), "--root", str(tmp_path)])
    assert res.exit_code != 0 and "extract images" in str(res.exception)
    res = runner.invoke(app, ["extract", "clips", "ucf11", "--source", str(fake_ucf11), "--fold", "nope", "--root", str(tmp_path)])
    assert res.exit_code != 0 and "nope" in str(res.exception)


@pytest.mark.slow
def test_deployment_flow_reads_settings_from_the_environment(prefect_harness, fake_ucf11: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.extract import scheduled_extract

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("POSEPIPE_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("POSEPIPE_WORKERS", "1")
    manifest = scheduled_extract(dataset="ucf11", source=str(fake_ucf11), fold="logo25", part="test", backend=BLOB, sampling={"mode": "every_k", "k": 3})
    assert manifest["totals"]["clips"] == 1 and manifest["totals"]["extracted"] == 1  # v_walk_dog_25_01 alone
    (run_dir,) = (tmp_path / "root" / "keypoints" / "ucf11").iterdir()
    assert pq.read_table(run_dir / "part-00000.parquet").num_rows == 2 * 2  # frames 0 and 3, two people each

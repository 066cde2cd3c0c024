"""A new user's first hour on the CLI: ``--version``, ``parse`` of clip datasets, errors without
tracebacks, ``ls`` (terminal width, creation time, source, sample ids) and ``show`` (title, legend,
``--scale``).

Commands that run no flow use Typer's CliRunner; the entry point (exit codes, stderr) and the
terminal width are checked in real subprocesses.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import _register_commands, app, domain_error
from schemas.errors import ConfigError, SourceError, VersionNotFoundError
from tasks.datasets.mhad import MHADParams, sequence_dir
from tasks.inspect import load_sample, render_sample
from tasks.synthetic import write_synthetic_coco
from tests.helpers import build_version
from tests.video.fakes import write_frame_folder, write_video

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
_register_commands()


def _cli(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real entry point (``flows.cli.main``) in a fresh process."""
    return subprocess.run(
        [sys.executable, "-c", "from flows.cli import main; main()", *args],
        capture_output=True, text=True, timeout=180, cwd=cwd or REPO, env={**os.environ, **(env or {})},
    )  # fmt: skip


def _ok(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


# --- row 2: --version --------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_option_prints_the_package_version(flag: str) -> None:
    result = _ok([flag])
    try:
        import posepipe  # type: ignore[import-not-found, unused-ignore]

        expected = posepipe.__version__
    except (ImportError, AttributeError):
        expected = importlib.metadata.version("posepipe")
    assert result.stdout == f"posepipe {expected}\n"


# --- row 2k: parse on clip datasets --------------------------------------------------------------


def test_parse_real_ucf101_lists_sorts_clips_by_clip_id(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ucf101.parquet"
    result = _ok(["parse", "ucf101", "--source", str(shared_data / "ucf101"), "--out", str(out), "-p", "require_videos=false"])
    assert "parsed 13320, written 13320 clips" in result.stdout
    table = pq.read_table(out)
    ids = table.column("clip_id").to_pylist()
    assert len(ids) == 13320 and ids == sorted(ids) and len(set(ids)) == 13320
    rows = table.to_pylist()
    assert Counter(dict(r["folds"])["split1"] for r in rows) == {"train": 9537, "test": 3783}  # the published split 1
    assert pq.read_table(tmp_path / "ucf101.rejects.parquet").num_rows == 0


def test_parse_real_ucf101_without_videos_rejects_every_clip(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    result = _ok(["parse", "ucf101", "--source", str(shared_data / "ucf101"), "--out", str(out)])
    assert "written 0 clips" in result.stdout and "rejected 13320" in result.stdout
    assert pq.read_table(out).num_rows == 0
    assert Counter(pq.read_table(tmp_path / "r.rejects.parquet").column("reason").to_pylist()) == {"video_missing": 13320}


def test_parse_real_ucf11_listfile(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ucf11.parquet"
    _ok(["parse", "ucf11", "--source", str(shared_data / "ucf11"), "--out", str(out), "-p", "clip_list=listfile", "-p", "require_videos=false"])
    table = pq.read_table(out)
    ids = table.column("clip_id").to_pylist()
    assert ids == sorted(ids)
    per_class = Counter(table.column("label").to_pylist())
    assert per_class == {"basketball": 141, "biking": 145, "diving": 156, "golf_swing": 142, "horse_riding": 198,
                         "soccer_juggling": 156, "swing": 137, "tennis_swing": 167, "trampoline_jumping": 119,
                         "volleyball_spiking": 116, "walking": 123}  # fmt: skip


def test_parse_generated_ucf11_videos_and_mhad_frames(tmp_path: Path) -> None:
    ucf = tmp_path / "ucf11"
    ucf.mkdir()
    (ucf / "classInd.txt").write_text("basketball\nwalking")
    for rel in ["walking/v_walk_dog_25/v_walk_dog_25_01.mpg", "basketball/v_shooting_02/v_shooting_02_01.mpg",
                "basketball/v_shooting_01/v_shooting_01_01.mpg"]:  # fmt: skip
        write_video(ucf / "UCF11_updated_mpg" / rel, num_frames=2, fourcc="MJPG")
    _ok(["parse", "ucf11", "--source", str(ucf), "--out", str(tmp_path / "u.parquet")])
    assert pq.read_table(tmp_path / "u.parquet").column("clip_id").to_pylist() == ["v_shooting_01_01", "v_shooting_02_01", "v_walk_dog_25_01"]

    mhad = tmp_path / "mhad"
    p = MHADParams()
    write_frame_folder(mhad / sequence_dir(p, 8, 11, 2), "img_l01_c01_s08_a11_r02_{:05d}.pgm", 2)
    write_frame_folder(mhad / sequence_dir(p, 1, 1, 1), "img_l01_c01_s01_a01_r01_{:05d}.pgm", 2)
    result = _ok(["parse", "mhad", "--source", str(mhad), "--out", str(tmp_path / "m.parquet")])
    assert "parsed 660, written 2 clips" in result.stdout
    assert pq.read_table(tmp_path / "m.parquet").column("clip_id").to_pylist() == [
        "camera_cluster01_cam01_s01_a01_r01", "camera_cluster01_cam01_s08_a11_r02",
    ]  # fmt: skip


# --- domain errors reach main() and print no traceback --------------------------------------------


def test_domain_error_is_found_behind_causes_and_groups_but_not_behind_context() -> None:
    inner = SourceError("no annotations in /x", hint="pass --source DIR")
    try:
        try:
            raise inner
        except SourceError as exc:
            raise RuntimeError("task run failed") from exc
    except RuntimeError as wrapped:
        assert domain_error(wrapped) is inner
    group = BaseExceptionGroup("runs", [ValueError("other"), RuntimeError("run")])
    group.exceptions[1].__cause__ = inner
    assert domain_error(group) is inner
    try:
        try:
            raise inner
        except SourceError:
            raise KeyError("a bug while handling it") from None
    except KeyError as bug:
        assert domain_error(bug) is None  # a bug stays a bug


def _script_cli(tmp_path: Path, body: str) -> Path:
    """A script adding one real command to the real app, run through ``flows.cli.main``."""
    script = tmp_path / "cli_script.py"
    script.write_text(
        "import sys\nfrom flows import cli\nfrom schemas.errors import SourceError\n" + body
        + "\nsys.argv = ['posepipe', 'go']\ncli.main()\n"
    )  # fmt: skip
    return script


def test_wrapped_domain_error_prints_two_lines_and_exits_2(tmp_path: Path) -> None:
    script = _script_cli(tmp_path, (
        "@cli.app.command('go')\n"
        "def go() -> None:\n"
        "    try:\n"
        "        raise SourceError('no annotations in /nowhere', hint='pass --source DIR')\n"
        "    except SourceError as exc:\n"
        "        raise RuntimeError('Task run encountered an exception') from exc\n"
    ))  # fmt: skip
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "error: no annotations in /nowhere\nhint: pass --source DIR\n"


def test_non_domain_errors_keep_their_traceback(tmp_path: Path) -> None:
    script = _script_cli(tmp_path, "@cli.app.command('go')\ndef go() -> None:\n    raise KeyError('bug')\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "KeyError: 'bug'" in proc.stderr


def test_domain_error_raised_in_a_prefect_task_reaches_main(prefect_harness: None, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    script = _script_cli(tmp_path, (
        "from prefect import flow, task\n"
        "@task\n"
        "def parse_task() -> None:\n"
        "    raise SourceError('no annotations in /nowhere', hint='pass --source DIR')\n"
        "@flow\n"
        "def run() -> None:\n"
        "    parse_task.submit().result()\n"
        "@cli.app.command('go')\n"
        "def go() -> None:\n"
        "    run()\n"
    ))  # fmt: skip
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-2:] == ["error: no annotations in /nowhere", "hint: pass --source DIR"]
    # Prefect's engine still logs the failure (one line, with the message), but no traceback, and
    # the entry point adds none of its own
    assert "Traceback" not in proc.stderr and any("no annotations in /nowhere" in line for line in lines[:-2])


# --- rows 2l and 2m: ls and show -------------------------------------------------------------------


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A committed synthetic COCO version (plain functions, no orchestrator)."""
    base = tmp_path_factory.mktemp("firsthour")
    src = write_synthetic_coco(base / "a-rather-long-source-folder-name" / "coco", {"train": 3, "val": 2}, seed=3)
    root = base / "root"
    summary = build_version(str(root), str(src))
    return {"root": root, "source": src, "summary": summary, "vdir": Path(summary["location"])}


def test_ls_fits_80_columns_and_shows_creation_time_and_source(version: dict[str, Any]) -> None:
    proc = _cli(["ls", "--root", str(version["root"])], env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, proc.stdout
    text = proc.stdout
    assert version["summary"]["version"] + " *" in text  # never cut: the id is copyable
    run = json.loads((version["vdir"] / "_run.json").read_text())
    created = run.get("created_at") or run["finished_at"]
    assert f"{created[:10]} {created[11:16]}" in text
    # the source path is all there, folded over lines if it is wider than the terminal
    assert str(version["source"]) in "".join(line.strip().removeprefix("source ") for line in lines if line.strip())
    wide = _cli(["ls", "--root", str(version["root"])], env={"COLUMNS": "200"})
    assert f"source {version['source']}" in wide.stdout


def test_ls_reads_creation_time_and_source_with_fallbacks(tmp_path: Path) -> None:
    src = write_synthetic_coco(tmp_path / "src", {"val": 2}, seed=4)
    root = tmp_path / "root"
    vdir = Path(build_version(str(root), str(src))["location"])
    manifest_path, run_path = vdir / "_manifest.json", vdir / "_run.json"
    manifest = json.loads(manifest_path.read_text())

    def listed() -> dict[str, Any]:
        (row,) = json.loads(_ok(["ls", "coco", "--root", str(root), "--json"]).stdout)
        return row

    # a version committed before the manifest had the fields: the run record's, then "?"
    old = {k: v for k, v in manifest.items() if k not in ("created_at", "source")}
    manifest_path.write_text(json.dumps(old))
    run_path.write_text(json.dumps({"finished_at": "2026-01-02T03:04:05Z"}))
    assert (listed()["created_at"], listed()["source"]) == ("2026-01-02T03:04:05Z", "?")
    run_path.write_text(json.dumps({"created_at": "2026-01-02T03:00:00Z", "finished_at": "2026-01-02T03:04:05Z", "source": "/data/in"}))
    assert (listed()["created_at"], listed()["source"]) == ("2026-01-02T03:00:00Z", "/data/in")
    run_path.unlink()
    assert (listed()["created_at"], listed()["source"]) == (None, "?")
    text = _ok(["ls", "--root", str(root)]).stdout
    assert "source ?" in text and "  ?  passed" in text
    # the manifest's own fields win over the run record
    manifest_path.write_text(json.dumps({**old, "created_at": "2026-03-04T05:06:07Z", "source": "/data/manifest"}))
    run_path.write_text(json.dumps({"finished_at": "2026-01-02T03:04:05Z", "source": "/data/in"}))
    assert (listed()["created_at"], listed()["source"]) == ("2026-03-04T05:06:07Z", "/data/manifest")
    assert "2026-03-04 05:06" in _ok(["ls", "--root", str(root)]).stdout


def test_ls_on_a_missing_root_says_so(tmp_path: Path) -> None:
    proc = _cli(["ls", "--root", str(tmp_path / "nope")])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: storage root {tmp_path / 'nope'} does not exist",
        "hint: pass the --root a rebuild wrote to (or set POSEPIPE_ROOT); `posepipe rebuild NAME --root DIR` creates one",
    ]


def test_ls_of_a_dataset_with_no_version_names_the_ones_there(version: dict[str, Any]) -> None:
    result = runner.invoke(app, ["ls", "lsp", "--root", str(version["root"])])
    assert isinstance(result.exception, VersionNotFoundError)
    assert "datasets there: coco" in result.exception.hint


def test_ls_samples_lists_a_versions_sample_ids(version: dict[str, Any]) -> None:
    manifest = json.loads((version["vdir"] / "_manifest.json").read_text())
    every: list[str] = []
    for shard in manifest["shards"]:
        every += pq.read_table(version["vdir"] / shard["parquet"]).column("sample_id").to_pylist()
    root = str(version["root"])
    result = _ok(["ls", "coco", "--root", root, "--samples"])
    assert result.stdout.splitlines() == every and f"{len(every)} of {len(every)} sample ids" in result.stderr
    val = [i for shard in manifest["shards"] if shard["split"] == "val"
           for i in pq.read_table(version["vdir"] / shard["parquet"]).column("sample_id").to_pylist()]  # fmt: skip
    out = json.loads(_ok(["ls", "coco", "--root", root, "--samples", "--split", "val", "--limit", "2", "--json"]).stdout)
    assert out == {"dataset": "coco", "split": "val", "total": len(val), "sample_ids": val[:2]}
    bad = runner.invoke(app, ["ls", "coco", "--root", root, "--samples", "--split", "test"])
    assert isinstance(bad.exception, VersionNotFoundError) and "splits there: train, val" in bad.exception.hint
    assert isinstance(runner.invoke(app, ["ls", "--root", root, "--samples"]).exception, ConfigError)


def test_show_unknown_sample_points_at_a_command_that_lists_them(version: dict[str, Any], tmp_path: Path) -> None:
    root = str(version["root"])
    result = runner.invoke(app, ["show", "coco", "--sample", "nope", "--out", str(tmp_path / "x.png"), "--root", root])
    assert isinstance(result.exception, VersionNotFoundError)
    hint = result.exception.hint
    assert "posepipe ls coco --samples" in hint and "parse" not in hint
    command = hint.split("`")[1].split()[1:]  # the hinted command works, and lists the ids show accepts
    ids = _ok(command).stdout.splitlines()
    assert ids and _ok(["show", "coco", "--sample", ids[-1], "--out", str(tmp_path / "y.png"), "--root", root])


def test_show_draws_a_titled_scaled_picture_with_a_legend(version: dict[str, Any], tmp_path: Path) -> None:
    root = str(version["root"])
    sample = "coco-000000000001-1"
    row, pixels = load_sample(root, "coco", sample)
    h, w = pixels.shape[:2]
    pictures = {}
    for scale in (1, 3):
        out = tmp_path / f"s{scale}.png"
        result = _ok(["show", "coco", "--sample", sample, "--out", str(out), "--root", root, "--scale", str(scale)])
        image = cv2.imread(str(out), cv2.IMREAD_COLOR)
        assert image is not None and f"picture {image.shape[1]}x{image.shape[0]}" in result.stdout
        pictures[scale] = image
    one, three = pictures[1], pictures[3]
    assert one.shape[1] == max(w, 360) and three.shape[1] == 3 * w
    assert three.shape[0] - one.shape[0] >= 2 * h  # the crop grew by 3x; title and legend grew a little
    # at scale 1 the crop area is exactly the sample as render_sample draws it, between title and legend
    drawn = render_sample(row, pixels)
    left = (one.shape[1] - w) // 2
    found = [top for top in range(one.shape[0] - h + 1) if np.array_equal(one[top : top + h, left : left + w], drawn)]
    assert len(found) == 1
    title, legend = one[: found[0]], one[found[0] + h :]
    assert title.shape[0] >= 20 and legend.shape[0] >= 20
    assert np.unique(title.reshape(-1, 3), axis=0).shape[0] > 2  # text, not a blank band
    legend_colours = {tuple(int(v) for v in c) for c in np.unique(legend.reshape(-1, 3), axis=0)}
    from tasks.transforms.draw import SIDE_COLOURS_BGR

    assert {SIDE_COLOURS_BGR["left"], SIDE_COLOURS_BGR["right"]} <= legend_colours
    bad = runner.invoke(app, ["show", "coco", "--sample", sample, "--out", str(tmp_path / "z.png"), "--root", root, "--scale", "0"])
    assert isinstance(bad.exception, ConfigError) and not (tmp_path / "z.png").exists()


def test_ls_shows_version_folders_that_were_never_committed(tmp_path: Path) -> None:
    src = write_synthetic_coco(tmp_path / "src", {"val": 2}, seed=5)
    root = tmp_path / "root"
    vdir = Path(build_version(str(root), str(src))["location"])
    (vdir / "_manifest.json").unlink()  # what a rebuild killed before its commit leaves behind
    proc = _cli(["ls", "--root", str(root)], env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stdout.splitlines() if vdir.name in line]
    assert "not committed (failed or running)" in line and len(line) <= 80
    assert json.loads(_ok(["ls", "--root", str(root), "--json"]).stdout) == []  # scripts see committed versions only
    result = runner.invoke(app, ["ls", "coco", "--root", str(root)])
    assert isinstance(result.exception, VersionNotFoundError) and f"1 uncommitted: {vdir.name}" in result.exception.message

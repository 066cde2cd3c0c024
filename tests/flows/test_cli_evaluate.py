"""``posepipe evaluate pckh | flic | coco`` through the real CLI app (CliRunner) and the installed entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from flows import cli
from schemas.errors import EvaluationInputError
from tasks.evaluation.coco_eval import coco_gt_as_results
from tasks.evaluation.metrics import modec_flip_backwards_facing
from tasks.evaluation.readers import read_flic_gt
from tests.evaluation.fakes_eval import write_fake_mpii_gt

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    if not any(g.name == "evaluate" for g in cli.app.registered_groups):
        cli._register_commands()
    return CliRunner()


def _ok(runner: CliRunner, args: list[str]) -> str:
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_pckh_json_reproduces_tompson(runner: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    mat = shared_data / "mpii/pckh_tompson_valid/detections_our_format.mat"
    plot = tmp_path / "pckh.png"
    out = json.loads(_ok(runner, ["evaluate", "pckh", "--gt", str(mat), "--pred", str(mat), "--json", "--plot", str(plot)]))
    assert set(out) == {"units", "pckh@0.5", "pckh@0.1", "auc", "plot"} and out["units"] == "fraction"
    got = {k: round(100 * v, 2) for k, v in out["pckh@0.5"].items()}
    assert got == {"Head": 95.60, "Shoulder": 92.71, "Elbow": 83.36, "Wrist": 76.74, "Hip": 81.93, "Knee": 73.36,
                   "Ankle": 65.45, "Mean": 82.34, "Mean_unweighted": 81.46}  # fmt: skip
    assert round(100 * out["pckh@0.1"]["Mean"], 2) == 28.97
    assert round(100 * out["auc"], 2) == 55.49
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_pckh_table_and_offset_option(runner: CliRunner, tmp_path: Path) -> None:
    fake = write_fake_mpii_gt(tmp_path / "gt.mat", n=4)
    np.save(tmp_path / "zero_based.npy", fake.gt_xy - 1.0)  # as a 0-based model writes them
    table = _ok(runner, ["evaluate", "pckh", "--gt", str(fake.path), "--pred", str(tmp_path / "zero_based.npy"),
                         "--pred-offset-px", "1.0"])  # fmt: skip
    assert "Mean_unweighted" in table and "100.00" in table and "AUC" in table


def test_flic_json_and_plot(runner: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    gt = shared_data / "flic/examples.mat"
    flipped, _ = modec_flip_backwards_facing(read_flic_gt(gt).test_coords_xy)
    scipy.io.savemat(tmp_path / "results.mat", {"pred_coords": np.transpose(flipped[:, :6], (2, 1, 0))})
    plot = tmp_path / "flic.png"
    out = json.loads(_ok(runner, ["evaluate", "flic", "--gt", str(gt), "--pred", str(tmp_path / "results.mat"),
                                  "--json", "--plot", str(plot)]))  # fmt: skip
    assert out == {"units": "fraction", "elbow_auc": 1.0, "wrist_auc": 1.0, "pck@0.2": {"elbow": 1.0, "wrist": 1.0}, "plot": str(plot)}
    assert plot.read_bytes()[:8] == PNG_MAGIC
    np.save(tmp_path / "anatomical.npy", read_flic_gt(gt).test_coords_xy[:, :6])
    table = _ok(runner, ["evaluate", "flic", "--gt", str(gt), "--pred", str(tmp_path / "anatomical.npy")])
    assert "95.28" in table and "48 backwards-facing" in table  # 968 / 1016


def test_coco_json(runner: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    gt = shared_data / "coco/mmpose_tests/test_coco.json"
    dt = tmp_path / "dt.json"
    dt.write_text(json.dumps(coco_gt_as_results(json.loads(gt.read_text()))))
    out = json.loads(_ok(runner, ["evaluate", "coco", "--gt", str(gt), "--dt", str(dt), "--json"]))
    assert out["stats"] == [1.0] * 10
    assert out["AP"] == 1.0 and out["ARl"] == 1.0 and out["units"] == "fraction" and len(out) == 12


def test_coco_bbox_table(runner: CliRunner, shared_data: Path) -> None:
    folder = shared_data / "coco/cocoapi_val2014_first100"
    table = _ok(runner, ["evaluate", "coco", "--gt", str(folder / "instances_val2014_100.json"),
                         "--dt", str(folder / "instances_val2014_fakebbox100_results.json"), "--iou-type", "bbox"])  # fmt: skip
    assert "50.5" in table and "AR100" in table  # percent, as the header says (pycocotools prints 0.505)


def test_domain_error_propagates_from_the_command(runner: CliRunner, tmp_path: Path) -> None:
    fake = write_fake_mpii_gt(tmp_path / "gt.mat", n=3)
    np.save(tmp_path / "p.npy", np.zeros((3, 14, 2)))
    result = runner.invoke(cli.app, ["evaluate", "pckh", "--gt", str(fake.path), "--pred", str(tmp_path / "p.npy")])
    assert isinstance(result.exception, EvaluationInputError)
    assert "expected (3, 16, 2)" in str(result.exception)


def test_entry_point_exits_2_with_a_message(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "nokey.mat", {"something": np.zeros(3)})
    np.save(tmp_path / "p.npy", np.zeros((3, 16, 2)))
    proc = subprocess.run(
        [sys.executable, "-c", "from flows.cli import main; main()", "evaluate", "pckh",
         "--gt", str(tmp_path / "nokey.mat"), "--pred", str(tmp_path / "p.npy")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "nokey.mat' lacks ['pos_gt_src', 'jnt_missing', 'headboxes_src']" in proc.stderr
    assert "hint:" in proc.stderr

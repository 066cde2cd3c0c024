"""``posepipe evaluate``: one unit convention for every ``--json``, tables that say percent,
``evaluate coco --plot``, and every plot's path echoed (CliRunner: no flow runs here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import _register_commands, app
from tasks.evaluation.readers import read_flic_gt
from tests.evaluation.fakes_eval import write_fake_mpii_gt

runner = CliRunner()
_register_commands()


def _run(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _numbers(obj: Any) -> list[float]:
    """Every number in a JSON value (nested dicts and lists)."""
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v)]
    if isinstance(obj, list):
        return [n for v in obj for n in _numbers(v)]
    return [float(obj)] if isinstance(obj, int | float) and not isinstance(obj, bool) else []


@pytest.fixture(scope="module")
def commands(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One real invocation per metric, on the published fixtures."""
    tmp = tmp_path_factory.mktemp("eval")
    mat = shared_data / "mpii/pckh_tompson_valid/detections_our_format.mat"
    flic_gt = shared_data / "flic/examples.mat"
    np.save(tmp / "anatomical.npy", read_flic_gt(flic_gt).test_coords_xy[:, :6])
    bbox = shared_data / "coco/cocoapi_val2014_first100"
    return {
        "pckh": ["evaluate", "pckh", "--gt", str(mat), "--pred", str(mat)],
        "flic": ["evaluate", "flic", "--gt", str(flic_gt), "--pred", str(tmp / "anatomical.npy")],
        "coco": ["evaluate", "coco", "--gt", str(bbox / "instances_val2014_100.json"),
                 "--dt", str(bbox / "instances_val2014_fakebbox100_results.json"), "--iou-type", "bbox"],  # fmt: skip
    }


@pytest.mark.parametrize("metric", ["pckh", "flic", "coco"])
def test_every_json_carries_fractions_and_says_so(commands: dict[str, list[str]], metric: str) -> None:
    out = json.loads(_run([*commands[metric], "--json"]).stdout)
    assert out["units"] == "fraction"
    numbers = _numbers({k: v for k, v in out.items() if k != "units"})
    assert numbers and all(0.0 <= n <= 1.0 or n == -1.0 for n in numbers), out  # -1: COCOeval's "no GT"


def test_json_fractions_reproduce_the_published_numbers(commands: dict[str, list[str]]) -> None:
    pckh = json.loads(_run([*commands["pckh"], "--json"]).stdout)
    assert round(100 * pckh["pckh@0.5"]["Mean"], 2) == 82.34 and round(100 * pckh["pckh@0.5"]["Mean_unweighted"], 2) == 81.46
    assert round(100 * pckh["pckh@0.1"]["Mean"], 2) == 28.97 and round(100 * pckh["auc"], 2) == 55.49
    flic = json.loads(_run([*commands["flic"], "--json"]).stdout)
    assert flic["pck@0.2"]["elbow"] == pytest.approx(968 / 1016)  # 48 backwards-facing GT flipped away
    coco = json.loads(_run([*commands["coco"], "--json"]).stdout)
    assert [round(v, 3) for v in coco["stats"][:6]] == [0.505, 0.697, 0.573, 0.586, 0.519, 0.501]  # cocoapi's printout


def test_tables_show_percent_and_say_so(commands: dict[str, list[str]]) -> None:
    pckh = _run(commands["pckh"]).stdout
    assert "@0.5 (%)" in pckh and "82.34" in pckh and "AUC (%" in pckh and "55.49" in pckh
    flic = _run(commands["flic"]).stdout
    assert "PCK@0.2 (%)" in flic and "AUC (%" in flic and "95.28" in flic
    coco = _run(commands["coco"]).stdout
    assert "value (%)" in coco and "50.5" in coco and "69.7" in coco and "0.505" not in coco


@pytest.mark.parametrize("metric", ["pckh", "flic", "coco"])
def test_every_plot_is_written_real_and_its_path_echoed(commands: dict[str, list[str]], metric: str, tmp_path: Path) -> None:
    plot = tmp_path / f"{metric}.png"
    result = _run([*commands[metric], "--plot", str(plot), "--json"])
    assert f"plot: {plot}" in result.stderr.splitlines()
    assert json.loads(result.stdout)["plot"] == str(plot)
    image = cv2.imread(str(plot), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable PNG"
    h, w = image.shape[:2]
    assert 300 <= h <= 900 and 500 <= w <= 1600  # a figure at 120 dpi, tight-cropped
    assert image.std() > 10 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # curves and text, not a blank canvas


def test_coco_plot_on_keypoints(shared_data: Path, tmp_path: Path) -> None:
    from tasks.evaluation.coco_eval import coco_gt_as_results

    gt = shared_data / "coco/mmpose_tests/test_coco.json"
    dets = coco_gt_as_results(json.loads(gt.read_text()))
    rng = np.random.default_rng(0)
    for det in dets:  # the GT moved by a few pixels, scores shuffled: AP between 0 and 1
        kps = np.asarray(det["keypoints"], dtype=np.float64).reshape(17, 3)
        kps[:, :2] += rng.normal(0, 4, size=(17, 2))
        det["keypoints"], det["score"] = kps.ravel().tolist(), float(rng.random())
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    plot = tmp_path / "kp.svg"
    result = _run(["evaluate", "coco", "--gt", str(gt), "--dt", str(tmp_path / "dt.json"), "--plot", str(plot)])
    assert f"plot: {plot}" in result.stderr
    svg = plot.read_text()
    assert svg.lstrip().startswith("<?xml") and "OKS 0.50" in svg and "precision" in svg and "medium" in svg


def test_plot_with_an_unknown_suffix_is_a_clear_error(commands: dict[str, list[str]], tmp_path: Path) -> None:
    result = runner.invoke(app, [*commands["coco"], "--plot", str(tmp_path / "x.jpg")])
    assert result.exit_code != 0 and "expected one of .png, .svg, .pdf" in str(result.exception)
    assert not (tmp_path / "x.jpg").exists()


def test_pckh_fake_gt_table_still_reads_100_percent(tmp_path: Path) -> None:
    fake = write_fake_mpii_gt(tmp_path / "gt.mat", n=4)
    np.save(tmp_path / "p.npy", fake.gt_xy)
    out = json.loads(_run(["evaluate", "pckh", "--gt", str(fake.path), "--pred", str(tmp_path / "p.npy"), "--json"]).stdout)
    assert out["pckh@0.5"]["Mean"] == pytest.approx(1.0) and out["auc"] <= 1.0

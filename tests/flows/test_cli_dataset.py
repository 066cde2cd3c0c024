"""`posepipe parse | ls | show` and the deployments file (no orchestrator needed)."""

import importlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import _register_commands, app
from tasks.synthetic import write_synthetic_coco
from tests.helpers import build_version

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
_register_commands()


def test_parse_writes_records_and_rejects(shared_data, tmp_path):
    out = tmp_path / "records.parquet"
    res = runner.invoke(app, ["parse", "coco", "--source", str(shared_data / "coco/mmpose_tests/test_coco.json"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert pq.read_table(out).num_rows == 12
    assert pq.read_table(tmp_path / "records.rejects.parquet").column("reason").to_pylist() == ["zero_keypoints"] * 2
    assert "parsed 14, written 12" in res.output


def test_ls_and_show(tmp_path):
    src = write_synthetic_coco(tmp_path / "src", {"val": 2}, seed=2)
    root = str(tmp_path / "root")
    summary = build_version(root, str(src))
    res = runner.invoke(app, ["ls", "coco", "--root", root, "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)
    assert row["version"] == summary["version"] and row["latest"] and row["validation"] == "passed"
    assert row["counts"] == summary["counts"] and row["params"]["crop"]["out_height_px"] == 256
    png = tmp_path / "x.png"
    res = runner.invoke(app, ["show", "coco", "--sample", "coco-000000000001-1", "--out", str(png), "--root", root])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, ["show", "coco", "--sample", "nope", "--out", str(png), "--root", root])
    assert res.exit_code != 0 and "not in coco" in str(res.exception)


def test_bad_parameter_is_a_clear_error(shared_data, tmp_path):
    res = runner.invoke(app, ["parse", "coco", "--source", str(shared_data / "coco/coco_mini_val2017"), "--out", str(tmp_path / "r.parquet"), "-p", "keep_crowds=1"])
    assert res.exit_code != 0 and "accepted: keep_crowd" in str(res.exception.hint)


@pytest.mark.parametrize("deployment", yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"], ids=lambda d: d["name"])
def test_prefect_yaml_deployments_resolve(deployment):
    from prefect import Flow

    path, _, name = deployment["entrypoint"].partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    assert isinstance(flow, Flow)
    flow.validate_parameters(deployment.get("parameters", {}))

"""``posepipe retrain`` exit codes for CI, ``models promote|rollback|champion``, and the Prefect ``retrain`` flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows import cli
from tasks.training import champion as gate
from tests.training.fakes import build_activity_version, write_activity_source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("retrain-cli")
    src = write_activity_source(base / "src", train_per_class=12, valid_per_class=6, seed=2)
    assert build_activity_version(base / "root", src)["validation"] == "passed"
    return str(base / "root")


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    cli._register_commands()
    return CliRunner(env={"COLUMNS": "300"})


def test_retrain_exit_codes_promote_and_rollback(runner: CliRunner, root: str, tmp_path: Path) -> None:
    base = ["retrain", "pose-mlp", "--dataset", "mpii", "--root", root, "--resamples", "200", "--actor", "ci"]
    first = runner.invoke(cli.app, [*base, "-p", "epochs=40", "--json", "--decision-out", str(tmp_path / "d1.json")])
    assert first.exit_code == 0, (first.output, first.exception)
    one = json.loads(first.stdout)
    assert one["decision"]["status"] == "first_model" and one["champion_after"] == one["candidate"]
    assert json.loads((tmp_path / "d1.json").read_text())["status"] == "first_model"

    refused = runner.invoke(cli.app, [*base, "-p", "epochs=1", "-p", "learning_rate=1e-6", "--markdown", str(tmp_path / "d2.md")])
    assert refused.exit_code == gate.EXIT_REFUSED, refused.output
    page = (tmp_path / "d2.md").read_text()
    assert page.startswith("# pose-mlp: refused (exit 3)") and "| macro_f1 | change |" in page and "**no**" in page
    assert "refused" in refused.stdout and "regression" in refused.stdout and "macro_f1" in refused.stdout
    assert gate.read_champion(root, "pose-mlp") == one["candidate"]

    thresholds = tmp_path / "t.json"
    thresholds.write_text(json.dumps({"macro_f1": {"lower_bound": 2.0}}))  # impossible: refused on the bound
    bound = runner.invoke(cli.app, [*base, "-p", "epochs=2", "--thresholds", str(thresholds), "--json"])
    assert bound.exit_code == gate.EXIT_REFUSED and "lower_bound" in json.loads(bound.stdout)["decision"]["reasons"][0]

    candidates = [m["model_version"] for m in json.loads(runner.invoke(cli.app, ["models", "ls", "pose-mlp", "--root", root, "--json"]).stdout)]
    other = next(m for m in candidates if m != one["candidate"])
    moved = runner.invoke(cli.app, ["models", "promote", "pose-mlp", other, "--root", root, "--actor", "ops"])
    assert moved.exit_code == 0 and gate.read_champion(root, "pose-mlp") == other
    back = runner.invoke(cli.app, ["models", "rollback", "pose-mlp", one["candidate"], "--root", root, "--reason", "bad in production"])
    assert back.exit_code == 0 and "(rollback)" in back.stdout
    shown = json.loads(runner.invoke(cli.app, ["models", "champion", "pose-mlp", "--root", root, "--json"]).stdout)
    assert shown["champion"] == one["candidate"] and [h["action"] for h in shown["history"]] == ["promote", "promote", "rollback"]
    assert shown["history"][-1]["reason"] == "bad in production"

    pinned = runner.invoke(cli.app, ["retrain", "pose-mlp", "--dataset", "mpii@v-123", "--root", root])
    assert pinned.exit_code != 0 and "latest validated version" in str(pinned.exception)


def test_retrain_flow_writes_the_decision_artifact(prefect_harness, root: str) -> None:
    from prefect.client.orchestration import get_client

    from flows.retrain import retrain_flow

    result = retrain_flow("pose-mlp", "mpii", root=root, params={"epochs": "40"}, preset="tiny", seed=0, committed_version="v-test")
    assert result["decision"]["status"] in ("first_model", "unchanged", "promoted", "refused", "no_thresholds")
    assert Path(result["decision_path"]).is_file()
    with get_client(sync_client=True) as client:
        artifacts = client.request("POST", "/artifacts/filter", json={"artifacts": {"key": {"any_": ["retrain-pose-mlp"]}}}).json()
    assert artifacts and "candidate" in artifacts[0]["data"] and "| metric | check |" in artifacts[0]["data"]

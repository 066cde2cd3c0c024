"""Retraining through the champion gate on a real generated version (pose-mlp trains in seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tasks.training import champion as gate
from tasks.training.retrain import RetrainRequest, promote, retrain, rollback
from tasks.training.train import TrainRequest
from tests.training.fakes import build_activity_version, write_activity_source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("retrain")
    src = write_activity_source(base / "src", train_per_class=12, valid_per_class=6, seed=1)
    summary = build_activity_version(base / "root", src)
    assert summary["validation"] == "passed"
    return str(base / "root")


def _request(root: str, out: Path | None = None, **params: str) -> RetrainRequest:
    p = {"epochs": "40", **params}
    return RetrainRequest(TrainRequest("pose-mlp", root, "mpii", params=p, seed=0), actor="tester", resamples=300,
                          decision_out=str(out) if out else None)  # fmt: skip


def test_first_model_then_unchanged_then_a_regression_is_refused_then_forced(root: str, tmp_path: Path) -> None:
    first = retrain(_request(root, tmp_path / "first.json"))
    d = first.decision
    assert (d.status, d.promote, first.exit_code) == ("first_model", True, 0)
    assert gate.read_champion(root, "pose-mlp") == first.train.model_version == first.champion_after
    assert first.train.metrics["macro_f1"] > 0.7  # it learned the generated signal
    saved = json.loads((tmp_path / "first.json").read_text())
    assert saved["status"] == "first_model" and Path(first.decision_path).is_file()

    # the same request again: the registered model is reused and nothing changes
    again = retrain(_request(root))
    assert again.train.reused and (again.decision.status, again.exit_code) == ("unchanged", 0)

    # a deliberately degraded candidate (one epoch at a tiny learning rate) is refused: regression, with the interval
    worse = retrain(_request(root, tmp_path / "worse.json", epochs="1", learning_rate="1e-6"))
    d = worse.decision
    assert (d.status, d.promote, worse.exit_code) == ("refused", False, gate.EXIT_REFUSED)
    assert gate.read_champion(root, "pose-mlp") == first.train.model_version  # the alias did not move
    assert d.champion == first.train.model_version and d.champion_metrics is not None
    assert any("macro_f1" in r and "regression" in r for r in d.reasons), d.reasons
    credible = [c for c in d.checks if c.kind == "credible"]
    assert credible and credible[0].interval is not None and credible[0].interval.resamples == 300
    change = next(c for c in d.checks if c.kind == "change")
    assert change.improvement == pytest.approx(d.candidate_metrics["macro_f1"] - d.champion_metrics["macro_f1"])
    assert json.loads((tmp_path / "worse.json").read_text())["exit_code"] == gate.EXIT_REFUSED

    # forced: promoted anyway, and the history says who asked and what the gate had said
    forced = retrain(dataclassesreplace(_request(root, epochs="1", learning_rate="1e-6"), force=True))
    assert (forced.decision.status, forced.decision.gate_status, forced.decision.forced_by) == ("forced", "refused", "tester")
    assert gate.read_champion(root, "pose-mlp") == worse.train.model_version
    last = gate.champion_history(root, "pose-mlp")[-1]
    assert (last["action"], last["actor"], last["from"], last["to"]) == ("force", "tester", first.train.model_version, worse.train.model_version)

    # by hand: roll back to the first model, promote the other again
    rollback(root, "pose-mlp", first.train.model_version, actor="ops")
    assert gate.read_champion(root, "pose-mlp") == first.train.model_version
    promote(root, "pose-mlp", worse.train.model_version)
    assert [h["action"] for h in gate.champion_history(root, "pose-mlp")] == ["promote", "force", "rollback", "promote"]
    from schemas.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not registered"):
        promote(root, "pose-mlp", "m-000000000000")


def dataclassesreplace(request: RetrainRequest, **changes: Any) -> RetrainRequest:
    import dataclasses

    return dataclasses.replace(request, **changes)


def test_no_thresholds_is_a_written_decision_not_a_silent_promotion(root: str) -> None:
    champion = gate.read_champion(root, "pose-mlp")
    if champion is None:  # run alone: make a champion first
        champion = retrain(_request(root)).train.model_version
    other = retrain(dataclassesreplace(_request(root, epochs="2"), thresholds={}))
    assert other.decision.status == "no_thresholds" and not other.decision.promote and other.exit_code == 0
    assert "no thresholds" in other.decision.reasons[0]
    assert gate.read_champion(root, "pose-mlp") == champion

"""The champion gate: thresholds, paired bootstrap, decisions in every case, the alias's compare-and-swap."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from schemas.errors import ChampionMovedError, ConfigError
from tasks.training import champion as C


def test_parse_thresholds_reads_bounds_directions_and_margins() -> None:
    ths = C.parse_thresholds(
        {"rmse_px": {"direction": "lower", "upper_bound": 25, "change": {"relative": 0.0}},
         "macro_f1": {"lower_bound": 0.5, "change": {"absolute": -0.01, "credible": False}}}
    )
    assert [t.metric for t in ths] == ["macro_f1", "rmse_px"]
    assert ths[0] == C.Threshold("macro_f1", "higher", 0.5, None, -0.01, None, False)
    assert ths[1] == C.Threshold("rmse_px", "lower", None, 25.0, None, 0.0, True)
    assert C.parse_thresholds(None) == []


@pytest.mark.parametrize(
    "config, match",
    [
        ({"f1": {"lower": 0.5}}, "unknown keys"),
        ({"f1": {"direction": "up"}}, "direction"),
        ({"f1": {"lower_bound": "high"}}, "must be a number"),
        ({"f1": {"change": {"abs": 1}}}, "change must be a mapping"),
        ({"f1": {"lower_bound": float("nan")}}, "NaN"),
    ],
)
def test_parse_thresholds_refuses_mistakes(config: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        C.parse_thresholds(config)


def test_bounds_are_nan_safe() -> None:
    th = C.Threshold("pck", lower_bound=0.5)
    assert [c.passed for c in C.check_bounds(th, 0.6)] == [True]
    assert [c.passed for c in C.check_bounds(th, 0.4)] == [False]
    nan = C.check_bounds(th, math.nan)
    assert not nan[0].passed and "NaN" in nan[0].reason
    assert not C.check_bounds(th, None)[0].passed
    low = C.Threshold("rmse_px", direction="lower", upper_bound=10.0)
    assert [c.passed for c in C.check_bounds(low, 9.0)] == [True]
    assert [c.passed for c in C.check_bounds(low, 11.0)] == [False]


def test_change_with_a_negative_absolute_margin_means_not_worse_than() -> None:
    th = C.Threshold("macro_f1", change_abs=-0.01, credible=False)
    assert C.check_change(th, 0.795, 0.80)[0].passed  # 0.005 worse: within the margin
    worse = C.check_change(th, 0.78, 0.80)[0]
    assert not worse.passed and worse.improvement == pytest.approx(-0.02) and worse.required == -0.01
    assert "regression" in worse.reason


def test_change_for_lower_is_better_metrics_flips_the_sign() -> None:
    th = C.Threshold("rmse_px", direction="lower", change_rel=-0.05, credible=False)
    ok = C.check_change(th, 10.4, 10.0)[0]  # 4 % worse, allowed 5 %
    assert ok.passed and ok.improvement == pytest.approx(-0.4) and ok.required == pytest.approx(-0.5)
    assert not C.check_change(th, 10.6, 10.0)[0].passed


def test_relative_change_against_a_zero_baseline_is_defined_by_its_limit() -> None:
    strict = C.Threshold("ap", change_rel=0.1, credible=False)
    assert C.check_change(strict, 0.01, 0.0)[0].passed  # any improvement on 0 is +inf relative
    assert not C.check_change(strict, 0.0, 0.0)[0].passed  # 0 relative change < 10 %
    lenient = C.Threshold("ap", change_rel=-0.1, credible=False)
    assert C.check_change(lenient, 0.0, 0.0)[0].passed
    assert not C.check_change(lenient, -0.01, 0.0)[0].passed  # a regression from 0 is -inf


def test_change_refuses_nan_on_either_side() -> None:
    th = C.Threshold("pck", change_abs=0.0, credible=False)
    assert "candidate" in C.check_change(th, math.nan, 0.5)[0].reason
    assert not C.check_change(th, 0.5, math.nan)[0].passed


def test_paired_bootstrap_of_a_mean_metric() -> None:
    cand = np.array([1, 1, 1, 0] * 50, dtype=float)
    champ = np.array([1, 0, 1, 0] * 50, dtype=float)
    iv = C.paired_bootstrap(C.mean_metric(cand, champ), 200, resamples=400, seed=1)
    assert iv.improvement == pytest.approx(0.25)
    assert 0.15 < iv.low < 0.25 < iv.high < 0.35
    same = C.paired_bootstrap(C.mean_metric(cand, cand), 200, resamples=50)
    assert (same.low, same.high) == (0.0, 0.0)
    again = C.paired_bootstrap(C.mean_metric(cand, champ), 200, resamples=400, seed=1)
    assert again == iv  # seeded: the decision is reproducible
    lower = C.paired_bootstrap(C.mean_metric(champ, cand), 200, direction="lower", resamples=100)
    assert lower.improvement == pytest.approx(0.25)  # lower is better: the champion's 0.75 vs 0.5


def test_credible_check_needs_the_interval_to_clear_the_margin() -> None:
    th = C.Threshold("acc", change_abs=0.0)
    champ = np.array([0.0] * 30 + [1.0] * 30)
    cand = champ.copy()
    cand[:4] = 1.0  # better on 4 samples, worse on 3: a hair better, the interval straddles 0
    cand[30:33] = 0.0
    iv = C.paired_bootstrap(C.mean_metric(cand, champ), 60, resamples=500)
    change, cred = C.check_change(th, cand.mean(), champ.mean(), iv)
    assert change.passed and change.improvement == pytest.approx(1 / 60)
    assert not cred.passed and cred.interval == iv and "does not clear" in cred.reason
    assert not C.check_change(th, 0.9, 0.5, None)[1].passed  # no interval: not credible


def test_decision_in_every_case() -> None:
    ths = C.parse_thresholds({"acc": {"lower_bound": 0.5, "change": {"absolute": -0.01, "credible": False}}})
    first = C.decide("t", "m-b", {"acc": 0.7}, ths)
    assert (first.status, first.promote, first.exit_code) == ("first_model", True, 0)
    low_first = C.decide("t", "m-b", {"acc": 0.4}, ths)
    assert (low_first.status, low_first.promote, low_first.exit_code) == ("refused", False, C.EXIT_REFUSED)
    none = C.decide("t", "m-b", {"acc": 0.9}, [], champion="m-a", champion_metrics={"acc": 0.5})
    assert (none.status, none.promote, none.exit_code) == ("no_thresholds", False, 0)
    assert "no thresholds" in none.reasons[0]
    up = C.decide("t", "m-b", {"acc": 0.80}, ths, champion="m-a", champion_metrics={"acc": 0.805})
    assert (up.status, up.promote) == ("promoted", True)
    down = C.decide("t", "m-b", {"acc": 0.70}, ths, champion="m-a", champion_metrics={"acc": 0.80})
    assert (down.status, down.promote, down.exit_code) == ("refused", False, C.EXIT_REFUSED)
    assert "regression" in down.reasons[0] and "-0.1" in down.reasons[0]
    forced = C.decide("t", "m-b", {"acc": 0.70}, ths, champion="m-a", champion_metrics={"acc": 0.80}, force=True, actor="ci-bot")
    assert (forced.status, forced.promote, forced.forced_by, forced.gate_status) == ("forced", True, "ci-bot", "refused")
    same = C.decide("t", "m-a", {"acc": 0.80}, ths, champion="m-a", champion_metrics={"acc": 0.80})
    assert (same.status, same.promote, same.exit_code) == ("unchanged", False, 0)


def test_decision_json_is_valid_json_with_nan(tmp_path: Path) -> None:
    ths = C.parse_thresholds({"acc": {"change": {"absolute": 0.0}}})
    d = C.decide("t", "m-b", {"acc": math.nan}, ths, champion="m-a", champion_metrics={"acc": 0.5})
    C.write_decision(str(tmp_path / "decision.json"), d)
    data = json.loads((tmp_path / "decision.json").read_text())
    assert data["status"] == "refused" and data["candidate_metrics"]["acc"] == "nan" and data["exit_code"] == C.EXIT_REFUSED


def test_move_champion_is_compare_and_swap_with_history(tmp_path: Path) -> None:
    root = str(tmp_path)
    assert C.read_champion(root, "t") is None
    C.move_champion(root, "t", None, "m-a", reason="first", actor="me")
    C.move_champion(root, "t", "m-a", "m-b", reason="better", actor="me")
    with pytest.raises(ChampionMovedError, match="now m-b, not m-a") as err:
        C.move_champion(root, "t", "m-a", "m-c")
    assert (err.value.expected, err.value.current) == ("m-a", "m-b")
    assert C.read_champion(root, "t") == "m-b"
    C.move_champion(root, "t", "m-b", "m-a", action="rollback", reason="bad in production")
    hist = C.champion_history(root, "t")
    assert [(h["from"], h["to"], h["action"]) for h in hist] == [(None, "m-a", "promote"), ("m-a", "m-b", "promote"), ("m-b", "m-a", "rollback")]
    assert hist[0]["actor"] == "me"


def _race(root: str, new: str, barrier: mp.synchronize.Barrier, out: mp.Queue) -> None:  # type: ignore[name-defined]
    expected = C.read_champion(root, "t")  # both read the same champion, then both try to move it
    barrier.wait()
    try:
        C.move_champion(root, "t", expected, new)
        out.put((new, "promoted"))
    except ChampionMovedError as exc:
        out.put((new, f"refused: {exc.current}"))


def test_two_processes_racing_for_the_alias_cannot_both_promote(tmp_path: Path) -> None:
    root = str(tmp_path)
    C.move_champion(root, "t", None, "m-a")
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(root, name, barrier, out)) for name in ("m-b", "m-c")]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert sorted(v.split(":")[0] for v in results.values()) == ["promoted", "refused"]
    winner = next(k for k, v in results.items() if v == "promoted")
    loser = next(k for k, v in results.items() if v != "promoted")
    assert C.read_champion(root, "t") == winner and results[loser] == f"refused: {winner}"
    assert [h["to"] for h in C.champion_history(root, "t")] == ["m-a", winner]

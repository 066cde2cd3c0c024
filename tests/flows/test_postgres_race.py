"""Two retrains racing for one champion on a Prefect server backed by PostgreSQL, as a team running
nightly rebuilds and CI retrains at once would.

Every part is a real process on 127.0.0.1: a throwaway PostgreSQL cluster (Debian's binaries,
``initdb`` + ``postgres``), ``prefect server start`` on it, ``prefect deploy --all`` from prefect.yaml,
a process worker. A first ``retrain-on-demand`` run makes a weak ``pose-mlp`` champion; then two runs
of the same deployment (seeds 1 and 2, both far better than it) start together. The alias lock is
the race's barrier: the test holds it until the server has logs from *both* runs waiting on it
(Prefect ships the ``filelock`` logger's debug lines through a logging config), so both have read
the same champion and both gates said "promoted"; then it lets go. Exactly one compare-and-swap
wins, the other's decision is "refused" naming the winner, both decisions are read back as
artifacts through the API, and the alias history has one move after the first champion.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.flows.servers import Postgres, PrefectStack, api_post, postgres_cluster, prefect_server, wait_until
from tests.training.fakes import build_activity_version, write_activity_source

pytestmark = pytest.mark.slow
TASK = "pose-mlp"
if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason="no PostgreSQL server binaries: `make test-deps` installs Debian's postgresql")]


def _logging_config(path: Path) -> Path:
    """Prefect's default logging config plus the ``filelock`` logger at DEBUG into the API handler."""
    import prefect.logging

    config = yaml.safe_load((Path(prefect.logging.__file__).parent / "logging.yml").read_text())
    config["loggers"]["filelock"] = {"level": "DEBUG", "handlers": ["api"], "propagate": False}
    path.write_text(yaml.safe_dump(config))
    return path


def _waiting_on_alias(stack: PrefectStack, run_id: str) -> bool:
    """Whether the server holds a log line of ``run_id`` waiting for the champion alias lock."""
    logs = api_post(stack.api, "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_DESC", "limit": 200})
    return any(".champion.lock" in log["message"] and "not acquired" in log["message"] for log in logs)


def _rows(pg: Postgres, sql: str) -> list[str]:
    res = subprocess.run([str(pg.bin / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "-d", "prefect", "-Atc", sql],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_two_retrains_race_for_the_champion_on_a_postgres_backed_server(tmp_path: Path) -> None:
    from filelock import FileLock

    from storage.layout import model_dir
    from tasks.training import champion as gate

    src = write_activity_source(tmp_path / "src", train_per_class=12, valid_per_class=6, seed=2)
    root = tmp_path / "root"
    assert build_activity_version(root, src)["validation"] == "passed"
    base = {"task_name": TASK, "dataset": "mpii", "root": str(root), "preset": "tiny"}

    with postgres_cluster() as pg:
        pg.createdb("prefect")
        env = {"PREFECT_API_DATABASE_CONNECTION_URL": pg.url("prefect"), "PREFECT_LOGGING_SETTINGS_PATH": str(_logging_config(tmp_path / "logging.yml")),
               "POSEPIPE_WORKERS": "1"}  # fmt: skip
        with prefect_server(tmp_path, **env) as stack:
            assert "retrain-on-demand" in stack.deploy_all()
            stack.start_worker()

            # the champion both racers will beat: one epoch at a learning rate that learns nothing
            first_id = stack.run_deployment("retrain/retrain-on-demand", {**base, "seed": 0, "params": {"epochs": "1", "learning_rate": "1e-6"}, "actor": "seed"})
            first = stack.wait_final(first_id, 300)
            assert first["state_type"] == "COMPLETED", first
            weak = gate.read_champion(str(root), TASK)
            assert weak is not None

            lock = FileLock(str(Path(model_dir(str(root), TASK)) / ".champion.lock"))
            lock.acquire(timeout=10)
            try:
                ids = {actor: stack.run_deployment("retrain/retrain-on-demand", {**base, "seed": seed, "params": {"epochs": "40"}, "actor": actor})
                       for actor, seed in (("nightly", 1), ("ci", 2))}  # fmt: skip
                for run_id in ids.values():  # both have decided against the weak champion and wait for the alias
                    wait_until(f"run {run_id} waiting on the alias lock", lambda r=run_id: _waiting_on_alias(stack, r), 240, 0.5, (stack.server,))
            finally:
                lock.release()
            runs = {actor: stack.wait_final(run_id, 120) for actor, run_id in ids.items()}
            assert all(r["state_type"] == "COMPLETED" for r in runs.values()), runs

            # both decisions, through the API: the markdown artifacts each run wrote
            pages = {}
            for actor, run_id in ids.items():
                (artifact,) = [a for a in stack.artifact("retrain-pose-mlp") if a["flow_run_id"] == run_id]
                pages[actor] = artifact["data"]
            flow_runs = _rows(pg, "select count(*) from flow_run")
            artifacts_in_pg = _rows(pg, "select count(*) from artifact where key = 'retrain-pose-mlp'")

    decisions = [json.loads(p.read_text()) for p in sorted((root / "models" / TASK / "_decisions").glob("*.json"))]
    by_candidate = {d["candidate"]: d for d in decisions if d["candidate"] != weak}
    assert len(decisions) == 3 and len(by_candidate) == 2, [d["status"] for d in decisions]
    winner = gate.read_champion(str(root), TASK)
    assert winner in by_candidate, (winner, list(by_candidate))
    (loser,) = [c for c in by_candidate if c != winner]
    won, lost = by_candidate[winner], by_candidate[loser]
    assert won["status"] == "promoted" and won["champion"] == weak, won["reasons"]
    # the loser compared against the same weak champion, its gate said promoted, the alias had moved
    assert lost["status"] == "refused" and lost["gate_status"] == "promoted" and lost["champion"] == weak and not lost["promote"], lost
    assert lost["reasons"][0] == f"not promoted: the champion moved to {winner} while this run compared against {weak}"
    assert lost["exit_code"] == gate.EXIT_REFUSED and won["exit_code"] == gate.EXIT_OK

    assert sorted(p.split("\n", 1)[0] for p in pages.values()) == ["# pose-mlp: promoted (exit 0)", "# pose-mlp: refused (exit 3)"], pages
    loser_page = next(p for p in pages.values() if p.startswith("# pose-mlp: refused"))
    assert f"the champion moved to {winner}" in loser_page and f"champion before `{weak}`, after `{winner}`" in loser_page
    history = gate.champion_history(str(root), TASK)
    assert [(h["from"], h["to"], h["action"]) for h in history] == [(None, weak, "promote"), (weak, winner, "promote")], history
    (winning_actor,) = [actor for actor, page in pages.items() if page.startswith("# pose-mlp: promoted")]
    assert f"candidate `{winner}`" in pages[winning_actor] and history[1]["actor"] == winning_actor, history
    # the server really stored its state in PostgreSQL
    assert int(flow_runs[0]) >= 3 and int(artifacts_in_pg[0]) == 3

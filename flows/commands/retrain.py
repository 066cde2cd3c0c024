"""``posepipe retrain`` and ``posepipe models promote|rollback``: the champion gate from the command line.

Wiring only: :func:`tasks.training.retrain.retrain` does the work in this process. The exit code is
the decision's: 0 when the candidate was promoted or nothing changed (including "no thresholds"),
3 when the gate refused it (a regression or a bound not met), 2 for a domain error (nothing
trained or decided), so CI can tell "refused" from "broken".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flows.commands._options import RootOpt, parse_kv
from flows.commands.train import (
    EpochsOpt,
    JsonOpt,
    PresetOpt,
    SeedOpt,
    TaskArg,
    TaskParamOpt,
    _fmt,
    models_app,
    print_progress,
)
from schemas.errors import ConfigError
from schemas.settings import Settings


def _thresholds(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--thresholds {path}: {exc}", hint='a JSON object {"metric": {"lower_bound": x, "change": {"absolute": m}}}') from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--thresholds {path} must hold a JSON object of metric -> threshold")
    return data


def decision_table(result: dict[str, Any]) -> Table:
    """The decision's checks as a table (metric, check, candidate, champion, improvement, required, interval, pass)."""
    d = result["decision"]
    table = Table(title=f"{result['task']}: {d['status']} (exit {result['exit_code']})", caption=f"decision: {result['decision_path']}")
    for col in ("metric", "check", "candidate", "champion", "improvement", "required", "interval", "pass"):
        table.add_column(col, justify="right" if col not in ("metric", "check") else "left")
    for c in d["checks"]:
        iv = c.get("interval")
        interval = f"[{float(iv['low']):+.3g}, {float(iv['high']):+.3g}]" if iv else ""
        table.add_row(c["metric"], c["kind"], _fmt(c.get("value")), _fmt(c.get("baseline")), _fmt(c.get("improvement")), _fmt(c.get("required")), interval,
                      "yes" if c["passed"] else "NO")  # fmt: skip
    return table


def retrain(
    task: TaskArg,
    dataset: Annotated[str, typer.Option("--dataset", help="dataset NAME (its LATEST validated version is used)")],
    root: RootOpt = None,
    task_param: TaskParamOpt = None,
    preset: PresetOpt = "tiny",
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
    force: Annotated[bool, typer.Option("--force", help="promote whatever the gate says (recorded with --actor)")] = False,
    actor: Annotated[str | None, typer.Option("--actor", help="who asks (default $GITHUB_ACTOR or the login name)")] = None,
    thresholds: Annotated[Path | None, typer.Option("--thresholds", help="JSON file of the gate's thresholds (default: the task's)")] = None,
    decision_out: Annotated[Path | None, typer.Option("--decision-out", help="also write decision.json here (a CI artifact)")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="write the decision as markdown here (a PR/commit comment, a job summary)")] = None,
    resamples: Annotated[int, typer.Option("--resamples", min=50, help="paired bootstrap resamples")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Train on the latest validated version, compare with the champion re-scored on the same data, decide, promote.

    Exit code 0: promoted or unchanged; 3: refused by the gate; 2: an error (nothing decided).
    """
    from tasks.training.retrain import RetrainRequest
    from tasks.training.retrain import retrain as run_retrain
    from tasks.training.train import TrainRequest

    settings = Settings(**({"root": root} if root else {}))
    if "@" in dataset:
        raise ConfigError(f"retrain always takes the latest validated version; --dataset {dataset} names one", hint=f"posepipe train {task} --dataset {dataset} trains on that version")
    request = RetrainRequest(
        TrainRequest(task, settings.root, dataset, None, parse_kv(task_param), preset, epochs, settings.seed if seed is None else seed),
        force=force,
        actor=actor,
        thresholds=_thresholds(thresholds),
        resamples=resamples,
        decision_out=str(decision_out) if decision_out else None,
    )
    result = run_retrain(request, print_progress).to_dict()
    if markdown is not None:
        from storage.fs import filesystem, write_bytes_atomic
        from tasks.training.retrain import decision_markdown

        fs, path = filesystem(str(markdown))
        write_bytes_atomic(fs, path, (decision_markdown(result) + "\n").encode())
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        console = Console()
        console.print(decision_table(result))
        for reason in result["decision"]["reasons"]:
            console.print(f"- {reason}")
    raise typer.Exit(result["exit_code"])


@models_app.command("promote")
def models_promote(
    task: Annotated[str, typer.Argument(help="training task")],
    model_version: Annotated[str, typer.Argument(help="registered model version (m-...)")],
    root: RootOpt = None,
    actor: Annotated[str | None, typer.Option("--actor", help="who moves the alias")] = None,
    reason: Annotated[str, typer.Option("--reason", help="recorded in the alias history")] = "promoted by hand",
) -> None:
    """Point the task's champion at a registered model (compare-and-swap; recorded in the alias history)."""
    from tasks.training.retrain import promote

    settings = Settings(**({"root": root} if root else {}))
    entry = promote(settings.root, task, model_version, actor, reason)
    typer.echo(f"{task}: champion {entry['from']} -> {entry['to']}")


@models_app.command("rollback")
def models_rollback(
    task: Annotated[str, typer.Argument(help="training task")],
    model_version: Annotated[str, typer.Argument(help="registered model version to go back to (m-...)")],
    root: RootOpt = None,
    actor: Annotated[str | None, typer.Option("--actor", help="who moves the alias")] = None,
    reason: Annotated[str, typer.Option("--reason", help="recorded in the alias history")] = "rolled back by hand",
) -> None:
    """Move the task's champion back to an earlier registered model (recorded as a rollback)."""
    from tasks.training.retrain import rollback

    settings = Settings(**({"root": root} if root else {}))
    entry = rollback(settings.root, task, model_version, actor, reason)
    typer.echo(f"{task}: champion {entry['from']} -> {entry['to']} (rollback)")


@models_app.command("champion")
def models_champion(
    task: Annotated[str, typer.Argument(help="training task")],
    root: RootOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The task's current champion and how the alias moved (oldest first)."""
    from tasks.training.champion import champion_history, read_champion

    settings = Settings(**({"root": root} if root else {}))
    current, history = read_champion(settings.root, task), champion_history(settings.root, task)
    if as_json:
        typer.echo(json.dumps({"task": task, "champion": current, "history": history}, indent=2))
        return
    typer.echo(f"{task}: champion {current or '(none)'}")
    for h in history:
        typer.echo(f"  {h['at']}  {h['action']:<8} {h['from'] or '-'} -> {h['to']}  by {h['actor']}: {h['reason']}")


def register(app: typer.Typer) -> None:
    """Add ``retrain`` (the ``models promote|rollback|champion`` commands join the ``models`` group)."""
    app.command("retrain")(retrain)

"""``posepipe train | models ls|show|compare | evaluate model | predict``: training runs and the registry.

Wiring only: the run is :func:`tasks.training.train.train` (in this process: TensorFlow is imported
by the commands that need it, never at CLI start), the registry is :mod:`tasks.training.registry`.
Per-epoch progress goes to stderr, so ``--json`` keeps stdout one JSON object; domain errors reach
``flows.cli.main``, which prints ``error:``/``hint:`` and exits with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flows.commands._options import RootOpt, parse_kv
from schemas.errors import ConfigError
from schemas.settings import Settings

models_app = typer.Typer(name="models", help="Registered models: list, show lineage and metrics, compare two.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]
# the options `posepipe train` and `posepipe retrain` share (same names, same help)
TaskArg = Annotated[str, typer.Argument(help="training task: pose-heatmap, flic-regression, mpii-activity, pose-mlp, action-gru, action-lstm, skeleton-cnn")]
TaskParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="task parameter key=value, repeatable")]
PresetOpt = Annotated[str, typer.Option("--preset", help="tiny (CPU, seconds per epoch) or full")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", min=1, help="epochs (default: the preset's)")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="run seed [env POSEPIPE_SEED]")]
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _root(root: str | None) -> str:
    return Settings(**({"root": root} if root else {})).root


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_epoch(event: dict[str, Any]) -> str:
    """``epoch 2/5  12 steps  3.41 steps/s  loss 0.01234  pck 0.45  (3.5 s)``."""
    skip = {"event", "epoch", "epochs", "steps", "seconds", "steps_per_s", "loss"}
    parts = [f"epoch {event['epoch']}/{event['epochs']}", f"{event.get('steps')} steps", f"{_fmt(event.get('steps_per_s'))} steps/s", f"loss {_fmt(event.get('loss'))}"]
    parts += [f"{k} {_fmt(v)}" for k, v in event.items() if k not in skip]
    return "  ".join(parts) + f"  ({_fmt(event.get('seconds'))} s)"


def print_progress(event: dict[str, Any]) -> None:
    """The CLI's progress callback: one line per event on stderr."""
    kind = event.get("event")
    if kind == "start":
        resumed = f", resuming after epoch {event['resumed_from_epoch']}" if event.get("resumed_from_epoch") else ""
        line = f"training {event['task']} {event['model_version']} on {event['dataset']} {event['dataset_version']}: {event['epochs']} epochs{resumed}"
    elif kind == "epoch_start":
        line = f"epoch {event['epoch']} started ({event.get('steps') or '?'} steps)"
    elif kind == "epoch":
        line = format_epoch(event)
    elif kind == "reused":
        line = f"reusing registered model {event['model_version']} ({event['dir']}): nothing to train"
    else:
        return
    typer.echo(line, err=True)


def _metrics_table(title: str, metrics: dict[str, Any], caption: str = "") -> Table:
    from tasks.training.registry import flat_metrics

    table = Table(title=title, caption=caption or None)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in flat_metrics(metrics).items():
        table.add_row(name, _fmt(value))
    return table


def train(
    task: TaskArg,
    dataset: Annotated[str, typer.Option("--dataset", help="NAME or NAME@VERSION (default LATEST)")],
    root: RootOpt = None,
    task_param: TaskParamOpt = None,
    preset: PresetOpt = "tiny",
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
    weights: Annotated[Path | None, typer.Option("--weights", help="initial weights .h5 (e.g. ImageNet VGG16); nothing is downloaded")] = None,
    all_folds: Annotated[bool, typer.Option("--all-folds", help="sequence tasks: one model per fold, then a mean/std summary JSON")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a model on a validated dataset version and register it (reused when already registered;
    resumed from the last epoch checkpoint after a kill)."""
    from storage.reader import parse_dataset_ref
    from tasks.training.train import TrainRequest
    from tasks.training.train import train as run_train

    settings = Settings(**({"root": root} if root else {}))
    name, version = parse_dataset_ref(dataset)
    request = TrainRequest(task, settings.root, name, version, parse_kv(task_param), preset, epochs, settings.seed if seed is None else seed, str(weights) if weights else None)
    if all_folds:
        from tasks.training.action import train_all_folds

        summary = train_all_folds(request, print_progress)
        if as_json:
            typer.echo(json.dumps(summary, indent=2, sort_keys=True, default=str))
            return
        for fold, values in summary["folds"].items():
            typer.echo(f"{fold}: top1 {values['top1']:.4f}  macro_f1 {values['macro_f1']:.4f}  ({task}@{summary['models'][fold]})")
        typer.echo(f"mean over {summary['num_folds']} folds: top1 {summary['top1']['mean']:.4f} ± {summary['top1']['std']:.4f}, "
                   f"macro_f1 {summary['macro_f1']['mean']:.4f} ± {summary['macro_f1']['std']:.4f}; {summary['path']}")  # fmt: skip
        return
    result = run_train(request, print_progress)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
        return
    state = "reused" if result.reused else (f"resumed after epoch {result.resumed_from_epoch}" if result.resumed_from_epoch else "trained")
    Console().print(_metrics_table(f"{result.task}@{result.model_version} ({state})", result.metrics, f"{result.dataset} {result.dataset_version}; {result.dir}"))


@models_app.command("ls")
def models_ls(task: Annotated[str | None, typer.Argument(help="task (default: all)")] = None, root: RootOpt = None, as_json: JsonOpt = False) -> None:
    """Registered models, oldest first: version, dataset version, epochs, seed, end time, metrics."""
    from tasks.training.registry import list_models

    path = _root(root)
    rows = [r.summary() for r in list_models(path, task)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    if not rows:
        typer.echo(f"no registered models under {path}" + (f" for {task}" if task else ""))
        typer.echo(f"hint: `posepipe train {task or 'TASK'} --dataset NAME --root {path}` trains one", err=True)
        return
    table = Table(title=f"models under {path} (times UTC)")
    for col in ("model", "dataset", "epochs", "seed", "ended", "metrics"):
        table.add_column(col, overflow="fold")
    for r in rows:
        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in r["metrics"].items())
        table.add_row(f"{r['task']}@{r['model_version']}", f"{r['dataset']}@{r['dataset_version']}", _fmt(r["epochs"]), _fmt(r["seed"]), r["end_time_utc"], metrics)
    Console().print(table)


@models_app.command("show")
def models_show(ref: Annotated[str, typer.Argument(help="TASK or TASK@MODEL_VERSION (TASK: the latest)")], root: RootOpt = None, as_json: JsonOpt = False) -> None:
    """One model's lineage (data, code, params, seed, libraries, times, hardware) and metrics."""
    from tasks.training.registry import show

    shown = show(_root(root), ref)
    if as_json:
        typer.echo(json.dumps(shown, indent=2, sort_keys=True))
        return
    lin = shown["lineage"]
    ds = lin.get("dataset", {})
    table = Table(title=shown["ref"], show_header=False)
    table.add_column("item")
    table.add_column("value", overflow="fold")
    validation = ds.get("validation", {})
    rows = [
        ("folder", shown["dir"]),
        ("dataset", f"{ds.get('name')}@{ds.get('version')} (train {ds.get('train_split')}, eval {ds.get('eval_split')})"),
        ("manifest sha256", ds.get("manifest_sha256")),
        ("validation", "passed" if validation.get("success") else f"FAILED {validation.get('failures')}"),
        ("code version", lin.get("code_version")),
        ("epochs / seed", f"{lin.get('epochs')} / {lin.get('seed')}"),
        ("params", json.dumps(lin.get("params"), sort_keys=True)),
        ("weights", json.dumps(lin.get("weights"))),
        ("parent model", json.dumps(lin.get("parent_model"))),
        ("libraries", ", ".join(f"{k} {v}" for k, v in (lin.get("libraries") or {}).items())),
        ("hardware", json.dumps(lin.get("hardware"), sort_keys=True)),
        ("time (UTC)", f"{lin.get('start_time_utc')} -> {lin.get('end_time_utc')}"),
        ("plots", ", ".join(lin.get("plots") or [])),
    ]
    for k, v in rows:
        table.add_row(k, _fmt(v))
    console = Console()
    console.print(table)
    console.print(_metrics_table("metrics", shown["metrics"]))


@models_app.command("compare")
def models_compare(
    a: Annotated[str, typer.Argument(help="model A: TASK[@VERSION]")],
    b: Annotated[str, typer.Argument(help="model B: TASK[@VERSION]")],
    root: RootOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Metric by metric: A, B and the delta B - A."""
    from tasks.training.registry import compare

    table_data = compare(_root(root), a, b)
    if as_json:
        typer.echo(json.dumps(table_data, indent=2, sort_keys=True))
        return
    table = Table(title=f"B - A: A = {table_data['a']} ({table_data['a_dataset']}), B = {table_data['b']} ({table_data['b_dataset']})")
    table.add_column("metric")
    for col in ("A", "B", "delta"):
        table.add_column(col, justify="right")
    for row in table_data["rows"]:
        delta = row["delta"]
        table.add_row(row["metric"], _fmt(row["a"]), _fmt(row["b"]), "-" if delta is None else f"{delta:+.4g}")
    Console().print(table)


def evaluate_model(
    ref: Annotated[str, typer.Argument(help="TASK or TASK@MODEL_VERSION")],
    dataset: Annotated[str | None, typer.Option("--dataset", help="NAME@VERSION to predict on (default: recompute from the stored predictions)")] = None,
    root: RootOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="folder for the evaluation files (COCO results JSON, PCKh file)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A registered model's metrics: recomputed from its stored predictions, or on another version."""
    from tasks.training.train import evaluate_registered

    result = evaluate_registered(_root(root), ref, dataset, str(out) if out else None)
    if as_json:
        typer.echo(json.dumps({"units": "fraction", **result}, indent=2, sort_keys=True, default=str))
        return
    caption = f"{result['source']}; {result['dataset']}@{result['dataset_version']} split {result['split']}"
    Console().print(_metrics_table(f"{result['model']}", result["metrics"], caption))


def _image_paths(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in _IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"--images {p} does not exist", hint="give image files or folders of images")
    if not out:
        raise ConfigError("no images found", hint=f"--images takes files or folders with {', '.join(_IMAGE_SUFFIXES)} files")
    return out


def predict(
    ref: Annotated[str, typer.Argument(help="TASK or TASK@MODEL_VERSION (pose tasks)")],
    images: Annotated[list[Path], typer.Option("--images", help="image files or folders, repeatable")],
    out: Annotated[Path, typer.Option("--out", help="folder for the drawn images and predictions.json")],
    root: RootOpt = None,
) -> None:
    """Draw a registered pose model's predicted keypoints on images (each image centre-cropped to the
    model's input aspect ratio and resized, as the model's training crops were)."""
    from tasks.training.train import predict_images

    written = predict_images(_root(root), ref, _image_paths(images), out)
    for path in written:
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add ``train``, ``predict``, the ``models`` group and ``evaluate model`` to the CLI."""
    from flows.commands.evaluate import evaluate_app

    app.command("train")(train)
    app.command("predict")(predict)
    app.add_typer(models_app, name="models")
    evaluate_app.command("model")(evaluate_model)

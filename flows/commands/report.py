"""``posepipe report DATASET[@VERSION]`` and ``posepipe report model TASK[@VERSION]``: static HTML cards.

Wiring only: :mod:`tasks.report` collects, renders and writes the page (no server, no JavaScript,
images embedded), by default inside the version folder (``_report/index.html``) or the model folder
(``report/index.html``); the path written is printed. Domain errors reach ``flows.cli.main``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.commands._options import RootOpt
from schemas.errors import ConfigError
from schemas.settings import Settings

OutOpt = Annotated[
    str | None, typer.Option("--out", help="HTML file to write (default: inside the version or model folder)")
]


def report(
    target: Annotated[
        str, typer.Argument(metavar="DATASET[@VERSION] | model", help="a dataset (default version: LATEST), or `model`")
    ],
    model_ref: Annotated[
        str | None,
        typer.Argument(metavar="[TASK[@VERSION]]", help="after `model`: the training task (default: its latest model)"),
    ] = None,
    root: RootOpt = None,
    out: OutOpt = None,
) -> None:
    """Write a dataset card (source, counts, rejects, validation, samples) or a model card (lineage, metrics, curves, decision)."""
    from tasks.report import write_dataset_report, write_model_report

    settings = Settings(**({"root": root} if root else {}))
    if target == "model":
        if not model_ref:
            raise ConfigError(
                "`posepipe report model` needs a TASK[@VERSION]",
                hint="e.g. `posepipe report model pose-heatmap`; `posepipe models ls` lists them",
            )
        path = write_model_report(settings.root, model_ref, out)
    else:
        if model_ref is not None:
            raise ConfigError(
                f"unexpected argument {model_ref!r} after the dataset {target!r}",
                hint="`posepipe report DATASET[@VERSION]` or `posepipe report model TASK[@VERSION]`",
            )
        path = write_dataset_report(settings.root, target, out)
    typer.echo(path)


def register(app: typer.Typer) -> None:
    """Add ``report`` to the CLI."""
    app.command("report")(report)

"""``posepipe export pyskl NAME[@VERSION] --out FILE.pkl``: wiring only (the work is :mod:`tasks.sequences.pyskl`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from schemas.errors import ConfigError
from schemas.settings import Settings

export_app = typer.Typer(help="Export a dataset version in another tool's format.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``export`` command group."""
    app.add_typer(export_app, name="export")


@export_app.command("pyskl")
def export_pyskl(
    ref: Annotated[str, typer.Argument(help="NAME-keypoints[@VERSION] (default LATEST)")],
    out: Annotated[Path, typer.Option(help="PYSKL / MMAction2 annotation pickle to write")],
    root: Annotated[str | None, typer.Option(help="storage root [env POSEPIPE_ROOT]")] = None,
) -> None:
    """Write a sequence dataset as PYSKL's skeleton annotation pickle (split lists + per-clip keypoints)."""
    from tasks.sequences.pyskl import write_pyskl

    name, sep, version = ref.partition("@")
    if not name or (sep and not version):
        raise ConfigError(f"bad dataset reference {ref!r}", hint="write NAME or NAME@VERSION, e.g. ucf101-keypoints@v-0123456789ab")
    settings = Settings(**({"root": root} if root else {}))
    done = write_pyskl(settings.root, name, str(out), version or None)
    splits = ", ".join(f"{k} {n}" for k, n in done["splits"].items())
    typer.echo(f"{name}@{done['version']}: {done['clips']} clips ({splits}) -> {out}")

"""The ``posepipe`` command line. Settings are built here, at the entry point, never at import."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import typer

from schemas.errors import PosepipeError

app = typer.Typer(
    name="posepipe",
    help="Validated, versioned pose/action datasets; keypoint extraction; training and evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _quiet_environment() -> None:
    """No network here: telemetry off before Prefect or GX are imported (DESIGN.md pitfalls)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # the LocalCluster's scheduler and nannies live in this process: their INFO chatter (worker
    # registered, nanny closing...) buried the summary; warnings and errors still show
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


_registered = False


def _register_commands() -> None:
    """Add every ``flows/commands/*.py`` module's commands to ``app`` (once per process)."""
    global _registered
    if _registered:
        return
    _registered = True
    import flows.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"flows.commands.{info.name}")
        module.register(app)


def main() -> None:
    """Entry point: run the CLI and turn domain errors into one clear message and exit code 2."""
    _quiet_environment()
    _register_commands()
    try:
        app()
    except PosepipeError as exc:
        typer.secho(f"error: {exc.message}", err=True, fg="red")
        if exc.hint:
            typer.secho(f"hint: {exc.hint}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

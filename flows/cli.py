"""The ``posepipe`` command line. Settings are built here, at the entry point, never at import."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
import sys
from typing import Annotated

import typer

from schemas.errors import PosepipeError

app = typer.Typer(
    name="posepipe",
    help="Validated, versioned pose/action datasets; keypoint extraction; evaluation.",
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
    # the first ephemeral server on a fresh machine creates and migrates its database before it
    # answers (~25-40 s on 2 busy cores): Prefect's 20 s default made a fresh `make demo` fail
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # the LocalCluster's scheduler and nannies live in this process: their INFO chatter (worker
    # registered, nanny closing...) buried the summary; warnings and errors still show
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


def package_version() -> str:
    """The installed posepipe version: ``posepipe.__version__``, else the distribution's metadata.

    Returns:
        The version string, e.g. ``"0.1.0"``.
    """
    try:
        import posepipe  # type: ignore[import-not-found, unused-ignore]

        version = getattr(posepipe, "__version__", None)
        if isinstance(version, str) and version:
            return version
    except ImportError:
        pass
    try:
        return importlib.metadata.version("posepipe")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; run `pip install -e .`)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"posepipe {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", help="Print the posepipe version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Validated, versioned pose/action datasets; keypoint extraction; evaluation."""


def domain_error(exc: BaseException) -> PosepipeError | None:
    """The :class:`PosepipeError` behind ``exc``, if any.

    Prefect and Dask may hand an error back wrapped (raised ``from`` it, or inside an exception
    group); this follows explicit causes (``__cause__``) and group members, never the implicit
    ``__context__``, so an unrelated bug raised while handling a domain error still surfaces as a bug.

    Args:
        exc: The exception that reached the entry point.

    Returns:
        The first domain error found (breadth first), or None.
    """
    queue: list[BaseException] = [exc]
    seen: set[int] = set()
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, PosepipeError):
            return current
        if isinstance(current, BaseExceptionGroup):
            queue.extend(current.exceptions)
        if current.__cause__ is not None:
            queue.append(current.__cause__)
    return None


def report_error(exc: PosepipeError) -> None:
    """Print a domain error as ``error:`` / ``hint:`` lines on stderr (never a traceback)."""
    typer.secho(f"error: {exc.message}", err=True, fg="red")
    if exc.hint:
        typer.secho(f"hint: {exc.hint}", err=True)


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
    from flows.runtime import quiet_domain_tracebacks

    quiet_domain_tracebacks()  # any flow a command runs: Prefect logs a domain error's message, not its traceback
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - only domain errors are handled; anything else is re-raised
        error = domain_error(exc)
        if error is None:
            raise
        report_error(error)
        sys.exit(2)


if __name__ == "__main__":
    main()

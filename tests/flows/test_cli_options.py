"""One option style and one way to take adapter params, for every command (no orchestrator needed)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import click
import pytest
import typer

from flows.cli import _register_commands, app
from flows.commands._options import parse_kv
from schemas.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
_register_commands()


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf command under ``group`` by its full name (``extract clips``)."""
    ctx = click.Context(group)
    out: dict[str, Any] = {}
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):  # a group (typer may carry its own click classes)
            out.update(_commands(cmd, f"{prefix}{name} "))
        elif cmd is not None:
            out[f"{prefix}{name}"] = cmd
    return out


def test_parse_kv_keeps_strings_and_names_a_bad_pair() -> None:
    assert parse_kv(None) == {} and parse_kv(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ConfigError, match="'oops' is not key=value"):
        parse_kv(["oops"])
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_kv(["=1"])


def test_every_command_taking_adapter_params_declares_the_same_option() -> None:
    commands = _commands(typer.main.get_command(app))
    with_params = {
        name: next(p for p in cmd.params if p.name == "param")
        for name, cmd in commands.items()
        if any(p.name == "param" for p in cmd.params)
    }
    assert {"rebuild", "parse", "extract clips"} <= set(with_params)
    shapes = {(tuple(p.opts), p.multiple, getattr(p, "help", None)) for p in with_params.values()}
    assert shapes == {(("--param", "-p"), True, "adapter policy key=value, repeatable")}


def test_command_modules_use_annotated_options_only() -> None:
    """No ``= typer.Option(...)`` defaults (the style that needs ``# noqa: B008``) in any command module."""
    for path in sorted((REPO / "flows").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.arguments):
                for default in node.defaults + [d for d in node.kw_defaults if d is not None]:
                    call = default.func if isinstance(default, ast.Call) else None
                    assert not (isinstance(call, ast.Attribute) and call.attr in ("Option", "Argument")), (
                        f"{path.relative_to(REPO)}:{default.lineno} declares an option as a default; use Annotated"
                    )


def test_the_cli_gives_a_fresh_machines_first_prefect_server_time_to_migrate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's 20 s default startup timeout made the first `make demo` on a fresh machine fail."""
    import os

    from flows.cli import _quiet_environment

    # every variable _quiet_environment may set is restored afterwards: left set in this process, the
    # Dask log level it sets silenced a later test's scheduler subprocess
    for key in ("PREFECT_SERVER_ANALYTICS_ENABLED", "GX_ANALYTICS_ENABLED", "DO_NOT_TRACK", "TF_CPP_MIN_LOG_LEVEL",
                "DASK_LOGGING__DISTRIBUTED", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):  # fmt: skip
        monkeypatch.setenv(key, os.environ.get(key, ""))
        if key == "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" or not os.environ[key]:
            monkeypatch.delenv(key)
    _quiet_environment()

    assert int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 120
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "33")
    _quiet_environment()
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "33"  # a user's own setting wins

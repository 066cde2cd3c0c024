"""Options more than one command takes, declared once: adapter params (``-p key=value``), the storage root.

Not a command module (its name starts with ``_``, so :func:`flows.cli._register_commands` skips it).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from schemas.errors import ConfigError

#: ``--param/-p key=value``, repeatable: an adapter's parse policy (the adapter's ``Params`` validate it).
AdapterParamOption = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="adapter policy key=value, repeatable")
]

#: ``--root``: the storage root (default ``POSEPIPE_ROOT``, through :class:`schemas.settings.Settings`).
RootOpt = Annotated[str | None, typer.Option("--root", help="storage root [env POSEPIPE_ROOT]")]


def parse_kv(pairs: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}`` (pydantic coerces the strings).

    Raises:
        ConfigError: If a pair has no ``=`` or no key.
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r} is not key=value")
        out[key.strip()] = value.strip()
    return out

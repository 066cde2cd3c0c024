"""``posepipe fetch NAME``: download, verify and unpack a dataset's sources (no Prefect needed)."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from schemas.errors import ConfigError
from schemas.settings import Settings
from tasks.datasets import get_adapter
from tasks.fetch.archive import ExtractionLimits
from tasks.fetch.registry import load_checksums, registry_path
from tasks.fetch.resolve import FetchResult, fetch_dataset


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(n)


def print_plan(console: Console, dataset: str, checksums_dir: str | None) -> None:
    """Which files the fetch will get, their sizes and whether their checksums are registered."""
    adapter = get_adapter(dataset)
    registry = load_checksums(dataset, checksums_dir)
    table = Table(title=f"{dataset}: {len(adapter.sources)} source(s), registry {registry_path(dataset, checksums_dir)}")
    for col in ("source", "file", "size", "unpack", "required", "sha256"):
        table.add_column(col)
    for s in adapter.sources:
        reg = registry.get(s.url)
        size = reg.size_bytes if reg else s.size_bytes
        sha = (reg.sha256 if reg else s.sha256 or "")[:12] or "[yellow]unregistered[/]"
        unpack = f"{s.extract} → {s.extract_to or '.'}" if s.extract else f"copy → {s.extract_to or '.'}"
        table.add_row(s.name, s.filename, _size(size), unpack, "yes" if s.required else "no", sha)
    console.print(table)


def print_result(console: Console, result: FetchResult) -> None:
    """The end-of-fetch summary."""
    table = Table(title=f"{result.dataset}: source folder {result.source_dir}")
    for col in ("file", "action", "size", "sha256", "verified", "unpacked", "received"):
        table.add_column(col)
    for f in result.files:
        verified = "registered" if f.registered else ("-" if f.action == "skipped" else "[yellow]unverified[/]")
        table.add_row(
            f.filename, f.action, _size(f.size_bytes), (f.sha256 or "")[:12], verified, f.extraction,
            _size(f.transferred_bytes),
        )
    console.print(table)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if result.registry:
        console.print(f"checksums recorded in {result.registry}")
    console.print(
        f"{len(result.downloaded)} downloaded, {len(result.reused)} reused, "
        f"{sum(f.action == 'manual' for f in result.files)} from the manual folder, "
        f"{sum(f.action == 'skipped' for f in result.files)} skipped"
    )


def fetch(
    dataset: Annotated[str, typer.Argument(help="dataset adapter name, e.g. coco")],
    root: Annotated[str | None, typer.Option(help="local storage root [env POSEPIPE_ROOT]")] = None,
    mirror: Annotated[str | None, typer.Option(help="HTTP(S) or file:// prefix tried before the owners' URLs")] = None,
    manual_dir: Annotated[str | None, typer.Option(help="folder of files downloaded by hand (verified)")] = None,
    register_checksums: Annotated[
        bool, typer.Option("--register-checksums", help="record url, size and sha256 of every file in the registry")
    ] = False,
    checksums_dir: Annotated[
        str | None, typer.Option(help="registry folder [env POSEPIPE_CHECKSUMS_DIR; default beside the adapters]")
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="socket timeout: a server silent this long is retried")] = 60.0,
    max_extract_bytes: Annotated[
        int | None,
        typer.Option(help="most bytes one archive may expand to [env POSEPIPE_MAX_EXTRACT_BYTES; default 64 GiB]"),
    ] = None,
    max_compression_ratio: Annotated[
        float | None,
        typer.Option(help="most uncompressed bytes per compressed byte, per member and per archive "
                     "[env POSEPIPE_MAX_COMPRESSION_RATIO; default 100]"),
    ] = None,
) -> None:
    """Download, verify and unpack NAME's sources into ROOT/raw/NAME; print the folder parse reads."""
    overrides = {"root": root, "max_extract_bytes": max_extract_bytes, "max_compression_ratio": max_compression_ratio}
    settings = load_settings({k: v for k, v in overrides.items() if v is not None})
    console = Console(stderr=True)
    print_plan(console, dataset, checksums_dir)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    ) as bars:
        ids: dict[str, TaskID] = {}

        def progress(filename: str, done: int, total: int | None) -> None:
            if filename not in ids:
                ids[filename] = bars.add_task(filename, total=total)
            bars.update(ids[filename], completed=done, total=total)

        result = fetch_dataset(
            dataset, settings.root, mirror=mirror, manual_dir=manual_dir, register_checksums=register_checksums,
            progress=progress, checksums_dir=checksums_dir, timeout_s=timeout_s, limits=ExtractionLimits.from_settings(settings),
        )
    print_result(console, result)
    typer.echo(result.source_dir)


def load_settings(overrides: dict[str, object]) -> Settings:
    """Settings from the environment with command-line ``overrides``; a bad value is a :class:`ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid setting: {bad}", hint="fix the option or its POSEPIPE_* environment variable") from exc


def register(app: typer.Typer) -> None:
    """Add ``fetch`` to the CLI."""
    app.command("fetch")(fetch)

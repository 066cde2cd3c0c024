"""``posepipe parse | rebuild | ls | show | demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from schemas.errors import ConfigError
from schemas.settings import Settings

console = Console(stderr=True)


def parse_kv(pairs: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}`` (pydantic coerces the strings)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def parse_size(text: str) -> tuple[int, int]:
    """``"256x192"`` (height x width) → ``(256, 192)``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {text!r} is not HEIGHTxWIDTH, e.g. 256x192") from None
    return h, w


def print_summary(summary: dict[str, Any]) -> None:
    """The end-of-run report as a rich table."""
    table = Table(title=f"{summary['dataset']} {summary['version']}" + (" (reused)" if summary.get("reused") else ""))
    table.add_column("item")
    table.add_column("value")
    for split, n in summary["counts"].items():
        table.add_row(f"samples ({split})", str(n))
    table.add_row("parsed", str(summary["parsed"]))
    table.add_row("written", str(summary["written"]))
    table.add_row("rejected", str(summary["rejected"]))
    for reason, n in summary["rejects_by_reason"].items():
        table.add_row(f"  rejected: {reason}", str(n))
    table.add_row("validation", summary["validation"])
    table.add_row("shards", summary["location"])
    Console().print(table)


def rebuild(
    dataset: Annotated[str, typer.Argument(help="dataset adapter name, e.g. coco")],
    source: Annotated[str | None, typer.Option(help="folder in the dataset's published layout; omit to fetch")] = None,
    root: Annotated[str | None, typer.Option(help="storage root (path or fsspec URL) [env POSEPIPE_ROOT]")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="adapter policy key=value, repeatable")] = None,
    size: Annotated[str, typer.Option(help="crop size HEIGHTxWIDTH")] = "256x192",
    seed: Annotated[int | None, typer.Option(help="run seed")] = None,
    shard_size: Annotated[int | None, typer.Option(help="samples per shard")] = None,
    workers: Annotated[int | None, typer.Option(help="LocalCluster workers (default: one per core)")] = None,
    dask_address: Annotated[str | None, typer.Option(help="tcp://HOST:PORT of an existing Dask scheduler")] = None,
    max_reject_ratio: Annotated[float | None, typer.Option(help="fail past this share of data-error rejects")] = None,
    mirror: Annotated[str | None, typer.Option(help="download mirror prefix (when fetching)")] = None,
    manual_dir: Annotated[str | None, typer.Option(help="folder of manually downloaded files (when fetching)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Build a validated dataset version (or reuse an identical one) and move LATEST to it."""
    from flows.rebuild import rebuild_with_settings

    overrides = {"root": root, "seed": seed, "shard_size": shard_size, "workers": workers, "dask_address": dask_address, "max_reject_ratio": max_reject_ratio}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    h, w = parse_size(size)
    with console.status(f"rebuilding {dataset} ..."):
        summary = rebuild_with_settings(
            settings,
            dataset=dataset,
            source=source,
            adapter_params=parse_kv(param),
            crop={"out_height_px": h, "out_width_px": w},
            mirror=mirror,
            manual_dir=manual_dir,
        )
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print_summary(summary)


def parse(
    dataset: Annotated[str, typer.Argument(help="dataset adapter name")],
    source: Annotated[Path, typer.Option(help="dataset folder or annotation file")],
    out: Annotated[Path, typer.Option(help="records Parquet to write; rejects go beside it")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="adapter policy key=value")] = None,
) -> None:
    """Convert annotations to canonical records only (no pixels)."""
    from schemas.records import REJECTS_SCHEMA
    from storage.fs import filesystem
    from storage.parquet import write_parquet
    from tasks.datasets import get_adapter
    from tasks.shards import sort_records

    adapter = get_adapter(dataset)
    result = adapter.parse(source, adapter.make_params(parse_kv(param)))
    fs, _ = filesystem(str(out))
    records = sort_records(result.records)
    write_parquet(fs, str(out.resolve()), records, adapter.record_schema)
    rejects_path = out.with_name(out.stem + ".rejects.parquet")
    write_parquet(fs, str(rejects_path.resolve()), result.rejects, REJECTS_SCHEMA)
    typer.echo(f"{dataset}: parsed {result.parsed}, written {records.num_rows} to {out}, rejected {result.rejects.num_rows} to {rejects_path}")


def ls(
    dataset: Annotated[str | None, typer.Argument(help="dataset name (default: all)")] = None,
    root: Annotated[str | None, typer.Option(help="storage root")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List dataset versions with counts, parameters and validation status."""
    from storage.fs import filesystem
    from storage.manifest import list_datasets, list_versions, read_latest

    settings = Settings(**({"root": root} if root else {}))
    fs, path = filesystem(settings.root)
    names = [dataset] if dataset else list_datasets(fs, path)
    rows = []
    for name in names:
        latest = read_latest(fs, path, name)
        for m in list_versions(fs, path, name):
            rows.append(
                {
                    "dataset": name,
                    "version": m["version"],
                    "latest": m["version"] == latest,
                    "counts": m["counts"],
                    "rejected": m["rejected"],
                    "validation": "passed" if m["validation"]["success"] else "FAILED",
                    "params": m["params"],
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    table = Table(title=f"datasets under {settings.root}")
    for col in ("dataset", "version", "latest", "counts", "rejected", "validation", "params"):
        table.add_column(col)
    for r in rows:
        crop = r["params"].get("crop")
        shown = {"adapter": r["params"]["adapter"], "seed": r["params"]["seed"]}
        if crop:
            shown["size"] = [crop["out_height_px"], crop["out_width_px"]]
        params = json.dumps(shown)
        table.add_row(r["dataset"], r["version"], "*" if r["latest"] else "", json.dumps(r["counts"]), str(r["rejected"]), r["validation"], params)
    Console(width=200).print(table)


def show(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    sample: Annotated[str, typer.Option(help="sample_id to draw")],
    out: Annotated[Path, typer.Option(help="PNG to write")],
    root: Annotated[str | None, typer.Option(help="storage root")] = None,
    version: Annotated[str | None, typer.Option(help="version (default LATEST)")] = None,
) -> None:
    """Draw one processed sample with its keypoints."""
    from tasks.inspect import load_sample, render_sample, write_png

    settings = Settings(**({"root": root} if root else {}))
    row, pixels = load_sample(settings.root, dataset, sample, version)
    write_png(str(out), render_sample(row, pixels))
    typer.echo(f"wrote {out} ({row['sample_id']}, {row['split']}, crop {row['crop_width']}x{row['crop_height']})")


def demo(
    source: Annotated[str | None, typer.Option(help="a real COCO-format folder (default: generate one)")] = None,
    root: Annotated[str, typer.Option(help="storage root")] = "./data",
    workers: Annotated[int | None, typer.Option(help="LocalCluster workers")] = None,
) -> None:
    """Rebuild COCO keypoints end to end (synthetic data by default) and draw a contact sheet."""
    from flows.rebuild import run_rebuild
    from tasks.inspect import version_contact_sheet, write_png
    from tasks.synthetic import write_synthetic_coco

    if source is None:
        source = str(write_synthetic_coco(Path(root) / "demo_source" / "coco"))
        console.print(f"generated a synthetic COCO keypoints dataset in {source}")
    summary = run_rebuild(workers=workers, dataset="coco", root=root, source=source, shard_size=64)
    print_summary(summary)
    sheet = Path(root) / "demo_contact_sheet.png"
    write_png(str(sheet), version_contact_sheet(root, "coco", n=8))
    typer.echo(f"contact sheet: {sheet}")


def register(app: typer.Typer) -> None:
    """Add the dataset commands to the CLI."""
    app.command("rebuild")(rebuild)
    app.command("parse")(parse)
    app.command("ls")(ls)
    app.command("show")(show)
    app.command("demo")(demo)

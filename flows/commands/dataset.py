"""``posepipe parse | rebuild | ls | show | demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flows.commands._options import AdapterParamOption, parse_kv
from schemas.errors import ConfigError, PosepipeError
from schemas.settings import Settings

console = Console(stderr=True)


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
    param: AdapterParamOption = None,
    from_extract: Annotated[str | None, typer.Option(help="NAME-keypoints: the extraction run (folder or run key) to build sequences from")] = None,
    size: Annotated[str, typer.Option(help="crop size HEIGHTxWIDTH")] = "256x192",
    seed: Annotated[int | None, typer.Option(help="run seed")] = None,
    shard_size: Annotated[int | None, typer.Option(help="records per shard (default: 72 MiB of crops for image datasets, 512 at 256x192; 512 records otherwise)")] = None,
    workers: Annotated[int | None, typer.Option(help="LocalCluster workers (default: one per core)")] = None,
    dask_address: Annotated[str | None, typer.Option(help="tcp://HOST:PORT of an existing Dask scheduler")] = None,
    max_reject_ratio: Annotated[float | None, typer.Option(help="fail past this share of data-error rejects")] = None,
    mirror: Annotated[str | None, typer.Option(help="download mirror prefix (when fetching)")] = None,
    manual_dir: Annotated[str | None, typer.Option(help="folder of manually downloaded files (when fetching)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Build a validated dataset version (or reuse an identical one) and move LATEST to it."""
    # Prefect is not imported until there is something to build (its import alone costs ~2 s):
    # a mistake in the request, a held lock or an unchanged version is answered before that.
    from flows.runtime import rebuild_unless_built
    from tasks.rebuild import RebuildRequest
    from tasks.transforms.geometry import CropConfig

    overrides = {"root": root, "seed": seed, "shard_size": shard_size, "workers": workers, "dask_address": dask_address, "max_reject_ratio": max_reject_ratio}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    if from_extract is not None:
        from tasks.datasets.keypoints import resolve_run

        if source is not None:
            raise ConfigError("give --source or --from-extract, not both", hint="--from-extract RUN is the source of a NAME-keypoints dataset")
        source = resolve_run(dataset, settings.root, from_extract)
    h, w = parse_size(size)
    crop = CropConfig(out_height_px=h, out_width_px=w)
    request = RebuildRequest(dataset, settings.root, source, parse_kv(param), crop, settings.seed, settings.shard_size, settings.max_reject_ratio, mirror, manual_dir)

    def start() -> dict[str, Any]:
        from flows.rebuild import start_rebuild_flow

        with console.status(f"rebuilding {dataset} ..."):
            return start_rebuild_flow(request, settings.workers, settings.dask_address, settings.threads_per_worker)

    summary = rebuild_unless_built(request, start)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print_summary(summary)


def parse(
    dataset: Annotated[str, typer.Argument(help="dataset adapter name")],
    source: Annotated[Path, typer.Option(help="dataset folder or annotation file")],
    out: Annotated[Path, typer.Option(help="records Parquet to write; rejects go beside it")],
    param: AdapterParamOption = None,
) -> None:
    """Convert annotations to canonical records only (no pixels)."""
    from schemas.records import REJECTS_SCHEMA
    from storage.fs import filesystem
    from storage.parquet import write_parquet
    from tasks.datasets import get_adapter
    from tasks.kinds import get_kind

    adapter = get_adapter(dataset)
    result = adapter.parse(source, adapter.make_params(parse_kv(param)))
    fs, _ = filesystem(str(out))
    # samples sort by (split, sample_id); clip records have no split (folds say which side), so by
    # clip_id, as the rebuild stages them
    records = get_kind(adapter.record_kind).sort(result.records)
    write_parquet(fs, str(out.resolve()), records, adapter.record_schema)
    rejects_path = out.with_name(out.stem + ".rejects.parquet")
    write_parquet(fs, str(rejects_path.resolve()), result.rejects, REJECTS_SCHEMA)
    typer.echo(f"{dataset}: parsed {result.parsed}, written {records.num_rows} {adapter.record_kind} to {out}, rejected {result.rejects.num_rows} to {rejects_path}")


def _params_cell(dataset: str, params: dict[str, Any]) -> str:
    """``seed 0, 256x192`` plus the adapter parameters that differ from the adapter's defaults."""
    shown = [f"seed {params.get('seed', '?')}"]
    crop = params.get("crop")
    if crop:
        shown.append(f"{crop['out_height_px']}x{crop['out_width_px']}")
    adapter_params = params.get("adapter") or {}
    try:
        from tasks.datasets import get_adapter

        adapter = get_adapter(dataset)
        defaults = adapter.make_params({}).model_dump()
    except PosepipeError:  # no adapter by that name any more, or no defaults: show every parameter
        defaults = {}
    shown += [f"{k}={v}" for k, v in sorted(adapter_params.items()) if k not in defaults or defaults[k] != v]
    return ", ".join(shown)


def _print_versions(rows: list[dict[str, Any]], pending: list[dict[str, Any]], root: str) -> None:
    """Per dataset, one block per version, wrapped to the terminal (rich reads its width, or ``COLUMNS``).

    A block is a summary line (version, ``*`` for LATEST, creation time, gate, counts, rejects)
    and indented ``source`` and ``params`` lines, so a long source path gets a line of its own
    instead of a squeezed table column. Version folders without a manifest (``pending``) follow,
    marked ``not committed``.
    """
    from rich.padding import Padding
    from rich.text import Text

    from tasks.inspect import format_created_at

    out = Console()
    if not rows and not pending:
        out.print(f"no dataset versions under {root}", markup=False, highlight=False)
        Console(stderr=True).print("hint: `posepipe rebuild NAME --root DIR` builds one", markup=False, highlight=False)
        return
    for name in sorted({r["dataset"] for r in rows} | {u["dataset"] for u in pending}):
        out.print(Text(f"{name} under {root}  (* = LATEST, times UTC)", style="bold", overflow="fold"))
        for r in (r for r in rows if r["dataset"] == name):
            counts = ", ".join(f"{split} {n}" for split, n in r["counts"].items())
            head = Text(overflow="fold")
            head.append(r["version"] + (" *" if r["latest"] else "  "), style="bold cyan")
            head.append(f"  {format_created_at(r['created_at'])}  ")
            head.append(r["validation"], style="green" if r["validation"] == "passed" else "bold red")
            head.append(f"  {counts}  rejected {r['rejected']}")
            out.print(Padding(head, (0, 0, 0, 2), expand=False))
            for label, value in (("source", r["source"]), ("params", _params_cell(name, r["params"]))):
                out.print(Padding(Text(f"{label} {value}", overflow="fold"), (0, 0, 0, 4), expand=False))
        for u in (u for u in pending if u["dataset"] == name):
            line = Text(overflow="fold")
            line.append(u["version"] + "  ", style="dim")
            line.append(f"  {format_created_at(u['modified_at'])}  ")
            line.append("not committed", style="yellow")
            line.append(" (failed or running)")
            out.print(Padding(line, (0, 0, 0, 2), expand=False))


def ls(
    dataset: Annotated[str | None, typer.Argument(help="dataset name (default: all)")] = None,
    root: Annotated[str | None, typer.Option(help="storage root")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    samples: Annotated[bool, typer.Option("--samples", help="list the sample ids of one version (NAME required), one per line")] = False,
    version: Annotated[str | None, typer.Option(help="with --samples: the version (default LATEST)")] = None,
    split: Annotated[str | None, typer.Option(help="with --samples: only this split")] = None,
    limit: Annotated[int | None, typer.Option(help="with --samples: at most N ids")] = None,
) -> None:
    """List dataset versions (creation time, source, gate, counts, parameters), or one version's sample ids."""
    from tasks.inspect import list_sample_ids, uncommitted_versions, version_overview

    settings = Settings(**({"root": root} if root else {}))
    if samples:
        if dataset is None:
            raise ConfigError("--samples lists one dataset's sample ids; name the dataset", hint="e.g. `posepipe ls coco --samples --limit 20`")
        ids, total = list_sample_ids(settings.root, dataset, version, split, limit)
        if as_json:
            typer.echo(json.dumps({"dataset": dataset, "split": split, "total": total, "sample_ids": ids}, indent=2))
            return
        for sample_id in ids:
            typer.echo(sample_id)
        scope = f"split {split}" if split else "all splits"
        typer.secho(f"{len(ids)} of {total} sample ids ({scope})", err=True)
        return
    if version or split or limit is not None:
        raise ConfigError("--version, --split and --limit go with --samples", hint=f"`posepipe ls {dataset or 'NAME'} --samples ...`")
    rows = version_overview(settings.root, dataset)
    if as_json:  # committed versions only: what a script may read
        typer.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    _print_versions(rows, uncommitted_versions(settings.root, dataset), settings.root)


def show(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    sample: Annotated[str, typer.Option(help="sample_id to draw (`posepipe ls NAME --samples` lists them)")],
    out: Annotated[Path, typer.Option(help="PNG to write")],
    root: Annotated[str | None, typer.Option(help="storage root")] = None,
    version: Annotated[str | None, typer.Option(help="version (default LATEST)")] = None,
    scale: Annotated[float, typer.Option(help="enlarge the crop by this factor (0 < scale <= 8)")] = 2.0,
) -> None:
    """Draw one processed sample with its keypoints: id in the title, a legend, enlarged by --scale."""
    from tasks.inspect import load_sample, render_sample_card, resolve_version, write_png

    settings = Settings(**({"root": root} if root else {}))
    version_id = resolve_version(settings.root, dataset, version)["version"]
    row, pixels = load_sample(settings.root, dataset, sample, version_id)
    caption = f"{dataset} {version_id} | {row['split']} | crop {row['crop_width_px']}x{row['crop_height_px']}, scale {scale:g}"
    card = render_sample_card(row, pixels, scale=scale, caption=caption)
    write_png(str(out), card)
    typer.echo(f"wrote {out} ({row['sample_id']}, {row['split']}, crop {row['crop_width_px']}x{row['crop_height_px']}, picture {card.shape[1]}x{card.shape[0]})")


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

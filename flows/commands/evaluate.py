"""``posepipe evaluate pckh | flic | coco``: score prediction files against ground-truth files.

Wiring only: the readers, metrics, COCO wrapper and plots live in ``tasks/``. Results go to stdout
(a rich table, or one JSON object with ``--json``); domain errors reach ``flows.cli.main``, which
prints them and exits with code 2.

Units, one convention for every command: ``--json`` carries fractions in [0, 1] and says so with
``"units": "fraction"`` (COCOeval's -1 = "no ground truth of that kind" is kept as is); the tables
show percent and say so in their headers. ``--plot`` reports the path it wrote on stderr (and in the
JSON as ``"plot"``), so stdout stays one JSON object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

evaluate_app = typer.Typer(
    name="evaluate",
    help="Score predictions: MPII PCKh, FLIC (MODEC protocol), COCO OKS AP/AR.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
PlotOpt = Annotated[Path | None, typer.Option("--plot", help="Write a picture (.png, .svg or .pdf).")]
AllowMissingOpt = Annotated[
    bool, typer.Option("--allow-missing", help="Accept NaN predictions and count them as misses.")
]


#: What every ``--json`` payload's numbers are.
UNITS = "fraction"


def _emit_json(payload: dict[str, Any], plot: Path | None) -> None:
    """One JSON object: ``units`` first, then the scores, then ``plot`` when one was written."""
    out: dict[str, Any] = {"units": UNITS, **payload}
    if plot is not None:
        out["plot"] = str(plot)
    typer.echo(json.dumps(out, indent=2))


def _wrote_plot(path: Path) -> None:
    typer.echo(f"plot: {path}", err=True)


def _percent_to_fraction(parts: dict[str, float]) -> dict[str, float]:
    return {name: value / 100.0 for name, value in parts.items()}


def _table(title: str, caption: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title, caption=caption, min_width=len(caption))
    for col in columns:
        table.add_column(col, justify="right" if col != columns[0] else "left")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@evaluate_app.command("pckh")
def pckh_command(
    gt: Annotated[Path, typer.Option("--gt", help="MPII validation GT (detections_our_format.mat / gt_valid.mat).")],
    pred: Annotated[
        Path,
        typer.Option(
            "--pred", help="Predictions: .mat/.h5/.npy with preds (N, 16, 2), MPII joint order, GT's pixel frame."
        ),
    ],
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
    allow_missing: AllowMissingOpt = False,
    pred_offset_px: Annotated[
        float,
        typer.Option(
            "--pred-offset-px",
            help="Added to every predicted coordinate first (1.0 for 0-based predictions: the GT is MATLAB 1-based).",
        ),
    ] = 0.0,
) -> None:
    """The official MPII PCKh (head size 0.6 x head-box diagonal): parts, Mean, @0.1, curve AUC."""
    from tasks.evaluation.metrics import head_norm_from_boxes, mpii_pckh_report
    from tasks.evaluation.readers import read_mpii_gt, read_mpii_predictions

    ground = read_mpii_gt(gt)
    preds = read_mpii_predictions(pred, ground.num_people, allow_missing=allow_missing) + pred_offset_px
    report = mpii_pckh_report(preds, ground.gt_xy, ground.visible, head_norm_from_boxes(ground.head_boxes_xyxy))
    if plot is not None:
        from tasks.evaluation.plots import plot_mpii_report

        plot_mpii_report(report, plot, title=f"MPII PCKh: {pred.name} ({ground.num_people} people)")
        _wrote_plot(plot)
    if as_json:
        # the report keeps MPII's percent; JSON carries fractions like every evaluate command
        payload = {"pckh@0.5": _percent_to_fraction(report.parts_05), "pckh@0.1": _percent_to_fraction(report.parts_01), "auc": report.auc / 100.0}
        _emit_json(payload, plot)
        return
    rows = [[name, f"{report.parts_05[name]:.2f}", f"{report.parts_01[name]:.2f}"] for name in report.parts_05]
    _table("MPII PCKh (%)", f"{pred.name} vs {gt.name}: {ground.num_people} people", ["part", "@0.5 (%)", "@0.1 (%)"], rows)
    Console().print(f"AUC (%, mean of the weighted PCKh curve over thresholds 0..0.5 step 0.01): {report.auc:.2f}")


@evaluate_app.command("flic")
def flic_command(
    gt: Annotated[Path, typer.Option("--gt", help="FLIC examples.mat.")],
    pred: Annotated[
        Path,
        typer.Option("--pred", help="Predictions: .mat/.npy pred_coords (2, 6, N) as MODEC writes it, or (N, 6, 2)."),
    ],
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
    allow_missing: AllowMissingOpt = False,
) -> None:
    """MODEC's FLIC protocol on the test examples: elbow/wrist accuracy curves, AUC, PCK@0.2."""
    from tasks.evaluation.metrics import flic_report
    from tasks.evaluation.readers import read_flic_gt, read_flic_predictions

    ground = read_flic_gt(gt)
    gt_test = ground.test_coords_xy
    preds = read_flic_predictions(pred, gt_test.shape[0], allow_missing=allow_missing)
    report = flic_report(preds, gt_test)
    if plot is not None:
        from tasks.evaluation.plots import plot_flic_report

        plot_flic_report(report, plot, title=f"FLIC (MODEC protocol): {pred.name}")
        _wrote_plot(plot)
    if as_json:
        _emit_json(report.to_dict(), plot)  # FlicReport is in fractions already
        return
    rows = [
        ["elbow", f"{100 * report.elbow_auc:.2f}", f"{100 * report.pck02['elbow']:.2f}"],
        ["wrist", f"{100 * report.wrist_auc:.2f}", f"{100 * report.pck02['wrist']:.2f}"],
    ]
    caption = f"{pred.name}: {report.num_examples} test examples, {report.num_flipped} backwards-facing GT flipped"
    _table("FLIC, MODEC protocol (%)", caption, ["joint", "AUC (%, r=1..20)", "PCK@0.2 (%)"], rows)


@evaluate_app.command("coco")
def coco_command(
    gt: Annotated[Path, typer.Option("--gt", help="COCO annotation JSON (person_keypoints_*.json).")],
    dt: Annotated[Path, typer.Option("--dt", help="COCO results JSON (list of detections).")],
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
    iou_type: Annotated[
        str, typer.Option("--iou-type", help="keypoints (OKS) or bbox (IoU).", case_sensitive=False)
    ] = "keypoints",
) -> None:
    """COCO AP/AR through pycocotools' COCOeval (OKS for keypoints); --plot draws PR curves and AP/AR per area."""
    from tasks.evaluation.coco_eval import coco_evaluate

    report = coco_evaluate(gt, dt, iou_type=iou_type.lower())  # type: ignore[arg-type]
    if plot is not None:
        from tasks.evaluation.plots import plot_coco_report

        measure = "OKS" if report.iou_type == "keypoints" else "IoU"
        title = f"COCO {report.iou_type} ({measure}): {dt.name}, {report.num_images} images, {report.num_detections} detections"
        plot_coco_report(report, plot, title=title)
        _wrote_plot(plot)
    if as_json:
        _emit_json(report.to_dict(), plot)  # COCOeval's stats are fractions
        return
    # percent with one decimal holds exactly what pycocotools' 3-decimal printout shows (0.505 -> 50.5)
    rows = [[name, f"{100 * value:.1f}" if value >= 0 else "n/a"] for name, value in report.named.items()]
    caption = f"{dt.name}: {report.num_images} images, {report.num_detections} detections; n/a = no ground truth of that kind"
    _table(f"COCO {report.iou_type} AP/AR (%)", caption, ["stat", "value (%)"], rows)


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command group to the root app."""
    app.add_typer(evaluate_app, name="evaluate")

"""Evaluation pictures a person reads at a glance (matplotlib, Agg canvas, no pyplot global state).

* MPII: per-part PCKh bars at 0.5 and 0.1 (value printed on each bar) beside the PCKh-vs-threshold
  curve with its AUC.
* FLIC: MODEC's accuracy curves (elbows, wrists) against the error radius in percent of the torso,
  with AUC and PCK@0.2 in the legend.
* COCO: precision-recall curves at OKS (or IoU) 0.50, 0.75 and averaged over 0.50:0.95, with their
  AP in the legend, beside AP and AR per object-area range (values on the bars).

Pictures are written atomically (temporary name, then rename) to a local path or fsspec URL.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from schemas.errors import EvaluationInputError
from storage.fs import filesystem, write_bytes_atomic
from tasks.evaluation.coco_eval import CocoCurves, CocoReport
from tasks.evaluation.metrics import FlicReport, MpiiPckhReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["coco_area_scores", "coco_pr_curves", "plot_coco_report", "plot_flic_report", "plot_mpii_report"]

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def _save(fig: Figure, out_path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    suffix = Path(str(out_path)).suffix.lower()
    if suffix not in _FORMATS:
        raise EvaluationInputError(
            f"plot path {str(out_path)!r} has suffix {suffix!r}; expected one of {', '.join(_FORMATS)}"
        )
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=_FORMATS[suffix], dpi=120, bbox_inches="tight")
    fs, path = filesystem(str(out_path))
    write_bytes_atomic(fs, path, buf.getvalue())
    return Path(str(out_path))


def plot_mpii_report(report: MpiiPckhReport, out_path: str | Path, title: str = "MPII PCKh") -> Path:
    """Per-part PCKh bars (0.5 and 0.1) and the PCKh curve.

    Args:
        report: From :func:`tasks.evaluation.metrics.mpii_pckh_report`.
        out_path: ``.png``, ``.svg`` or ``.pdf`` destination.
        title: Figure title.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8))
    ax_bar, ax_curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    names = [*report.parts_05.keys()]
    x = np.arange(len(names))
    width = 0.4
    for offset, parts, label, color in (
        (-width / 2, report.parts_05, "PCKh@0.5", "#1f77b4"),
        (width / 2, report.parts_01, "PCKh@0.1", "#ff7f0e"),
    ):
        values = [parts[n] for n in names]
        bars = ax_bar.bar(x + offset, values, width, label=label, color=color)
        ax_bar.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax_bar.set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=8)
    ax_bar.set_ylim(0, 115)
    ax_bar.set_ylabel("PCKh (%)")
    ax_bar.set_title("per part (Mean: 14 joints, weighted by joint count)")
    ax_bar.legend(loc="upper right", ncol=2)
    ax_bar.grid(axis="y", alpha=0.3)

    ax_curve.plot(report.thresholds, report.curve, "-", lw=2, label=f"Mean (AUC {report.auc:.2f})")
    ax_curve.axvline(0.5, color="grey", ls=":", lw=1)
    ax_curve.axvline(0.1, color="grey", ls=":", lw=1)
    ax_curve.set_xlim(0, float(report.thresholds[-1]))
    ax_curve.set_ylim(0, 100)
    ax_curve.set_xlabel("threshold (fraction of head size)")
    ax_curve.set_ylabel("PCKh (%)")
    ax_curve.set_title("PCKh vs threshold")
    ax_curve.legend(loc="lower right")
    ax_curve.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, out_path)


def plot_flic_report(report: FlicReport, out_path: str | Path, title: str = "FLIC (MODEC protocol)") -> Path:
    """MODEC-style accuracy curves for elbows and wrists.

    Args:
        report: From :func:`tasks.evaluation.metrics.flic_report`.
        out_path: ``.png``, ``.svg`` or ``.pdf`` destination.
        title: Figure title.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5.5))
    ax = fig.subplots()
    for curve, auc, pck, label, style in (
        (report.elbow_curve, report.elbow_auc, report.pck02["elbow"], "elbows", "b-"),
        (report.wrist_curve, report.wrist_auc, report.pck02["wrist"], "wrists", "g-"),
    ):
        ax.plot(report.radii, 100 * curve, style, lw=3, label=f"{label}: AUC {auc:.3f}, PCK@0.2 {100 * pck:.1f}%")
    ax.set_xlim(float(report.radii[0]), float(report.radii[-1]))
    ax.set_ylim(0, 100)
    ax.set_xlabel("error radius (% of torso, lsho-rhip)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{title}\n{report.num_examples} test examples, {report.num_flipped} backwards-facing relabelled")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, out_path)


def _valid_mean(values: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """Mean over ``axis`` of the entries > -1 (COCOeval's "no ground truth" marker); -1 where none."""
    valid = values > -1
    count = valid.sum(axis=axis)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), -1.0)


def _curves(report: CocoReport) -> CocoCurves:
    if report.curves is None:
        raise EvaluationInputError(
            "this COCO report carries no precision/recall arrays", hint="produce it with tasks.evaluation.coco_eval.coco_evaluate"
        )
    return report.curves


def coco_pr_curves(report: CocoReport, area: str = "all") -> dict[str, tuple[np.ndarray, float]]:
    """Precision at each recall level (categories averaged) for one area range.

    Args:
        report: From :func:`tasks.evaluation.coco_eval.coco_evaluate`.
        area: Area range label (``all``, ``small``, ``medium``, ``large``).

    Returns:
        ``{"0.50": (precision (R,), AP), "0.75": (...), "0.50:0.95": (...)}``; AP is the mean of the
        curve, -1 where there is no ground truth (as COCOeval reports it).

    Raises:
        EvaluationInputError: If the report has no curves or no such area range.
    """
    curves = _curves(report)
    if area not in curves.area_labels:
        raise EvaluationInputError(f"area range {area!r} is not one of {list(curves.area_labels)}")
    a = curves.area_labels.index(area)
    per_t = _valid_mean(curves.precision[:, :, :, a], axis=(2,))  # (T, R): categories averaged
    out: dict[str, tuple[np.ndarray, float]] = {}
    for label, thr in (("0.50", 0.5), ("0.75", 0.75)):
        t = int(np.argmin(np.abs(curves.iou_thresholds - thr)))
        row = per_t[t]
        out[label] = (row, float(_valid_mean(row, axis=(0,))))
    mean_curve = _valid_mean(per_t, axis=(0,))
    out["0.50:0.95"] = (mean_curve, float(_valid_mean(per_t, axis=(0, 1))))
    return out


def coco_area_scores(report: CocoReport) -> dict[str, tuple[float, float]]:
    """AP and AR (OKS/IoU 0.50:0.95, largest maxDets) per area range, as COCOeval's summary has them.

    Args:
        report: From :func:`tasks.evaluation.coco_eval.coco_evaluate`.

    Returns:
        ``{area label: (AP, AR)}``; -1 where the range has no ground truth.
    """
    curves = _curves(report)
    return {
        label: (
            float(_valid_mean(curves.precision[:, :, :, a], axis=(0, 1, 2))),
            float(_valid_mean(curves.recall[:, :, a], axis=(0, 1))),
        )
        for a, label in enumerate(curves.area_labels)
    }


def plot_coco_report(report: CocoReport, out_path: str | Path, title: str = "COCO") -> Path:
    """Precision-recall curves (area ``all``) and AP/AR per area range.

    Args:
        report: From :func:`tasks.evaluation.coco_eval.coco_evaluate`.
        out_path: ``.png``, ``.svg`` or ``.pdf`` destination.
        title: Figure title.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    arrays = _curves(report)
    curves = coco_pr_curves(report)
    scores = coco_area_scores(report)
    measure = "OKS" if report.iou_type == "keypoints" else "IoU"
    recall = arrays.recall_thresholds

    fig = Figure(figsize=(12, 4.8))
    ax_pr, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    for (label, (precision, ap)), style in zip(curves.items(), ("-", "--", ":"), strict=True):
        if ap < 0:
            continue
        name = f"{measure} {label}" if ":" not in label else f"mean over {measure} {label}"
        ax_pr.plot(recall, precision, style, lw=2.5, label=f"{name}: AP {ap:.3f}")
    ax_pr.set_xlim(0, 1)
    ax_pr.set_ylim(0, 1.02)
    ax_pr.set_xlabel("recall")
    ax_pr.set_ylabel("precision")
    ax_pr.set_title(f"precision-recall, area all, up to {arrays.max_dets} detections per image")
    ax_pr.grid(alpha=0.3)
    ax_pr.legend(loc="lower left")

    labels = [a for a, (ap, ar) in scores.items() if ap >= 0 or ar >= 0]
    x = np.arange(len(labels))
    width = 0.38
    for offset, index, name, color in ((-width / 2, 0, "AP", "#1f77b4"), (width / 2, 1, "AR", "#ff7f0e")):
        values = [max(scores[a][index], 0.0) for a in labels]
        bars = ax_bar.bar(x + offset, values, width, label=f"{name} ({measure} 0.50:0.95)", color=color)
        ax_bar.bar_label(bars, fmt="%.3f", fontsize=8, padding=1)
    ax_bar.set_xticks(x, labels)
    ax_bar.set_ylim(0, 1.15)
    ax_bar.set_xlabel("object area range")
    ax_bar.set_ylabel("score (fraction)")
    ax_bar.set_title("AP and AR per area range")
    ax_bar.legend(loc="upper right", ncol=2)
    ax_bar.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return _save(fig, out_path)

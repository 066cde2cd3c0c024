"""Evaluation pictures a person reads at a glance (matplotlib, Agg canvas, no pyplot global state).

* MPII: per-part PCKh bars at 0.5 and 0.1 (value printed on each bar) beside the PCKh-vs-threshold
  curve with its AUC.
* FLIC: MODEC's accuracy curves (elbows, wrists) against the error radius in percent of the torso,
  with AUC and PCK@0.2 in the legend.

Pictures are written atomically (temporary name, then rename) to a local path or fsspec URL.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from schemas.errors import EvaluationInputError
from storage.fs import filesystem, write_bytes_atomic
from tasks.training.metrics import FlicReport, MpiiPckhReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_flic_report", "plot_mpii_report"]

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
        report: From :func:`tasks.training.metrics.mpii_pckh_report`.
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
        report: From :func:`tasks.training.metrics.flic_report`.
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

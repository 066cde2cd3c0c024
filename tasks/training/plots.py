"""Training pictures a person reads at a glance (matplotlib Agg canvas, no pyplot global state).

* :func:`plot_history`: loss and metric curves per epoch (training and ``val_`` values together).
* :func:`plot_per_joint_pck`: per-joint PCK bars with the value on each bar.
* :func:`plot_confusion_matrix`: row-normalised confusion matrix with the counts printed.
* :func:`plot_worst_predictions`: a contact sheet of the worst predictions drawn on their crops,
  ground truth in green, prediction in red.
* :func:`plot_labelled_crops`: a contact sheet of crops with a caption each (the classifiers' worst:
  true and predicted class).

Pictures are written atomically (temporary name, then rename) to a local path or fsspec URL.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from schemas.skeletons import Skeleton, get_skeleton
from storage.fs import filesystem, write_bytes_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "draw_pair",
    "plot_confusion_matrix",
    "plot_history",
    "plot_labelled_crops",
    "plot_per_joint_pck",
    "plot_worst_predictions",
]

#: RGB colours of the contact sheet.
GT_RGB = (40, 200, 40)
PRED_RGB = (230, 30, 30)
_SKIP_KEYS = {"epoch", "step", "steps", "time_s", "seconds", "steps_per_s", "samples_per_s", "lr", "learning_rate"}


def _save(fig: Figure, out_path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    suffix = Path(str(out_path)).suffix.lower().lstrip(".") or "png"
    fig.savefig(buf, format=suffix, dpi=110, bbox_inches="tight")
    fs, path = filesystem(str(out_path))
    parent = str(Path(path).parent)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    write_bytes_atomic(fs, path, buf.getvalue())
    return Path(str(out_path))


def plot_history(history: Sequence[Mapping[str, Any]], out_path: str | Path, title: str = "training") -> Path:
    """Loss (left) and every other numeric metric (right) against the epoch.

    Args:
        history: One mapping per epoch (``{"epoch": 1, "loss": .., "val_loss": .., "coord_error": ..}``);
            ``epoch`` (default: the position) is the x axis; timing keys are not drawn.
        out_path: ``.png``/``.svg``/``.pdf`` destination.
        title: Figure title.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    epochs = [int(h["epoch"]) if "epoch" in h else i + 1 for i, h in enumerate(history)]  # history epochs are 1-based
    keys: list[str] = []
    for h in history:
        for k, v in h.items():
            if k not in keys and k not in _SKIP_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    loss_keys = [k for k in keys if k.removeprefix("val_").endswith("loss")]
    metric_keys = [k for k in keys if k not in loss_keys]
    fig = Figure(figsize=(11 if metric_keys else 6, 4.2))
    axes = fig.subplots(1, 2 if metric_keys else 1, squeeze=False)[0]
    for ax, group, ylabel in ((axes[0], loss_keys, "loss"), (axes[-1], metric_keys, "metric")):
        if ax is axes[-1] and not metric_keys and ylabel == "metric":
            continue
        for k in group:
            ys = [float(h[k]) if isinstance(h.get(k), (int, float)) else math.nan for h in history]
            ax.plot(epochs, ys, "--" if k.startswith("val_") else "-", marker="o", ms=3, lw=2, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if group:
            ax.legend(loc="best", fontsize=8)
        if ylabel == "loss" and group and all(float(h.get(k, 1)) > 0 for h in history for k in group if isinstance(h.get(k), (int, float))):
            ax.set_yscale("log")
    fig.suptitle(title)
    return _save(fig, out_path)


def plot_per_joint_pck(per_joint: Mapping[str, float | None], out_path: str | Path, title: str = "PCK per joint") -> Path:
    """Horizontal bars of PCK (fraction -> percent) per joint; joints never visible are marked n/a.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    names = list(per_joint)
    values = [100.0 * v if v is not None and np.isfinite(v) else 0.0 for v in per_joint.values()]
    fig = Figure(figsize=(6.5, 0.32 * len(names) + 1.4))
    ax = fig.subplots()
    y = np.arange(len(names))
    bars = ax.barh(y, values, color="#1f77b4")
    labels = [f"{v:.1f}" if per_joint[n] is not None else "n/a" for n, v in zip(names, values, strict=True)]
    ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("PCK (%)")
    valid = [100.0 * v for v in per_joint.values() if v is not None and np.isfinite(v)]
    if valid:
        ax.axvline(float(np.mean(valid)), color="grey", ls=":", lw=1, label=f"mean of joints {np.mean(valid):.1f}%")
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    return _save(fig, out_path)


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str], out_path: str | Path, title: str = "confusion matrix") -> Path:
    """Row-normalised confusion matrix (colour = fraction of the true class) with counts printed.

    Args:
        cm: ``(C, C)`` counts, rows true, columns predicted.
        classes: C names.
        out_path: Destination.
        title: Figure title.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    counts = np.asarray(cm, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros(counts.shape, np.float64), where=rows > 0)
    c = len(classes)
    side = max(4.0, 0.45 * c + 2.5)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if c <= 30:
        for i in range(c):
            for j in range(c):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color="white" if frac[i, j] > 0.5 else "black")
    short = [s if len(s) <= 22 else s[:20] + ".." for s in classes]
    ax.set_xticks(range(c), short, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(c), [f"{s} ({int(r)})" for s, r in zip(short, rows[:, 0], strict=True)], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (support)")
    ax.set_title(title, fontsize=10)
    return _save(fig, out_path)


def _sheet(n: int, columns: int) -> tuple[Figure, np.ndarray]:
    """A figure of ``n`` tiles, ``columns`` per row (at least one tile): the contact sheets' grid."""
    from matplotlib.figure import Figure

    cols = max(1, min(columns, n))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(3.0 * cols, 3.3 * rows))
    return fig, fig.subplots(rows, cols, squeeze=False)


def draw_pair(crop_rgb: np.ndarray, gt_xy: np.ndarray, pred_xy: np.ndarray, visible: np.ndarray, skeleton: Skeleton | str, scale: int = 2) -> np.ndarray:
    """One crop enlarged ``scale`` times with the ground truth (green) and the prediction (red) drawn.

    Args:
        crop_rgb: ``(H, W, 3) uint8`` RGB crop.
        gt_xy: ``(J, 2)`` ground truth in crop pixels (NaN where unknown).
        pred_xy: ``(J, 2)`` prediction in crop pixels.
        visible: ``(J,) bool`` joints to draw (the labelled ones).
        skeleton: Skeleton of the joints (its limbs are drawn).
        scale: Enlargement.

    Returns:
        ``(H * scale, W * scale, 3) uint8`` RGB.
    """
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    h, w = crop_rgb.shape[:2]
    out = np.ascontiguousarray(cv2.resize(crop_rgb, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST))
    for xy, colour in ((gt_xy, GT_RGB), (pred_xy, PRED_RGB)):
        pts = np.asarray(xy, dtype=np.float64)
        ok = np.asarray(visible, dtype=bool) & np.isfinite(pts).all(axis=1)
        p = np.round(np.nan_to_num((pts + 0.5) * scale - 0.5)).astype(np.int32)
        for a, b in sk.limb_indices:
            if ok[a] and ok[b]:
                cv2.line(out, (int(p[a, 0]), int(p[a, 1])), (int(p[b, 0]), int(p[b, 1])), colour, 1, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(out, (int(p[j, 0]), int(p[j, 1])), 2, colour, -1, cv2.LINE_AA)
    return out


def plot_worst_predictions(
    crops: np.ndarray,
    gt_xy: np.ndarray,
    pred_xy: np.ndarray,
    visible: np.ndarray,
    skeleton: Skeleton | str,
    out_path: str | Path,
    labels: Sequence[str] | None = None,
    title: str = "worst predictions",
    columns: int = 4,
) -> Path:
    """A contact sheet of crops (worst first, as given) with ground truth green and prediction red.

    Args:
        crops: ``(n, H, W, 3) uint8`` RGB crops (from the reader).
        gt_xy: ``(n, J, 2)`` ground truth in crop pixels.
        pred_xy: ``(n, J, 2)`` predictions in crop pixels.
        visible: ``(n, J) bool`` labelled joints.
        skeleton: Skeleton of the joints.
        out_path: Destination.
        labels: One caption per crop (sample id, error).
        title: Figure title.
        columns: Tiles per row.

    Returns:
        The path written.
    """
    n = len(crops)
    fig, axes = _sheet(n, columns)
    for k, ax in enumerate(axes.reshape(-1)):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(draw_pair(crops[k], gt_xy[k], pred_xy[k], visible[k], skeleton))
        if labels is not None:
            ax.set_title(labels[k], fontsize=7)
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "nothing to show", ha="center", va="center")
    fig.suptitle(f"{title}\nground truth green, prediction red", fontsize=10)
    return _save(fig, out_path)


def plot_labelled_crops(
    crops: np.ndarray, labels: Sequence[str], out_path: str | Path, title: str = "crops", columns: int = 4, colours: Sequence[str] | None = None
) -> Path:
    """A contact sheet of crops with one caption each.

    Args:
        crops: ``(n, H, W, 3) uint8`` RGB crops.
        labels: n captions.
        out_path: Destination.
        title: Figure title.
        columns: Tiles per row.
        colours: Optional caption colour per crop (matplotlib names).

    Returns:
        The path written.
    """
    n = len(crops)
    fig, axes = _sheet(n, columns)
    for k, ax in enumerate(axes.reshape(-1)):
        ax.axis("off")
        if k >= n:
            continue
        h, w = crops[k].shape[:2]
        ax.imshow(cv2.resize(crops[k], (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST))
        ax.set_title(labels[k], fontsize=7, color=colours[k] if colours is not None else "black")
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "nothing to show", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    return _save(fig, out_path)

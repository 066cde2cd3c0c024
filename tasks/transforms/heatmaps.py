"""Heatmap targets and their decoding, crop-to-image mapping, pose normalisation (pure numpy).

Frames (DESIGN.md pixel-centre convention): a heatmap at stride ``s`` covers the input with one
cell per ``s × s`` input pixels, so heatmap cell centre ``u`` sits at input pixel
``(u + 0.5) * s - 0.5`` (:func:`heatmap_to_input_px`) and input pixel ``x`` at heatmap
``(x + 0.5) / s - 0.5`` (:func:`input_to_heatmap_px`). Targets are unnormalised Gaussians (peak 1)
centred at the sub-pixel joint position (DARK's unbiased encoding), so a perfect prediction decodes
back to the joint without quantisation.

Decoding (:func:`decode_heatmaps`): ``"quarter"`` is SimpleBaseline's argmax + 0.25 px towards the
higher neighbour; ``"dark"`` (Zhang et al., CVPR 2020) smooths the heatmap with the target's
Gaussian, takes its log (a quadratic for a Gaussian) and one Newton step from the argmax,
``offset = -H⁻¹ ∇``, with finite differences at the argmax; within ``2σ + 1`` cells of a border the
step uses the unsmoothed log (the blur is biased there), and where the step is not a maximum (flat
maps, a peak on the border) it falls back to the quarter offset.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from schemas.errors import ConfigError

#: Per-axis Gaussian factors below this are 0, so a product of two is 0 or a normal float32 (> 1.18e-38).
_TINY = np.float32(1.1e-19)


def input_to_heatmap_px(xy: np.ndarray, stride: int) -> np.ndarray:
    """Input pixels -> heatmap pixels (pixel centres): ``(x + 0.5) / stride - 0.5``."""
    return (np.asarray(xy, dtype=np.float32) + 0.5) / stride - 0.5


def heatmap_to_input_px(xy: np.ndarray, stride: int) -> np.ndarray:
    """Heatmap pixels -> input pixels (pixel centres): ``(u + 0.5) * stride - 0.5``.

    Example:
        >>> heatmap_to_input_px(np.array([0.0, 1.5]), 4).tolist()
        [1.5, 7.5]
    """
    return (np.asarray(xy, dtype=np.float32) + 0.5) * stride - 0.5


def heatmap_shape(input_wh: tuple[int, int], stride: int) -> tuple[int, int]:
    """``(h, w)`` of the heatmaps of a ``(W, H)`` input.

    Raises:
        ConfigError: If the input size is not a multiple of the stride.
    """
    w, h = input_wh
    if stride < 1 or w % stride or h % stride:
        raise ConfigError(f"input size {w}x{h} is not a multiple of the heatmap stride {stride}", hint="pick an input size divisible by the stride")
    return h // stride, w // stride


def gaussian_heatmaps(
    kp_xy: np.ndarray,
    visibility: np.ndarray,
    input_wh: tuple[int, int],
    stride: int = 4,
    sigma: float = 2.0,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian targets of one sample's joints.

    Args:
        kp_xy: ``(J, 2) float32`` joints in input pixels (NaN unknown).
        visibility: ``(J,) int8``; 0 means unlabelled.
        input_wh: Network input ``(W, H)``, a multiple of ``stride``.
        stride: Input pixels per heatmap cell.
        sigma: Gaussian standard deviation in heatmap pixels.
        out: Optional ``(h, w, J) float32`` buffer written in place.

    Returns:
        ``(h, w, J) float32`` heatmaps, ``exp(-d² / 2σ²)`` with ``d`` the distance of a cell centre
        from the joint in heatmap pixels (peak 1 at the joint; all zeros where the weight is 0; no
        subnormal values, so the bytes do not depend on a thread's flush-to-zero mode), and
        ``(J,) float32`` weights: 1 for a labelled joint inside the heatmap
        (``[-0.5, w - 0.5) × [-0.5, h - 0.5)``), else 0.

    Example:
        A joint at input ``(10.5, 6.5)`` with stride 4 sits at heatmap ``(2.25, 1.25)``; the cell
        ``(2, 1)`` holds ``exp(-(0.25² + 0.25²) / 8) = 0.9845``.
    """
    h, w = heatmap_shape(input_wh, stride)
    xy = np.asarray(kp_xy, dtype=np.float32)
    vis = np.asarray(visibility)
    mu = input_to_heatmap_px(xy, stride)
    with np.errstate(invalid="ignore"):
        inside = (mu[:, 0] >= -0.5) & (mu[:, 0] < w - 0.5) & (mu[:, 1] >= -0.5) & (mu[:, 1] < h - 0.5)
    weights = ((vis > 0) & inside).astype(np.float32)
    mu = np.where(weights[:, None] > 0, mu, 0.0)
    k = np.float32(-0.5 / (sigma * sigma))
    gx = np.exp(k * (np.arange(w, dtype=np.float32)[None, :] - mu[:, :1]) ** 2) * weights[:, None]  # (J, w)
    gy = np.exp(k * (np.arange(h, dtype=np.float32)[None, :] - mu[:, 1:]) ** 2)  # (J, h)
    # No subnormal products: threads with flush-to-zero (TensorFlow's) would make them 0, so the
    # bytes would depend on the thread. Factors below _TINY (~9σ from the joint) are 0.
    gx[gx < _TINY] = 0.0
    gy[gy < _TINY] = 0.0
    if out is None:
        out = np.empty((h, w, len(xy)), dtype=np.float32)
    np.multiply(gy.T[:, None, :], gx.T[None, :, :], out=out)
    return out, weights


def _smooth(heatmaps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-blur each ``(h, w)`` map of ``(N, h, w, J)`` and rescale it to keep its maximum (DARK's modulation)."""
    n, h, w, j = heatmaps.shape
    k = int(2 * round(3 * sigma) + 1)
    flat = np.ascontiguousarray(heatmaps.transpose(1, 2, 0, 3).reshape(h, w, n * j), dtype=np.float32)
    peak = flat.max(axis=(0, 1))
    blurred = np.empty_like(flat)
    for c in range(0, n * j, 512):  # OpenCV filters take at most 512 channels
        part = cv2.GaussianBlur(np.ascontiguousarray(flat[:, :, c : c + 512]), (k, k), sigma, borderType=cv2.BORDER_REFLECT)
        blurred[:, :, c : c + 512] = part.reshape(h, w, -1)
    bmax = blurred.max(axis=(0, 1))
    scale = np.divide(peak, bmax, out=np.ones_like(peak), where=bmax > 0)
    blurred *= scale
    return blurred.reshape(h, w, n, j).transpose(2, 0, 1, 3)


def decode_heatmaps(
    heatmaps: np.ndarray, method: Literal["quarter", "dark"] = "dark", sigma: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel joint positions from heatmaps.

    Args:
        heatmaps: ``(N, h, w, J)`` float heatmaps (channels last, as the models output them).
        method: ``"quarter"`` (argmax + 0.25 px towards the higher neighbour) or ``"dark"``.
        sigma: The targets' Gaussian sigma (DARK's smoothing kernel).

    Returns:
        ``(N, J, 2) float32`` coordinates in heatmap pixels (x, y) and ``(N, J) float32`` maxima of
        the raw heatmaps (the usual confidence).

    Raises:
        ConfigError: On an unknown method or a heatmap array that is not 4-D.
    """
    hm = np.asarray(heatmaps, dtype=np.float32)
    if hm.ndim != 4:
        raise ConfigError(f"heatmaps of shape {hm.shape}, need (N, h, w, J)")
    if method not in ("quarter", "dark"):
        raise ConfigError(f"unknown heatmap decoding {method!r}", hint="use 'quarter' or 'dark'")
    n, h, w, j = hm.shape
    flat = hm.transpose(0, 3, 1, 2).reshape(n, j, h * w)
    idx = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    py, px = np.divmod(idx, w)
    ni, ji = np.meshgrid(np.arange(n), np.arange(j), indexing="ij")

    def at(m: np.ndarray, dy: int, dx: int) -> np.ndarray:
        return m[ni, np.clip(py + dy, 0, h - 1), np.clip(px + dx, 0, w - 1), ji]

    # Quarter offset (needs both neighbours; zero at the border).
    qx = np.where((px > 0) & (px < w - 1), 0.25 * np.sign(at(hm, 0, 1) - at(hm, 0, -1)), 0.0)
    qy = np.where((py > 0) & (py < h - 1), 0.25 * np.sign(at(hm, 1, 0) - at(hm, -1, 0)), 0.0)
    off_x, off_y = qx, qy
    if method == "dark":
        # Near a border the blur sees only one side of the peak and drags it inwards (0.1-0.6 px for
        # sigma 2 within 4 cells of the edge, whatever the border mode): there the step uses the log of
        # the raw heatmap, which is exact for a Gaussian and only noisier for a prediction.
        margin = int(np.ceil(2 * sigma)) + 1
        near = (px < margin) | (px > w - 1 - margin) | (py < margin) | (py > h - 1 - margin)
        smooth, raw = np.log(np.maximum(_smooth(hm, sigma), 1e-10)), np.log(np.maximum(hm, 1e-10))

        def lat(dy: int, dx: int) -> np.ndarray:
            return np.where(near, at(raw, dy, dx), at(smooth, dy, dx))

        c = lat(0, 0)
        dx = 0.5 * (lat(0, 1) - lat(0, -1))
        dy = 0.5 * (lat(1, 0) - lat(-1, 0))
        dxx = lat(0, 1) - 2 * c + lat(0, -1)
        dyy = lat(1, 0) - 2 * c + lat(-1, 0)
        dxy = 0.25 * (lat(1, 1) - lat(-1, 1) - lat(1, -1) + lat(-1, -1))
        det = dxx * dyy - dxy * dxy
        interior = (px > 0) & (px < w - 1) & (py > 0) & (py < h - 1)
        ok = interior & (det > 1e-12) & (dxx < 0)
        safe = np.where(ok, det, 1.0)
        tx = -(dyy * dx - dxy * dy) / safe
        ty = -(dxx * dy - dxy * dx) / safe
        ok &= (np.abs(tx) <= 1.0) & (np.abs(ty) <= 1.0)
        off_x, off_y = np.where(ok, tx, qx), np.where(ok, ty, qy)
    coords = np.stack([px + off_x, py + off_y], axis=-1).astype(np.float32)
    return coords, maxvals.astype(np.float32)


def crop_to_image_px(
    kp_crop_xy: np.ndarray, crops_xyxy_px: np.ndarray, crop_wh: tuple[int, int], flip: np.ndarray | None = None
) -> np.ndarray:
    """Map crop-pixel joints back to source-image pixels: the inverse of :func:`tasks.transforms.geometry.crop_affines`.

    Args:
        kp_crop_xy: ``(N, J, 2)`` joints in crop pixels.
        crops_xyxy_px: ``(N, 4)`` crop boxes in image pixels (the records' ``crop_xyxy_px``).
        crop_wh: Crop ``(W, H)`` in pixels.
        flip: Optional ``(N,) bool``: the crop was mirrored (``x' = W - 1 - x``) when it was made.
            Only the coordinates are un-mirrored; the caller swaps joints back if it needs to.

    Returns:
        ``(N, J, 2) float32`` image pixels: ``x = x1 + (x_crop + 0.5) * (x2 - x1) / W`` (and y alike).

    Example:
        Box ``(10, 20, 110, 220)`` into a 50×100 crop (2 image px per crop px): crop ``(-0.5, -0.5)``
        -> image ``(10, 20)``; crop ``(0, 0)`` -> ``(11, 21)``.
    """
    kp = np.asarray(kp_crop_xy, dtype=np.float64)
    c = np.asarray(crops_xyxy_px, dtype=np.float64).reshape(-1, 4)
    w, h = crop_wh
    x = kp[..., 0]
    if flip is not None:
        x = np.where(np.asarray(flip, dtype=bool)[:, None], (w - 1) - x, x)
    sx = ((c[:, 2] - c[:, 0]) / w)[:, None]
    sy = ((c[:, 3] - c[:, 1]) / h)[:, None]
    out_x = c[:, :1] + (x + 0.5) * sx
    out_y = c[:, 1:2] + (kp[..., 1] + 0.5) * sy
    return np.stack([out_x, out_y], axis=-1).astype(np.float32)


def normalise_pose(kp_xy: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """Translation- and scale-free pose features (the FLIC notebook's MLP input).

    Visible means labelled (visibility > 0) with finite coordinates. Each pose is centred on the mean
    of its visible joints and divided by their spread, the RMS distance from that mean (1 when it is
    0, e.g. a single visible joint).

    Args:
        kp_xy: ``(N, J, 2)`` joints (any pixel frame).
        visibility: ``(N, J)``.

    Returns:
        ``(N, J, 3) float32``: normalised x, y and a flag 1.0; all three 0 for a joint that is not
        visible (and for every joint of a pose with none).

    Example:
        Joints ``(0, 0)``, ``(2, 0)`` visible and a third unlabelled: mean ``(1, 0)``, spread 1 ->
        ``[[-1, 0, 1], [1, 0, 1], [0, 0, 0]]``.
    """
    xy = np.asarray(kp_xy, dtype=np.float64)
    vis = (np.asarray(visibility) > 0) & np.isfinite(xy).all(axis=-1)
    m = vis[..., None]
    count = np.maximum(vis.sum(axis=-1), 1)[:, None]  # (N, 1)
    mean = np.where(m, xy, 0.0).sum(axis=1) / count  # (N, 2)
    d = np.where(m, xy - mean[:, None, :], 0.0)
    spread = np.sqrt((d**2).sum(axis=(1, 2)) / count[:, 0])
    spread = np.where(spread > 1e-9, spread, 1.0)
    out = np.concatenate([d / spread[:, None, None], m.astype(np.float64)], axis=-1)
    return out.astype(np.float32)

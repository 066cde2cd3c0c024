"""Crop, resize and flip for an image and its keypoints together (torchvision-v2 style).

Randomness is sampled once per sample (:func:`make_crop_params` from an ``np.random.Generator``)
and then applied deterministically to pixels and keypoints by small pure kernels. Crop and resize
are one affine warp (``cv2.warpAffine``): the same matrix moves the keypoints, so they cannot drift
apart. The crop follows the FLIC notebook: the person box is padded by a ratio drawn in
``[pad_min, pad_max]`` and shifted by up to ``shift_px``; boxes smaller than ``min_box_px`` are
grown to it; the result is widened to the output aspect ratio. Regions outside the image are
filled with ``fill_value``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from schemas.errors import ConfigError, SkeletonError
from schemas.skeletons import Skeleton


@dataclass(frozen=True)
class CropConfig:
    """Crop and resize parameters (part of the dataset version).

    Attributes:
        out_height_px: Output height H.
        out_width_px: Output width W.
        pad_min: Smallest padding ratio (box side × ratio).
        pad_max: Largest padding ratio.
        shift_px: Maximum absolute centre shift in source pixels, per axis.
        min_box_px: Box sides below this are grown to it before padding.
        flip_prob: Probability of a horizontal flip (0 for dataset builds, >0 for augmentation).
        fill_value: Grey level of pixels outside the source image.
    """

    out_height_px: int = 256
    out_width_px: int = 192
    pad_min: float = 1.4
    pad_max: float = 1.6
    shift_px: float = 5.0
    min_box_px: float = 100.0
    flip_prob: float = 0.0
    fill_value: int = 0

    def __post_init__(self) -> None:
        if self.out_height_px < 8 or self.out_width_px < 8:
            raise ConfigError(f"output size {self.out_width_px}x{self.out_height_px} is too small", hint="use at least 8x8")
        if not 0 < self.pad_min <= self.pad_max:
            raise ConfigError(f"pad ratio range [{self.pad_min}, {self.pad_max}] is invalid", hint="need 0 < pad_min <= pad_max")
        if self.shift_px < 0 or self.min_box_px < 0 or not 0 <= self.flip_prob <= 1:
            raise ConfigError("shift_px and min_box_px must be >= 0 and flip_prob in [0, 1]")


@dataclass(frozen=True)
class CropParams:
    """Per-sample random draws (sampled once, applied to pixels and keypoints alike).

    Attributes:
        pad_ratio: Padding ratio in ``[pad_min, pad_max]``.
        shift_xy_px: ``(2,)`` centre shift in source pixels.
        flip: Whether to mirror horizontally.
    """

    pad_ratio: float
    shift_xy_px: tuple[float, float]
    flip: bool


def make_crop_params(rng: np.random.Generator, cfg: CropConfig) -> CropParams:
    """Draw one sample's crop parameters. Always draws the same number of values (stable streams)."""
    pad = float(rng.uniform(cfg.pad_min, cfg.pad_max))
    shift = rng.uniform(-cfg.shift_px, cfg.shift_px, size=2)
    flip = bool(rng.random() < cfg.flip_prob)
    return CropParams(pad_ratio=pad, shift_xy_px=(float(shift[0]), float(shift[1])), flip=flip)


def sample_rng(seed: int, sample_key: int) -> np.random.Generator:
    """Per-sample generator seeded by (run seed, stable hash of the sample id)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(sample_key) & 0xFFFFFFFFFFFFFFFF])


def crop_box_xyxy(bbox_xyxy_px: np.ndarray, params: CropParams, cfg: CropConfig) -> np.ndarray:
    """The crop box in source pixels (one sample; see :func:`crop_boxes_xyxy`).

    Args:
        bbox_xyxy_px: ``(4,) float`` person box.
        params: Sampled parameters.
        cfg: Configuration.

    Returns:
        ``(4,) float32`` crop box ``x1, y1, x2, y2`` with aspect ratio ``W/H`` of the output.

    Example:
        A 100×200 box, pad 1.5, no shift, output 192×256: height 300, width 225.
    """
    box = np.asarray(bbox_xyxy_px, dtype=np.float64).reshape(1, 4)
    return crop_boxes_xyxy(box, np.array([params.pad_ratio]), np.array([params.shift_xy_px], dtype=np.float64), cfg)[0]


def crop_boxes_xyxy(bboxes_xyxy_px: np.ndarray, pad_ratio: np.ndarray, shift_xy_px: np.ndarray, cfg: CropConfig) -> np.ndarray:
    """Crop boxes of N samples at once.

    Args:
        bboxes_xyxy_px: ``(N, 4) float64`` person boxes.
        pad_ratio: ``(N,) float64`` padding ratios.
        shift_xy_px: ``(N, 2) float64`` centre shifts.
        cfg: Configuration (minimum box side, output aspect ratio).

    Returns:
        ``(N, 4) float32`` boxes: the padded box, grown to ``min_box_px``, widened (or heightened)
        about its shifted centre to the output aspect ratio ``W/H``.
    """
    b = np.asarray(bboxes_xyxy_px, dtype=np.float64)
    cx = (b[:, 0] + b[:, 2]) / 2 + shift_xy_px[:, 0]
    cy = (b[:, 1] + b[:, 3]) / 2 + shift_xy_px[:, 1]
    w = np.maximum(b[:, 2] - b[:, 0], cfg.min_box_px) * pad_ratio
    h = np.maximum(b[:, 3] - b[:, 1], cfg.min_box_px) * pad_ratio
    aspect = cfg.out_width_px / cfg.out_height_px
    wide = w / h > aspect
    w, h = np.where(wide, w, h * aspect), np.where(wide, w / aspect, h)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)


def crop_affine(crop_xyxy_px: np.ndarray, out_width_px: int, out_height_px: int, flip: bool) -> np.ndarray:
    """``(2, 3) float64`` affine mapping source pixel centres to output pixel centres.

    The crop box edges map to the output edges (pixel-centre convention: the box edge ``x1`` maps
    to ``-0.5``), and a flip mirrors by ``x' = W - 1 - x``. The box ``[-0.5, W - 0.5]`` of a W-wide
    image with the same output size is the identity.
    """
    return crop_affines(np.asarray(crop_xyxy_px).reshape(1, 4), out_width_px, out_height_px, np.array([flip]))[0]


def crop_affines(crops_xyxy_px: np.ndarray, out_width_px: int, out_height_px: int, flip: np.ndarray) -> np.ndarray:
    """Affines of N crops at once (see :func:`crop_affine`).

    Args:
        crops_xyxy_px: ``(N, 4)`` crop boxes.
        out_width_px: Output width W.
        out_height_px: Output height H.
        flip: ``(N,) bool`` horizontal mirror per crop.

    Returns:
        ``(N, 2, 3) float64``.
    """
    c = np.asarray(crops_xyxy_px, dtype=np.float64)
    sx = out_width_px / (c[:, 2] - c[:, 0])
    sy = out_height_px / (c[:, 3] - c[:, 1])
    # Continuous coordinates with pixel centres at integers: the box edge x1 maps to the output's
    # left edge -0.5 and x2 to W - 0.5, i.e. x_out = (x_src - x1) * sx - 0.5.
    tx = -c[:, 0] * sx - 0.5
    ty = -c[:, 1] * sy - 0.5
    zero = np.zeros_like(sx)
    m = np.stack([np.stack([sx, zero, tx], axis=1), np.stack([zero, sy, ty], axis=1)], axis=1)
    flip = np.asarray(flip, dtype=bool)
    if flip.any():  # x' = W - 1 - x after the crop
        m[flip, 0, :] = -m[flip, 0, :] + 0.0  # (+ 0.0: no negative zeros)
        m[flip, 0, 2] += out_width_px - 1.0
    return m


def warp_image(
    image: np.ndarray, affine: np.ndarray, out_width_px: int, out_height_px: int, fill_value: int = 0, out: np.ndarray | None = None
) -> np.ndarray:
    """Apply ``affine`` to ``(H, W, C) uint8`` pixels; returns ``(out_h, out_w, C) uint8``.

    ``out``, if given, is a C-contiguous ``(out_h, out_w, C) uint8`` array written in place (and
    returned), so a batch can be warped straight into its shard buffer.
    """
    if out is not None and (out.shape != (out_height_px, out_width_px, image.shape[2]) or out.dtype != np.uint8 or not out.flags.c_contiguous):
        raise ConfigError(f"warp output buffer has shape {out.shape} {out.dtype}, need ({out_height_px}, {out_width_px}, {image.shape[2]}) uint8 C-contiguous")
    return cv2.warpAffine(
        image,
        affine,
        (out_width_px, out_height_px),
        dst=out,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(fill_value, fill_value, fill_value),
    )


def warp_keypoints(keypoints_xy: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply one ``(2, 3)`` affine to ``(..., J, 2)`` keypoints, or ``(P, 2, 3)`` affines to ``(P, 2)`` points.

    Returns:
        ``float32`` keypoints of the input's shape; NaN stays NaN.
    """
    xy = np.asarray(keypoints_xy, dtype=np.float64)
    a = np.asarray(affine, dtype=np.float64)
    if a.ndim == 2:
        out = xy @ a[:, :2].T + a[:, 2]
    else:
        x, y = xy[:, 0], xy[:, 1]
        out = np.stack([x * a[:, 0, 0] + y * a[:, 0, 1] + a[:, 0, 2], x * a[:, 1, 0] + y * a[:, 1, 1] + a[:, 1, 2]], axis=1)
    return out.astype(np.float32)


def flip_keypoints(
    keypoints_xy_px: np.ndarray,
    visibility: np.ndarray,
    flip_permutation: np.ndarray | Sequence[int],
    image_width_px: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror keypoints horizontally and swap their left/right joints (the one keypoint flip).

    The mirror is ``x' = W - 1 - x`` (pixel centres, DESIGN.md), computed in float32; then joint ``j``
    of the result is joint ``flip_permutation[j]`` of the input, for coordinates and visibility alike.
    Pass ``image_width_px=None`` when the coordinates were already mirrored by an affine that holds the
    mirror (:func:`crop_affines` with ``flip``, which also warps the pixels): then only the joints are
    swapped. NaN coordinates stay NaN.

    Args:
        keypoints_xy_px: ``(N, J, 2) float32`` (any leading shape ``(..., J, 2)``; ``(J, 2)`` for one person).
        visibility: ``(N, J) int8`` (the same leading shape).
        flip_permutation: ``(J,)`` joint order after the flip (``Skeleton.flip_permutation``, built from
            the skeleton's flip pairs; an involution).
        image_width_px: Image width W to mirror in, or None to swap only.

    Returns:
        ``(N, J, 2) float32`` flipped coordinates and ``(N, J)`` visibility (new arrays).

    Raises:
        SkeletonError: If the permutation's length is not the keypoints' J.

    Example:
        >>> xy = np.array([[[2.0, 7.0], [8.0, 7.0]]], np.float32)  # (1, 2, 2): left, right shoulder
        >>> out, vis = flip_keypoints(xy, np.array([[2, 1]], np.int8), [1, 0], image_width_px=10)
        >>> out.tolist(), vis.tolist()
        ([[[1.0, 7.0], [7.0, 7.0]]], [[1, 2]])
    """
    perm = np.asarray(flip_permutation, dtype=np.int64)
    xy = np.asarray(keypoints_xy_px, dtype=np.float32)
    if xy.ndim < 2 or xy.shape[-1] != 2 or perm.shape != (xy.shape[-2],):
        raise SkeletonError(
            f"keypoints of shape {xy.shape} do not fit a flip permutation of {perm.size} joints",
            hint="pass (..., J, 2) keypoints and the skeleton's flip_permutation (J,)",
        )
    if image_width_px is not None:
        xy = xy.copy()
        xy[..., 0] = (image_width_px - 1) - xy[..., 0]
    return xy[..., perm, :], np.asarray(visibility)[..., perm]


@dataclass(frozen=True)
class CropResult:
    """One transformed sample.

    Attributes:
        image: ``(H, W, 3) uint8`` crop.
        crop_xyxy_px: ``(4,) float32`` crop box in source pixels.
        keypoints_xy_px: ``(J, 2) float32`` keypoints in crop pixels (NaN unknown).
        visibility: ``(J,) int8`` (permuted when flipped).
        params: The sampled parameters.
    """

    image: np.ndarray
    crop_xyxy_px: np.ndarray
    keypoints_xy_px: np.ndarray
    visibility: np.ndarray
    params: CropParams


def decode_reduction(crop_boxes_xyxy: np.ndarray | list[np.ndarray], cfg: CropConfig, max_factor: int = 8) -> int:
    """Largest JPEG DCT reduction (1, 2, 4 or 8) that still leaves every crop at least output size.

    Decoding at 1/k resolution (``cv2.IMREAD_REDUCED_COLOR_k``) is several times cheaper and,
    when every crop is downscaled by at least k anyway, loses nothing the output can show (it acts
    as an area pre-filter, so the final bilinear warp aliases less).

    Args:
        crop_boxes_xyxy: ``(N, 4)`` crop boxes of every person cropped from the image.
        cfg: Crop configuration (output size).
        max_factor: Cap on the reduction.

    Returns:
        k in {1, 2, 4, 8}.

    Example:
        One 600×800 crop into 192×256 → scale 3.1 → k = 2.
    """
    boxes = np.asarray(crop_boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    if not len(boxes):
        return 1
    return reduction_for_scale(float(crop_scales(boxes, cfg).min()), max_factor)


def crop_scales(crop_boxes_xyxy: np.ndarray, cfg: CropConfig) -> np.ndarray:
    """``(N,) float32`` source pixels per output pixel of each crop (the smaller of x and y)."""
    boxes = np.asarray(crop_boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    return np.minimum((boxes[:, 2] - boxes[:, 0]) / cfg.out_width_px, (boxes[:, 3] - boxes[:, 1]) / cfg.out_height_px)


def reduction_for_scale(scale: float, max_factor: int = 8) -> int:
    """Largest k in {1, 2, 4, 8} (≤ ``max_factor``) with ``k <= scale``: ``3.1`` → 2, ``0.7`` → 1."""
    k = 1
    while k * 2 <= min(scale, max_factor):
        k *= 2
    return k


def reduced_to_full(k: int) -> np.ndarray:
    """``(3, 3)`` homogeneous map from pixel centres of a 1/k decode to full-resolution ones."""
    off = (k - 1) / 2.0
    return np.array([[k, 0.0, off], [0.0, k, off], [0.0, 0.0, 1.0]])


def decoded_pixel_affine(affine: np.ndarray, reduction: int) -> np.ndarray:
    """``(2, 3)`` affine from the pixels of a ``1/reduction`` decode to the output (``affine`` maps full-resolution pixels)."""
    if reduction == 1:
        return affine
    return (np.vstack([affine, [0.0, 0.0, 1.0]]) @ reduced_to_full(reduction))[:2]


def crop_sample(
    image: np.ndarray,
    bbox_xyxy_px: np.ndarray,
    keypoints_xy_px: np.ndarray,
    visibility: np.ndarray,
    skeleton: Skeleton,
    params: CropParams,
    cfg: CropConfig,
    reduction: int = 1,
    out: np.ndarray | None = None,
) -> CropResult:
    """Crop, resize (and maybe flip) one image and its keypoints with the same transform.

    Args:
        image: ``(H, W, 3) uint8`` source pixels, possibly decoded at ``1/reduction`` resolution.
        bbox_xyxy_px: ``(4,)`` person box (full-resolution pixels).
        keypoints_xy_px: ``(J, 2) float32`` source keypoints (full-resolution pixels).
        visibility: ``(J,) int8``.
        skeleton: For left/right swaps on flip.
        params: Sampled parameters.
        cfg: Configuration.
        reduction: The factor ``image`` was decoded at (see :func:`decode_reduction`).
        out: Optional ``(H, W, 3) uint8`` C-contiguous array the crop is written into.

    Returns:
        A :class:`CropResult`.
    """
    box = crop_box_xyxy(bbox_xyxy_px, params, cfg)
    affine = crop_affine(box, cfg.out_width_px, cfg.out_height_px, params.flip)
    pixels = warp_image(image, decoded_pixel_affine(affine, reduction), cfg.out_width_px, cfg.out_height_px, cfg.fill_value, out=out)
    kps = warp_keypoints(keypoints_xy_px, affine)
    vis = np.asarray(visibility, dtype=np.int8)
    if params.flip:
        kps, vis = flip_keypoints(kps, vis, skeleton.flip_permutation, image_width_px=None)  # mirrored by the affine
    return CropResult(image=pixels, crop_xyxy_px=box, keypoints_xy_px=kps, visibility=vis, params=params)

"""Training-time augmentation of a crop and its joints together (torchvision-v2 style).

Parameters are sampled once per sample (:func:`make_params` from an ``np.random.Generator``, the
same number of draws whatever the outcome, so streams stay aligned), turned into ONE ``(2, 3)``
affine (:func:`augment_affine`: resize to the network input, scale and rotate about the output
centre, translate, then mirror), and that matrix moves both the pixels (:func:`apply_image`,
``cv2.warpAffine``) and the joints (:func:`apply_keypoints`), so the two cannot drift apart.

Conventions (DESIGN.md): pixel centres, origin top-left, x right, y down; the mirror is
``x' = W - 1 - x`` with left/right joints swapped by the skeleton's ``flip_permutation``; a
positive rotation turns the picture counter-clockwise as seen on screen (OpenCV's
``getRotationMatrix2D``). Joints that land outside the output get visibility 0 (their
coordinates are kept, so a caller can still see where they went).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from schemas.errors import ConfigError, SkeletonError


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges the per-sample draws come from.

    Attributes:
        flip_prob: Probability of a horizontal mirror.
        scale_range: ``(low, high)`` zoom factor about the output centre (> 1 enlarges the person).
        rotation_deg: Rotation drawn uniformly in ``[-rotation_deg, rotation_deg]`` degrees...
        rotation_prob: ...with this probability (else no rotation), as in SimpleBaseline/MMPose.
        translate_frac: Maximum shift per axis as a fraction of the output width/height.
    """

    flip_prob: float = 0.5
    scale_range: tuple[float, float] = (0.75, 1.25)
    rotation_deg: float = 30.0
    rotation_prob: float = 0.6
    translate_frac: float = 0.05

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ConfigError(f"augment scale_range {self.scale_range} is invalid", hint="need 0 < low <= high, e.g. (0.75, 1.25)")
        if not (0 <= self.flip_prob <= 1 and 0 <= self.rotation_prob <= 1):
            raise ConfigError("augment flip_prob and rotation_prob must be in [0, 1]", hint="e.g. flip_prob=0.5, rotation_prob=0.6")
        if self.rotation_deg < 0 or not 0 <= self.translate_frac < 1:
            raise ConfigError("augment rotation_deg must be >= 0 and translate_frac in [0, 1)", hint="e.g. rotation_deg=30, translate_frac=0.05")


@dataclass(frozen=True)
class AugmentParams:
    """One sample's draws (sampled once, applied to pixels and joints alike).

    Attributes:
        flip: Mirror horizontally (after the other transforms).
        scale: Zoom about the output centre.
        rotation_deg: Counter-clockwise rotation about the output centre, degrees.
        translate_xy_frac: ``(2,)`` shift as fractions of the output width and height.
    """

    flip: bool = False
    scale: float = 1.0
    rotation_deg: float = 0.0
    translate_xy_frac: tuple[float, float] = (0.0, 0.0)


IDENTITY = AugmentParams()


def make_params(rng: np.random.Generator, cfg: AugmentConfig) -> AugmentParams:
    """Draw one sample's parameters: always 6 values from ``rng`` (stable streams).

    Example:
        >>> p = make_params(np.random.default_rng(0), AugmentConfig(flip_prob=0.0, rotation_prob=0.0))
        >>> p.flip, p.rotation_deg
        (False, 0.0)
    """
    u = rng.random(2)
    scale = float(rng.uniform(cfg.scale_range[0], cfg.scale_range[1]))
    angle = float(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    shift = rng.uniform(-cfg.translate_frac, cfg.translate_frac, size=2)
    return AugmentParams(
        flip=bool(u[0] < cfg.flip_prob),
        scale=scale,
        rotation_deg=angle if u[1] < cfg.rotation_prob else 0.0,
        translate_xy_frac=(float(shift[0]), float(shift[1])),
    )


def augment_affine(params: AugmentParams, in_wh: tuple[int, int], out_wh: tuple[int, int]) -> np.ndarray:
    """``(2, 3) float64`` affine from input pixel centres to output pixel centres.

    Composition (applied right to left): mirror ∘ translate ∘ (scale, rotate about the output
    centre) ∘ resize ``in_wh -> out_wh`` (edges to edges: ``x_out = (x_in + 0.5) * W_out / W_in - 0.5``).

    Args:
        params: The sample's draws.
        in_wh: Input ``(W, H)`` (the stored crop).
        out_wh: Output ``(W, H)`` (the network input).

    Example:
        Identity params with ``in_wh == out_wh`` give ``[[1, 0, 0], [0, 1, 0]]``; a 90° rotation
        of a 11×11 image takes ``(8, 5)`` (3 px right of the centre) to ``(5, 2)`` (3 px above it).
    """
    (wi, hi), (wo, ho) = in_wh, out_wh
    sx, sy = wo / wi, ho / hi
    resize = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    cx, cy = (wo - 1) / 2.0, (ho - 1) / 2.0
    theta = math.radians(params.rotation_deg)
    a, b = params.scale * math.cos(theta), params.scale * math.sin(theta)
    tx, ty = params.translate_xy_frac[0] * wo, params.translate_xy_frac[1] * ho
    rot = np.array([[a, b, (1 - a) * cx - b * cy + tx], [-b, a, b * cx + (1 - a) * cy + ty], [0.0, 0.0, 1.0]])
    m = rot @ resize
    if params.flip:
        m = np.array([[-1.0, 0.0, wo - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
    m = m[:2] + 0.0  # (+ 0.0: no negative zeros)
    m[np.abs(m) < 1e-12] = 0.0  # cos(90°) and friends
    return m


def apply_image(image: np.ndarray, affine: np.ndarray, out_wh: tuple[int, int], fill_value: int = 0, out: np.ndarray | None = None) -> np.ndarray:
    """Warp ``(H, W, C) uint8`` pixels by ``affine`` (bilinear); returns ``(out_h, out_w, C) uint8``.

    Args:
        image: Input pixels.
        affine: ``(2, 3)`` from :func:`augment_affine`.
        out_wh: Output ``(W, H)``.
        fill_value: Grey level where the output samples outside the input.
        out: Optional C-contiguous ``(out_h, out_w, C) uint8`` buffer written in place (and returned).
    """
    w, h = out_wh
    if out is not None and (out.shape != (h, w, image.shape[2]) or out.dtype != np.uint8 or not out.flags.c_contiguous):
        raise ConfigError(f"augment output buffer has shape {out.shape} {out.dtype}, need ({h}, {w}, {image.shape[2]}) uint8 C-contiguous")
    if np.array_equal(affine, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) and image.shape[:2] == (h, w):
        if out is None:
            return image.copy()
        out[...] = image
        return out
    return cv2.warpAffine(
        image,
        np.asarray(affine, dtype=np.float64),
        (w, h),
        dst=out,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(fill_value, fill_value, fill_value),
    )


def apply_keypoints(
    kp_xy: np.ndarray,
    visibility: np.ndarray,
    affine: np.ndarray,
    flip: bool,
    flip_permutation: np.ndarray,
    out_wh: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Move joints by the same affine as the pixels; swap left/right when mirrored.

    Args:
        kp_xy: ``(J, 2) float32`` input-pixel coordinates (any leading shape ``(..., J, 2)``), NaN unknown.
        visibility: ``(J,) int8`` (0 unlabelled, 1 occluded, 2 visible).
        affine: ``(2, 3)`` from :func:`augment_affine` (it already holds the mirror).
        flip: Whether ``affine`` mirrors: then joint ``j`` of the result is joint ``flip_permutation[j]``.
        flip_permutation: ``(J,)`` the skeleton's ``flip_permutation``.
        out_wh: Output ``(W, H)``; a joint outside ``[-0.5, W - 0.5) × [-0.5, H - 0.5)`` (or NaN)
            gets visibility 0.

    Returns:
        ``(J, 2) float32`` output coordinates and ``(J,) int8`` visibility (new arrays).

    Example:
        Toy skeleton ``(left_hand, nose, right_hand)``, permutation ``[2, 1, 0]``, width 10, mirror
        only: ``[(1, 4), (5, 4), (7, 4)]`` -> ``[(2, 4), (4, 4), (8, 4)]`` (the old right hand at
        x = 9 - 7 = 2 is the new left hand).
    """
    xy = np.asarray(kp_xy, dtype=np.float64)
    vis = np.asarray(visibility, dtype=np.int8)
    perm = np.asarray(flip_permutation, dtype=np.int64)
    if xy.ndim < 2 or xy.shape[-1] != 2 or vis.shape != xy.shape[:-1]:
        raise SkeletonError(f"keypoints {xy.shape} and visibility {vis.shape} do not match", hint="pass (J, 2) keypoints and (J,) visibility")
    a = np.asarray(affine, dtype=np.float64)
    out = (xy @ a[:, :2].T + a[:, 2]).astype(np.float32)
    if flip:
        if perm.shape != (xy.shape[-2],):
            raise SkeletonError(
                f"flip permutation of {perm.size} joints for keypoints of {xy.shape[-2]}", hint="pass the skeleton's flip_permutation"
            )
        out, vis = out[..., perm, :], vis[..., perm]
    w, h = out_wh
    with np.errstate(invalid="ignore"):
        inside = (out[..., 0] >= -0.5) & (out[..., 0] < w - 0.5) & (out[..., 1] >= -0.5) & (out[..., 1] < h - 0.5)
    return out, np.where(inside, vis, 0).astype(np.int8)

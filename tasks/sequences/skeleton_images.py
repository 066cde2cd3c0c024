"""Skeleton images as in the MHAD notebook: the skeleton drawn on a blank canvas, per frame and over time.

* :func:`frame_images`: one ``(H, W, 3)`` image per time step, every kept person's limbs (one HSV
  colour per limb) and joints (white) on black: what an LSTM on skeleton images reads.
* :func:`composite_image`: every time step's limbs drawn on one canvas, each step in a colour of
  OpenCV's JET map by time (blue = first, red = last), later steps over earlier ones: the image a
  CNN on skeleton images reads (the motion becomes a coloured trail).

The frame is fitted into the canvas keeping its aspect and centred (:func:`canvas_transform`). A
joint is drawn where it is found (finite, score >= :data:`MIN_DRAW_SCORE`). Images are BGR
``uint8`` like every posepipe crop.
"""

from __future__ import annotations

import cv2
import numpy as np

from schemas.skeletons import Skeleton, get_skeleton
from tasks.transforms.draw import stroke_px

#: Joints scored below this are not drawn (as in the extraction exports).
MIN_DRAW_SCORE = 0.05


def canvas_transform(frame_hw: tuple[int, int], canvas_hw: tuple[int, int]) -> tuple[float, np.ndarray]:
    """Scale and ``(2,)`` offset (x, y) mapping frame pixels into the canvas (fit, aspect kept, centred).

    Example:
        A 100x200 (H x W) frame in a 64x64 canvas: scale 0.32, offset (0, 16).
    """
    fh, fw = frame_hw
    ch, cw = canvas_hw
    scale = min(ch / max(1, fh), cw / max(1, fw))
    return scale, np.array([(cw - fw * scale) / 2, (ch - fh * scale) / 2], np.float32)


def _canvas_xy_vis(sequence: np.ndarray, frame_hw: tuple[int, int], canvas_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    scale, offset = canvas_transform(frame_hw, canvas_hw)
    seq = np.asarray(sequence, np.float32)
    found = np.isfinite(seq[..., 0]) & np.isfinite(seq[..., 1]) & (np.nan_to_num(seq[..., 2]) >= MIN_DRAW_SCORE)
    xy = seq[..., :2] * scale + offset
    return xy, np.where(found, 2, 0).astype(np.int8), scale


def frame_images(
    sequence: np.ndarray, skeleton: Skeleton | str, frame_hw: tuple[int, int], canvas_hw: tuple[int, int] = (64, 64), out: np.ndarray | None = None
) -> np.ndarray:
    """One skeleton image per time step (limbs in one HSV colour each, joints white, as the extraction's
    skeleton-image export draws them with :func:`tasks.transforms.draw.draw_skeleton`).

    Args:
        sequence: ``(T, M, J, 3)`` x_px, y_px, score in frame pixels.
        skeleton: Skeleton (limbs).
        frame_hw: Source frame (height, width) in pixels.
        canvas_hw: Image (height, width).
        out: Optional ``(T, H, W, 3) uint8`` buffer to draw into (cleared first).

    Returns:
        ``(T, H, W, 3) uint8`` BGR.
    """
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    t = sequence.shape[0]
    images = np.zeros((t, *canvas_hw, 3), np.uint8) if out is None else out
    images[:] = 0
    xy, vis, scale = _canvas_xy_vis(sequence, frame_hw, canvas_hw)
    thickness = stroke_px(scale)
    limbs = [tuple(int(v) for v in ab) for ab in sk.limb_indices]
    colours = limb_colours(len(limbs))
    pts = np.round(np.nan_to_num(xy)).astype(np.int32)
    ok = vis > 0
    for i in np.flatnonzero(ok.any(axis=(1, 2))):
        canvas = images[i]
        for m in np.flatnonzero(ok[i].any(axis=1)):
            p, f = pts[i, m], ok[i, m]
            for (a, b), colour in zip(limbs, colours, strict=True):
                if f[a] and f[b]:
                    cv2.line(canvas, (int(p[a, 0]), int(p[a, 1])), (int(p[b, 0]), int(p[b, 1])), colour, thickness, cv2.LINE_AA)
            for j in np.flatnonzero(f):
                cv2.circle(canvas, (int(p[j, 0]), int(p[j, 1])), thickness, (255, 255, 255), -1, cv2.LINE_AA)
    return images


def limb_colours(num_limbs: int) -> list[tuple[int, int, int]]:
    """One BGR colour per limb, spread over OpenCV's HSV map (the notebooks' skeleton images)."""
    levels = np.array([int(255 * i / max(1, num_limbs)) for i in range(num_limbs)], np.uint8)
    return [tuple(int(c) for c in bgr) for bgr in cv2.applyColorMap(levels[:, None], cv2.COLORMAP_HSV)[:, 0]]


def composite_image(
    sequence: np.ndarray, skeleton: Skeleton | str, frame_hw: tuple[int, int], canvas_hw: tuple[int, int] = (64, 64)
) -> np.ndarray:
    """Every time step's limbs on one canvas, coloured by time (JET: blue first, red last).

    Args:
        sequence: ``(T, M, J, 3)`` x_px, y_px, score in frame pixels.
        skeleton: Skeleton (limbs).
        frame_hw: Source frame (height, width) in pixels.
        canvas_hw: Image (height, width).

    Returns:
        ``(H, W, 3) uint8`` BGR.
    """
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    canvas = np.zeros((*canvas_hw, 3), np.uint8)
    t = sequence.shape[0]
    if t == 0:
        return canvas
    xy, vis, scale = _canvas_xy_vis(sequence, frame_hw, canvas_hw)
    levels = np.round(np.linspace(0, 255, t)).astype(np.uint8)
    colours = cv2.applyColorMap(levels[:, None], cv2.COLORMAP_JET)[:, 0]
    thickness = stroke_px(scale)
    limbs = sk.limb_indices
    pts = np.round(np.nan_to_num(xy)).astype(np.int32)
    ok = vis > 0
    both = ok[:, :, limbs[:, 0]] & ok[:, :, limbs[:, 1]]  # (T, M, L)
    segments = np.stack([pts[:, :, limbs[:, 0]], pts[:, :, limbs[:, 1]]], axis=3)  # (T, M, L, 2, 2)
    for i in range(t):
        seg = segments[i][both[i]]
        if len(seg):
            cv2.polylines(canvas, list(seg), False, tuple(int(c) for c in colours[i]), thickness, cv2.LINE_AA)
    return canvas

"""Skeleton images as in the MHAD notebook: the skeleton drawn on a blank canvas, per frame and over time.

* :func:`frame_images`: one ``(H, W, 3)`` image per time step, every kept person's limbs (one HSV
  colour per limb) and joints (white) on black: what an LSTM on skeleton images reads.
* :func:`composite_image`: every time step drawn on one canvas, each step's limbs in a colour of
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
from tasks.transforms.draw import draw_skeleton, stroke_px

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
    """One skeleton image per time step.

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
    for i in range(t):
        if vis[i].any():
            draw_skeleton(images[i], xy[i], vis[i], sk, thickness_px=thickness, radius_px=thickness, palette="limbs", in_place=True)
    return images


def composite_image(
    sequence: np.ndarray, skeleton: Skeleton | str, frame_hw: tuple[int, int], canvas_hw: tuple[int, int] = (64, 64)
) -> np.ndarray:
    """Every time step's skeleton on one canvas, coloured by time (JET: blue first, red last).

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
    for i in range(t):
        colour = tuple(int(c) for c in colours[i])
        for m in range(xy.shape[1]):
            ok = vis[i, m] > 0
            for a, b in limbs:
                if ok[a] and ok[b]:
                    cv2.line(canvas, tuple(pts[i, m, a]), tuple(pts[i, m, b]), colour, thickness, cv2.LINE_AA)
            for j in np.flatnonzero(ok):
                cv2.circle(canvas, tuple(pts[i, m, j]), thickness, colour, -1, cv2.LINE_AA)
    return canvas

"""Drawing: skeletons on images and contact sheets (for ``show``, the demo and overlays)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from schemas.skeletons import Skeleton

_LEFT = (255, 128, 0)  # BGR: blue-ish for left
_RIGHT = (0, 128, 255)  # orange for right
_MID = (0, 220, 0)
#: The colours :func:`draw_skeleton` uses, by the side a joint's name says (for legends).
SIDE_COLOURS_BGR: dict[str, tuple[int, int, int]] = {"left": _LEFT, "right": _RIGHT, "centre": _MID}


def _side_colour(name: str) -> tuple[int, int, int]:
    tokens = name.split("_")
    return _LEFT if "left" in tokens else _RIGHT if "right" in tokens else _MID


def draw_skeleton(
    image: np.ndarray,
    keypoints_xy_px: np.ndarray,
    visibility: np.ndarray,
    skeleton: Skeleton,
    radius_px: int = 3,
    thickness_px: int = 2,
) -> np.ndarray:
    """Draw joints and limbs on a copy of ``image``.

    Args:
        image: ``(H, W, 3) uint8`` BGR.
        keypoints_xy_px: ``(J, 2) float32``; NaN joints are skipped.
        visibility: ``(J,)``; 0 skipped, 1 drawn hollow (occluded), 2 filled.
        skeleton: Gives the limbs and left/right colours.
        radius_px: Joint radius.
        thickness_px: Limb thickness.

    Returns:
        ``(H, W, 3) uint8`` copy with the skeleton drawn.
    """
    out = np.ascontiguousarray(image.copy())
    xy = np.asarray(keypoints_xy_px, dtype=np.float32)
    vis = np.asarray(visibility)
    ok = (vis > 0) & np.isfinite(xy).all(axis=1)
    for a, b in skeleton.limb_indices:
        if ok[a] and ok[b]:
            colour = _side_colour(skeleton.joints[b])
            p, q = (int(round(v)) for v in xy[a]), (int(round(v)) for v in xy[b])
            cv2.line(out, tuple(p), tuple(q), colour, thickness_px, cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        centre = (int(round(float(xy[j, 0]))), int(round(float(xy[j, 1]))))
        fill = -1 if vis[j] >= 2 else 1
        cv2.circle(out, centre, radius_px, _side_colour(skeleton.joints[j]), fill, cv2.LINE_AA)
    return out


def contact_sheet(tiles: Sequence[np.ndarray], columns: int = 4, labels: Sequence[str] | None = None) -> np.ndarray:
    """Tile equally sized ``(H, W, 3) uint8`` images into one ``(rows*H, columns*W, 3)`` sheet."""
    if not tiles:
        return np.zeros((64, 64, 3), np.uint8)
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.full((rows * h, columns * w, 3), 32, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        t = tile if tile.shape[:2] == (h, w) else cv2.resize(tile, (w, h))
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = t
        if labels is not None:
            cv2.putText(sheet, labels[i][:28], (c * w + 3, r * h + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return sheet

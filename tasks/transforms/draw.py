"""Drawing: skeletons on images and contact sheets (for ``show``, the demo and overlays)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np

from schemas.skeletons import Skeleton, get_skeleton

_LEFT = (255, 128, 0)  # BGR: blue-ish for left
_RIGHT = (0, 128, 255)  # orange for right
_MID = (0, 220, 0)
_WHITE = (255, 255, 255)
#: The colours :func:`draw_skeleton` uses with ``palette="sides"``, by the side a joint's name says (for legends).
SIDE_COLOURS_BGR: dict[str, tuple[int, int, int]] = {"left": _LEFT, "right": _RIGHT, "centre": _MID}
Palette = Literal["sides", "limbs"]


def _side_colour(name: str) -> tuple[int, int, int]:
    tokens = name.split("_")
    return _LEFT if "left" in tokens else _RIGHT if "right" in tokens else _MID


@lru_cache(maxsize=32)
def _limb_colours(num_limbs: int) -> tuple[tuple[int, ...], ...]:
    """One BGR colour per limb, spread over OpenCV's HSV colour map (the notebooks' skeleton images)."""
    return tuple(
        tuple(int(c) for c in cv2.applyColorMap(np.uint8([[int(255 * i / max(1, num_limbs))]]), cv2.COLORMAP_HSV)[0, 0])
        for i in range(num_limbs)
    )


def stroke_px(scale: float) -> int:
    """Default limb thickness at a drawing scale: 2 px, thinner (down to 1) when drawing smaller than the source.

    Example:
        >>> stroke_px(1.0), stroke_px(0.5), stroke_px(0.1)
        (2, 1, 1)
    """
    return max(1, round(2 * scale)) if scale < 1 else 2


def draw_skeleton(
    image: np.ndarray,
    keypoints_xy_px: np.ndarray,
    visibility: np.ndarray,
    skeleton: Skeleton | str,
    radius_px: int | None = None,
    thickness_px: int | None = None,
    *,
    scale: float = 1.0,
    palette: Palette = "sides",
    in_place: bool = False,
) -> np.ndarray:
    """Draw people's limbs and joints (the one skeleton drawing: ``show``, extraction exports, overlays).

    Per person, limbs first (a limb only when both its joints are drawn), then joints: a joint is drawn
    where its visibility is > 0 and both coordinates are finite; visibility 2 is a filled dot, 1
    (labelled but occluded) a ring. Points are ``round(xy * scale)`` (half to even).

    Args:
        image: ``(H, W, 3) uint8`` BGR.
        keypoints_xy_px: ``(J, 2) float32`` one person, or ``(P, J, 2)`` several, in source pixels.
        visibility: ``(J,)`` or ``(P, J)``: 0 skipped, 1 ring, 2 filled.
        skeleton: The :class:`Skeleton` or its name (gives the limbs and joint names).
        radius_px: Joint radius; default ``thickness + 1``.
        thickness_px: Limb thickness; default :func:`stroke_px` of ``scale``.
        scale: Source pixels -> image pixels.
        palette: ``"sides"``: left/right/centre colours by joint name (:data:`SIDE_COLOURS_BGR`; a limb
            takes its second joint's colour); ``"limbs"``: one HSV colour per limb and white joints.
        in_place: Draw on ``image`` itself (C-contiguous) instead of on a copy.

    Returns:
        ``(H, W, 3) uint8``: the drawn copy, or ``image`` itself when ``in_place``.
    """
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    out = image if in_place else np.ascontiguousarray(image.copy())
    thickness = stroke_px(scale) if thickness_px is None else thickness_px
    radius = thickness + 1 if radius_px is None else radius_px
    xy = np.asarray(keypoints_xy_px, dtype=np.float32)
    vis = np.asarray(visibility)
    if xy.ndim == 2:
        xy, vis = xy[None], vis[None]
    limbs = sk.limb_indices
    if palette == "sides":
        limb_colours = [_side_colour(sk.joints[b]) for _, b in limbs]
        joint_colours = [_side_colour(name) for name in sk.joints]
    else:
        limb_colours = list(_limb_colours(len(limbs)))
        joint_colours = [_WHITE] * sk.num_joints
    for person_xy, person_vis in zip(xy, vis, strict=True):
        ok = (person_vis > 0) & np.isfinite(person_xy).all(axis=1)
        pts = np.round(np.nan_to_num(person_xy) * scale).astype(np.int32)
        for (a, b), colour in zip(limbs, limb_colours, strict=True):
            if ok[a] and ok[b]:
                cv2.line(out, tuple(pts[a]), tuple(pts[b]), colour, thickness, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(out, tuple(pts[j]), radius, joint_colours[j], -1 if person_vis[j] >= 2 else 1, cv2.LINE_AA)
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

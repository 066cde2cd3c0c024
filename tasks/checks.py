"""Geometry sanity of canonical ``samples``, applied to every adapter's records at parse time.

Adapters convert what their files say; this module refuses what nobody should crop or train on,
whatever the dataset, before any pixel is decoded or any memory is sized from the annotation:

* ``image_size_invalid``: annotated width or height not positive;
* ``image_too_large``: annotated width × height above ``image_io.MAX_IMAGE_PIXELS``;
* ``invalid_box``: a person box that is not finite or has no positive size;
* ``box_outside_image``: a box that does not intersect the image, or overhangs it by more than
  :data:`OVERHANG_TOLERANCE` of the image's side on any edge;
* ``nonfinite_keypoint``: a labelled joint (visibility > 0) whose x or y is NaN or infinite;
* ``keypoints_out_of_image``: a labelled joint further outside the image than the same tolerance.

Records without an annotated image size (where a dataset gives none) skip the checks that need it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas.errors import RejectReason
from tasks.datasets.base import Reject
from tasks.transforms.image_io import MAX_IMAGE_PIXELS

#: How far a person box or a labelled joint may lie outside the image, as a fraction of the
#: image's width (x) or height (y). MPII boxes built from centre and scale, and joints of people
#: cut by the frame, legitimately overhang a little; 1e30 or -1e9 never do.
OVERHANG_TOLERANCE = 0.5


def geometry_rejects(records: pa.Table) -> tuple[np.ndarray, list[Reject]]:
    """Which ``samples`` rows are geometrically usable, and a reject for each one that is not.

    Args:
        records: Canonical ``samples`` table (``image_width_px``, ``image_height_px``, ``bbox_xyxy_px``,
            ``keypoints_xy_px`` ``(J, 2)``, ``keypoints_visibility`` ``(J,)`` per row).

    Returns:
        ``keep``: ``(N,) bool``; and one :class:`Reject` (stage ``parse``) per dropped row, with the
        first failing rule as its reason.

    Example:
        a 640×480 image with bbox ``[-1e9, -1e9, -1e9 + 50, -1e9 + 50]`` → ``box_outside_image``.
    """
    n = records.num_rows
    keep = np.ones(n, dtype=bool)
    rejects: list[Reject] = []
    if n == 0:
        return keep, rejects
    widths = records.column("image_width_px").to_pylist()
    heights = records.column("image_height_px").to_pylist()
    boxes = records.column("bbox_xyxy_px").to_pylist()
    points = records.column("keypoints_xy_px").to_pylist()
    vis = records.column("keypoints_visibility").to_pylist()
    keys = records.column("source_key").to_pylist()
    splits = records.column("split").to_pylist()
    for i in range(n):
        problem = _row_problem(widths[i], heights[i], boxes[i], points[i], vis[i])
        if problem is not None:
            keep[i] = False
            rejects.append(Reject(keys[i], problem[0], problem[1], stage="parse", split=splits[i]))
    return keep, rejects


def _row_problem(
    width: int | None, height: int | None, box: list[float] | None, points: list[list[float] | None] | None, vis: list[int] | None
) -> tuple[RejectReason, str] | None:
    """The first rule a row breaks, as ``(reason, detail)``, or None."""
    sized = width is not None and height is not None
    if sized and (width <= 0 or height <= 0):
        return RejectReason.IMAGE_SIZE_INVALID, f"annotated image size {width}x{height}"
    if sized and width * height > MAX_IMAGE_PIXELS:
        return RejectReason.IMAGE_TOO_LARGE, f"annotated image size {width}x{height} is over {MAX_IMAGE_PIXELS} pixels"
    if box is not None:
        b = np.asarray(box, dtype=np.float64)
        if not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
            return RejectReason.INVALID_BOX, f"bbox_xyxy_px {box}"
        if sized:
            tx, ty = OVERHANG_TOLERANCE * width, OVERHANG_TOLERANCE * height
            misses = b[2] <= 0 or b[3] <= 0 or b[0] >= width or b[1] >= height
            overhang = b[0] < -tx or b[1] < -ty or b[2] > width + tx or b[3] > height + ty
            if misses or overhang:
                what = "does not intersect" if misses else f"overhangs by more than {OVERHANG_TOLERANCE:.0%} of"
                return RejectReason.BOX_OUTSIDE_IMAGE, f"bbox_xyxy_px {[float(v) for v in b]} {what} the {width}x{height} image"
    if points and vis:
        xy = np.array([p if p is not None else [np.nan, np.nan] for p in points], dtype=np.float64).reshape(-1, 2)
        labelled = np.asarray(vis) > 0
        bad = labelled & ~np.isfinite(xy).all(axis=1)
        if bad.any():
            return RejectReason.NONFINITE_KEYPOINT, f"labelled joints {np.flatnonzero(bad).tolist()} have non-finite coordinates"
        if sized:
            tx, ty = OVERHANG_TOLERANCE * width, OVERHANG_TOLERANCE * height
            lab = xy[labelled]
            far = (lab[:, 0] < -tx) | (lab[:, 1] < -ty) | (lab[:, 0] > width + tx) | (lab[:, 1] > height + ty)
            if far.any():
                return RejectReason.KEYPOINTS_OUT_OF_IMAGE, f"{int(far.sum())} labelled joints far outside the {width}x{height} image"
    return None

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
from tasks.shards import SampleColumns
from tasks.transforms.image_io import MAX_IMAGE_PIXELS

#: How far a person box or a labelled joint may lie outside the image, as a fraction of the
#: image's width (x) or height (y). MPII boxes built from centre and scale, and joints of people
#: cut by the frame, legitimately overhang a little; 1e30 or -1e9 never do.
OVERHANG_TOLERANCE = 0.5


def geometry_rejects(records: pa.Table) -> tuple[np.ndarray, list[Reject]]:
    """Which ``samples`` rows are geometrically usable, and a reject for each one that is not.

    The rules are evaluated for all rows at once (:func:`_suspects`); only the rows that break one
    go through the per-row rules (:func:`_row_problem`), which name the reason and the detail.

    Args:
        records: Canonical ``samples`` table (``image_width_px``, ``image_height_px``,
            ``bbox_xyxy_px``, ``keypoints_xy_px`` ``(J, 2)``, ``keypoints_visibility`` ``(J,)`` per row).

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
    for i in np.flatnonzero(_suspects(SampleColumns.from_table(records))).tolist():
        row = records.slice(i, 1).to_pylist()[0]
        problem = _row_problem(row["image_width_px"], row["image_height_px"], row["bbox_xyxy_px"], row["keypoints_xy_px"], row["keypoints_visibility"])
        if problem is not None:
            keep[i] = False
            rejects.append(Reject(row["source_key"], problem[0], problem[1], stage="parse", split=row["split"]))
    return keep, rejects


def _suspects(cols: SampleColumns) -> np.ndarray:
    """``(N,) bool``: rows that may break a rule (a superset of what :func:`_row_problem` refuses)."""
    n = len(cols.sample_id)
    wh = np.array([[np.nan if v is None else v for v in size] for size in cols.image_size], dtype=np.float64).reshape(n, 2)
    w, h = wh[:, 0], wh[:, 1]
    sized = np.isfinite(w) & np.isfinite(h)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = sized & ((w <= 0) | (h <= 0) | (w * h > MAX_IMAGE_PIXELS))
        tx, ty = OVERHANG_TOLERANCE * w, OVERHANG_TOLERANCE * h  # NaN for unsized rows: no comparison holds
        b = cols.bbox
        bad |= cols.has_box & (~np.isfinite(b).all(axis=1) | (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1]))
        misses = (b[:, 2] <= 0) | (b[:, 3] <= 0) | (b[:, 0] >= w) | (b[:, 1] >= h)
        overhang = (b[:, 0] < -tx) | (b[:, 1] < -ty) | (b[:, 2] > w + tx) | (b[:, 3] > h + ty)
        bad |= cols.has_box & sized & (misses | overhang)
        counts = np.diff(cols.starts)
        row_of = np.repeat(np.arange(n), counts)
        xy = cols.xy.astype(np.float64)
        labelled = cols.vis > 0
        far = (xy[:, 0] < -tx[row_of]) | (xy[:, 1] < -ty[row_of]) | (xy[:, 0] > (w + tx)[row_of]) | (xy[:, 1] > (h + ty)[row_of])
        point_bad = labelled & (~np.isfinite(xy).all(axis=1) | far)
    return bad | (np.bincount(row_of, weights=point_bad, minlength=n) > 0)


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

"""Image decoding that tells a truncated or corrupt file apart from a good one.

``cv2.imdecode`` happily returns a grey-filled image for a truncated JPEG (it only prints
"Premature end of JPEG file"), so the container's end marker is checked first.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from schemas.errors import RejectReason

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"


class ImageReadError(Exception):
    """Why an image could not be used; carries the reject reason code."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def check_complete(data: bytes) -> str | None:
    """Return a problem description if the encoded bytes are visibly truncated, else None."""
    if data.startswith(_JPEG_SOI):
        tail = data.rstrip(b"\x00\r\n ")
        if not tail.endswith(_JPEG_EOI):
            return "JPEG has no end-of-image marker (truncated)"
    elif data.startswith(_PNG_SIG):
        if _PNG_IEND not in data[-64:]:
            return "PNG has no IEND chunk (truncated)"
    return None


# IMREAD_IGNORE_ORIENTATION: annotations refer to the stored pixel grid (COCO's width/height are
# those of the stored JPEG), so an EXIF rotation must not be applied; skipping it is also ~20% faster.
_REDUCED = {
    k: flag | cv2.IMREAD_IGNORE_ORIENTATION
    for k, flag in {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}.items()
}


def read_image_bgr(path: Path, reduction: int = 1) -> np.ndarray:
    """Read an image as ``(H, W, 3) uint8`` BGR, optionally at ``1/reduction`` resolution.

    Args:
        path: Image file.
        reduction: 1, 2, 4 or 8 (JPEG DCT scaling: the reduced decode is much cheaper). The result
            is ``ceil(H / reduction) x ceil(W / reduction)``.

    Raises:
        ImageReadError: ``image_missing`` if absent, ``image_unreadable`` if empty, truncated or
            not decodable.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(RejectReason.IMAGE_MISSING, f"{path} does not exist") from None
    except IsADirectoryError:
        raise ImageReadError(RejectReason.IMAGE_UNREADABLE, f"{path} is a directory") from None
    if not data:
        raise ImageReadError(RejectReason.IMAGE_UNREADABLE, f"{path} is empty")
    problem = check_complete(data)
    if problem:
        raise ImageReadError(RejectReason.IMAGE_UNREADABLE, f"{path}: {problem}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[reduction])
    if image is None:
        raise ImageReadError(RejectReason.IMAGE_UNREADABLE, f"{path}: OpenCV cannot decode it")
    return image

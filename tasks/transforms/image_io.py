"""Image decoding that tells a truncated or corrupt file apart from a good one.

``cv2.imdecode`` happily returns a grey-filled image for a truncated JPEG (it only prints
"Premature end of JPEG file"), so the container's end marker is checked first.

JPEGs are decoded by libjpeg-turbo through ``simplejpeg`` (the library OpenCV bundles too; the
pixels are bit-identical to ``cv2.imdecode``, DCT-domain reductions included), which is ~15 %
faster than ``cv2.imdecode`` on 640×480 photos and can decode into a caller's reused buffer.
Recoverable stream errors are tolerated as OpenCV tolerates them (real datasets have JPEGs with
stray bytes before a marker). Everything else (PNG, BMP, 12-bit JPEGs, anything libjpeg-turbo's
simple API refuses) goes through OpenCV.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import simplejpeg

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


#: Per-image pixel cap (width × height): 100 megapixels, 300 MB decoded as BGR. An image over it is
#: refused from its header, before anything is allocated for it (the largest images of the
#: supported datasets are under 10 megapixels).
MAX_IMAGE_PIXELS = 100_000_000


def load_encoded(path: Path) -> bytes:
    """The encoded bytes of an image file, refusing what is visibly not a whole image.

    Raises:
        ImageReadError: ``image_missing`` if absent, ``image_unreadable`` if a directory, empty or
            truncated.
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
    return data


def encoded_size_wh(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's or PNG's header, without decoding; None for other formats.

    Example:
        the 24 first bytes of a 6×5 PNG → ``(6, 5)``.
    """
    if data.startswith(_JPEG_SOI):
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError:
            return None
        return int(width), int(height)
    if data.startswith(_PNG_SIG) and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def check_pixel_budget(path: Path, size_wh: tuple[int, int] | None, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an image whose header announces more than ``max_pixels`` (nothing allocated yet).

    Raises:
        ImageReadError: ``image_too_large``.
    """
    if size_wh is not None and size_wh[0] * size_wh[1] > max_pixels:
        raise ImageReadError(RejectReason.IMAGE_TOO_LARGE, f"{path}: {size_wh[0]}x{size_wh[1]} is over the {max_pixels}-pixel cap per image")


def read_image_bgr(path: Path, reduction: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """Read an image as ``(H, W, 3) uint8`` BGR, optionally at ``1/reduction`` resolution.

    Args:
        path: Image file.
        reduction: 1, 2, 4 or 8 (JPEG DCT scaling: the reduced decode is much cheaper). The result
            is ``ceil(H / reduction) x ceil(W / reduction)``.
        out: Optional 1-D ``uint8`` scratch buffer. A JPEG that fits is decoded into it and the
            result is a view of it, valid until the buffer is reused (batch loops pass the same
            buffer for every image to avoid fresh memory per decode).

    Raises:
        ImageReadError: ``image_missing`` if absent, ``image_unreadable`` if empty, truncated or
            not decodable, ``image_too_large`` if its header is over :data:`MAX_IMAGE_PIXELS`.
    """
    data = load_encoded(path)
    check_pixel_budget(path, encoded_size_wh(data))
    return decode_bgr(data, path, reduction, out)


def decode_bgr(data: bytes, path: Path, reduction: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """Decode bytes from :func:`load_encoded` (see :func:`read_image_bgr` for the arguments)."""
    if data.startswith(_JPEG_SOI):
        image = _decode_jpeg(data, reduction, out)
        if image is not None:
            return image
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[reduction])
    if image is None:
        raise ImageReadError(RejectReason.IMAGE_UNREADABLE, f"{path}: OpenCV cannot decode it")
    return image


def _decode_jpeg(data: bytes, reduction: int, out: np.ndarray | None) -> np.ndarray | None:
    """libjpeg-turbo decode at ``1/reduction``; None where only OpenCV can (12-bit, odd headers)."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        h, w = -(-height // reduction), -(-width // reduction)
        buffer = out if out is not None and out.size >= h * w * 3 else None
        image = simplejpeg.decode_jpeg(data, "BGR", min_height=h, min_width=w, buffer=buffer, strict=False)
    except ValueError:
        return None
    if image.shape != (h, w, 3):  # libjpeg-turbo picked another scale: let OpenCV decide
        return None
    return image

"""Image ids of files extracted without a ground-truth json (shared by the COCO results writer and ``extract images``)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_COCO_STEM = re.compile(r"(?:COCO_[A-Za-z]+\d{4}_)?(\d{1,15})")
STABLE_ID_BASE = 10**15


def stable_image_id(name: str) -> int:
    """The image id of a file name without a GT json.

    Args:
        name: The file name (no folder), e.g. ``000000000785.jpg`` or ``apink2.jpg``.

    Returns:
        The number of a COCO-style stem (785), else ``10**15 + sha256(name bytes) mod 10**15``.
    """
    match = _COCO_STEM.fullmatch(Path(name).stem)
    if match:
        return int(match.group(1))
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()
    return STABLE_ID_BASE + int(digest, 16) % STABLE_ID_BASE

import cv2
import numpy as np
import pytest

from schemas.errors import RejectReason
from tasks.transforms.image_io import ImageReadError, read_image_bgr


def _jpeg(tmp_path, name="a.jpg"):
    path = tmp_path / name
    cv2.imwrite(str(path), np.full((20, 30, 3), 99, np.uint8))
    return path


def test_reads_good_image(tmp_path):
    assert read_image_bgr(_jpeg(tmp_path)).shape == (20, 30, 3)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p.unlink(), RejectReason.IMAGE_MISSING),
        (lambda p: p.write_bytes(b""), RejectReason.IMAGE_UNREADABLE),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), RejectReason.IMAGE_UNREADABLE),
        (lambda p: p.write_bytes(b"not an image at all"), RejectReason.IMAGE_UNREADABLE),
    ],
    ids=["missing", "empty", "truncated", "garbage"],
)
def test_bad_images_have_reasons(tmp_path, mutate, reason):
    path = _jpeg(tmp_path)
    mutate(path)
    with pytest.raises(ImageReadError) as exc:
        read_image_bgr(path)
    assert exc.value.reason == reason

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


def _photo(tmp_path, name="p.jpg", size=(97, 131), **params):
    """A noisy gradient (so the DCT has work to do) written by OpenCV with imwrite params."""
    rng = np.random.default_rng(0)
    h, w = size
    image = (np.linspace(0, 255, w)[None, :, None] + rng.normal(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)
    path = tmp_path / name
    cv2.imwrite(str(path), image, [int(v) for kv in params.items() for v in (getattr(cv2, kv[0]), kv[1])])
    return path


@pytest.mark.parametrize("reduction", [1, 2, 4, 8])
@pytest.mark.parametrize("params", [{}, {"IMWRITE_JPEG_PROGRESSIVE": 1}, {"IMWRITE_JPEG_SAMPLING_FACTOR": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444}], ids=["baseline", "progressive", "444"])
def test_jpeg_decode_is_bit_identical_to_opencv(tmp_path, reduction, params):
    path = _photo(tmp_path, **params)
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[reduction]
    expected = cv2.imread(str(path), flags | cv2.IMREAD_IGNORE_ORIENTATION)
    got = read_image_bgr(path, reduction=reduction)
    assert got.shape == (-(-97 // reduction), -(-131 // reduction), 3) and np.array_equal(got, expected)


def test_decodes_into_the_callers_buffer_when_it_fits(tmp_path):
    path = _photo(tmp_path)
    scratch = np.zeros(97 * 131 * 3 + 10, np.uint8)
    got = read_image_bgr(path, out=scratch)
    assert np.shares_memory(got, scratch) and np.array_equal(got, read_image_bgr(path))
    small = np.zeros(10, np.uint8)
    assert not np.shares_memory(read_image_bgr(path, out=small), small)  # too small: a fresh array


def test_grey_jpeg_png_and_cmyk_jpeg_decode(tmp_path):
    grey = tmp_path / "g.jpg"
    cv2.imwrite(str(grey), np.full((9, 11), 77, np.uint8))
    assert read_image_bgr(grey).shape == (9, 11, 3)
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.full((5, 6, 3), 3, np.uint8))
    assert read_image_bgr(png).shape == (5, 6, 3)  # OpenCV path
    from PIL import Image  # matplotlib's dependency; OpenCV cannot write CMYK

    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (20, 10), (10, 200, 30, 5)).save(cmyk, "JPEG")
    expected = cv2.imread(str(cmyk), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert np.array_equal(read_image_bgr(cmyk), expected)  # Adobe CMYK: libjpeg-turbo converts it as OpenCV does


def test_corrupt_jpeg_body_is_not_a_crash(tmp_path):
    path = _photo(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64  # scrambled entropy data, markers intact
    path.write_bytes(bytes(data))
    got = read_image_bgr(path)  # decodes like OpenCV does (libjpeg recovers), no exception
    assert got.shape == (97, 131, 3)

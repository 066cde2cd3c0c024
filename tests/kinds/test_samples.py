"""tasks/kinds/samples.py: how many crops a shard holds when the request does not say."""

from __future__ import annotations

import pytest

from schemas.settings import MAX_AUTO_SHARD_ROWS, SHARD_PIXEL_BYTES
from tasks import rebuild as stages
from tasks.kinds.base import get_kind
from tasks.synthetic import write_synthetic_coco
from tasks.transforms.geometry import CropConfig


@pytest.mark.parametrize(
    ("width_px", "height_px", "rows"),
    [
        (192, 256, 512),  # the default crop: the historic 512
        (96, 128, 2048),  # a quarter of the pixels: four times the rows, the same bytes
        (48, 64, MAX_AUTO_SHARD_ROWS),  # 8,192 by bytes, capped
        (8, 8, MAX_AUTO_SHARD_ROWS),
        (512, 512, 96),
        (4000, 4000, 64),  # never below 64
    ],
)
def test_the_default_shard_holds_a_fixed_number_of_pixel_bytes(width_px, height_px, rows):
    kind = get_kind("samples")
    assert kind.shard_size(None, CropConfig(out_width_px=width_px, out_height_px=height_px)) == rows
    if 64 < rows < MAX_AUTO_SHARD_ROWS:
        assert rows * width_px * height_px * 3 <= SHARD_PIXEL_BYTES < (rows + 1) * width_px * height_px * 3


def test_an_explicit_shard_size_wins_and_other_kinds_keep_their_default():
    assert get_kind("samples").shard_size(32, CropConfig(out_width_px=96, out_height_px=128)) == 32
    assert get_kind("clips").shard_size(None, CropConfig(out_width_px=96, out_height_px=128)) == 512


def test_the_version_records_the_shard_size_used_so_auto_and_explicit_name_the_same_version(tmp_path):
    src = write_synthetic_coco(tmp_path / "src", {"train": 3}, seed=1, size_wh=(160, 120))
    crop = CropConfig(out_width_px=48, out_height_px=64)
    auto = stages.plan_version(stages.RebuildRequest("coco", str(tmp_path / "a"), str(src), crop=crop))
    explicit = stages.plan_version(stages.RebuildRequest("coco", str(tmp_path / "b"), str(src), crop=crop, shard_size=MAX_AUTO_SHARD_ROWS))
    other = stages.plan_version(stages.RebuildRequest("coco", str(tmp_path / "c"), str(src), crop=crop, shard_size=512))
    assert auto.params["shard_size"] == MAX_AUTO_SHARD_ROWS
    assert auto.version == explicit.version != other.version

"""posepipe/: the documented import surface."""

import subprocess
import sys

import pytest

import posepipe
from schemas.errors import UnknownDatasetError, VersionNotFoundError
from tasks.synthetic import write_synthetic_coco


def test_import_name_works_from_anywhere(tmp_path):
    """The installed package is importable outside the checkout, with a version."""
    out = subprocess.run([sys.executable, "-c", "import posepipe; print(posepipe.__version__)"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == posepipe.__version__ and posepipe.__version__[0].isdigit()


def test_rebuild_then_read_back_the_version(tmp_path):
    src = write_synthetic_coco(tmp_path / "src", {"train": 3, "val": 2}, seed=4)
    root = str(tmp_path / "root")
    with pytest.raises(VersionNotFoundError, match="no LATEST"):
        posepipe.manifest(root, "coco")
    s = posepipe.rebuild("coco", root, str(src), crop=posepipe.CropConfig(out_height_px=32, out_width_px=24))
    assert s["validation"] == "passed" and not s["reused"]
    m = posepipe.manifest(root, "coco")
    assert m["version"] == s["version"] and m["written"] == s["written"] == sum(m["counts"].values())
    assert [v["version"] for v in posepipe.versions(root, "coco")] == [s["version"]]
    assert posepipe.version_dir(root, "coco") == s["location"]
    assert posepipe.rebuild("coco", root, str(src), crop=posepipe.CropConfig(out_height_px=32, out_width_px=24))["reused"]
    with pytest.raises(UnknownDatasetError, match="known: "):
        posepipe.rebuild("cocoo", root, str(src))

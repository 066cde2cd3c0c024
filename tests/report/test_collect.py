"""What the dataset card reads from storage when the version failed its gate."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.report.collect import dataset_card_data
from tests.training.fakes import build_activity_version, write_activity_source


def test_a_version_that_failed_its_gate_still_gets_a_card_without_samples(tmp_path: Path) -> None:
    src = write_activity_source(tmp_path / "src", train_per_class=2, valid_per_class=1, seed=0)
    built = build_activity_version(tmp_path / "root", src)
    manifest_path = tmp_path / "root" / "datasets" / "mpii" / built["version"] / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["validation"] = {**manifest["validation"], "success": False, "failures": ["crops_finite: 1 unexpected"]}
    manifest_path.write_text(json.dumps(manifest))
    for ref in ("mpii", f"mpii@{built['version']}"):  # LATEST, and the version named
        data = dataset_card_data(str(tmp_path / "root"), ref)
        assert data["version"] == built["version"] and data["counts"] == manifest["counts"]
        assert data["validation"]["success"] is False and data["validation"]["failures"] == ["crops_finite: 1 unexpected"]
        assert data["samples"] == [] and "failed its gate" in data["samples_note"]

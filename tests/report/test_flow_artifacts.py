"""The rebuild flow ends with the dataset card and a link artifact to it; a card that cannot be
rendered logs a warning and never fails the flow."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prefect import flow

from flows.rebuild import rebuild_flow
from flows.report import link_report
from tests.training.fakes import write_activity_source

pytestmark = pytest.mark.slow


def _artifacts() -> dict[str, object]:
    from prefect.client.orchestration import get_client

    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts()

    return {a.key: a for a in asyncio.run(read()) if a.key}


@flow
def _card_of_a_missing_model(root: str) -> str | None:
    return link_report("model", root, "pose-mlp@m-000000000000", "report-test-missing", "never written")


def test_rebuild_flow_links_its_dataset_card(prefect_harness, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = write_activity_source(tmp_path / "mpii", train_per_class=2, valid_per_class=1)
    root = tmp_path / "root"
    crop = {
        "out_height_px": 48,
        "out_width_px": 48,
        "pad_min": 1.1,
        "pad_max": 1.1,
        "shift_px": 0.0,
        "min_box_px": 16.0,
    }
    params = {"split_protocol": "single_person", "valid_persons_file": "detections.mat"}
    summary = rebuild_flow(dataset="mpii", root=str(root), source=str(source), adapter_params=params, crop=crop)
    card = root / "datasets" / "mpii" / summary["version"] / "_report" / "index.html"
    assert card.is_file() and f"mpii@{summary['version']}" in card.read_text()
    found = _artifacts()
    link = found["rebuild-mpii-card"]
    # Prefect stores a link artifact as the markdown link ``[text](url)``
    assert f"]({card.resolve().as_uri()})" in str(link.data) and "dataset card" in str(link.data)
    assert summary["version"] in str(found["rebuild-mpii"].data)

    with caplog.at_level(logging.WARNING):
        assert _card_of_a_missing_model(str(root)) is None
    assert "could not render the model card of pose-mlp@m-000000000000" in caplog.text
    assert "report-test-missing" not in _artifacts()

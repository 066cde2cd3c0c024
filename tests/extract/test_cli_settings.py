"""``extract clips`` takes root and execution from the environment, as ``rebuild`` does.

The installed entry point runs in its own process (its own ephemeral Prefect API and LocalCluster);
the test-double backend, created inside the Dask worker, writes down the cluster it runs on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.extract.doubles import REPORTING_BLOB
from tests.video.fakes import write_video

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_extract_clips_reads_posepipe_settings(tmp_path: Path) -> None:
    """Before, POSEPIPE_WORKERS and POSEPIPE_THREADS_PER_WORKER were ignored by ``extract``: one worker per core, 1 thread."""
    src = tmp_path / "ucf11"
    src.mkdir()
    (src / "classInd.txt").write_text("basketball\nwalking")
    write_video(src / "UCF11_updated_mpg/walking/v_walk_dog_25/v_walk_dog_25_01.mpg", 4, people=2, fourcc="PIM1")
    reports = tmp_path / "reports"
    env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
               DO_NOT_TRACK="1", POSEPIPE_ROOT=str(tmp_path / "root"), POSEPIPE_WORKERS="1", POSEPIPE_THREADS_PER_WORKER="3",
               BLOB_REPORT_DIR=str(reports))  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    env.pop("POSEPIPE_DASK_ADDRESS", None)
    args = [str(Path(sys.executable).parent / "posepipe"), "extract", "clips", "ucf11", "--source", str(src), "--backend", REPORTING_BLOB]
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    (run_dir,) = (tmp_path / "root" / "keypoints" / "ucf11").iterdir()
    assert pq.read_table(run_dir / "part-00000.parquet").num_rows == 4 * 2
    in_workers = [r for r in (json.loads(p.read_text()) for p in reports.glob("*.json")) if r]
    assert in_workers and all(r == {"workers": 1, "threads": [3]} for r in in_workers)

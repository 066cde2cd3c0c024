"""Wall time of an unchanged rebuild: the early-reuse path against the full orchestrated path.

Both sides are fresh processes in a shell without ``PREFECT_API_URL`` (what a user or a nightly
schedule pays), on the same already-built root, interleaved ``--repeats`` times:

* early: ``posepipe rebuild ... --json``, which names the version before Prefect or Dask start
  (``flows.runtime.rebuild_unless_built``) and returns the existing version;
* orchestrated: the same request through a temporary Prefect server, a one-worker LocalCluster and
  ``rebuild_flow`` (what every unchanged rebuild cost before: ~15 s in the first-hour trial).

Usage::

    .venv/bin/python bench/rebuild_startup.py [--source DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "coco" / "coco_mini_val2017"

ORCHESTRATED = """
import json, sys
from flows.rebuild import rebuild_flow
from flows.runtime import dask_task_runner, workers_share_prefect_api
root, source = sys.argv[1], sys.argv[2]
runner = dask_task_runner(workers=1)
with workers_share_prefect_api(None):
    summary = rebuild_flow.with_options(task_runner=runner)(dataset="coco", root=root, source=source)
print(json.dumps(summary))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING", DO_NOT_TRACK="1", GX_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    return env


def _timed(args: list[str]) -> tuple[float, dict]:
    """Run ``args``; wall seconds and the JSON summary it printed last."""
    start = time.perf_counter()
    res = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=600)
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed (rc {res.returncode}):\n{res.stderr[-3000:]}")
    out = res.stdout
    return seconds, json.loads(out[out.index("{") :])


def main() -> None:
    """Build once, then time both paths interleaved and print medians, spread and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="a COCO keypoints folder")
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.helpers import build_version

    with tempfile.TemporaryDirectory(prefix="rebuild-startup-") as tmp:
        root = str(Path(tmp) / "root")
        built = build_version(root, str(opts.source))
        print(f"built {built['version']} ({built['written']} written, {built['rejected']} rejected) under {root}")
        early_cmd = [str(BIN / "posepipe"), "rebuild", "coco", "--source", str(opts.source), "--root", root, "--workers", "1", "--json"]
        orch_cmd = [sys.executable, "-c", ORCHESTRATED, root, str(opts.source)]
        early, orch = [], []
        for i in range(opts.repeats):
            for name, cmd, into in (("early", early_cmd, early), ("orchestrated", orch_cmd, orch)):
                seconds, summary = _timed(cmd)
                if not summary["reused"] or summary["version"] != built["version"]:
                    raise SystemExit(f"{name} run {i} did not reuse {built['version']}: {summary}")
                into.append(seconds)
        e, o = statistics.median(early), statistics.median(orch)
        print(f"{'path':<14}{'median s':>10}{'min s':>8}{'max s':>8}")
        print(f"{'early':<14}{e:>10.2f}{min(early):>8.2f}{max(early):>8.2f}")
        print(f"{'orchestrated':<14}{o:>10.2f}{min(orch):>8.2f}{max(orch):>8.2f}")
        print(f"orchestrated / early = {o / e:.1f}x (median of {opts.repeats}; target: early <= 2 s)")


if __name__ == "__main__":
    main()

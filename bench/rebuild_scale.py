"""Whole-rebuild scaling: 1x, 4x and 16x a generated COCO-format set, end to end, in one run.

Each size is a synthetic COCO set (``tasks.synthetic.write_synthetic_coco``: 640x480 images, ~2.5
people each) rebuilt by ``posepipe rebuild coco --source DIR --size WxH --workers N --json`` in a
fresh process (Prefect's ephemeral API and a Dask LocalCluster, as a user runs it). Printed per
size: wall seconds, samples/s, the *marginal* samples/s between consecutive sizes (what one more
sample costs once start-up is paid), the share of time per stage from the version's ``_run.json``
(parse, the shard stage's wall time split into build and validate by the workers' own seconds,
commit, and the rest: process and cluster start-up), and the peak RSS of the rebuild process
(``VmHWM`` read by the process itself at exit through ``/proc``; ``ru_maxrss`` would also count
children). Cost should grow linearly (marginal throughput flat) and memory stay flat.

The baseline, measured in every repeat beside the rebuilds it is compared with: shard processing
alone (``process_shard`` of the largest set's shards on a fresh plain Dask LocalCluster of the same
number of workers: no Prefect, no gate, no parse), which is what "shard processing alone" means in
issue 15; the kernel pinned to one CPU is printed too. The target is an end-to-end marginal throughput
>= 0.8x that baseline, in the same repeat. The parse
stage counts the parse and content fingerprint made before the orchestrator starts.

Usage::

    .venv/bin/python bench/rebuild_scale.py [--images 1000] [--sizes 1,4,16] [--size 128x96] [--workers 2] [--repeat 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COCO_TRAIN2017_PERSONS = 149_813  # person instances with keypoints in person_keypoints_train2017.json


def _prepared_specs(src: Path, size_wh: tuple[int, int], root: str) -> list:
    """The shard specs a rebuild of ``src`` would run (parsed and staged under ``root``)."""
    from tasks import rebuild as stages
    from tasks.transforms.geometry import CropConfig

    crop = CropConfig(out_width_px=size_wh[0], out_height_px=size_wh[1])
    return stages.prepare(stages.RebuildRequest("coco", root, str(src), crop=crop)).specs


def _kernel_one_core(src: Path, size_wh: tuple[int, int], tmp: str) -> float:
    """Samples/s of the shard kernel alone (build, no gate, no orchestrator) in this process, pinned to one CPU."""
    from tasks.kinds.base import get_kind

    specs = _prepared_specs(src, size_wh, f"{tmp}/kernel1")
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(cpus)})
    try:
        t0 = time.perf_counter()
        rows = sum(get_kind(s.kind).build(s).rows for s in specs)
        return rows / (time.perf_counter() - t0)
    finally:
        os.sched_setaffinity(0, cpus)


def _kernel_on_dask(src: Path, size_wh: tuple[int, int], root: str, workers: int) -> float:
    """Samples/s of ``process_shard`` over ``src``'s shards on a fresh plain Dask LocalCluster (start-up
    and imports not counted): shard processing alone, no Prefect, no gate, no parse."""
    from distributed import Client, LocalCluster

    from flows.runtime import tune_worker_environment
    from tasks.shards import process_shard

    tune_worker_environment()
    specs = _prepared_specs(src, size_wh, root)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("tasks.shards"))  # imports are start-up, not throughput
        t0 = time.perf_counter()
        rows = sum(s.rows for s in client.gather(client.map(process_shard, specs, pure=False)))
        return rows / (time.perf_counter() - t0)


def _rebuild(src: Path, root: str, size: str, workers: int) -> dict:
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "ERROR", "PREFECT_HOME": f"{root}/prefect_home", "PYTHONPATH": str(REPO)}
    code = (
        "import atexit, sys\n"
        "def _hwm():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'): sys.stderr.write('VMHWM_KB=' + line.split()[1] + '\\n')\n"
        "atexit.register(_hwm)\n"
        "from flows.cli import main\n"
        f"sys.argv = ['posepipe', 'rebuild', 'coco', '--source', {str(src)!r}, '--root', {root!r}, '--size', {size!r}, "
        f"'--workers', {str(workers)!r}, '--json']\n"
        "main()\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"rebuild failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    hwm = [int(line.split("=")[1]) for line in proc.stderr.splitlines() if line.startswith("VMHWM_KB=")]
    run = json.loads((Path(summary["location"]) / "_run.json").read_text())
    return {"wall_s": wall, "samples": summary["written"], "stages_s": run.get("stages_s", {}), "peak_rss_mb": (hwm[-1] / 1024) if hwm else float("nan")}


def main() -> None:
    """Generate the sets, rebuild each, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="images of the 1x set")
    parser.add_argument("--sizes", default="1,4,16", help="multiples of --images to rebuild")
    parser.add_argument("--size", default="128x96", help="crop size WxH")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="rebuild every size this many times, interleaved; the spread is printed")
    parser.add_argument("--data", default=None, help="keep the generated sets in this folder and reuse them on the next run")
    args = parser.parse_args()
    from tasks.synthetic import write_synthetic_coco

    multiples = [int(m) for m in args.sizes.split(",")]
    size_wh = tuple(int(v) for v in args.size.split("x"))
    runs: list[list[tuple[int, dict]]] = []
    with tempfile.TemporaryDirectory(prefix="posepipe-scale-") as tmp:
        data = Path(args.data) if args.data else Path(tmp)
        sources = {}
        for m in multiples:
            folder = data / f"src{args.images}x{m}"
            if not (folder / ".complete").exists():
                write_synthetic_coco(folder, {"val": args.images * m}, seed=m, size_wh=(640, 480))
                (folder / ".complete").touch()
            sources[m] = folder
        one_core = _kernel_one_core(sources[multiples[0]], size_wh, tmp)
        baselines: list[float] = []
        for rep in range(args.repeat):  # the baseline is measured in every repeat, beside the rebuilds it is compared with
            baselines.append(_kernel_on_dask(sources[multiples[-1]], size_wh, f"{tmp}/kernel-dask{rep}", args.workers))
            runs.append([(m, _rebuild(sources[m], f"{tmp}/root{m}-{rep}", args.size, args.workers)) for m in multiples])
    print(f"synthetic COCO 640x480, crops {args.size}, {args.workers} workers, {os.cpu_count()} cores")
    print(f"baseline per repeat: shard processing alone on plain Dask, {args.workers} workers, {multiples[-1]}x set: "
          + ", ".join(f"{b:,.0f}" for b in baselines) + f" samples/s (the kernel pinned to one CPU: {one_core:,.0f} samples/s)")
    finals = [_table(rows) for rows in runs]
    ratios = sorted(f / b for f, b in zip(finals, baselines, strict=True) if f == f)
    if ratios:
        mid = sorted(f for f in finals if f == f)[len(ratios) // 2]
        spread = f" (repeats: min {ratios[0]:.2f}, max {ratios[-1]:.2f})" if len(ratios) > 1 else ""
        print(f"marginal end to end / shard processing alone, same repeat: median {ratios[len(ratios) // 2]:.2f}{spread} (target >= 0.8)")
        print(f"projected COCO train2017 (~{COCO_TRAIN2017_PERSONS:,} persons): {COCO_TRAIN2017_PERSONS / mid / 60:.1f} min here; "
              f"{COCO_TRAIN2017_PERSONS / (mid * 8) / 60:.1f} min on 16 cores (8x, if it scales linearly per core)")  # fmt: skip


def _table(rows: list[tuple[int, dict]]) -> float:
    """Print one repeat's rows; return its last marginal samples/s (NaN with one size)."""
    print(f"{'size':>5} {'samples':>8} {'wall s':>8} {'samples/s':>10} {'marginal/s':>11} {'parse':>6} {'build':>6} {'gate':>6} {'commit':>7} {'other':>6} {'peak RSS MB':>12}")
    prev = None
    rate = float("nan")
    for m, r in rows:
        st = r["stages_s"]
        wall = r["wall_s"]
        shards = st.get("shards_wall", 0.0)
        work = st.get("build_worker", 0.0) + st.get("validate_worker", 0.0)
        build_share = shards * st.get("build_worker", 0.0) / work if work else 0.0
        gate_share = shards - build_share
        other = wall - st.get("parse", 0.0) - shards - st.get("commit", 0.0)
        marginal = ""
        if prev is not None:
            rate = (r["samples"] - prev["samples"]) / (wall - prev["wall_s"]) if wall > prev["wall_s"] else float("nan")
            marginal = f"{rate:,.0f}"
        pct = {k: 100 * v / wall for k, v in (("parse", st.get("parse", 0.0)), ("build", build_share), ("gate", gate_share), ("commit", st.get("commit", 0.0)), ("other", other))}
        print(f"{m:>4}x {r['samples']:>8,} {wall:>8.1f} {r['samples'] / wall:>10,.0f} {marginal:>11} {pct['parse']:>5.0f}% {pct['build']:>5.0f}% {pct['gate']:>5.0f}% "
              f"{pct['commit']:>6.0f}% {pct['other']:>5.0f}% {r['peak_rss_mb']:>12.0f}")  # fmt: skip
        prev = r
    return rate


if __name__ == "__main__":
    main()

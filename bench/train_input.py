"""Training input throughput and memory: the tf.data pipeline from HDF5 shards vs in-RAM numpy arrays.

Builds (in-process, no Prefect; cached under ``--work``) two synthetic COCO versions with
``tasks.synthetic.write_synthetic_coco`` + ``posepipe.rebuild``: 1x (``--images`` train images) and
10x. Then, side by side in one process on the SAME samples (the 10x train split):

* pipeline: ``tasks.training.data.make_dataset`` reading crops from the HDF5 shards through the
  reader (decode, augment, heatmap targets, prefetch);
* in-RAM (the notebooks' way): every crop loaded into one ``(N, H, W, 3) uint8`` array first, then the
  very same augmentation and targets (``make_dataset`` with an ``ArraySource`` plan).

Each repeat runs one epoch per side, interleaved (A B A B ...), and times it from the
``--warmup``-th batch on (steady state); the median, min-max spread and the ratio of medians are
printed. Peak RSS (``VmHWM`` of /proc/self/status, plus the input workers' own peaks for the process
backend; not ``ru_maxrss``, which survives exec) is measured in fresh subprocesses that make the same
number of batches (one 10x epoch; the 1x child runs several epochs) over the 1x and the 10x version.
The throughput run is pinned to one CPU (``--cpus``, both sides alike), as DESIGN.md asks of benchmarks
on this shared VM.

    python bench/train_input.py                       # throughput + RSS
    python bench/train_input.py --parallelism         # threads vs processes vs Keras PyDataset

Targets (issue 12): pipeline >= 0.9x in-RAM throughput; pipeline RSS within 10 % between 1x and 10x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

BATCH = 32
INPUT_WH = (192, 256)


def build(work: Path, images: int) -> tuple[str, str]:
    """A synthetic COCO version with ``images`` train images under ``work/x{images}`` (reused if built)."""
    out = work / f"img{images}"
    root = out / "root"
    stamp = out / "version.txt"
    if stamp.exists():
        return str(root), stamp.read_text().strip()
    import posepipe
    from tasks.synthetic import write_synthetic_coco

    src = write_synthetic_coco(out / "src", {"train": images, "val": 2}, seed=1)
    summary = posepipe.rebuild("coco", root=str(root), source=str(src), shard_size=256)
    stamp.write_text(summary["version"])
    return str(root), summary["version"]


def spec_and_aug() -> tuple[Any, Any]:
    from tasks.training.data import TargetSpec
    from tasks.transforms.augment import AugmentConfig

    return TargetSpec("heatmaps", INPUT_WH, stride=4, sigma=2.0), AugmentConfig()


WALL: dict[str, list[float]] = {}
#: Samples per CPU-second of this process (all its threads), per pass: what a dedicated core would
#: give; far steadier than wall time while other work shares the VM.
CPU: dict[str, list[float]] = {}


def timed_epoch(ds: Any, warmup: int, name: str = "") -> tuple[float, int]:
    """Seconds and samples from batch ``warmup`` to the end of one pass over ``ds`` (whole-epoch wall time kept in WALL)."""
    n = 0
    t0 = None
    start = time.perf_counter()
    for i, (x, _y) in enumerate(ds):
        if i == warmup:
            t0 = time.perf_counter()
            c0 = time.process_time()
        if t0 is not None:
            n += int(x.shape[0])
    if t0 is None:
        raise SystemExit("epoch shorter than the warm-up; use more --images")
    end = time.perf_counter()
    WALL.setdefault(name, []).append(end - start)
    CPU.setdefault(name, []).append(n / (time.process_time() - c0))
    return end - t0, n


def pipeline_dataset(version: Any, plan: Any, epoch: int, backend: str = "threads", workers: int | None = None) -> Any:
    """One epoch of ``make_dataset`` (its default worker count unless ``workers``)."""
    from tasks.training.data import make_dataset

    spec, aug = spec_and_aug()
    extra = {} if workers is None else {"workers": workers}
    return make_dataset(version, "train", spec, batch_size=BATCH, seed=0, epoch=epoch, augment=aug, shuffle=True,
                        backend=backend, plan=plan, **extra)  # fmt: skip


def plans(version: Any) -> tuple[Any, Any, float]:
    """The HDF5 plan and the in-RAM plan of the same split, and the seconds loading all crops took."""
    import numpy as np

    from tasks.training.data import ArraySource, plan_split

    spec, _ = spec_and_aug()
    disk = plan_split(version, "train", spec)
    t = time.perf_counter()
    crops = version.crops("train", np.arange(version.num_rows("train")))
    load_s = time.perf_counter() - t
    ram = plan_split(version, "train", spec, source=ArraySource(crops))
    return disk, ram, load_s


def summary(name: str, rates: list[float]) -> str:
    return f"{name:<34} median {statistics.median(rates):8.1f} samples/s   spread {min(rates):8.1f} .. {max(rates):8.1f}  (n={len(rates)})"


def throughput(root: str, version_id: str, repeats: int, warmup: int, backend: str, batches: int) -> dict[str, Any]:
    """Interleaved short passes (``warmup`` + ``batches`` batches of epoch r) of both sides; medians and pair ratios."""
    import numpy as np

    from storage.reader import open_version

    version = open_version(root, "coco", version_id)
    disk, ram, load_s = plans(version)
    print(f"same samples: {len(disk)} train crops {disk.crop_wh[0]}x{disk.crop_wh[1]} -> input {INPUT_WH}, batch {BATCH}, "
          f"backend {backend}, {batches} timed batches per pass after {warmup} warm-up; in-RAM load of all crops took {load_s:.1f} s")  # fmt: skip
    names = ("pipeline (HDF5 shards)", "in-RAM numpy (notebooks)")
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats + 1):
        sides = [(names[0], disk), (names[1], ram)]
        for name, plan in sides if r % 2 else sides[::-1]:  # alternate which side goes first
            ds = pipeline_dataset(version, plan, epoch=r, backend=backend).take(warmup + batches)
            sec, n = timed_epoch(ds, warmup, name)
            if r:  # repeat 0 warms caches and thread pools on both sides
                rates[name].append(n / sec)
    for name, v in rates.items():
        print(summary(name, v))
    per_repeat = [a / b for a, b in zip(rates[names[0]], rates[names[1]], strict=True)]
    ratio = statistics.median(rates[names[0]]) / statistics.median(rates[names[1]])
    print(f"ratio pipeline / in-RAM: of medians {ratio:.3f}; median of interleaved pairs {statistics.median(per_repeat):.3f} "
          f"(spread {min(per_repeat):.3f} .. {max(per_repeat):.3f}); target >= 0.9")  # fmt: skip
    cpu = {n: CPU[n][1:] for n in names}
    for name, v in cpu.items():
        print(summary(name + " /CPU-s", v).replace("samples/s", "samples/CPU-s"))
    cpu_pairs = [a / b for a, b in zip(cpu[names[0]], cpu[names[1]], strict=True)]
    print(f"ratio pipeline / in-RAM per CPU-second: of medians {statistics.median(cpu[names[0]]) / statistics.median(cpu[names[1]]):.3f}; "
          f"median of pairs {statistics.median(cpu_pairs):.3f} (spread {min(cpu_pairs):.3f} .. {max(cpu_pairs):.3f})")  # fmt: skip
    # The one step that differs between the two sides, timed alone (interleaved, 1 thread).
    order = np.sort(np.random.default_rng(0).permutation(len(disk))[:BATCH])
    buf = np.empty((BATCH, disk.crop_wh[1], disk.crop_wh[0], 3), np.uint8)
    cost: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(30):
        for name, plan in zip(names, (disk, ram), strict=True):
            t = time.perf_counter()
            plan.source.read_into(plan.rows[order], buf)
            cost[name].append((time.perf_counter() - t) / BATCH * 1e6)
    print("crop source alone, µs per sample (median, min..max of 30): "
          + "; ".join(f"{n.split(' (')[0]} {statistics.median(v):.0f} ({min(v):.0f}..{max(v):.0f})" for n, v in cost.items()))  # fmt: skip
    return {"rates": rates, "ratio": ratio}


def parallelism(root: str, version_id: str, repeats: int, warmup: int, only: list[str] | None = None) -> None:
    """Threads vs processes vs Keras PyDataset on the HDF5 pipeline (same batches for all)."""
    import numpy as np

    from storage.reader import open_version
    from tasks.training.data import epoch_order, load_batch, num_batches

    version = open_version(root, "coco", version_id)
    disk, _, _ = plans(version)
    spec, aug = spec_and_aug()

    def keras_pydataset(epoch: int) -> Any:
        import keras
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        order = epoch_order(disk.shard_rows, 0, epoch)

        class Batches(keras.utils.PyDataset):
            def __len__(self) -> int:
                return num_batches(len(order), BATCH, False)

            def __getitem__(self, b: int) -> tuple[np.ndarray, np.ndarray]:
                x, y = load_batch(disk, order[b * BATCH : (b + 1) * BATCH], 0, epoch, aug)
                return x.astype(np.float32), y

        return PyDatasetAdapter(Batches(workers=2, use_multiprocessing=True, max_queue_size=4), shuffle=False).get_tf_dataset()

    variants = {
        "threads, 1 worker": lambda e: pipeline_dataset(version, disk, e, "threads", 1),
        "threads, 2 workers": lambda e: pipeline_dataset(version, disk, e, "threads", 2),
        "threads, 4 workers": lambda e: pipeline_dataset(version, disk, e, "threads", 4),
        "processes (shared memory), 2": lambda e: pipeline_dataset(version, disk, e, "processes", 2),
        "keras PyDataset, 2 processes": keras_pydataset,
    }
    variants = {k: v for k, v in variants.items() if not only or any(o in k for o in only)}
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(repeats + 1):
        for name, make in variants.items():
            sec, n = timed_epoch(make(r), warmup, name)
            if r:
                rates[name].append(n / sec)
    print(f"{len(disk)} samples per epoch, batch {BATCH}, warm-up {warmup} batches skipped per epoch, {repeats} interleaved repeats")
    for name, v in rates.items():
        walls = WALL[name][1:]
        print(summary(name, v) + f"   whole epoch incl. start-up: median {statistics.median(walls):.1f} s")


def rss_child(root: str, version_id: str, mode: str, backend: str, min_batches: int = 0) -> None:
    """Run one epoch (pipeline or in-RAM) and print this process's peak RSS (+ the input workers' peaks)."""
    import numpy as np

    from storage.reader import open_version
    from tasks.training.data import ArraySource, plan_split

    version = open_version(root, "coco", version_id)
    spec, _ = spec_and_aug()
    if mode == "inram":
        plan = plan_split(version, "train", spec, source=ArraySource(version.crops("train", np.arange(version.num_rows("train")))))
    else:
        plan = plan_split(version, "train", spec)
    children: list[int] = []
    if backend == "processes":  # (one epoch)
        import psutil

        me = psutil.Process()
        peaks: dict[int, int] = {}
        for _x, _y in pipeline_dataset(version, plan, 0, backend):
            for c in me.children(recursive=True):
                try:
                    peaks[c.pid] = max(peaks.get(c.pid, 0), _vmhwm_kib(c.pid))
                except (OSError, psutil.Error):
                    pass
        children = list(peaks.values())
    else:
        steps = 0
        epoch = 0
        while steps < min_batches or epoch == 0:  # same number of batches for 1x and 10x: memory vs data, not vs steps
            for _x, _y in pipeline_dataset(version, plan, epoch, backend):
                steps += 1
            epoch += 1
    print(json.dumps({"rows": len(plan), "vmhwm_kib": _vmhwm_kib("self"), "workers_vmhwm_kib": children}))


def _vmhwm_kib(pid: int | str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def rss(builds: dict[str, tuple[str, str]], backend: str) -> None:
    """Peak RSS of 1x and 10x, each child running as many batches as one 10x epoch (1x: several epochs).

    The same number of steps on both: a process's peak also creeps up with the number of batches it
    has made (allocator arenas; measured 1x: 784 MiB after 5 batches, 1025 MiB after 48), which is not
    what "memory vs data size" asks.
    """
    from storage.reader import open_version

    steps = -(-open_version(*builds["10x"][:1], "coco", builds["10x"][1]).num_rows("train") // BATCH)
    print(f"peak RSS: fresh subprocesses, {steps} batches each (one 10x epoch)")
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for mode in ("pipeline", "inram"):
        for label, (root, vid) in builds.items():
            cmd = [sys.executable, __file__, "--rss-child", root, vid, mode, "--backend", backend, "--min-batches", str(steps)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[(mode, label)] = json.loads(out)
    for mode in ("pipeline", "inram"):
        a, b = results[(mode, "1x")], results[(mode, "10x")]
        ta = a["vmhwm_kib"] + sum(a["workers_vmhwm_kib"])
        tb = b["vmhwm_kib"] + sum(b["workers_vmhwm_kib"])
        print(f"peak RSS {mode:<9} 1x ({a['rows']:>5} rows) {ta / 1024:7.0f} MiB   10x ({b['rows']:>5} rows) {tb / 1024:7.0f} MiB   "
              f"10x/1x {tb / ta:.3f}" + ("   (target <= 1.10)" if mode == "pipeline" else ""))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/posepipe-bench-train-input", help="where the versions are built (reused)")
    ap.add_argument("--images", type=int, default=60, help="train images of the 1x version (10x: ten times as many)")
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--batches", type=int, default=10, help="timed batches per pass (throughput)")
    ap.add_argument("--cpus", type=int, nargs="*", default=[1], help="pin the throughput run to these CPUs (empty: no pinning)")
    ap.add_argument("--warmup", type=int, default=3, help="batches skipped per epoch before timing")
    ap.add_argument("--backend", default="threads", choices=["threads", "processes"], help="make_dataset's backend (default: its default)")
    ap.add_argument("--parallelism", action="store_true", help="compare threads, processes and Keras PyDataset instead")
    ap.add_argument("--only", nargs="*", help="with --parallelism: variants whose name contains one of these")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--min-batches", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--rss-child", nargs=3, metavar=("ROOT", "VERSION", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child, backend=args.backend, min_batches=args.min_batches)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    builds = {"1x": build(work, args.images), "10x": build(work, 10 * args.images)}
    print(f"versions ready in {time.perf_counter() - t:.0f} s: {builds}")
    if args.parallelism:
        parallelism(*builds["10x"], args.repeats, args.warmup, args.only)
        return
    if args.cpus:
        os.sched_setaffinity(0, set(args.cpus))
        print(f"pinned to CPU(s) {sorted(args.cpus)} (both sides)")
    throughput(*builds["10x"], args.repeats, args.warmup, args.backend, args.batches)
    if not args.no_rss:
        rss(builds, args.backend)


if __name__ == "__main__":
    main()

"""Extraction benchmark: network alone vs the whole pipeline, on the same frames, in one run.

Prints: raw network frames/s (batched ``infer`` alone), end-to-end frames/s (decode -> infer ->
group -> write, through :func:`extract_shard`), decode and grouping ms per frame, peak RSS for one
clip and for the same clip repeated 20x (each in a fresh process), 1 vs 2 worker processes, and
the projected hours for UCF101 (13,320 clips, ~2.48 M frames) here and on 16 cores.

For ``tf-openpose`` it also measures, on the same frames and in the same run, the graph as frozen
at batch 1 (the baseline: what extraction ran before batch-exact batching), the rewritten graph at
batch 1 and at ``--batch`` (default: the backend's), and compares the keypoints of an end-to-end
run at batch 1 with the one at the chosen batch. Targets: end to end at the chosen batch >= 1.4x
the frozen batch-1 network; keypoints equal within 1e-3 px/score.

Usage::

    .venv/bin/python bench/extract.py --model ../shared/data/models/tf_pose_mobilenet_v2_small/graph_opt.pb
    .venv/bin/python bench/extract.py --backend tests.extract.doubles:make_blob_backend   # no TF
    .venv/bin/python bench/extract.py --model ... --gpu 32,64   # the GPU path, where there is one
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

UCF101_CLIPS = 13320
UCF101_FRAMES = 2_484_000  # 13,320 clips x ~186.5 frames (UCF101's published mean clip length 7.21 s at 25 fps)


def repeat_video(src: Path, dst: Path, times: int) -> Path:
    """Write ``src``'s frames ``times`` times into one MJPG .avi (a long clip with the same content)."""
    import av

    from tasks.video.decode import VideoReader

    reader = VideoReader(src)
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("mjpeg", rate=Fraction(round(reader.info.fps or 25)))
        stream.width, stream.height, stream.pix_fmt = reader.info.width, reader.info.height, "yuvj420p"
        for _ in range(times):
            for chunk in VideoReader(src).chunks():
                for frame in chunk.frames:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                        out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst


def case_pipeline(args: argparse.Namespace) -> dict[str, float]:
    """Run one shard of ``args.clips`` (copies of the video) in this process; report timings and RSS."""
    import numpy as np

    from tasks.extract.plan import ClipTask, load_estimator, plan_extract_shards
    from tasks.extract.worker import extract_shard
    from tasks.video.decode import VideoReader
    from tasks.video.sampling import SamplingSpec

    spec = _backend_spec(args)
    est = load_estimator(spec)
    info = VideoReader(args.video).info
    _warm_up(est, np.zeros((info.height, info.width, 3), np.uint8), est.choose_batch(args.batch or None))
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    clips = [ClipTask(f"clip{i:03d}_{args.tag}", args.video, {}) for i in range(args.clips)]
    sampling = SamplingSpec(mode="every_k", k=args.k)
    shard = plan_extract_shards(clips, args.out, "bench", spec, sampling, max(1, len(clips)), args.chunk, enforce_bounds=False,
                                batch=args.batch or None)[0]  # fmt: skip
    t0, t0_unix = time.perf_counter(), time.time()
    summary = extract_shard(shard)
    wall = time.perf_counter() - t0
    return {
        "t0_unix": t0_unix,
        "t1_unix": time.time(),
        "gpus": _gpus(),
        "frames": summary.frames,
        "wall_s": wall,
        "decode_s": summary.timings_s.get("decode", 0.0),
        "infer_s": summary.timings_s.get("infer", 0.0),
        "group_s": summary.timings_s.get("group", 0.0),
        "write_s": summary.timings_s.get("write", 0.0),
        "rss_after_load_mb": rss_loaded / 1024,
        "peak_rss_mb": _vm_hwm_mb() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "batch": est.choose_batch(args.batch or None),
    }


def _warm_up(est, frame, step: int) -> None:  # noqa: ANN001 - a PoseEstimator and a (H, W, 3) uint8 frame
    """Run every batch size a run at ``step`` sends (the batch and the powers of two of ragged batches).

    A batch-exact backend imports one graph per power of two on first use (about 1 s each here,
    once per worker process); a benchmark of a few dozen frames must not time that.
    """
    for size in sorted({step, *(1 << k for k in range(step.bit_length()))}):
        est.infer([frame] * size)


def _vm_hwm_mb() -> float | None:
    """This process's peak RSS from /proc (``ru_maxrss`` survives exec: it can report the parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _backend_spec(args: argparse.Namespace):  # noqa: ANN202 - a BackendSpec
    from tasks.extract.plan import BackendSpec

    options = {"per_sample_norm": False} if args.frozen else {}
    return BackendSpec.create(args.backend, args.model, **options)


def case_raw(args: argparse.Namespace) -> dict[str, float]:
    """Batched ``infer`` alone on the same sampled frames (decoded beforehand, not timed)."""
    from tasks.extract.plan import load_estimator
    from tasks.video.decode import VideoReader
    from tasks.video.sampling import FrameSelector, SamplingSpec

    est = load_estimator(_backend_spec(args))
    frames = [f for c in VideoReader(args.video).chunks(FrameSelector(SamplingSpec(mode="every_k", k=args.k))) for f in c.frames]
    frames = (frames * args.clips)[: max(len(frames), 1) * args.clips]
    step = est.choose_batch(args.batch or None)
    _warm_up(est, frames[0], step)
    t0, t0_unix = time.perf_counter(), time.time()
    for i in range(0, len(frames), step):
        est.infer(frames[i : i + step])
    wall = time.perf_counter() - t0
    return {"frames": len(frames), "wall_s": wall, "max_batch": step, "t0_unix": t0_unix, "t1_unix": time.time(), "gpus": _gpus()}


def _gpus() -> int:
    """GPUs TensorFlow sees in this process (0 without TensorFlow loaded or without a GPU)."""
    tf = sys.modules.get("tensorflow")
    return len(tf.config.list_physical_devices("GPU")) if tf is not None else 0


def _spawn(case: str, args: argparse.Namespace, **over: object) -> subprocess.Popen[str]:
    argv = [sys.executable, __file__, "--case", case, "--backend", args.backend, "--video", str(over.get("video", args.video)),
            "--clips", str(over.get("clips", args.clips)), "--k", str(args.k), "--chunk", str(args.chunk),
            "--out", str(over.get("out", args.out)), "--tag", str(over.get("tag", "a")),
            "--batch", str(over.get("batch", args.batch))]  # fmt: skip
    if over.get("frozen", args.frozen):
        argv.append("--frozen")
    if args.model:
        argv += ["--model", str(args.model)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if over.get("threads"):
        env.update({"POSEPIPE_INTRA_OP_THREADS": str(over["threads"]), "POSEPIPE_INTER_OP_THREADS": str(over["threads"])})  # as a LocalCluster worker
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)


def _result(proc: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"bench case failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Run every case (each in a fresh process) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="")
    parser.add_argument("--backend", default="tf-openpose")
    parser.add_argument("--model", default=None)
    parser.add_argument("--video", default=str(REPO.parent / "shared/data/media/videos/mmaction2_tests_test.avi"))
    parser.add_argument(
        "--clips", type=int, default=1,
        help="copies of the clip per run; copies of one file share its content key, so copies after the first are "
        "reused (resumed), not re-extracted: keep 1 for speed figures",
    )  # fmt: skip
    parser.add_argument("--k", type=int, default=2, help="every k-th frame")
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--out", default="")
    parser.add_argument("--tag", default="a")
    parser.add_argument("--batch", type=int, default=0, help="frames per network call (0: the backend's default)")
    parser.add_argument("--frozen", action="store_true", help="tf-openpose: run the graph as frozen (no per-sample rewrite)")
    parser.add_argument("--only-batching", action="store_true", help="tf-openpose: run only the batch-exact batching comparison")
    parser.add_argument("--gpu", default="", help="comma-separated batches to measure on the GPU (e.g. 32,64), with nvidia-smi's utilisation; then stop")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case_pipeline(args) if args.case == "pipeline" else case_raw(args)))
        return
    with tempfile.TemporaryDirectory(prefix="posepipe-bench-") as tmp:
        if args.gpu:
            _gpu(args, tmp, [int(b) for b in args.gpu.split(",")])
            return
        if args.backend == "tf-openpose":
            _batching(args, tmp)
            if args.only_batching:
                return
        raw = _result(_spawn("raw", args))
        e2e = _result(_spawn("pipeline", args, out=f"{tmp}/e2e"))
        one = _result(_spawn("pipeline", args, clips=1, out=f"{tmp}/one"))
        long_video = repeat_video(Path(args.video), Path(tmp) / "x20.avi", 20)
        long = _result(_spawn("pipeline", args, clips=1, video=long_video, out=f"{tmp}/long"))
        t0 = time.perf_counter()
        pair = [_spawn("pipeline", args, out=f"{tmp}/w{i}", tag=f"w{i}") for i in range(2)]
        two = [_result(p) for p in pair]
        two_wall = time.perf_counter() - t0
        scaling = _thread_scaling(args, tmp)
    raw_fps = raw["frames"] / raw["wall_s"]
    e2e_fps = e2e["frames"] / e2e["wall_s"]
    two_fps = sum(r["frames"] for r in two) / two_wall
    cores = os.cpu_count() or 1
    print(f"backend {args.backend}  batch {raw['max_batch']}  video {Path(args.video).name}  every {args.k}th frame  cores {cores}")
    print(f"{'raw network (infer alone)':<38}{raw_fps:10.2f} frames/s   (baseline)")
    print(f"{'end to end (decode->infer->group->write)':<38}{e2e_fps:10.2f} frames/s   ratio {e2e_fps / raw_fps:.2f} x raw (target >= 0.9)")
    n = max(1, e2e["frames"])
    print(f"{'decode wait / frame':<38}{1000 * e2e['decode_s'] / n:10.2f} ms")
    print(f"{'grouping (other thread) / frame':<38}{1000 * e2e['group_s'] / n:10.2f} ms")
    print(f"{'infer / frame':<38}{1000 * e2e['infer_s'] / n:10.2f} ms")
    print(f"{'peak RSS, 1 clip':<38}{one['peak_rss_mb']:10.1f} MB  ({one['frames']} frames; {one['rss_after_load_mb']:.1f} MB after model load)")
    ratio = long["peak_rss_mb"] / one["peak_rss_mb"]
    print(f"{'peak RSS, same clip x20':<38}{long['peak_rss_mb']:10.1f} MB  ({long['frames']} frames; {ratio:.3f} x one clip, target <= 1.10)")
    print(f"{'1 worker process':<38}{e2e_fps:10.2f} frames/s")
    print(f"{'2 processes, TF default threads':<38}{two_fps:10.2f} frames/s   ({two_fps / e2e_fps:.2f} x one, incl. model load;"
          " no share of the cores: what workers did before POSEPIPE_*_OP_THREADS, see thread scaling)")  # fmt: skip
    for line in scaling:
        print(line)
    per_frame_all = UCF101_FRAMES / args.k
    here = per_frame_all / max(two_fps, e2e_fps) / 3600
    per_core = e2e_fps / max(1, min(cores, 2)) if two_fps > e2e_fps else e2e_fps / cores
    print(f"UCF101 ({UCF101_CLIPS} clips, every {args.k}th of ~{UCF101_FRAMES:,} frames): {here:.1f} h here; "
          f"{per_frame_all / (per_core * 16) / 3600:.1f} h on 16 cores (linear per-core projection)")  # fmt: skip


def _thread_scaling(args: argparse.Namespace, tmp: str, repeats: int = 2) -> list[str]:
    """1 worker x 1 thread, 1 worker x 2 threads, 2 workers x 1 thread (concurrent), interleaved repeats."""
    import numpy as np

    fps: dict[str, list[float]] = {"1x1": [], "1x2": [], "2x1": []}
    for rep in range(repeats):
        for threads, name in ((1, "1x1"), (2, "1x2")):
            r = _result(_spawn("pipeline", args, out=f"{tmp}/t{name}-{rep}", threads=threads))
            fps[name].append(r["frames"] / r["wall_s"])
        pair = [_spawn("pipeline", args, out=f"{tmp}/t2x1-{rep}-{i}", tag=f"t{i}", threads=1) for i in range(2)]
        results = [_result(p) for p in pair]
        fps["2x1"].append(sum(r["frames"] / r["wall_s"] for r in results))  # each worker's own rate, summed
    med = {k: float(np.median(v)) for k, v in fps.items()}
    spread = {k: f"[{min(v):.2f}-{max(v):.2f}]" for k, v in fps.items()}
    return [
        "thread scaling (end to end, median of interleaved repeats):",
        f"  1 worker  x 1 thread                      {med['1x1']:8.2f} frames/s  {spread['1x1']}",
        f"  1 worker  x 2 threads                     {med['1x2']:8.2f} frames/s  {spread['1x2']}",
        f"  2 workers x 1 thread                      {med['2x1']:8.2f} frames/s  {spread['2x1']}",
        f"  2x1 / 1x2 = {med['2x1'] / med['1x2']:.2f} (target >= 1.0);  2x1 / 1x1 = {med['2x1'] / med['1x1']:.2f} (target >= 1.8)",
    ]


def _gpu(args: argparse.Namespace, tmp: str, batches: list[int]) -> None:
    """Raw network and end to end at each batch on the GPU, on the clip repeated 20x, with nvidia-smi's
    utilisation sampled every 100 ms and averaged over each case's timed window; UCF101 hours on one GPU."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        print("no nvidia-smi on this machine: no GPU measurements")
        return
    long_video = repeat_video(Path(args.video), Path(tmp) / "x20.avi", 20)
    print(f"GPU path: {Path(args.video).name} x20, every {args.k}th frame; utilisation from nvidia-smi over each timed window")
    for batch in batches:
        for case in ("raw", "pipeline"):
            smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "100"],
                                   stdout=subprocess.PIPE, text=True)  # fmt: skip
            try:
                r = _result(_spawn(case, args, video=long_video, batch=batch, out=f"{tmp}/gpu-{case}-{batch}"))
            finally:
                smi.terminate()
            util, mem = _smi_window(smi.communicate()[0], r["t0_unix"], r["t1_unix"])
            fps = r["frames"] / r["wall_s"]
            line = f"  batch {batch:>3} {case:<8} {fps:9.1f} frames/s  GPU util {util:5.1f} %  memory {mem:7.0f} MiB  (TF saw {r['gpus']} GPU)"
            if case == "pipeline":
                n = max(1, r["frames"])
                line += f"  decode wait {1000 * r['decode_s'] / n:.2f} ms, grouping {1000 * r['group_s'] / n:.2f} ms per frame"
                line += f"; UCF101 every {args.k}th frame: {UCF101_FRAMES / args.k / fps / 3600:.1f} h on this GPU"
            print(line)


def _smi_window(text: str, t0: float, t1: float) -> tuple[float, float]:
    """Mean GPU utilisation (%) and peak memory (MiB) of nvidia-smi CSV lines stamped inside [t0, t1] (unix s)."""
    from datetime import datetime

    utils, mems = [], []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            stamp = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            util, mem = float(parts[1]), float(parts[2])
        except (ValueError, IndexError):
            continue
        if t0 <= stamp <= t1:
            utils.append(util)
            mems.append(mem)
    return (sum(utils) / len(utils) if utils else float("nan")), (max(mems) if mems else float("nan"))


def _keypoints(run_dir: str):  # noqa: ANN202 - (N, J, 3) array
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(f"{run_dir}/part-00000.parquet").sort_by([("clip_id", "ascending"), ("frame_index", "ascending"), ("person_index", "ascending")])
    return np.asarray(table["keypoints"].to_pylist(), np.float32).reshape(table.num_rows, -1, 3)


def _batching(args: argparse.Namespace, tmp: str) -> None:
    """Frozen graph at batch 1 vs the batch-exact graph at 1 and N, raw and end to end, repeats interleaved."""
    import numpy as np

    repeats = 3
    cases = {
        "raw, frozen graph, batch 1 (baseline)": ("raw", {"frozen": True, "batch": 1}),
        "raw, batch-exact graph, batch 1": ("raw", {"batch": 1}),
        f"raw, batch-exact graph, batch {args.batch or 'default'}": ("raw", {}),
        f"end to end, batch {args.batch or 'default'}": ("pipeline", {}),
    }
    fps: dict[str, list[float]] = {name: [] for name in cases}
    batch_used = 0
    for rep in range(repeats):
        for name, (case, over) in cases.items():
            out = f"{tmp}/batching-{rep}-{len(fps[name])}"
            r = _result(_spawn(case, args, out=out, **over))
            fps[name].append(r["frames"] / r["wall_s"])
            batch_used = int(r.get("batch", r.get("max_batch", batch_used)) or batch_used)
    base = float(np.median(fps["raw, frozen graph, batch 1 (baseline)"]))
    print(f"batch-exact batching (chosen batch {batch_used}; median of {repeats} interleaved repeats, min-max in brackets)")
    for name, values in fps.items():
        med = float(np.median(values))
        print(f"  {name:<44}{med:8.2f} frames/s  [{min(values):.2f}-{max(values):.2f}]  {med / base:.2f} x baseline")
    e2e_name = f"end to end, batch {args.batch or 'default'}"
    print(f"  target: end to end at the chosen batch >= 1.4 x baseline -> {float(np.median(fps[e2e_name])) / base:.2f} x")
    one = _result(_spawn("pipeline", args, out=f"{tmp}/kp-b1", batch=1))
    many = _result(_spawn("pipeline", args, out=f"{tmp}/kp-bn"))
    a, b = _keypoints(f"{tmp}/kp-b1"), _keypoints(f"{tmp}/kp-bn")
    same_rows = a.shape == b.shape
    diff = float(np.nanmax(np.abs(a - b))) if same_rows and a.size else float("nan")
    print(f"  keypoints batch 1 vs batch {many['batch']}: {a.shape[0]} vs {b.shape[0]} people-frames, "
          f"max |diff| {diff:.2g} (target <= 1e-3; {one['frames']} frames)")  # fmt: skip


if __name__ == "__main__":
    main()

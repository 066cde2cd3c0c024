"""Sequence datasets from an extraction run: clips/s and peak memory at 1x and 10x the clips.

Generates UCF101-like extraction runs (the files ``posepipe extract clips ucf101`` writes: clip rows,
keypoint parts, shard summaries, manifest; people walking with jittered joints, ``--people`` per
frame, 320x240 frames), then builds ``ucf101-keypoints`` from each in a fresh subprocess
(``tasks.rebuild.run`` with the builtin ``map``: parse, track, skeleton images, gate, commit) and
reads that process's peak RSS from ``/proc/self/status`` (``VmHWM``). Side by side, in the same
run: a baseline that does what a notebook would (read every part file into one table, group it by
clip in pandas, build every sequence in memory).

    .venv/bin/python bench/sequences.py [--clips 300] [--shard-size 128] [--frames 90] [--people 2] [--no-frames]

The target: the 10x run's peak within 10 % of the 1x run's (UCF101's 13,320 clips must never need
to fit in memory). Memory is held per shard, and a process reaches its plateau only after its first
shard is validated (the GX import alone holds ~120 MiB of Python objects), so the 1x run spans
several shards: with a 1x of one small shard (60 clips) the ratio was 1.20 and measured start-up,
not growth. Clips are generated as `posepipe extract clips` writes them (sorted by id, consecutive
per part file); with ids interleaved across parts, every shard held every part open (1.65 at 3,000).
Shared VMs move timings by tens of percent: compare the ratios.
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

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from schemas.records import CLIPS_SCHEMA, KEYPOINTS_SCHEMA, REJECTS_SCHEMA, to_table  # noqa: E402
from storage.fs import filesystem  # noqa: E402
from storage.parquet import write_parquet  # noqa: E402

J = 18
SHARD_CLIPS = 200


def _people(rng: np.random.Generator, frames: int, people: int, w: int = 320, h: int = 240) -> np.ndarray:
    """``(frames, people, J, 3)``: stick figures walking across the frame, joint noise, scores in [0.3, 0.95]."""
    template = rng.normal(0, 1, (J, 2)) * [8, 25]
    start = rng.uniform([40, 60], [w - 40, h - 60], (people, 2))
    step = rng.normal(0, 1.5, (people, 2))
    t = np.arange(frames)[:, None, None]
    centre = start[None] + step[None] * t  # (T, P, 2)
    xy = centre[:, :, None, :] + template[None, None] + rng.normal(0, 1.0, (frames, people, J, 2))
    xy[..., 0] = np.clip(xy[..., 0], 0, w - 1)
    xy[..., 1] = np.clip(xy[..., 1], 0, h - 1)
    score = rng.uniform(0.3, 0.95, (frames, people, J))
    return np.concatenate([xy, score[..., None]], axis=-1).astype(np.float32)


def write_run(run: Path, clips: int, frames: int, people: int, seed: int = 0) -> None:
    """An extraction run folder of ``clips`` UCF101-like clips, written shard by shard."""
    fs, _ = filesystem(str(run))
    rng = np.random.default_rng(seed)
    shards = []
    # as `posepipe extract clips` does: clips sorted by id, cut into consecutive shards (part files)
    defs = sorted(((i % 101, 1 + (i // 101) % 25, i // (101 * 25) + 1, i) for i in range(clips)), key=lambda d: f"v_Class{d[0]:03d}_g{d[1]:02d}_c{d[2]:02d}")
    for s, first in enumerate(range(0, clips, SHARD_CLIPS)):
        ids, rows, parts, hw, keys = [], [], [], {}, {}
        for cls, group, c, i in defs[first : first + SHARD_CLIPS]:
            clip_id = f"v_Class{cls:03d}_g{group:02d}_c{c:02d}"
            ids.append(clip_id)
            folds = [(f"split{k}", "test" if 7 * (k - 1) + 1 <= group <= 7 * k else "train") for k in (1, 2, 3)]
            rows.append({"clip_id": clip_id, "dataset": "ucf101", "label": f"Class{cls:03d}", "label_index": cls, "group": f"g{group:02d}",
                         "folds": folds, "video_path": f"UCF-101/Class{cls:03d}/{clip_id}.avi", "fps": 25.0, "frames_decoded": frames,
                         "frames_declared": frames, "decoder": "bench", "sampled_frame_indices": list(range(frames))})  # fmt: skip
            kp = _people(rng, frames, people).reshape(-1, J, 3)
            n = kp.shape[0]
            inner = pa.FixedSizeListArray.from_arrays(pa.array(kp.reshape(-1), pa.float32()), 3)
            outer = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * J), inner).cast(KEYPOINTS_SCHEMA.field("keypoints").type)
            parts.append(pa.Table.from_arrays([
                pa.array([clip_id] * n), pa.array(np.repeat(np.arange(frames, dtype=np.int32), people)),
                pa.array(np.tile(np.arange(people, dtype=np.int32), frames)), outer, pa.array(np.ones(n, np.float32)),
                pa.array(["openpose18"] * n), pa.array(["bench"] * n), pa.array(["0" * 64] * n)], schema=KEYPOINTS_SCHEMA))  # fmt: skip
            hw[clip_id], keys[clip_id] = [240, 320], f"{i:032x}"
        order = np.argsort(ids)
        write_parquet(fs, str(run / f"part-{s:05d}.parquet"), pa.concat_tables([parts[k] for k in order]), KEYPOINTS_SCHEMA)
        write_parquet(fs, str(run / f"clips-{s:05d}.parquet"), to_table([rows[k] for k in order], CLIPS_SCHEMA), CLIPS_SCHEMA)
        write_parquet(fs, str(run / f"rejects-{s:05d}.parquet"), to_table([], REJECTS_SCHEMA), REJECTS_SCHEMA)
        (run / "_shards").mkdir(parents=True, exist_ok=True)
        (run / "_shards" / f"{s:05d}.json").write_text(json.dumps({"index": s, "clip_frame_hw": hw, "clip_keys": keys}))
        shards.append({"index": s, "clips": len(ids), "extracted": len(ids), "rows": 0, "part_sha256": "", "rejected": {}})
        del parts
    manifest = {"request": {"dataset": "ucf101", "sampling": {"mode": "all"}}, "shards": shards, "totals": {"clips": clips}}
    (run / "_manifest.json").write_text(json.dumps(manifest))


_BUILD = """
import json, sys, time
sys.path.insert(0, {repo!r})
from tasks import rebuild as stages
t0 = time.perf_counter()
s = stages.run(stages.RebuildRequest("ucf101-keypoints", {root!r}, {run!r}, shard_size={shard_size}, adapter_params={params!r}), map)
seconds = time.perf_counter() - t0
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"seconds": seconds, "written": s["written"], "validation": s["validation"], "peak_rss_kib": hwm}}))
"""

_BASELINE = """
import glob, json, sys, time
import numpy as np, pyarrow.parquet as pq, pyarrow as pa
t0 = time.perf_counter()
table = pa.concat_tables([pq.read_table(p) for p in sorted(glob.glob({run!r} + "/part-*.parquet"))])  # the whole run at once
df = table.to_pandas()
seqs = {{}}
for clip_id, g in df.groupby("clip_id", sort=True):
    kp = np.stack(g["keypoints"].map(lambda k: np.stack(k)).to_list())
    frames = g["frame_index"].to_numpy()
    t = frames.max() + 1
    people = g["person_index"].max() + 1
    seq = np.zeros((t, people, kp.shape[1], 3), np.float32)
    seq[frames, g["person_index"].to_numpy()] = kp
    seqs[clip_id] = seq
np.savez({out!r}, **{{k.replace("/", "_"): v for k, v in seqs.items()}})
seconds = time.perf_counter() - t0
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"seconds": seconds, "written": len(seqs), "peak_rss_kib": hwm}}))
"""


def _subprocess(code: str) -> dict[str, float]:
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=300, help="clips of the 1x run (several shards: memory is per shard)")
    ap.add_argument("--shard-size", type=int, default=128, help="clips per shard")
    ap.add_argument("--frames", type=int, default=90, help="frames per clip")
    ap.add_argument("--people", type=int, default=2, help="people per frame")
    ap.add_argument("--no-frames", action="store_true", help="build without per-frame skeleton images")
    args = ap.parse_args()
    params = {"skeleton_frames": not args.no_frames}
    rows = []
    with tempfile.TemporaryDirectory(prefix="pp-bench-seq-") as tmp:
        for scale in (1, 10):
            n = args.clips * scale
            root = Path(tmp) / f"x{scale}"
            run = root / "keypoints" / "ucf101" / "bench"
            t0 = time.perf_counter()
            write_run(run, n, args.frames, args.people)
            gen = time.perf_counter() - t0
            ours = _subprocess(_BUILD.format(repo=str(REPO), root=str(root), run=str(run), params=params, shard_size=args.shard_size))
            base = _subprocess(_BASELINE.format(run=str(run), out=str(Path(tmp) / f"baseline{scale}.npz")))
            rows.append((scale, n, gen, ours, base))
            print(f"x{scale}: {n} clips generated in {gen:.1f} s; posepipe {ours}; baseline {base}", file=sys.stderr)
    print(f"\nsequence dataset from an extraction run: {args.frames} frames x {args.people} people x {J} joints per clip, "
          f"skeleton frames {'off' if args.no_frames else 'on'}")  # fmt: skip
    print(f"{'scale':>5} {'clips':>6} | {'posepipe s':>10} {'clips/s':>8} {'peak MiB':>9} | {'baseline s':>10} {'clips/s':>8} {'peak MiB':>9}")
    for scale, n, _, ours, base in rows:
        print(f"{scale:>4}x {n:>6} | {ours['seconds']:>10.1f} {n / ours['seconds']:>8.1f} {ours['peak_rss_kib'] / 1024:>9.0f} | "
              f"{base['seconds']:>10.1f} {n / base['seconds']:>8.1f} {base['peak_rss_kib'] / 1024:>9.0f}")  # fmt: skip
    (_, _, _, o1, b1), (_, _, _, o10, b10) = rows
    print(f"peak RSS 10x / 1x: posepipe {o10['peak_rss_kib'] / o1['peak_rss_kib']:.3f} (target <= 1.10), baseline {b10['peak_rss_kib'] / b1['peak_rss_kib']:.3f}")
    if o10["validation"] != "passed" or o1["validation"] != "passed":
        sys.exit("a bench version failed its gate")


if __name__ == "__main__":
    main()

"""``posepipe extract clips|ucf101|video|images``: keypoint extraction with a progress bar and a summary."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from schemas.errors import ConfigError

extract_app = typer.Typer(
    help="Extract OpenPose-style keypoints from datasets, videos or images.", no_args_is_help=True
)

_BACKEND = typer.Option("tf-openpose", "--backend", help="tf-openpose | opencv-openpose | package.module:factory")
_MODEL = typer.Option(None, "--model", help="model file (default: the registry's location)")
_ROOT = typer.Option(None, "--root", help="storage root (default: POSEPIPE_ROOT or ./data)")
_CHUNK = typer.Option(32, "--chunk-frames", help="frames decoded at once per clip (memory bound)")


def _sampling(mode: str, k: int, fps: float | None, num_frames: int | None, seed: int) -> Any:
    from pydantic import ValidationError

    from tasks.video.sampling import SamplingSpec

    try:
        return SamplingSpec(mode=mode, k=k, target_fps=fps, num_frames=num_frames, seed=seed)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(
            f"invalid sampling: {exc.errors()[0]['msg']}", hint="--sample all|every_k|fps|uniform"
        ) from exc


def _root(root: str | None) -> str:
    from schemas.settings import Settings

    return root or Settings().root


def _summary(manifest_or_totals: dict[str, Any], seconds: float, run_dir: str) -> None:
    from rich.console import Console
    from rich.table import Table

    totals = manifest_or_totals.get("totals", manifest_or_totals)
    frames = int(totals["frames"])
    table = Table(title="extraction summary", show_header=False)
    table.add_row("clips", f"{totals['extracted']} extracted of {totals['clips']}")
    table.add_row("frames", str(frames))
    table.add_row("frames/s", f"{frames / seconds:.2f}" if seconds > 0 else "-")
    table.add_row("people per frame", f"{totals['people'] / frames:.2f}" if frames else "-")
    failures = totals.get("rejected") or {}
    table.add_row("failures", ", ".join(f"{k}: {v}" for k, v in failures.items()) or "none")
    table.add_row("output", run_dir)
    Console().print(table)


def _run_local(shards: list[Any], run_dir: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run shards in this process with a progress bar (videos/images given on the command line)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tasks.extract.worker import extract_shard, write_run_manifest

    total = sum(len(s.clips) for s in shards)
    summaries = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        bar = progress.add_task("clips", total=total)
        for spec in shards:
            summaries.append(extract_shard(spec, on_clip=lambda clip_id, marker: progress.advance(bar)))
    return write_run_manifest(run_dir, summaries, request)


def register(app: typer.Typer) -> None:
    """Add the ``extract`` command group."""
    app.add_typer(extract_app, name="extract")


_SAMPLE = typer.Option("all", "--sample", help="all | every_k | fps | uniform")
_K = typer.Option(1, "--k")
_FPS = typer.Option(None, "--fps")
_NUM_FRAMES = typer.Option(None, "--num-frames")
_SEED = typer.Option(0, "--seed")
_SHARD = typer.Option(100, "--shard-size", help="clips per Prefect task (50..200)")
_WORKERS = typer.Option(None, "--workers")
_DASK = typer.Option(None, "--dask-address", envvar="POSEPIPE_DASK_ADDRESS")


@extract_app.command("clips")
def extract_clips(
    dataset: str = typer.Argument(..., help="clip dataset adapter: ucf101 | ucf11 | mhad"),  # noqa: B008
    source: Path = typer.Option(..., "--source", help="dataset folder in its published layout"),  # noqa: B008
    fold: str | None = typer.Option(None, "--fold", help="fold name (split1, logo03, subject ...); omit for every clip"),  # noqa: B008
    part: str = typer.Option("all", "--part", help="train | test | all (with --fold)"),  # noqa: B008
    param: list[str] | None = typer.Option(None, "--param", "-p", help="adapter policy key=value, repeatable"),  # noqa: B008
    root: str | None = _ROOT,
    backend: str = _BACKEND,
    model: str | None = _MODEL,
    sample: str = _SAMPLE,
    k: int = _K,
    fps: float | None = _FPS,
    num_frames: int | None = _NUM_FRAMES,
    seed: int = _SEED,
    shard_size: int = _SHARD,
    chunk_frames: int = _CHUNK,
    workers: int | None = _WORKERS,
    dask_address: str | None = _DASK,
) -> None:
    """Extract keypoints for the clips of any clip dataset on Dask (resumable: rerun to continue)."""
    from flows.commands.dataset import parse_kv

    _extract_dataset(
        dataset, source, fold, part, parse_kv(param), root, backend, model, _sampling(sample, k, fps, num_frames, seed),
        shard_size, chunk_frames, workers, dask_address,
    )  # fmt: skip


@extract_app.command("ucf101")
def extract_ucf101(
    source: Path = typer.Option(..., "--source", help="UCF101 folder (ucfTrainTestlist/ and UCF-101/)"),  # noqa: B008
    split: int = typer.Option(1, "--split", min=1, max=3, help="official split 1..3"),  # noqa: B008
    part: str = typer.Option("all", "--part", help="train | test | all"),  # noqa: B008
    root: str | None = _ROOT,
    backend: str = _BACKEND,
    model: str | None = _MODEL,
    sample: str = _SAMPLE,
    k: int = _K,
    fps: float | None = _FPS,
    num_frames: int | None = _NUM_FRAMES,
    seed: int = _SEED,
    shard_size: int = _SHARD,
    chunk_frames: int = _CHUNK,
    workers: int | None = _WORKERS,
    dask_address: str | None = _DASK,
) -> None:
    """Extract keypoints for one official UCF101 split on Dask (``extract clips ucf101 --fold splitN``)."""
    _extract_dataset(
        "ucf101", source, f"split{split}", part, {"require_videos": True}, root, backend, model,
        _sampling(sample, k, fps, num_frames, seed), shard_size, chunk_frames, workers, dask_address,
    )  # fmt: skip


def _extract_dataset(
    dataset: str,
    source: Path,
    fold: str | None,
    part: str,
    adapter_params: dict[str, Any],
    root: str | None,
    backend: str,
    model: str | None,
    sampling: Any,
    shard_size: int,
    chunk_frames: int,
    workers: int | None,
    dask_address: str | None,
) -> None:
    """Plan a clip dataset's extraction and run it on Dask, then print a summary."""
    from tasks.extract.plan import BackendSpec, plan_dataset

    plan = plan_dataset(dataset, source, _root(root), BackendSpec.create(backend, model), sampling, fold, part, adapter_params, shard_size, chunk_frames)
    from flows.extract import run_extract  # Prefect only once there is work to run

    typer.echo(f"{plan.clips} clips in {len(plan.shards)} shards -> {plan.run_dir} ({plan.rejected_at_parse} listed clips rejected at parse)")
    t0 = time.perf_counter()
    manifest = run_extract(plan.shards, plan.run_dir, plan.request, workers, dask_address)
    _summary(manifest, time.perf_counter() - t0, plan.run_dir)


@extract_app.command("video")
def extract_video(
    files: list[Path] = typer.Argument(..., help="video files (or frame globs)"),  # noqa: B008
    root: str | None = _ROOT,
    backend: str = _BACKEND,
    model: str | None = _MODEL,
    sample: str = typer.Option("all", "--sample"),  # noqa: B008
    k: int = typer.Option(1, "--k"),  # noqa: B008
    fps: float | None = typer.Option(None, "--fps"),  # noqa: B008
    num_frames: int | None = typer.Option(None, "--num-frames"),  # noqa: B008
    seed: int = typer.Option(0, "--seed"),  # noqa: B008
    chunk_frames: int = _CHUNK,
    overlay: Path | None = typer.Option(None, "--overlay", help="write the first video with skeletons drawn (.mp4)"),  # noqa: B008
    openpose_json: Path | None = typer.Option(None, "--openpose-json", help="folder for OpenPose per-frame JSON"),  # noqa: B008
    skeleton_h5: Path | None = typer.Option(None, "--skeleton-h5", help="HDF5 file of skeleton images"),  # noqa: B008
) -> None:
    """Extract keypoints from video files in this process; optional overlay and exports."""
    import pyarrow.parquet as pq

    from schemas.skeletons import get_skeleton
    from tasks.extract.exports import (
        poses_from_table,
        write_openpose_json,
        write_overlay_video,
        write_skeleton_images_h5,
    )
    from tasks.extract.plan import BackendSpec, load_estimator, plan_videos

    spec = BackendSpec.create(backend, model)
    plan = plan_videos(files, _root(root), spec, _sampling(sample, k, fps, num_frames, seed), chunk_frames)
    run_dir, clips = plan.run_dir, plan.clips
    t0 = time.perf_counter()
    estimator = load_estimator(spec)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    manifest = _run_local([plan.shard], run_dir, plan.request)
    _summary(manifest, time.perf_counter() - t0, run_dir)
    typer.echo(f"model load {t_model:.1f} s (not in frames/s)")
    table = pq.read_table(f"{run_dir}/part-00000.parquet")
    clip_rows = {r["clip_id"]: r for r in pq.read_table(f"{run_dir}/clips-00000.parquet").to_pylist()}
    joints = get_skeleton(estimator.skeleton).num_joints
    if openpose_json is not None:
        for clip in clips:
            if clip.clip_id in clip_rows:
                per_frame = poses_from_table(table, clip.clip_id, joints)
                empty = _empty(joints)
                frames = [
                    (i, per_frame.get(i, empty)) for i in sorted(set(clip_rows[clip.clip_id]["sampled_frame_indices"]))
                ]
                write_openpose_json(openpose_json, clip.clip_id, frames)
        typer.echo(f"OpenPose JSON -> {openpose_json}")
    if skeleton_h5 is not None:
        items, sizes = [], {}
        for clip in clips:
            if clip.clip_id in clip_rows:
                from tasks.video.decode import VideoReader

                info = VideoReader(clip.video_path).info
                sizes[clip.clip_id] = (info.height, info.width)
                per_frame = poses_from_table(table, clip.clip_id, joints)
                items += [
                    (clip.clip_id, i, per_frame.get(i, _empty(joints)))
                    for i in sorted(set(clip_rows[clip.clip_id]["sampled_frame_indices"]))
                ]
        write_skeleton_images_h5(skeleton_h5, items, estimator.skeleton, sizes)
        typer.echo(f"skeleton images ({len(items)}) -> {skeleton_h5}")
    if overlay is not None:
        first = clips[0]
        if first.clip_id not in clip_rows:
            raise ConfigError(f"{first.video_path} was rejected; no overlay to draw")
        n = write_overlay_video(
            first.video_path, poses_from_table(table, first.clip_id, joints), estimator.skeleton, overlay
        )
        typer.echo(f"overlay ({n} frames) -> {overlay}")


def _empty(joints: int) -> Any:
    import numpy as np

    from tasks.keypoints.api import FramePoses

    return FramePoses(np.zeros((0, joints, 3), np.float32), np.zeros(0, np.float32))


@extract_app.command("images")
def extract_images(
    paths: list[Path] = typer.Argument(..., help="image files or folders of images"),  # noqa: B008
    backend: str = _BACKEND,
    model: str | None = _MODEL,
    coco_json: Path = typer.Option(..., "--coco-json", help="COCO keypoint results file to write (image list beside it: NAME.images.json)"),  # noqa: B008
    gt: Path | None = typer.Option(None, "--gt", help="COCO GT json: image ids by file name (default: ids from the names)"),  # noqa: B008
) -> None:
    """Extract keypoints from images (batched as the backend allows) and write COCO results JSON."""
    from rich.progress import Progress

    from tasks.extract.images import extract_images as run_images
    from tasks.extract.images import image_files, resolve_image_ids, write_coco_outputs
    from tasks.extract.plan import BackendSpec, load_estimator

    files = image_files(paths)
    image_ids = resolve_image_ids(files, gt)  # before inference: nothing computed is thrown away
    estimator = load_estimator(BackendSpec.create(backend, model))
    with Progress() as progress:
        bar = progress.add_task("images", total=len(files))
        result = run_images(files, estimator, image_ids, on_batch=lambda n: progress.advance(bar, n))
    results_path, sidecar, detections = write_coco_outputs(result, estimator.skeleton, coco_json)
    _images_summary(len(files), result, detections, results_path, sidecar)


def _images_summary(total: int, result: Any, detections: int, results_path: Path, sidecar: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from tasks.extract.plan import text_of

    images = len(result.found)
    table = Table(title="extraction summary", show_header=False)
    table.add_row("images", f"{images} extracted of {total}")
    table.add_row("images/s", f"{images / result.seconds:.2f}" if result.seconds > 0 else "-")
    table.add_row("people per image", f"{result.people / images:.2f}" if images else "-")
    table.add_row("detections", str(detections))
    reasons = Counter(result.failures.values())
    table.add_row("failures", ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) or "none")
    table.add_row("results", text_of(str(results_path)))
    table.add_row("image ids", text_of(str(sidecar)))
    Console().print(table)
    for name, reason in sorted(result.failures.items()):
        typer.echo(f"{reason}: {result.details.get(name) or text_of(name)}")

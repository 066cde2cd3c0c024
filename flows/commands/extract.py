"""``posepipe extract clips|ucf101|video|images``: wiring only (options -> plan -> run -> summary).

Planning, extraction and exports are in :mod:`tasks.extract`. Root and execution come from
:class:`schemas.settings.Settings` as for ``rebuild``: an option given on the command line wins, else
the environment (``POSEPIPE_ROOT``, ``POSEPIPE_WORKERS``, ``POSEPIPE_DASK_ADDRESS``,
``POSEPIPE_THREADS_PER_WORKER``), else the default.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.commands._options import AdapterParamOption, parse_kv
from schemas.settings import Settings

extract_app = typer.Typer(
    help="Extract OpenPose-style keypoints from datasets, videos or images.", no_args_is_help=True
)

Backend = Annotated[str, typer.Option(help="tf-openpose | opencv-openpose | package.module:factory")]
Model = Annotated[str | None, typer.Option(help="model file (default: the registry's location)")]
Root = Annotated[str | None, typer.Option(help="storage root (path or fsspec URL) (env POSEPIPE_ROOT)")]
ChunkFrames = Annotated[int, typer.Option(help="frames decoded at once per clip (memory bound)")]
Sample = Annotated[str, typer.Option(help="all | every_k | fps | uniform")]
K = Annotated[int, typer.Option(help="every_k: keep one frame in K")]
Fps = Annotated[float | None, typer.Option(help="fps: frames per second to keep")]
NumFrames = Annotated[int | None, typer.Option(help="uniform: frames to draw")]
Seed = Annotated[int, typer.Option(help="uniform: sampling seed")]
ShardSize = Annotated[int, typer.Option(help="clips per Prefect task (50..200)")]
Workers = Annotated[int | None, typer.Option(help="LocalCluster workers (default: one per core) (env POSEPIPE_WORKERS)")]
DaskAddress = Annotated[
    str | None, typer.Option(help="tcp://HOST:PORT of an existing Dask scheduler (env POSEPIPE_DASK_ADDRESS)")
]
Threads = Annotated[
    int | None, typer.Option(help="threads per LocalCluster worker (env POSEPIPE_THREADS_PER_WORKER)")
]
Batch = Annotated[
    int | None,
    typer.Option(min=1, help="frames per network call (default: the backend's, 8 for batch-exact graphs); results do not depend on it"),
]


def _settings(**overrides: Any) -> Settings:
    """Settings with the options given on the command line over the environment."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def text_of(value: str) -> str:
    """Printable text of a path (see :func:`tasks.common.text_of`; imported when needed)."""
    from tasks.common import text_of as _text_of

    return _text_of(value)


def _summary(manifest: dict[str, Any], seconds: float, run_dir: str) -> None:
    from rich.console import Console
    from rich.table import Table

    totals = manifest["totals"]
    frames = int(totals["frames"])
    table = Table(title="extraction summary", show_header=False)
    table.add_row("clips", f"{totals['extracted']} extracted of {totals['clips']}")
    table.add_row("frames", str(frames))
    table.add_row("frames/s", f"{frames / seconds:.2f}" if seconds > 0 else "-")
    table.add_row("people per frame", f"{totals['people'] / frames:.2f}" if frames else "-")
    failures = totals.get("rejected") or {}
    table.add_row("failures", ", ".join(f"{k}: {v}" for k, v in failures.items()) or "none")
    table.add_row("output", text_of(run_dir))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``extract`` command group."""
    app.add_typer(extract_app, name="extract")


@extract_app.command("clips")
def extract_clips(
    dataset: Annotated[str, typer.Argument(help="clip dataset adapter: ucf101 | ucf11 | mhad")],
    source: Annotated[Path, typer.Option(help="dataset folder in its published layout")],
    fold: Annotated[str | None, typer.Option(help="fold name (split1, logo03, subject ...); omit for every clip")] = None,
    part: Annotated[str, typer.Option(help="train | test | all (with --fold)")] = "all",
    param: AdapterParamOption = None,
    root: Root = None,
    backend: Backend = "tf-openpose",
    model: Model = None,
    sample: Sample = "all",
    k: K = 1,
    fps: Fps = None,
    num_frames: NumFrames = None,
    seed: Seed = 0,
    shard_size: ShardSize = 100,
    chunk_frames: ChunkFrames = 32,
    batch: Batch = None,
    workers: Workers = None,
    dask_address: DaskAddress = None,
    threads_per_worker: Threads = None,
) -> None:
    """Extract keypoints for the clips of any clip dataset on Dask (resumable: rerun to continue)."""
    settings = _settings(root=root, workers=workers, dask_address=dask_address, threads_per_worker=threads_per_worker)
    _extract_dataset(
        settings, dataset, source, fold, part, parse_kv(param), backend, model,
        sample, k, fps, num_frames, seed, shard_size, chunk_frames, batch,
    )  # fmt: skip


@extract_app.command("ucf101")
def extract_ucf101(
    source: Annotated[Path, typer.Option(help="UCF101 folder (ucfTrainTestlist/ and UCF-101/)")],
    split: Annotated[int, typer.Option(min=1, max=3, help="official split 1..3")] = 1,
    part: Annotated[str, typer.Option(help="train | test | all")] = "all",
    root: Root = None,
    backend: Backend = "tf-openpose",
    model: Model = None,
    sample: Sample = "all",
    k: K = 1,
    fps: Fps = None,
    num_frames: NumFrames = None,
    seed: Seed = 0,
    shard_size: ShardSize = 100,
    chunk_frames: ChunkFrames = 32,
    batch: Batch = None,
    workers: Workers = None,
    dask_address: DaskAddress = None,
    threads_per_worker: Threads = None,
) -> None:
    """Extract keypoints for one official UCF101 split on Dask (``extract clips ucf101 --fold splitN``)."""
    settings = _settings(root=root, workers=workers, dask_address=dask_address, threads_per_worker=threads_per_worker)
    _extract_dataset(
        settings, "ucf101", source, f"split{split}", part, {"require_videos": True}, backend, model,
        sample, k, fps, num_frames, seed, shard_size, chunk_frames, batch,
    )  # fmt: skip


def _extract_dataset(
    settings: Settings,
    dataset: str,
    source: Path,
    fold: str | None,
    part: str,
    adapter_params: dict[str, Any],
    backend: str,
    model: str | None,
    sample: str,
    k: int,
    fps: float | None,
    num_frames: int | None,
    seed: int,
    shard_size: int,
    chunk_frames: int,
    batch: int | None = None,
) -> None:
    """What ``extract clips`` and ``extract ucf101`` both do, from their options on.

    Frame sampling is built from ``sample``/``k``/``fps``/``num_frames``/``seed``; the plan is made
    before Prefect starts (mistakes are reported at once), then run on Dask, then summarised.
    """
    from tasks.extract.plan import BackendSpec, plan_dataset, sampling_from_options

    sampling = sampling_from_options(sample, k, fps, num_frames, seed)
    plan = plan_dataset(dataset, source, settings.root, BackendSpec.create(backend, model), sampling, fold, part, adapter_params, shard_size, chunk_frames, batch)  # fmt: skip
    from flows.extract import run_extract  # Prefect only once there is work to run

    typer.echo(f"{plan.clips} clips in {len(plan.shards)} shards -> {plan.run_dir} ({plan.rejected_at_parse} listed clips rejected at parse)")  # fmt: skip
    t0 = time.perf_counter()
    manifest = run_extract(plan.shards, plan.run_dir, plan.request, settings.workers, settings.dask_address, settings.threads_per_worker)  # fmt: skip
    _summary(manifest, time.perf_counter() - t0, plan.run_dir)


@extract_app.command("video")
def extract_video(
    files: Annotated[list[Path], typer.Argument(help="video files (or frame globs)")],
    root: Root = None,
    backend: Backend = "tf-openpose",
    model: Model = None,
    sample: Sample = "all",
    k: K = 1,
    fps: Fps = None,
    num_frames: NumFrames = None,
    seed: Seed = 0,
    chunk_frames: ChunkFrames = 32,
    batch: Batch = None,
    overlay: Annotated[Path | None, typer.Option(help="write the first video with skeletons drawn (.mp4)")] = None,
    openpose_json: Annotated[Path | None, typer.Option(help="folder for OpenPose per-frame JSON")] = None,
    skeleton_h5: Annotated[Path | None, typer.Option(help="HDF5 file of skeleton images")] = None,
) -> None:
    """Extract keypoints from video files in this process into a folder keyed by the videos' contents."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tasks.extract.exports import export_video_run
    from tasks.extract.plan import BackendSpec, load_estimator, plan_videos, sampling_from_options
    from tasks.extract.worker import extract_local

    spec = BackendSpec.create(backend, model)
    plan = plan_videos(files, _settings(root=root).root, spec, sampling_from_options(sample, k, fps, num_frames, seed), chunk_frames, batch)  # fmt: skip
    t0 = time.perf_counter()
    estimator = load_estimator(spec)
    estimator.choose_batch(batch)  # refuse a batch the model cannot run before any clip
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        bar = progress.add_task("clips", total=len(plan.clips))
        manifest = extract_local([plan.shard], plan.run_dir, plan.request, on_clip=lambda _id, _m: progress.advance(bar))
    _summary(manifest, time.perf_counter() - t0, plan.run_dir)
    typer.echo(f"model load {t_model:.1f} s (not in frames/s)")
    for line in export_video_run(plan, estimator.skeleton, openpose_json, skeleton_h5, overlay):
        typer.echo(text_of(line))


@extract_app.command("images")
def extract_images(
    paths: Annotated[list[Path], typer.Argument(help="image files or folders of images")],
    coco_json: Annotated[Path, typer.Option(help="COCO keypoint results file to write (image list beside it: NAME.images.json)")],
    backend: Backend = "tf-openpose",
    model: Model = None,
    gt: Annotated[Path | None, typer.Option(help="COCO GT json: image ids by file name (default: ids from the names)")] = None,
    batch: Batch = None,
) -> None:
    """Extract keypoints from images (batched as the backend allows) and write COCO results JSON."""
    from rich.progress import Progress

    from tasks.extract.images import extract_images as run_images
    from tasks.extract.images import image_files, resolve_image_ids, write_coco_outputs
    from tasks.extract.plan import BackendSpec, load_estimator

    files = image_files(paths)
    image_ids = resolve_image_ids(files, gt)  # before inference: nothing computed is thrown away
    estimator = load_estimator(BackendSpec.create(backend, model))
    estimator.choose_batch(batch)
    with Progress() as progress:
        bar = progress.add_task("images", total=len(files))
        result = run_images(files, estimator, image_ids, on_batch=lambda n: progress.advance(bar, n), batch=batch)
    results_path, sidecar, detections = write_coco_outputs(result, estimator.skeleton, coco_json)
    _images_summary(len(files), result, detections, results_path, sidecar)


def _images_summary(total: int, result: Any, detections: int, results_path: Path, sidecar: Path) -> None:
    from rich.console import Console
    from rich.table import Table

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

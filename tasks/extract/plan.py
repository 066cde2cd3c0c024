"""Extraction planning: backend specs, run and clip keys, clips cut into shards.

Only these small, picklable specs travel through Prefect and Dask; frames and keypoints never do.

Keys:

- ``run_key`` (the output folder): backend name, model file sha256 (when a file is given), backend
  options, sampling, schema version and the inputs: for ``extract video`` each video's content
  sha256 and clip id, for a clip dataset the dataset, source folder, fold, part, adapter params and
  clip list. Same inputs and request -> same folder -> resume; other inputs -> another folder, so
  one run never replaces another's keypoints.
- ``clip_key`` (a clip's completion marker): video sha256 + backend name + the loaded model's
  sha256 + the same params, so a re-encoded video or another model is redone. Planned runs keep
  their clip results in one cache shared by every run under the root (:func:`storage.layout.extraction_cache_dir`):
  a clip already extracted by any run with the same backend and sampling is reused.

File names are carried losslessly: Python holds the non-UTF-8 bytes of a file name as lone
surrogates (PEP 383), which Parquet strings cannot store. Ids and paths written to Parquet are the
name's readable text (:func:`tasks.common.text_of`: undecodable bytes shown as ``\\xNN``); the run manifest also
keeps the exact bytes in hex (:func:`path_bytes_hex`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError
from schemas.records import SCHEMA_VERSION
from storage.fs import file_sha256
from storage.layout import ExtractionPaths, extraction_cache_dir
from tasks.common import text_of
from tasks.datasets.base import DatasetAdapter
from tasks.keypoints.api import PoseEstimator
from tasks.video.decode import is_image_sequence
from tasks.video.sampling import SamplingSpec

MIN_SHARD_CLIPS = 50
MAX_SHARD_CLIPS = 200


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def path_bytes_hex(path: str | Path) -> str | None:
    """The exact bytes of ``path`` in hex when its name is not UTF-8 (None when it is).

    ``bytes.fromhex`` gives the name back, byte for byte, in any language.
    """
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
        return None
    except UnicodeDecodeError:
        return raw.hex()


@dataclass(frozen=True)
class BackendSpec:
    """How a worker creates its pose backend.

    Attributes:
        name: ``tf-openpose``/``opencv-openpose`` (see :func:`tasks.keypoints.load_backend`), or
            ``package.module:factory`` for a backend outside the registry (a test double, a plugin):
            ``factory(model_path, **options)`` must return a :class:`PoseEstimator`.
        model_path: Model file, or None for the registry's default location.
        options: Backend options as sorted ``(key, value)`` pairs.
    """

    name: str
    model_path: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def create(cls, name: str, model_path: str | Path | None = None, **options: Any) -> BackendSpec:
        """Build a spec with options sorted (so equal requests hash equally)."""
        return cls(name, None if model_path is None else str(model_path), tuple(sorted(options.items())))

    def describe(self) -> dict[str, Any]:
        """What identifies the request (model file by content, not by path)."""
        model = (
            file_sha256(Path(self.model_path))
            if self.model_path and Path(self.model_path).is_file()
            else self.model_path
        )
        from tasks.keypoints import expected_graph_revision

        described = {"backend": self.name, "model": model, "options": dict(self.options)}
        revision = expected_graph_revision(self.name, dict(self.options))
        return {**described, "graph": revision} if revision else described


_BACKENDS: dict[str, PoseEstimator] = {}
_BACKENDS_LOCK = threading.Lock()


def load_estimator(spec: BackendSpec) -> PoseEstimator:
    """Create (once per process) the backend ``spec`` describes.

    Raises:
        ConfigError: If a ``module:factory`` name cannot be imported.
    """
    key = _canonical([spec.name, spec.model_path, spec.options])
    with _BACKENDS_LOCK:
        if key not in _BACKENDS:
            if ":" in spec.name:
                module_name, _, attr = spec.name.partition(":")
                try:
                    factory = getattr(importlib.import_module(module_name), attr)
                except (ImportError, AttributeError) as exc:
                    raise ConfigError(
                        f"cannot import backend factory {spec.name!r}: {exc}", hint="use package.module:callable"
                    ) from exc
            else:
                from tasks.keypoints import load_backend as factory_by_name

                def factory(model_path: str | None, **options: Any) -> PoseEstimator:
                    return factory_by_name(spec.name, model_path, **options)

            _BACKENDS[key] = factory(spec.model_path, **dict(spec.options))
        return _BACKENDS[key]


def run_key(backend: BackendSpec, sampling: SamplingSpec, inputs: Any = None) -> str:
    """16-hex key of an extraction request (names its output folder).

    Args:
        backend: Backend spec (its model file counts by content).
        sampling: Frame sampling.
        inputs: JSON-ready identity of the inputs (see :func:`plan_videos`, :func:`plan_dataset`);
            None for a run whose folder the caller names by other means (tests, benchmarks).
    """
    request: dict[str, Any] = {**backend.describe(), "sampling": sampling.model_dump(), "schema": SCHEMA_VERSION}
    if inputs is not None:
        request["inputs"] = inputs
    return hashlib.sha256(_canonical(request).encode()).hexdigest()[:16]


def clip_key(
    video_sha256: str, backend_name: str, model_sha256: str, backend: BackendSpec, sampling: SamplingSpec, graph_revision: str = ""
) -> str:
    """Key of one clip's result: video content + backend + model (+ its graph rewrite) + params.

    The batch a clip ran at is not part of it: results do not depend on it (batch-exact graphs, or
    batch 1).
    """
    request = {
        "video": video_sha256,
        "backend": backend_name,
        "model_sha256": model_sha256,
        "options": dict(backend.options),
        "sampling": sampling.model_dump(),
        "schema": SCHEMA_VERSION,
    }
    text = _canonical({**request, "graph": graph_revision} if graph_revision else request)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def video_sha256(path: str) -> str:
    """sha256 of a video file, or of an image sequence (sorted names and their contents' sha256)."""
    if not is_image_sequence(path):
        return file_sha256(Path(path))
    from tasks.video.decode import _sequence_files

    h = hashlib.sha256()
    for name in _sequence_files(path):
        h.update(f"{Path(name).name}\0{file_sha256(Path(name))}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ClipTask:
    """One clip to extract.

    Attributes:
        clip_id: Stable id (from the adapter).
        video_path: Absolute path of the video, frame glob or frame folder.
        record: The clip's ``clips`` row from the adapter (label, group, folds...), as plain data.
    """

    clip_id: str
    video_path: str
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExtractShardSpec:
    """One unit of work (one Prefect task): a slice of clips sorted by ``clip_id``.

    Attributes:
        index: Shard number (its files: :class:`storage.layout.ExtractionPaths`).
        clips: The clips.
        run_dir: Output folder (:meth:`storage.layout.ExtractionPaths.of_run`; any fsspec URL).
        dataset: Dataset name stored in the clips table.
        backend: How to create the backend.
        sampling: Frame sampling.
        chunk_frames: Decoded frames held at once per clip.
        cache_dir: Folder of the per-clip results and completion markers (``_clips/``,
            ``_done/``); None keeps them in ``run_dir``.
        batch: Frames per network call (None: the backend's default; see
            :meth:`tasks.keypoints.api.PoseEstimator.choose_batch`). Not part of any key.
    """

    index: int
    clips: tuple[ClipTask, ...]
    run_dir: str
    dataset: str
    backend: BackendSpec
    sampling: SamplingSpec
    chunk_frames: int = 32
    cache_dir: str | None = None
    batch: int | None = None


def plan_extract_shards(
    clips: Iterable[ClipTask],
    run_dir: str,
    dataset: str,
    backend: BackendSpec,
    sampling: SamplingSpec,
    shard_size: int = 100,
    chunk_frames: int = 32,
    enforce_bounds: bool = True,
    cache_dir: str | None = None,
    batch: int | None = None,
) -> list[ExtractShardSpec]:
    """Cut clips (sorted by ``clip_id``) into consecutive shards of ``shard_size``.

    Args:
        clips: Clips to extract; ids must be unique.
        run_dir: Output folder of the run.
        dataset: Dataset name.
        backend: Backend spec.
        sampling: Sampling spec.
        shard_size: Clips per shard; 50..200 (DESIGN: one Prefect task per shard).
        chunk_frames: Decode chunk size.
        enforce_bounds: Check ``shard_size`` is within 50..200 (off only for tiny local runs and tests).
        cache_dir: Shared per-clip cache folder (:func:`storage.layout.extraction_cache_dir`); None keeps it in
            ``run_dir``.
        batch: Frames per network call (None: the backend's default); results do not depend on it.

    Returns:
        Shards; membership depends only on the sorted ids, not on input order.

    Raises:
        ConfigError: On a shard size out of bounds or duplicate clip ids.
    """
    if shard_size < 1 or (enforce_bounds and not MIN_SHARD_CLIPS <= shard_size <= MAX_SHARD_CLIPS):
        raise ConfigError(
            f"shard size {shard_size} is outside {MIN_SHARD_CLIPS}..{MAX_SHARD_CLIPS} clips",
            hint="fewer clips per task leaves workers idle on Prefect overhead; more makes resume coarse",
        )
    ordered: Sequence[ClipTask] = sorted(clips, key=lambda c: c.clip_id)
    ids = [c.clip_id for c in ordered]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"duplicate clip ids: {dupes[:5]}", hint="clip ids must be unique within a run")
    return [
        ExtractShardSpec(
            i // shard_size, tuple(ordered[i : i + shard_size]), run_dir, dataset, backend, sampling, chunk_frames,
            cache_dir, batch,
        )
        for i in range(0, len(ordered), shard_size)
    ]


def clips_from_records(
    records: Any, source: Path, fold: str | None = None, side: str | None = None, fold_hint: str = ""
) -> list[ClipTask]:
    """Clip tasks from an adapter's ``clips`` table, optionally one side of one fold.

    Args:
        records: CLIPS_SCHEMA table.
        source: The dataset folder ``video_path`` is relative to.
        fold: Fold name (a key of the ``folds`` column); None keeps every clip.
        side: ``train``/``test``; None keeps both sides of ``fold``.
        fold_hint: The dataset's fold names, for the error (see :func:`folds_hint`).

    Returns:
        The clips, with absolute video paths.

    Raises:
        ConfigError: If ``fold`` is not in the records.
    """
    out = []
    seen_fold = False
    for row in records.to_pylist():
        folds = dict(row.get("folds") or [])
        if fold is not None:
            if fold not in folds:
                continue
            seen_fold = True
            if side is not None and folds[fold] != side:
                continue
        out.append(
            ClipTask(
                row["clip_id"], str(Path(source) / row["video_path"]), {k: v for k, v in row.items() if v is not None}
            )
        )
    if fold is not None and not seen_fold and records.num_rows:
        raise ConfigError(f"no clip has fold {fold!r}", hint=fold_hint or "a fold is a key of the clips' folds column")
    return out


def folds_hint(adapter: DatasetAdapter) -> str:
    """``"{dataset} folds: {its fold names}"`` for messages (from the adapter's ``fold_hint``)."""
    return f"{adapter.name} folds: {adapter.fold_hint}" if adapter.fold_hint else f"{adapter.name} has no folds"


@dataclass(frozen=True)
class DatasetPlan:
    """An extraction run over a clip dataset, ready to submit.

    Attributes:
        shards: Planned shards.
        run_dir: The run folder (:meth:`storage.layout.ExtractionPaths.of_run`).
        request: What was asked (stored in the run manifest).
        clips: Clips selected.
        rejected_at_parse: Listed clips the adapter rejected (e.g. video missing).
    """

    shards: list[ExtractShardSpec]
    run_dir: str
    request: dict[str, Any]
    clips: int
    rejected_at_parse: int


def plan_dataset(
    dataset: str,
    source: Path,
    root: str,
    backend: BackendSpec,
    sampling: SamplingSpec,
    fold: str | None = None,
    part: str = "all",
    adapter_params: Mapping[str, Any] | None = None,
    shard_size: int = 100,
    chunk_frames: int = 32,
    batch: int | None = None,
) -> DatasetPlan:
    """Parse a clip dataset with its adapter, keep one side of one fold, and cut it into shards.

    Args:
        dataset: A clip adapter (``record_kind == "clips"``).
        source: The dataset folder in its published layout.
        root: Storage root; the run goes to its folder for ``dataset`` and the run key
            (:meth:`storage.layout.ExtractionPaths.of_run`).
        backend: Pose backend.
        sampling: Frame sampling.
        fold: Fold name (the adapter's ``fold_hint`` lists them); None keeps every clip.
        part: ``train``, ``test`` or ``all`` (``train``/``test`` need ``fold``).
        adapter_params: Adapter policy overrides.
        shard_size: Clips per shard (50..200).
        chunk_frames: Frames decoded at once per clip.
        batch: Frames per network call (None: the backend's default); not part of the run key.

    Raises:
        ConfigError: On an unknown part, a part without a fold, an image dataset, or a fold the
            records do not have.
    """
    from tasks.datasets import get_adapter

    if part not in ("train", "test", "all"):
        raise ConfigError(f"--part must be train, test or all, not {part!r}")
    adapter = get_adapter(dataset)
    if adapter.record_kind != "clips":
        raise ConfigError(f"{dataset} is an image dataset; extract keypoints from its images with `posepipe extract images`")
    if part != "all" and fold is None:
        raise ConfigError(f"--part {part} needs a --fold", hint=folds_hint(adapter))
    parsed = adapter.parse(Path(source), adapter.make_params(dict(adapter_params or {})))
    clips = clips_from_records(parsed.records, Path(source), fold, None if part == "all" else part, folds_hint(adapter))
    inputs = {
        "dataset": dataset, "source": text_of(str(Path(source).resolve())), "fold": fold, "part": part,
        "adapter_params": dict(adapter_params or {}),
        "clips": hashlib.sha256(_canonical(sorted((c.clip_id, text_of(c.video_path)) for c in clips)).encode()).hexdigest(),
    }  # fmt: skip
    run_dir = ExtractionPaths.of_run(root, dataset, run_key(backend, sampling, inputs)).dir
    shards = plan_extract_shards(
        clips, run_dir, dataset, backend, sampling, shard_size, chunk_frames, cache_dir=extraction_cache_dir(root), batch=batch
    )
    request: dict[str, Any] = {"dataset": dataset, "fold": fold, "part": part, "backend": backend.describe(), "sampling": sampling.model_dump(),
                               "inputs": inputs}  # fmt: skip
    if fold:
        request.update(adapter.fold_request(fold))
    return DatasetPlan(shards, run_dir, request, len(clips), parsed.rejects.num_rows)


def sampling_from_options(
    mode: str, k: int = 1, fps: float | None = None, num_frames: int | None = None, seed: int = 0
) -> SamplingSpec:
    """A :class:`SamplingSpec` from command-line options, or a clear error.

    Raises:
        ConfigError: If the options do not make a valid sampling.
    """
    from pydantic import ValidationError

    try:
        return SamplingSpec(mode=mode, k=k, target_fps=fps, num_frames=num_frames, seed=seed)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(
            f"invalid sampling: {exc.errors()[0]['msg']}",
            hint="--sample all | every_k (with --k) | fps (with --fps) | uniform (with --num-frames)",
        ) from exc


@dataclass(frozen=True)
class VideoPlan:
    """An ``extract video`` run over files named on the command line.

    Attributes:
        shard: The one shard (every video, in this process).
        run_dir: The run folder of dataset ``videos`` (:meth:`storage.layout.ExtractionPaths.of_run`); the key
            includes every video's content.
        request: What was asked, with each input's clip id, path text, content sha256 (and exact
            name bytes in hex when the name is not UTF-8); stored in the run manifest.
        clips: The clips, in the order the files were given.
    """

    shard: ExtractShardSpec
    run_dir: str
    request: dict[str, Any]
    clips: tuple[ClipTask, ...]


def video_clip_ids(files: Sequence[str | Path]) -> list[str]:
    """Clip ids of videos named on the command line: the file stem as text, ``{stem}_{i}`` where stems repeat.

    Args:
        files: Video files or frame globs, in the order given.

    Returns:
        One UTF-8 id per file (see :func:`text_of` for names that are not UTF-8).
    """
    stems = [text_of(Path(f).stem) for f in files]
    counts = Counter(stems)
    return [stem if counts[stem] == 1 else f"{stem}_{i}" for i, stem in enumerate(stems)]


def plan_videos(
    files: Sequence[str | Path],
    root: str,
    backend: BackendSpec,
    sampling: SamplingSpec,
    chunk_frames: int = 32,
    batch: int | None = None,
) -> VideoPlan:
    """Plan ``extract video``: one shard of every file, in a run folder keyed by the videos' contents.

    Reads every video once (sha256). A file that cannot be read still gets a clip (the worker
    rejects it with ``video_missing``); its identity in the key is its name.

    Args:
        files: Video files or frame globs.
        root: Storage root.
        backend: Pose backend.
        sampling: Frame sampling.
        chunk_frames: Frames decoded at once per clip.
        batch: Frames per network call (None: the backend's default); not part of the run key.

    Returns:
        The :class:`VideoPlan`.

    Raises:
        ConfigError: If no file is given.
    """
    if not files:
        raise ConfigError("no video given", hint="posepipe extract video FILE [FILE ...]")
    clips, inputs = [], []
    for clip_id, f in zip(video_clip_ids(files), files, strict=True):
        path = str(Path(f).resolve())
        try:
            content = video_sha256(path)
        except OSError as exc:
            content = f"unreadable: {text_of(str(exc))}"
        entry: dict[str, Any] = {"clip_id": clip_id, "path": text_of(str(f)), "video_sha256": content}
        exact = path_bytes_hex(f)
        if exact is not None:
            entry["path_bytes_hex"] = exact
        inputs.append(entry)
        clips.append(ClipTask(clip_id, path, {"label": "", "label_index": -1, "video_path": text_of(str(f))}))
    identity = sorted((e["clip_id"], e["video_sha256"]) for e in inputs)
    run_dir = ExtractionPaths.of_run(root, "videos", run_key(backend, sampling, identity)).dir
    (shard,) = plan_extract_shards(clips, run_dir, "videos", backend, sampling, len(clips), chunk_frames,
                                   enforce_bounds=False, cache_dir=extraction_cache_dir(root), batch=batch)  # fmt: skip
    request = {"dataset": "videos", "inputs": inputs, "backend": backend.describe(), "sampling": sampling.model_dump()}
    return VideoPlan(shard, run_dir, request, tuple(clips))

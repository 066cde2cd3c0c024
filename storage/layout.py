"""The one storage layout: every path under a posepipe root is built here, nowhere else.

::

    {root}/datasets/{dataset}/LATEST                               the validated version readers get
    {root}/datasets/{dataset}/.lock, .lock.pid                     one rebuild of a dataset at a time
    {root}/datasets/{dataset}/{version}/{split}/part-{i:05d}.parquet   records of one shard
    {root}/datasets/{dataset}/{version}/_pixels/{split}/part-{i:05d}.h5   pixels of the same shard
    {root}/datasets/{dataset}/{version}/_manifest.json             written last; readers trust nothing else
    {root}/datasets/{dataset}/{version}/_rejects.parquet           every parsed input not written, with a reason
    {root}/datasets/{dataset}/{version}/_inputs.parquet            content digest of every referenced image/video
    {root}/datasets/{dataset}/{version}/_validation.{json,html}    the gate's report
    {root}/datasets/{dataset}/{version}/_run.json                  when, where and from which source (not hashed)
    {root}/datasets/{dataset}/{version}/_staging/                  work files of an uncommitted build
    {root}/cache/digests/{dataset}.json                            stat-keyed content digests of source files
    {root}/raw/{dataset}/...                                       downloads and extracted trees (:class:`RawPaths`)
    {root}/keypoints/{dataset}/{run_key}/                          an extraction run (:class:`ExtractionPaths`)
    {root}/keypoints/_cache/                                       per-clip results every run shares (:func:`extraction_cache_dir`)
    {root}/models/{task}/{model_version}/                          a registered model (:class:`ModelPaths`)
    {root}/models/{task}/_staging/{model_version}/                 a model being trained (checkpoints survive kills)
    {root}/models/{task}/champion, champion.history.jsonl          the promoted model and how the alias moved
    {root}/models/{task}/_decisions/{utc}-{model_version}.json      every retrain's gate decision

The records of a version are exactly ``{version}/{split}/part-*.parquet``: pixels sit under
``_pixels/`` and every other file starts with ``_``, so ``pyarrow.dataset.dataset(version_dir)``
and ``pandas.read_parquet(version_dir)`` (which skip ``_``/``.`` names) and the glob
``{version_dir}/*/part-*.parquet`` (duckdb) read the records and nothing else.

Paths are fsspec paths (POSIX separators, no protocol): pair them with the filesystem from
:func:`storage.fs.filesystem`. Shard and report paths stored *inside* a version (the manifest's
``parquet``/``hdf5``, a row's ``pixels_file``) are relative to the version folder and come from
:func:`shard_relpath`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage.fs import join

MANIFEST = "_manifest.json"
LATEST = "LATEST"
REJECTS = "_rejects.parquet"
INPUTS = "_inputs.parquet"
VALIDATION_JSON = "_validation.json"
VALIDATION_HTML = "_validation.html"
RUN_RECORD = "_run.json"
STAGING = "_staging"
LOCK = ".lock"
EXTRACTION_CACHE = "_cache"
PIXELS = "_pixels"
RECORDS_GLOB = "*/part-*.parquet"
CHAMPION = "champion"


def shard_relpath(split: str, index: int, suffix: str) -> str:
    """A shard file relative to the version folder (``suffix``: parquet, h5).

    Records are ``{split}/part-{index:05d}.parquet``; pixels go under ``_pixels/`` so that the
    version folder reads as one Parquet dataset.

    Example:
        ``shard_relpath("val", 3, "parquet")`` → ``"val/part-00003.parquet"``;
        ``shard_relpath("val", 3, "h5")`` → ``"_pixels/val/part-00003.h5"``.
    """
    name = f"{split}/part-{index:05d}.{suffix}"
    return f"{PIXELS}/{name}" if suffix == "h5" else name


def staging_relpath(name: str) -> str:
    """``_staging/{name}``, relative to the version folder."""
    return f"{STAGING}/{name}"


def dataset_dir(root: str, dataset: str) -> str:
    """``{root}/datasets/{dataset}``."""
    return join(root, "datasets", dataset)


def datasets_dir(root: str) -> str:
    """``{root}/datasets``."""
    return join(root, "datasets")


def latest_path(root: str, dataset: str) -> str:
    """``{root}/datasets/{dataset}/LATEST``."""
    return join(dataset_dir(root, dataset), LATEST)


def lock_path(root: str, dataset: str) -> str:
    """``{root}/datasets/{dataset}/.lock`` (its holder's pid is in ``.lock.pid``)."""
    return join(dataset_dir(root, dataset), LOCK)


def digest_cache_path(root: str, dataset: str) -> str:
    """``{root}/cache/digests/{dataset}.json``."""
    return join(root, "cache", "digests", f"{dataset}.json")


def extraction_dir(root: str, *parts: str) -> str:
    """``{root}/keypoints/{parts...}``: an extraction run's folder (its parts name what it is keyed by)."""
    return join(root, "keypoints", *parts)


def extraction_cache_dir(root: str) -> str:
    """``{root}/keypoints/_cache``: the per-clip results every extraction run under ``root`` shares."""
    return extraction_dir(root, EXTRACTION_CACHE)


def model_dir(root: str, task: str, model_version: str | None = None) -> str:
    """``{root}/models/{task}`` or ``{root}/models/{task}/{model_version}``."""
    return join(root, "models", task, model_version) if model_version else join(root, "models", task)


def raw_dir(root: str, dataset: str) -> str:
    """``{root}/raw/{dataset}``: the fetch store of one dataset (local disk only)."""
    return join(root, "raw", dataset)


@dataclass(frozen=True)
class RawPaths:
    """The fetch store of one dataset, ``{root}/raw/{dataset}/`` (a local folder)::

        downloads/<filename>            verified files; ``.part`` / ``.part.json`` while downloading
        index.json                      sha256 → file name, size, url, source
        extracted/                      the folder the adapter parses
        state/<source name>.json        what extracting one source created
        .lock                           one fetch of the dataset at a time
    """

    raw: Path

    @property
    def downloads(self) -> Path:
        return self.raw / "downloads"

    @property
    def extracted(self) -> Path:
        return self.raw / "extracted"

    @property
    def index(self) -> Path:
        return self.raw / "index.json"

    @property
    def lock(self) -> Path:
        return self.raw / LOCK

    def marker(self, source_name: str) -> Path:
        return self.raw / "state" / f"{source_name}.json"


@dataclass(frozen=True)
class VersionPaths:
    """Every path of one dataset version.

    Attributes:
        root: Root path on its filesystem (no protocol).
        dataset: Dataset name.
        version: Version id.
    """

    root: str
    dataset: str
    version: str

    @property
    def dir(self) -> str:
        """``{root}/datasets/{dataset}/{version}``."""
        return join(dataset_dir(self.root, self.dataset), self.version)

    def file(self, relpath: str) -> str:
        """A path inside the version folder from its relative form (as the manifest stores it)."""
        return join(self.dir, relpath)

    def shard(self, split: str, index: int, suffix: str) -> str:
        """``{version dir}/{split}/part-{index:05d}.{suffix}``."""
        return self.file(shard_relpath(split, index, suffix))

    @property
    def manifest(self) -> str:
        return self.file(MANIFEST)

    @property
    def rejects(self) -> str:
        return self.file(REJECTS)

    @property
    def inputs(self) -> str:
        return self.file(INPUTS)

    @property
    def validation_json(self) -> str:
        return self.file(VALIDATION_JSON)

    @property
    def validation_html(self) -> str:
        return self.file(VALIDATION_HTML)

    @property
    def run_record(self) -> str:
        return self.file(RUN_RECORD)

    @property
    def staging(self) -> str:
        return self.file(STAGING)

    def staged(self, name: str) -> str:
        """``{version dir}/_staging/{name}``."""
        return self.file(staging_relpath(name))


@dataclass(frozen=True)
class ExtractionPaths:
    """Every path of one extraction run folder, ``{root}/keypoints/{dataset}/{run_key}``::

        part-{i:05d}.parquet          shard i's keypoints (sorted by clip_id, frame, person)
        clips-{i:05d}.parquet         shard i's clips rows
        rejects-{i:05d}.parquet       shard i's failed clips with reason codes
        _shards/{i:05d}.json          shard i's summary, written last of the shard
        _manifest.json                the run's manifest, written after every shard
        _clips/{clip_key}.parquet     one clip's keypoints (here, or in the shared cache folder)
        _done/{clip_key}.json         that clip's completion marker, written after its keypoints

    The shared per-clip cache (:func:`extraction_cache_dir`) has the same ``_clips``/``_done`` layout.

    Attributes:
        dir: The run (or cache) folder: an fsspec URL, or a path on its filesystem.
    """

    dir: str

    @classmethod
    def of_run(cls, root: str, dataset: str, run_key: str) -> ExtractionPaths:
        """The paths of run ``run_key`` of ``dataset`` under ``root``."""
        return cls(extraction_dir(root, dataset, run_key))

    def part(self, index: int) -> str:
        """``{run dir}/part-{index:05d}.parquet``."""
        return join(self.dir, f"part-{index:05d}.parquet")

    def clips(self, index: int) -> str:
        """``{run dir}/clips-{index:05d}.parquet``."""
        return join(self.dir, f"clips-{index:05d}.parquet")

    def rejects(self, index: int) -> str:
        """``{run dir}/rejects-{index:05d}.parquet``."""
        return join(self.dir, f"rejects-{index:05d}.parquet")

    def shard_summary(self, index: int) -> str:
        """``{run dir}/_shards/{index:05d}.json``."""
        return join(self.dir, "_shards", f"{index:05d}.json")

    @property
    def manifest(self) -> str:
        """``{run dir}/_manifest.json``."""
        return join(self.dir, MANIFEST)

    def clip_keypoints(self, clip_key: str) -> str:
        """``{run or cache dir}/_clips/{clip_key}.parquet``."""
        return join(self.dir, "_clips", f"{clip_key}.parquet")

    def clip_marker(self, clip_key: str) -> str:
        """``{run or cache dir}/_done/{clip_key}.json``."""
        return join(self.dir, "_done", f"{clip_key}.json")


@dataclass(frozen=True)
class ModelPaths:
    """Every path of one registered model, ``{root}/models/{task}/{model_version}``::

        model.keras           the trained Keras model (architecture + weights)
        metrics.json          the evaluation metrics (fractions in [0, 1] unless a name says ``_px``)
        predictions.parquet   one row per evaluated sample (sample id, predicted keypoints or scores)
        history.json          per-epoch loss, metrics, steps/s
        lineage.json          dataset, version, manifest sha256, code version, params, seed, libraries, times
        plots/                loss curves, per-joint bars, confusion matrix, worst predictions
        _manifest.json        written last: files and their sha256; the registry trusts nothing else

    A model is trained in :attr:`staging` (``{root}/models/{task}/_staging/{model_version}``, with its
    per-epoch checkpoints in ``checkpoints/``) and renamed to :attr:`dir` in one step.

    Attributes:
        root: Root path on its filesystem (no protocol).
        task: Training task name.
        model_version: Content-addressed model version (``m-`` + 12 hex).
    """

    root: str
    task: str
    model_version: str

    @property
    def dir(self) -> str:
        return model_dir(self.root, self.task, self.model_version)

    @property
    def staging(self) -> str:
        return join(model_dir(self.root, self.task), STAGING, self.model_version)

    @property
    def checkpoints(self) -> str:
        """``{staging}/checkpoints``: one checkpoint per finished epoch."""
        return join(self.staging, "checkpoints")

    def file(self, name: str, staged: bool = False) -> str:
        """``{dir}/{name}`` (or inside :attr:`staging` while training)."""
        return join(self.staging if staged else self.dir, name)


def champion_path(root: str, task: str) -> str:
    """``{root}/models/{task}/champion``: the promoted model version (one line, moved atomically)."""
    return join(model_dir(root, task), CHAMPION)


def champion_history_path(root: str, task: str) -> str:
    """``{root}/models/{task}/champion.history.jsonl``: every move of the alias, appended."""
    return join(model_dir(root, task), f"{CHAMPION}.history.jsonl")


def decision_path(root: str, task: str, stamp_utc: str, model_version: str) -> str:
    """``{root}/models/{task}/_decisions/{stamp_utc}-{model_version}.json``: one retrain's gate decision."""
    return join(model_dir(root, task), "_decisions", f"{stamp_utc}-{model_version}.json")

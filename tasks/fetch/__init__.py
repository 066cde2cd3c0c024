"""The fetch stage: resumable, checksummed downloads and safe archive extraction.

Plain functions only (no Prefect, no Dask): ``flows/fetch.py`` wraps :func:`fetch_dataset` in a
Prefect task. Modules: :mod:`.download` (HTTP Range resume, retries for transient failures only),
:mod:`.archive` (safe zip/tar/rar extraction), :mod:`.registry` (checksum registry TSVs),
:mod:`.resolve` (all of an adapter's sources into ``{root}/raw/{dataset}``).
"""

from tasks.fetch.archive import ExtractionLimits, ExtractResult, safe_extract
from tasks.fetch.download import DownloadResult, RetryPolicy, download
from tasks.fetch.registry import Checksum, load_checksums, save_checksums
from tasks.fetch.resolve import FetchedFile, FetchResult, fetch_dataset

__all__ = [
    "Checksum",
    "DownloadResult",
    "ExtractResult",
    "ExtractionLimits",
    "FetchResult",
    "FetchedFile",
    "RetryPolicy",
    "download",
    "fetch_dataset",
    "load_checksums",
    "safe_extract",
    "save_checksums",
]

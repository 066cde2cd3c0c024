"""The Prefect task of the fetch stage: a thin wrapper of :func:`tasks.fetch.resolve.fetch_dataset`.

- Retries only for transient I/O: ``retry_condition_fn`` lets a :class:`TransientFetchError`
  (connection reset, timeout, 5xx, after the downloader's own backoff) go to the retry policy and
  ends the run at once on anything else (checksum mismatch, 4xx, unsafe archive, bad config).
- Cached by URL + checksum: the key hashes the dataset, the root and every source's URL with its
  registered sha256 (see :func:`tasks.fetch.resolve.fetch_fingerprint`), plus a token that is
  renewed whenever the fetched tree is not complete on disk, so a deleted tree is never "cached".
  A scheduled rebuild with unchanged inputs therefore skips the task; and even on a cache miss,
  ``fetch_dataset`` reuses verified files, so unchanged inputs download nothing.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from prefect import get_run_logger, task

from schemas.errors import ConfigError, PosepipeError, TransientFetchError
from tasks.fetch.archive import ExtractionLimits
from tasks.fetch.download import RetryPolicy
from tasks.fetch.resolve import fetch_dataset, fetch_fingerprint, raw_dir

ENV_ATTEMPTS = "POSEPIPE_FETCH_ATTEMPTS"
ENV_BACKOFF_S = "POSEPIPE_FETCH_BACKOFF_S"
ENV_TIMEOUT_S = "POSEPIPE_FETCH_TIMEOUT_S"


def _download_policy() -> tuple[RetryPolicy, float]:
    """In-task download retries and socket timeout, tunable per deployment through the environment.

    ``POSEPIPE_FETCH_ATTEMPTS`` (default 5), ``POSEPIPE_FETCH_BACKOFF_S`` (first wait, default 1.0, doubling)
    and ``POSEPIPE_FETCH_TIMEOUT_S`` (default 60). The task's own retries come on top, for failures
    that outlast these.
    """
    try:
        attempts = int(os.environ.get(ENV_ATTEMPTS, "5"))
        backoff_s = float(os.environ.get(ENV_BACKOFF_S, "1.0"))
        timeout_s = float(os.environ.get(ENV_TIMEOUT_S, "60"))
    except ValueError as exc:
        raise ConfigError(f"bad fetch setting in the environment: {exc}", hint=f"{ENV_ATTEMPTS} is an int, "
                          f"{ENV_BACKOFF_S} and {ENV_TIMEOUT_S} are seconds") from exc
    return RetryPolicy(attempts=attempts, backoff_initial_s=backoff_s), timeout_s


def _limits() -> ExtractionLimits:
    """Archive limits from ``POSEPIPE_MAX_EXTRACT_BYTES`` and ``POSEPIPE_MAX_COMPRESSION_RATIO`` (the settings)."""
    from pydantic import ValidationError

    from schemas.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(f"bad setting in the environment: {exc}", hint="fix the POSEPIPE_* variable") from exc
    return ExtractionLimits.from_settings(settings)


def fetch_cache_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """Prefect ``cache_key_fn``: URLs + registered checksums + a token of the tree on disk.

    The token (``{root}/raw/{dataset}/state/prefect-cache-token``) is renewed whenever the fetched
    tree is incomplete, *before* the run, so the run's result is stored under the key later calls
    compute while the tree stays intact, and a deleted or damaged tree always misses the cache.
    Returns None (no caching; the task then raises the clear error itself) for an unusable setup.
    """
    dataset, root = parameters["dataset"], parameters["root"]
    try:
        fingerprint, complete = fetch_fingerprint(dataset, root)
        token_file = raw_dir(root, dataset) / "state" / "prefect-cache-token"
    except PosepipeError:
        return None
    token = token_file.read_text().strip() if complete and token_file.is_file() else ""
    if not token:
        token = uuid.uuid4().hex
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(token)
    return f"fetch-{dataset}-{fingerprint}-{token}"


def retry_transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed fetch only when it failed transiently."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, TransientFetchError)


@task(
    name="fetch-source",
    task_run_name="fetch-{dataset}",
    retries=3,
    retry_delay_seconds=[10, 60, 300],
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_transient_only,
    cache_key_fn=fetch_cache_key,
    persist_result=True,
)
def fetch_source_task(dataset: str, root: str, mirror: str | None = None, manual_dir: str | None = None) -> str:
    """Fetch, verify and unpack ``dataset``'s sources under ``{root}/raw/{dataset}``.

    Args:
        dataset: Adapter name.
        root: Local storage root.
        mirror: HTTP(S)/``file://`` prefix tried before the owners' URLs.
        manual_dir: Folder of manually downloaded files.

    Returns:
        The folder to pass to ``adapter.parse`` (``{root}/raw/{dataset}/extracted``).
    """
    logger = get_run_logger()
    retry, timeout_s = _download_policy()
    result = fetch_dataset(
        dataset, root, mirror=mirror, manual_dir=manual_dir, retry=retry, timeout_s=timeout_s, limits=_limits()
    )
    for warning in result.warnings:
        logger.warning(warning)
    for f in result.files:
        logger.info("%s: %s (%s bytes, sha256 %s), %s", f.filename, f.action, f.size_bytes, f.sha256, f.extraction)
    return result.source_dir

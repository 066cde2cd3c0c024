"""Run settings (pydantic-settings): built at the entry point, never at import.

Every field can come from the environment (``POSEPIPE_ROOT``, ``POSEPIPE_DASK_ADDRESS``,
``POSEPIPE_WORKERS``...) or from the command line, which wins.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Defaults written once: the settings, the rebuild request, the flows and the Python API use these.
DEFAULT_SEED = 0
DEFAULT_SHARD_SIZE = 512
#: Pixel bytes of one ``samples`` shard when no shard size is given: 512 crops at the default
#: 256 x 192 (72 MiB). Smaller crops get more rows per shard (at most MAX_AUTO_SHARD_ROWS), so a
#: worker's memory stays the same whatever the crop size while the per-shard orchestration cost
#: (one Prefect task, about 0.1-0.3 CPU-seconds here) is spread over more samples.
SHARD_PIXEL_BYTES = 512 * 256 * 192 * 3
MAX_AUTO_SHARD_ROWS = 4096
DEFAULT_MAX_REJECT_RATIO = 0.5


class Settings(BaseSettings):
    """Where data lives and how work is executed.

    Attributes:
        root: Storage root, a local path or any fsspec URL.
        dask_address: Address of an existing Dask scheduler (``tcp://host:port``); None starts a
            LocalCluster sized to the machine.
        workers: LocalCluster worker processes (None: one per core).
        threads_per_worker: Threads per LocalCluster worker.
        seed: Run seed; per-sample randomness is seeded by (seed, stable hash of sample_id).
        max_reject_ratio: A rebuild fails (and says so) when rejected/parsed exceeds this.
        shard_size: Records per shard (one Prefect task each); None lets the record kind choose
            (``samples``: :data:`SHARD_PIXEL_BYTES` of crops; others: :data:`DEFAULT_SHARD_SIZE`).
        max_extract_bytes: Most uncompressed bytes one fetched archive may expand to (zip bombs).
        max_compression_ratio: Most uncompressed bytes per compressed byte, per archive member and
            per archive, before extraction refuses it as a zip bomb.
        train_preset: The training preset deployments use when a run does not name one
            (``full`` in production; ``tiny`` for a CPU smoke test).
        train_epochs: Epochs deployments train when a run does not say (None: the preset's).
    """

    model_config = SettingsConfigDict(env_prefix="POSEPIPE_", extra="ignore")

    root: str = "./data"
    dask_address: str | None = None
    workers: int | None = Field(default=None, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    seed: int = DEFAULT_SEED
    max_reject_ratio: float = Field(default=DEFAULT_MAX_REJECT_RATIO, ge=0.0, le=1.0)
    shard_size: int | None = Field(default=None, ge=1)
    max_extract_bytes: int = Field(default=64 * 1024**3, ge=1)
    max_compression_ratio: float = Field(default=100.0, gt=1.0)
    train_preset: str = Field(default="full", pattern="^(tiny|full)$")
    train_epochs: int | None = Field(default=None, ge=1)

"""The checksum registry: one TSV per dataset, committed beside the adapters (as TFDS keeps them).

File: ``tasks/datasets/checksums/<dataset>.tsv`` (or ``$POSEPIPE_CHECKSUMS_DIR/<dataset>.tsv``).
One line per URL, tab-separated, sorted by URL; ``#`` starts a comment::

    # url	size_bytes	sha256	filename
    http://images.cocodataset.org/zips/val2017.zip	815585330	4f7e2ccb...	val2017.zip

Lines are written by ``posepipe fetch NAME --register-checksums`` and read by every fetch: a
registered file whose download has another size or sha256 is an error, never a silent accept.
The registry is keyed by the *owner's* URL, so a file fetched from a mirror or a manual folder is
checked against the same line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import ConfigError

ENV_DIR = "POSEPIPE_CHECKSUMS_DIR"
HEADER = "# url\tsize_bytes\tsha256\tfilename\n"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Checksum:
    """A registered file.

    Attributes:
        url: The owner's URL (the registry key).
        size_bytes: Size in bytes.
        sha256: Hex sha256, lower case.
        filename: File name it is stored under.
    """

    url: str
    size_bytes: int
    sha256: str
    filename: str


def checksums_dir(override: Path | str | None = None) -> Path:
    """Folder of the registry files: ``override``, else ``$POSEPIPE_CHECKSUMS_DIR``, else the package's."""
    if override is not None:
        return Path(override)
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "datasets" / "checksums"


def registry_path(dataset: str, directory: Path | str | None = None) -> Path:
    """Path of ``dataset``'s registry file."""
    return checksums_dir(directory) / f"{dataset}.tsv"


def load_checksums(dataset: str, directory: Path | str | None = None) -> dict[str, Checksum]:
    """Registered checksums of ``dataset`` by URL (empty when it has no registry file).

    Raises:
        ConfigError: A malformed line, naming the file and line number.
    """
    path = registry_path(dataset, directory)
    if not path.is_file():
        return {}
    out: dict[str, Checksum] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 4 or not fields[1].isdigit() or not _SHA_RE.match(fields[2].lower()):
            raise ConfigError(
                f"{path}:{lineno}: expected 'url<TAB>size_bytes<TAB>sha256<TAB>filename', got {raw!r}",
                hint="fix or delete the line, then run `posepipe fetch NAME --register-checksums`",
            )
        url, size, sha, filename = fields
        if url in out and out[url].sha256 != sha.lower():
            raise ConfigError(f"{path}:{lineno}: {url} is registered twice with different sha256")
        out[url] = Checksum(url, int(size), sha.lower(), filename)
    return out


def save_checksums(dataset: str, entries: Iterable[Checksum], directory: Path | str | None = None) -> Path:
    """Merge ``entries`` into ``dataset``'s registry (new values win) and write it atomically.

    Returns:
        The registry file.
    """
    path = registry_path(dataset, directory)
    merged = load_checksums(dataset, directory)
    for entry in entries:
        merged[entry.url] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    body = HEADER + "".join(
        f"{c.url}\t{c.size_bytes}\t{c.sha256}\t{c.filename}\n" for c in sorted(merged.values(), key=lambda c: c.url)
    )
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, path)
    return path

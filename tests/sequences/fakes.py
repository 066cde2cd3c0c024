"""Generated inputs of the sequence tests: a UCF101-layout source of real (generated) videos, its
extraction run with the test-double backend, and corruptions written into that run's files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.extract.plan import BackendSpec, plan_dataset
from tasks.extract.worker import extract_shard, write_run_manifest
from tasks.video.sampling import SamplingSpec
from tests.extract.doubles import BLOB
from tests.video.fakes import write_video

#: (class, group, clip, people, frames) of the default fake UCF101 source: two classes, groups 1 and 8
#: (split k tests groups 7(k-1)+1..7k, so group 1 is test and 8 train in split 1), one clip with nobody.
CLIPS: tuple[tuple[str, int, int, int, int], ...] = (
    ("ApplyEyeMakeup", 1, 1, 1, 8),
    ("ApplyEyeMakeup", 8, 1, 2, 10),
    ("Basketball", 1, 1, 1, 9),
    ("Basketball", 8, 1, 1, 8),
    ("Basketball", 8, 2, 0, 6),
)


def write_ucf101(root: Path, clips: Sequence[tuple[str, int, int, int, int]] = CLIPS, video: Callable[[Path, int, int], Path] | None = None) -> Path:
    """A UCF101 folder (``ucfTrainTestlist/`` + ``UCF-101/``) whose videos are generated (or made by ``video``)."""
    classes = sorted({c for c, *_ in clips})
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(classes)))
    for k in (1, 2, 3):
        train, test = [], []
        for cls, g, c, people, frames in clips:
            rel = f"{cls}/v_{cls}_g{g:02d}_c{c:02d}.avi"
            (test if 7 * (k - 1) + 1 <= g <= 7 * k else train).append(rel)
            path = root / "UCF-101" / rel
            if not path.exists():
                (video or (lambda p, n, f: write_video(p, f, people=n)))(path, people, frames)
        (lists / f"trainlist0{k}.txt").write_text("".join(f"{r} {classes.index(r.split('/')[0]) + 1}\r\n" for r in train))
        (lists / f"testlist0{k}.txt").write_text("".join(f"{r}\r\n" for r in test))
    return root


def extract(source: Path, root: Path, sampling: SamplingSpec | None = None, backend: BackendSpec | None = None, dataset: str = "ucf101") -> Path:
    """Extract every clip of ``source`` in this process (one shard); returns the run folder."""
    plan = plan_dataset(dataset, source, str(root), backend or BackendSpec.create(BLOB), sampling or SamplingSpec(), shard_size=100)
    summaries = [extract_shard(s) for s in plan.shards]
    write_run_manifest(plan.run_dir, summaries, plan.request)
    return Path(plan.run_dir)


def rewrite(path: Path, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Rewrite a run's Parquet file with ``edit`` applied to its rows (same schema): a real corrupted input."""
    table = pq.read_table(path)
    rows = edit(table.to_pylist())
    pq.write_table(pa.Table.from_pylist(rows, table.schema), path)

"""UCF101 action recognition: 13,320 clips, 101 classes, 25 groups, three official splits.

Published on-disk layout (``UCF101.rar`` + ``UCF101TrainTestSplits-RecognitionTask.zip``)::

    {source}/ucfTrainTestlist/classInd.txt          "1 ApplyEyeMakeup" ... (1-based, CRLF)
    {source}/ucfTrainTestlist/trainlist0{1,2,3}.txt "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    {source}/ucfTrainTestlist/testlist0{1,2,3}.txt  "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
    {source}/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi

One row per clip listed in the split files (every clip is in all three splits, train or test).
``folds`` maps ``split1..split3`` to ``train``/``test``; ``group`` is the ``gXX`` token, which the
official splits never cut across (split k tests groups 7(k-1)+1 .. 7k).

Known name mismatch: the class folder and ``classInd.txt`` say ``HandstandPushups`` while the
file names say ``v_HandStandPushups_...``. The class token of a file name is compared with its
folder case-insensitively, and a listed video is looked up case-insensitively in its folder.

Policy (``require_videos``): with True (the default, what a rebuild or an extraction needs), a
listed clip whose video file is absent goes to rejects as ``video_missing``; with False the split
lists alone give the clip table (the published 13,320 clips) without touching the videos.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from schemas.errors import AnnotationFormatError, RejectReason
from storage.fs import file_sha256
from tasks.common import require_file, safe_relative_path
from tasks.datasets.base import AdapterParams, DatasetAdapter, ParseResult, Reject, Source, rejects_table

_CLIP_RE = re.compile(r"^v_(?P<cls>[A-Za-z]+)_g(?P<group>\d{2})_c(?P<clip>\d{2})$")


def read_list_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines of a split/list file with their 1-based line numbers.

    Handles CRLF line endings (the official UCF101 lists use them), a UTF-8 BOM and trailing blanks.

    Args:
        path: Text file.

    Returns:
        ``(line_number, stripped_text)`` for every non-blank line.

    Raises:
        AnnotationFormatError: If the file is not UTF-8 text.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationFormatError(
            f"{path} is not UTF-8 text: {exc}", hint="use the dataset's original list files"
        ) from exc
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_class_index(path: Path, one_based: bool) -> dict[str, int]:
    """Class name -> 0-based label index from a ``classInd.txt``.

    Args:
        path: ``classInd.txt``: ``"<id> <name>"`` lines (UCF101, ids 1-based) or bare names in label
            order (the UCF11 list).
        one_based: True when lines carry 1-based ids (converted to 0-based here).

    Returns:
        Mapping name -> label index (0-based, contiguous).

    Raises:
        AnnotationFormatError: On malformed lines, duplicate names or non-contiguous ids.
    """
    classes: dict[str, int] = {}
    for lineno, line in read_list_lines(path):
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            # classInd.txt is 1-based (MATLAB-era convention): label 1 = first class -> index 0.
            index = int(parts[0]) - 1 if one_based else int(parts[0])
            name = parts[1]
        elif len(parts) == 1:
            index, name = len(classes), parts[0]
        else:
            raise AnnotationFormatError(f"{path}:{lineno}: expected '<id> <class>' or '<class>', got {line!r}")
        if name in classes:
            raise AnnotationFormatError(f"{path}:{lineno}: class {name!r} listed twice")
        classes[name] = index
    if sorted(classes.values()) != list(range(len(classes))):
        raise AnnotationFormatError(f"{path}: class ids are not contiguous from {'1' if one_based else '0'}")
    return classes


class VideoIndex:
    """Case-insensitive lookup of video files under a folder, listing each folder once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: dict[str, dict[str, str]] = {}

    def find(self, relative: str) -> str | None:
        """Relative POSIX path (from ``root``) of the file matching ``relative``, or None."""
        exact = self.root / relative
        if exact.is_file():
            return relative
        folder, _, name = relative.rpartition("/")
        listing = self._dirs.get(folder.lower())
        if listing is None:
            listing = {}
            parent = self._find_dir(folder)
            if parent is not None:
                listing = {p.name.lower(): p.relative_to(self.root).as_posix() for p in parent.iterdir() if p.is_file()}
            self._dirs[folder.lower()] = listing
        return listing.get(name.lower())

    def _find_dir(self, folder: str) -> Path | None:
        current = self.root
        for part in (p for p in folder.split("/") if p):
            candidate = current / part
            if not candidate.is_dir():
                matches = (
                    [c for c in current.iterdir() if c.is_dir() and c.name.lower() == part.lower()]
                    if current.is_dir()
                    else []
                )
                if not matches:
                    return None
                candidate = matches[0]
            current = candidate
        return current


@dataclass
class _Listed:
    clip_id: str
    relative: str
    label: str
    label_index: int
    group: str
    folds: dict[str, str]


class UCF101Params(AdapterParams):
    """UCF101 parse policy.

    Attributes:
        require_videos: Reject listed clips whose video is missing (``video_missing``); False
            parses the split lists alone.
        videos_dir: Folder of class sub-folders, relative to the source.
        lists_dir: Folder of the split files, relative to the source.
    """

    require_videos: bool = True
    videos_dir: str = "UCF-101"
    lists_dir: str = "ucfTrainTestlist"


class UCF101(DatasetAdapter):
    """UCF101 clips with the three official train/test splits."""

    name: ClassVar[str] = "ucf101"
    record_kind = "clips"
    description: ClassVar[str] = "UCF101: 13,320 YouTube action clips in 101 classes, 25 groups, 3 official splits."
    homepage: ClassVar[str] = "https://www.crcv.ucf.edu/data/UCF101.php"
    citation: ClassVar[str] = (
        "Soomro, Zamir, Shah. UCF101: A Dataset of 101 Human Actions Classes From Videos in The Wild. 2012."
    )
    splits: ClassVar[tuple[str, ...]] = ("split1", "split2", "split3")
    fold_hint: ClassVar[str] = "split1..split3"
    sources: ClassVar[tuple[Source, ...]] = (
        Source(
            name="videos",
            url="https://www.crcv.ucf.edu/data/UCF101/UCF101.rar",
            filename="UCF101.rar",
            size_bytes=6932971618,
            extract="rar",
            description="13,320 .avi clips under UCF-101/<Class>/",
        ),
        Source(
            name="splits",
            url="https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip",
            filename="UCF101TrainTestSplits-RecognitionTask.zip",
            extract="zip",
            description="classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt",
        ),
    )
    Params: ClassVar[type[AdapterParams]] = UCF101Params

    def fold_request(self, fold: str) -> dict[str, Any]:
        """``{"split": N}`` for fold ``splitN``: what UCF101 extraction runs have always recorded."""
        return {"split": int(fold.removeprefix("split"))} if fold.startswith("split") else {}

    def parse(self, source: Path, params: AdapterParams) -> ParseResult:
        """Parse the split lists (and check the videos, per ``require_videos``).

        Args:
            source: Dataset folder in the layout of the module docstring.
            params: A :class:`UCF101Params`.

        Returns:
            ``clips`` records (one per listed clip) and rejects.

        Raises:
            SourceError: If a split file is missing.
            AnnotationFormatError: If ``classInd.txt`` is malformed.
        """
        p = params if isinstance(params, UCF101Params) else UCF101Params(**params.model_dump())
        lists = Path(source) / p.lists_dir
        class_file = require_file(lists / "classInd.txt", "UCF101 classInd.txt")
        classes = read_class_index(class_file, one_based=True)
        lower_classes = {name.lower(): name for name in classes}
        checksums = {f"{p.lists_dir}/classInd.txt": file_sha256(class_file)}
        rejects: list[Reject] = []
        listed: dict[str, _Listed] = {}
        for k in (1, 2, 3):
            for part in ("train", "test"):
                path = require_file(lists / f"{part}list0{k}.txt", f"UCF101 {part}list0{k}.txt")
                checksums[f"{p.lists_dir}/{path.name}"] = file_sha256(path)
                for lineno, line in read_list_lines(path):
                    key = f"{path.name}:{lineno}"
                    entry = self._parse_line(line, part, classes, lower_classes, key, rejects)
                    if entry is None:
                        continue
                    clip_id, relative, label = entry
                    fold = f"split{k}"
                    known = listed.get(clip_id)
                    if known is None:
                        known = listed[clip_id] = _Listed(
                            clip_id=clip_id,
                            relative=relative,
                            label=label,
                            label_index=classes[label],
                            group=f"g{_CLIP_RE.match(clip_id).group('group')}",  # type: ignore[union-attr]
                            folds={},
                        )
                    if fold in known.folds:
                        rejects.append(
                            Reject(key, RejectReason.DUPLICATE_ID, f"{clip_id} listed twice in {fold}", split=fold)
                        )
                        continue
                    known.folds[fold] = part
        self._check_groups(listed.values())
        rows, video_index = [], VideoIndex(Path(source) / p.videos_dir)
        for clip in sorted(listed.values(), key=lambda c: c.clip_id):
            video_path = f"{p.videos_dir}/{clip.relative}"
            if p.require_videos:
                found = video_index.find(clip.relative)
                if found is None:
                    rejects.append(
                        Reject(clip.clip_id, RejectReason.VIDEO_MISSING, f"no video at {video_path} (case-insensitive)")
                    )
                    continue
                video_path = f"{p.videos_dir}/{found}"
            rows.append(
                {
                    "clip_id": clip.clip_id,
                    "dataset": self.name,
                    "label": clip.label,
                    "label_index": clip.label_index,
                    "group": clip.group,
                    "folds": sorted(clip.folds.items()),
                    "video_path": video_path,
                }
            )
        stats: dict[str, Any] = {
            "classes": len(classes),
            "groups": len({c.group for c in listed.values()}),
            "listed_clips": len(listed),
        }
        for k in (1, 2, 3):
            for part in ("train", "test"):
                stats[f"split{k}_{part}"] = sum(1 for c in listed.values() if c.folds.get(f"split{k}") == part)
        return ParseResult(self.table(rows), rejects_table(rejects), checksums, stats)

    @staticmethod
    def _parse_line(
        line: str,
        part: str,
        classes: dict[str, int],
        lower_classes: dict[str, str],
        key: str,
        rejects: list[Reject],
    ) -> tuple[str, str, str] | None:
        """(clip_id, path relative to the videos folder, class) of one split line, or None if rejected."""
        fields = line.split()
        if len(fields) not in (1, 2) or (part == "test" and len(fields) != 1):
            rejects.append(
                Reject(key, RejectReason.MALFORMED_ANNOTATION, f"expected 'Class/v_..avi [label]', got {line!r}")
            )
            return None
        relative = safe_relative_path(Path("."), fields[0])
        if relative is None or len(relative.parts) != 2:
            rejects.append(Reject(key, RejectReason.PATH_ESCAPES_SOURCE, f"bad clip path {fields[0]!r}"))
            return None
        folder, filename = relative.parts
        stem = filename.rsplit(".", 1)[0]
        m = _CLIP_RE.match(stem)
        label = lower_classes.get(folder.lower())
        if m is None or label is None or m.group("cls").lower() != label.lower():
            rejects.append(
                Reject(key, RejectReason.UNKNOWN_LABEL, f"clip {fields[0]!r}: folder/file class not in classInd.txt")
            )
            return None
        if len(fields) == 2:
            # trainlist labels are 1-based like classInd.txt; compare in 0-based form.
            if not fields[1].isdigit() or int(fields[1]) - 1 != classes[label]:
                rejects.append(
                    Reject(key, RejectReason.UNKNOWN_LABEL, f"label {fields[1]!r} disagrees with class {label!r}")
                )
                return None
        return stem, relative.as_posix(), label

    @staticmethod
    def _check_groups(clips: Iterable[_Listed]) -> None:
        """Raise if a split puts the same group (per class) on both sides, which the official lists never do."""
        sides: dict[tuple[str, str, str], set[str]] = {}
        for c in clips:
            for fold, part in c.folds.items():
                sides.setdefault((fold, c.label, c.group), set()).add(part)
        cut = sorted(k for k, v in sides.items() if len(v) > 1)
        if cut:
            raise AnnotationFormatError(
                f"UCF101 split lists cut groups across train/test, e.g. {cut[:3]}",
                hint="use the official ucfTrainTestlist files, unmodified",
            )

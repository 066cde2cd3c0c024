"""UCF11 (UCF YouTube Action): 1,600 clips, 11 classes, 25 groups, leave-one-group-out folds.

Published on-disk layout (``UCF11_updated_mpg.rar``)::

    {source}/UCF11_updated_mpg/basketball/v_shooting_01/v_shooting_01_01.mpg
                               <class>/v_<action>_<GG>/v_<action>_<GG>_<CC>.mpg

The official protocol is leave-one-group-out (LOGO) over the 25 groups: fold ``logoGG`` tests
group GG and trains on the other 24. ``folds`` holds all 25 (``logo01`` .. ``logo25``).

Clip lists: ``clip_list="scan"`` (default) walks the videos folder, which is what the dataset
itself is. ``clip_list="listfile"`` reads ``listfile.txt`` (a third-party enumeration of the 1,600
videos, one ``class/v_x_GG/v_x_GG_CC.mpg`` per line), then checks the videos per
``require_videos``. Labels are 0-based in the order of ``classInd.txt`` (one name per line) or,
without it, the sorted class folder names.

The third-party group-wise split (``trainlist.txt``/``testlist.txt``, 1120/480, 0-based labels,
from huuthai37/twostreamUCF11) is NOT official; with ``third_party_split=True`` it is added as fold
``twostream``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from schemas.errors import AnnotationFormatError, RejectReason, SourceError
from storage.fs import file_sha256
from tasks.common import require_file, safe_relative_path
from tasks.datasets.base import AdapterParams, DatasetAdapter, ParseResult, Reject, Source, rejects_table
from tasks.datasets.ucf101 import VideoIndex, read_class_index, read_list_lines

_CLIP_RE = re.compile(r"^(?P<folder>v_[a-z_]+?_(?P<group>\d{2}))_(?P<clip>\d{2})$")
NUM_GROUPS = 25
VIDEO_SUFFIXES = (".mpg", ".mpeg", ".avi", ".mp4")


class UCF11Params(AdapterParams):
    """UCF11 parse policy.

    Attributes:
        clip_list: ``scan`` the videos folder, or read ``listfile.txt``.
        require_videos: With ``listfile``, reject listed clips whose video is missing.
        third_party_split: Add the non-official ``trainlist/testlist`` split as fold ``twostream``.
        videos_dir: Folder of class sub-folders, relative to the source.
    """

    clip_list: Literal["scan", "listfile"] = "scan"
    require_videos: bool = True
    third_party_split: bool = False
    videos_dir: str = "UCF11_updated_mpg"


class UCF11(DatasetAdapter):
    """UCF11 / UCF YouTube Action clips with the official leave-one-group-out folds."""

    name: ClassVar[str] = "ucf11"
    record_kind = "clips"
    description: ClassVar[str] = "UCF11 (YouTube Action): 1,600 clips, 11 classes, 25 groups; leave-one-group-out."
    homepage: ClassVar[str] = "https://www.crcv.ucf.edu/data/UCF_YouTube_Action.php"
    citation: ClassVar[str] = "Liu, Luo, Shah. Recognizing Realistic Actions from Videos 'in the Wild'. CVPR 2009."
    splits: ClassVar[tuple[str, ...]] = tuple(f"logo{g:02d}" for g in range(1, NUM_GROUPS + 1))
    fold_hint: ClassVar[str] = f"logo01..logo{NUM_GROUPS:02d} (and twostream with -p third_party_split=true)"
    sources: ClassVar[tuple[Source, ...]] = (
        Source(
            name="videos",
            url="https://www.crcv.ucf.edu/data/UCF11_updated_mpg.rar",
            filename="UCF11_updated_mpg.rar",
            extract="rar",
            description="1,600 .mpg clips under UCF11_updated_mpg/<class>/v_<action>_<GG>/",
        ),
    )
    Params: ClassVar[type[AdapterParams]] = UCF11Params

    def parse(self, source: Path, params: AdapterParams) -> ParseResult:
        """Enumerate the clips and build the LOGO folds.

        Args:
            source: Dataset folder (see the module docstring).
            params: A :class:`UCF11Params`.

        Returns:
            ``clips`` records and rejects.

        Raises:
            SourceError: If the videos folder (scan) or ``listfile.txt`` is missing.
        """
        p = params if isinstance(params, UCF11Params) else UCF11Params(**params.model_dump())
        source = Path(source)
        videos = source / p.videos_dir
        checksums: dict[str, str] = {}
        rejects: list[Reject] = []
        if p.clip_list == "scan":
            if not videos.is_dir():
                raise SourceError(f"UCF11 videos folder not found: {videos}", hint="unpack UCF11_updated_mpg.rar there")
            entries = [
                (f.relative_to(videos).as_posix(), f.relative_to(videos).as_posix())
                for f in sorted(videos.glob("*/*/*"))
                if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES
            ]
        else:
            listfile = require_file(source / "listfile.txt", "UCF11 listfile.txt")
            checksums["listfile.txt"] = file_sha256(listfile)
            entries = [(f"listfile.txt:{n}", line) for n, line in read_list_lines(listfile)]
        class_file = source / "classInd.txt"
        if class_file.is_file():
            checksums["classInd.txt"] = file_sha256(class_file)
            classes = read_class_index(class_file, one_based=False)
        else:
            names = {e[1].split("/", 1)[0] for e in entries}
            classes = {name: i for i, name in enumerate(sorted(names))}
        third_party = self._third_party(source, classes, checksums) if p.third_party_split else {}

        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        index = VideoIndex(videos)
        for key, relative_text in entries:
            relative = safe_relative_path(Path("."), relative_text)
            if relative is None or len(relative.parts) != 3:
                rejects.append(
                    Reject(
                        key,
                        RejectReason.MALFORMED_ANNOTATION,
                        f"expected class/v_x_GG/v_x_GG_CC.mpg: {relative_text!r}",
                    )
                )
                continue
            label, folder, filename = relative.parts
            clip_id = filename.rsplit(".", 1)[0]
            m = _CLIP_RE.match(clip_id)
            if m is None or m.group("folder") != folder:
                rejects.append(
                    Reject(
                        key,
                        RejectReason.MALFORMED_ANNOTATION,
                        f"clip name does not fit its group folder: {relative_text!r}",
                    )
                )
                continue
            if label not in classes:
                rejects.append(Reject(key, RejectReason.UNKNOWN_LABEL, f"class {label!r} not in classInd.txt"))
                continue
            group = int(m.group("group"))
            if not 1 <= group <= NUM_GROUPS:
                rejects.append(Reject(key, RejectReason.MALFORMED_ANNOTATION, f"group {group} outside 1..{NUM_GROUPS}"))
                continue
            if clip_id in seen:
                rejects.append(Reject(key, RejectReason.DUPLICATE_ID, f"{clip_id} listed twice"))
                continue
            seen.add(clip_id)
            video_rel = relative.as_posix()
            if p.clip_list == "listfile" and p.require_videos:
                found = index.find(video_rel)
                if found is None:
                    rejects.append(
                        Reject(clip_id, RejectReason.VIDEO_MISSING, f"no video at {p.videos_dir}/{video_rel}")
                    )
                    continue
                video_rel = found
            folds = {f"logo{g:02d}": ("test" if g == group else "train") for g in range(1, NUM_GROUPS + 1)}
            if clip_id in third_party:
                folds["twostream"] = third_party[clip_id]
            rows.append(
                {
                    "clip_id": clip_id,
                    "dataset": self.name,
                    "label": label,
                    "label_index": classes[label],
                    "group": f"{group:02d}",
                    "folds": sorted(folds.items()),
                    "video_path": f"{p.videos_dir}/{video_rel}",
                }
            )
        rows.sort(key=lambda r: r["clip_id"])
        stats = {
            "classes": len(classes),
            "groups": len({r["group"] for r in rows}),
            "per_class": {c: sum(1 for r in rows if r["label"] == c) for c in classes},
        }
        return ParseResult(self.table(rows), rejects_table(rejects), checksums, stats)

    @staticmethod
    def _third_party(source: Path, classes: dict[str, int], checksums: dict[str, str]) -> dict[str, str]:
        """clip_id -> train/test from the third-party ``trainlist.txt``/``testlist.txt`` (0-based labels)."""
        out: dict[str, str] = {}
        for part in ("train", "test"):
            path = require_file(source / f"{part}list.txt", f"UCF11 third-party {part}list.txt")
            checksums[path.name] = file_sha256(path)
            for lineno, line in read_list_lines(path):
                fields = line.split()
                label = fields[0].split("/", 1)[0]
                if len(fields) != 2 or label not in classes or fields[1] != str(classes[label]):
                    raise AnnotationFormatError(
                        f"{path}:{lineno}: expected 'class/v_x_GG/v_x_GG_CC.mpg <0-based label>', got {line!r}"
                    )
                out[fields[0].rsplit("/", 1)[-1].rsplit(".", 1)[0]] = part
        return out

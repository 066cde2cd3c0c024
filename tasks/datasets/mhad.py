"""Berkeley MHAD: 12 subjects x 11 actions x 5 repetitions, multi-view video as frame folders.

Published on-disk layout (tele-immersion.citris-uc.org/berkeley_mhad, one archive per modality)::

    {source}/Camera/Cluster0L/Cam0C/S01/A01/R01/img_l0L_c0C_s01_a01_r01_00000.pgm   (22 Hz, 640x480)
    {source}/Kinect/Kin0K/S01/A01/R01/kin_k0K_s01_a01_r01_color_00000.ppm            (~30 Hz, 640x480)
    {source}/Kinect/Kin0K/S01/A01/R01/kin_k0K_s01_a01_r01_depth_00000.pgm            (depth: not a clip)

Four camera clusters (L = 1..4) hold 4, 4, 2 and 2 cameras (C numbered within the cluster); two
Kinects (K = 1, 2). A clip is one (subject, action, repetition) seen by the chosen camera: its
``video_path`` is a frame glob (``.../R01/img_l01_c01_s01_a01_r01_*.pgm``) that the video decoder
reads as an image sequence, or, if a converted video file ``.../S01/A01/R01.{avi,mp4}`` sits where
the folder would be, that file.

Splits: the authors' protocol trains on subjects 1-7 and tests on subjects 8-12 (fold
``subject``). Labels are 0-based: action A01 (jumping in place) -> 0 ... A11 (stand up) -> 10.

Missing data: the dataset description notes one recording absent from the published data,
subject 4 / action 8 / repetition 5 (659 of 660 sequences exist). Every expected sequence is
enumerated; an absent one becomes a ``video_missing`` reject (the known one says so in its detail),
so written + rejected = 660 always.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from schemas.errors import ConfigError, RejectReason, SourceError
from tasks.datasets.base import AdapterParams, DatasetAdapter, ParseResult, Reject, Source, rejects_table

ACTIONS: tuple[str, ...] = (
    "jumping_in_place", "jumping_jacks", "bending", "punching", "waving_two_hands", "waving_one_hand",
    "clapping", "throwing", "sit_down_then_stand_up", "sit_down", "stand_up",
)  # fmt: skip
NUM_SUBJECTS = 12
NUM_REPETITIONS = 5
TRAIN_SUBJECTS = frozenset(range(1, 8))
KNOWN_MISSING: frozenset[tuple[int, int, int]] = frozenset({(4, 8, 5)})
CAMERAS_PER_CLUSTER = {1: 4, 2: 4, 3: 2, 4: 2}
FPS = {"camera": 22.0, "kinect": 30.0}
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv")


class MHADParams(AdapterParams):
    """Berkeley MHAD parse policy.

    Attributes:
        modality: ``camera`` (the 12 greyscale cameras) or ``kinect`` (colour frames).
        cluster: Camera cluster 1..4 (``camera`` only).
        camera: Camera number within its cluster (1..4 for clusters 1-2, 1..2 for 3-4), or the
            Kinect number 1..2.
    """

    modality: Literal["camera", "kinect"] = "camera"
    cluster: int = 1
    camera: int = 1


def sequence_dir(params: MHADParams, subject: int, action: int, repetition: int) -> str:
    """Relative folder of one sequence for the chosen view (1-based ids, as in the file names)."""
    sar = f"S{subject:02d}/A{action:02d}/R{repetition:02d}"
    if params.modality == "camera":
        return f"Camera/Cluster{params.cluster:02d}/Cam{params.camera:02d}/{sar}"
    return f"Kinect/Kin{params.camera:02d}/{sar}"


def frame_glob(params: MHADParams, subject: int, action: int, repetition: int) -> str:
    """File-name glob of the sequence's frames (colour frames only for the Kinect)."""
    sar = f"s{subject:02d}_a{action:02d}_r{repetition:02d}"
    if params.modality == "camera":
        return f"img_l{params.cluster:02d}_c{params.camera:02d}_{sar}_*.pgm"
    return f"kin_k{params.camera:02d}_{sar}_color_*.ppm"


class MHAD(DatasetAdapter):
    """Berkeley Multimodal Human Action Database, one camera view as clips."""

    name: ClassVar[str] = "mhad"
    record_kind = "clips"
    description: ClassVar[str] = "Berkeley MHAD: 12 subjects x 11 actions x 5 repetitions, 12 cameras + 2 Kinects."
    homepage: ClassVar[str] = "https://tele-immersion.citris-uc.org/berkeley_mhad"
    citation: ClassVar[str] = "Ofli, Chaudhry, Kurillo, Vidal, Bajcsy. Berkeley MHAD. WACV 2013."
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    fold_hint: ClassVar[str] = "subject (subjects 1-7 train, 8-12 test)"
    sources: ClassVar[tuple[Source, ...]] = (
        Source(
            name="camera",
            url="https://tele-immersion.citris-uc.org/berkeley_mhad",
            filename="BerkeleyMHAD_Camera.tar.gz",
            extract="tar",
            required=False,
            description="Camera/Cluster0L/Cam0C/Sxx/Axx/Rxx/*.pgm (registration required)",
        ),
        Source(
            name="kinect",
            url="https://tele-immersion.citris-uc.org/berkeley_mhad",
            filename="BerkeleyMHAD_Kinect.tar.gz",
            extract="tar",
            required=False,
            description="Kinect/Kin0K/Sxx/Axx/Rxx/*_color_*.ppm (registration required)",
        ),
    )
    Params: ClassVar[type[AdapterParams]] = MHADParams

    def parse(self, source: Path, params: AdapterParams) -> ParseResult:
        """Enumerate the 660 expected sequences of the chosen view.

        Args:
            source: MHAD folder holding ``Camera/`` and/or ``Kinect/``.
            params: An :class:`MHADParams`.

        Returns:
            ``clips`` records (sequences with frames or a video) and ``video_missing`` rejects.

        Raises:
            ConfigError: If the cluster/camera pair does not exist in MHAD.
            SourceError: If the view's folder is absent altogether.
        """
        p = params if isinstance(params, MHADParams) else MHADParams(**params.model_dump())
        if p.modality == "camera":
            if p.cluster not in CAMERAS_PER_CLUSTER or not 1 <= p.camera <= CAMERAS_PER_CLUSTER[p.cluster]:
                raise ConfigError(
                    f"MHAD has no camera {p.camera} in cluster {p.cluster}",
                    hint=f"clusters/cameras: {CAMERAS_PER_CLUSTER}",
                )
            view = f"Camera/Cluster{p.cluster:02d}/Cam{p.camera:02d}"
        else:
            if p.camera not in (1, 2):
                raise ConfigError(f"MHAD has Kinects 1 and 2, not {p.camera}")
            view = f"Kinect/Kin{p.camera:02d}"
        source = Path(source)
        if not (source / view).is_dir():
            raise SourceError(
                f"MHAD view folder not found: {source / view}", hint="unpack the modality's archive under --source"
            )
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        frames_total = 0
        for subject in range(1, NUM_SUBJECTS + 1):
            split = "train" if subject in TRAIN_SUBJECTS else "test"
            for action in range(1, len(ACTIONS) + 1):
                for rep in range(1, NUM_REPETITIONS + 1):
                    clip_id = f"{view.replace('/', '_').lower()}_s{subject:02d}_a{action:02d}_r{rep:02d}"
                    seq = sequence_dir(p, subject, action, rep)
                    video = next((f"{seq}{s}" for s in VIDEO_SUFFIXES if (source / f"{seq}{s}").is_file()), None)
                    if video is None:
                        pattern = frame_glob(p, subject, action, rep)
                        n = sum(1 for _ in (source / seq).glob(pattern)) if (source / seq).is_dir() else 0
                        if n:
                            video, frames_total = f"{seq}/{pattern}", frames_total + n
                    if video is None:
                        known = (subject, action, rep) in KNOWN_MISSING
                        detail = f"no frames or video at {seq}" + (
                            " (known absent from the published MHAD)" if known else ""
                        )
                        rejects.append(Reject(clip_id, RejectReason.VIDEO_MISSING, detail, split=split))
                        continue
                    rows.append(
                        {
                            "clip_id": clip_id,
                            "dataset": self.name,
                            # A01..A11 are 1-based in MHAD's names; label_index is 0-based.
                            "label": ACTIONS[action - 1],
                            "label_index": action - 1,
                            "group": f"S{subject:02d}",
                            "subject": f"S{subject:02d}",
                            "folds": [("subject", split)],
                            "video_path": video,
                            "fps": FPS[p.modality],
                        }
                    )
        stats = {
            "view": view,
            "sequences_expected": NUM_SUBJECTS * len(ACTIONS) * NUM_REPETITIONS,
            "frame_files": frames_total,
            "known_missing": sorted(f"S{s:02d}/A{a:02d}/R{r:02d}" for s, a, r in KNOWN_MISSING),
        }
        return ParseResult(self.table(rows), rejects_table(rejects), {}, stats)

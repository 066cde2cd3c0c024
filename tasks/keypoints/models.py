"""The pose-model registry: where each model comes from and how its output channels are laid out.

Everything a backend needs to know about a model is data here: public URL, sha256, network input
size and colour/normalisation, output stride, and the *channel layout* of its heatmaps and part
affinity fields (PAFs). The layouts are OpenPose's own tables (``poseParameters.cpp``:
``POSE_BODY_PART_PAIRS`` / ``POSE_MAP_INDEX``; tf-pose-estimation's ``CocoPairs`` /
``CocoPairsNetwork``), written with joint indices of the skeletons in :mod:`schemas.skeletons`.

A layout's ``pairs`` are in OpenPose's *processing* order (the order limbs are connected when people
are assembled: from the neck outwards, redundant ear-shoulder limbs last); ``paf_channels[l]`` are the
(x, y) channels of limb ``l`` inside the PAF block of the network output. Backends reorder the PAF
block so that :class:`tasks.keypoints.api.RawOutput` ``pafs[..., 2l:2l+2]`` is limb ``l`` of
``pairs`` (x then y).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import ConfigError, ModelError
from schemas.skeletons import get_skeleton


@dataclass(frozen=True)
class PafLayout:
    """Channel layout of an OpenPose-style output (heatmaps + PAFs).

    Attributes:
        skeleton: Skeleton name of the heatmap joints (channel ``j`` = joint ``j``; the last
            heatmap channel is the background).
        num_heatmaps: Heatmap channels including the background (J + 1).
        pairs: ``L`` (joint_a, joint_b) limbs, 0-based joint indices, in assembly order.
        paf_channels: ``L`` (x channel, y channel) indices of each limb inside the PAF block.
        heatmaps_first: True if the network output is [heatmaps, PAFs] along channels.
        num_seed_pairs: People may be *started* only from the first ``num_seed_pairs`` limbs
            (OpenPose: the redundant ear-shoulder limbs at the end only extend existing people).
    """

    skeleton: str
    num_heatmaps: int
    pairs: tuple[tuple[int, int], ...]
    paf_channels: tuple[tuple[int, int], ...]
    heatmaps_first: bool = True
    num_seed_pairs: int | None = None

    def __post_init__(self) -> None:
        num_joints = get_skeleton(self.skeleton).num_joints
        if self.num_heatmaps != num_joints + 1:
            raise ConfigError(
                f"layout for {self.skeleton!r}: {self.num_heatmaps} heatmaps, expected {num_joints} joints + background"
            )
        if len(self.pairs) != len(self.paf_channels):
            raise ConfigError(f"layout for {self.skeleton!r}: {len(self.pairs)} pairs but {len(self.paf_channels)} PAFs")
        flat = sorted(c for xy in self.paf_channels for c in xy)
        if flat != list(range(2 * len(self.pairs))):
            raise ConfigError(f"layout for {self.skeleton!r}: PAF channels must use 0..{2 * len(self.pairs) - 1} once")
        if any(not (0 <= a < num_joints and 0 <= b < num_joints) for a, b in self.pairs):
            raise ConfigError(f"layout for {self.skeleton!r}: a pair names a joint outside 0..{num_joints - 1}")

    @property
    def num_joints(self) -> int:
        """J, the heatmap channels without the background."""
        return self.num_heatmaps - 1

    @property
    def num_pafs(self) -> int:
        """2L PAF channels."""
        return 2 * len(self.pairs)

    @property
    def num_channels(self) -> int:
        """Total output channels: heatmaps + PAFs."""
        return self.num_heatmaps + self.num_pafs

    @property
    def seed_pairs(self) -> int:
        """How many leading pairs may start a new person."""
        return len(self.pairs) if self.num_seed_pairs is None else self.num_seed_pairs


# OpenPose COCO-18 (and tf-pose-estimation, whose graphs are trained on the same targets):
# CocoPairs (processing order) and CocoPairsNetwork (their (x, y) channels in the 38-channel PAF block).
COCO18_LAYOUT = PafLayout(
    skeleton="openpose18",
    num_heatmaps=19,
    pairs=(
        (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
        (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
    ),  # fmt: skip
    paf_channels=(
        (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5),
        (6, 7), (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27),
    ),  # fmt: skip
    num_seed_pairs=17,
)

# OpenPose MPI_15 (and MPI_15_4): POSE_MPI_PAIRS; its PAF channels are in pair order.
MPI15_LAYOUT = PafLayout(
    skeleton="mpi15",
    num_heatmaps=16,
    pairs=(
        (0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 14), (14, 8), (8, 9), (9, 10),
        (14, 11), (11, 12), (12, 13),
    ),  # fmt: skip
    paf_channels=tuple((2 * i, 2 * i + 1) for i in range(14)),
)

# OpenPose BODY_25: POSE_BODY_PART_PAIRS / POSE_MAP_INDEX (minus the 26 heatmap channels).
BODY25_LAYOUT = PafLayout(
    skeleton="body25",
    num_heatmaps=26,
    pairs=(
        (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12),
        (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (2, 17), (5, 18), (14, 19),
        (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
    ),  # fmt: skip
    paf_channels=(
        (0, 1), (14, 15), (22, 23), (16, 17), (18, 19), (24, 25), (26, 27), (6, 7), (2, 3), (4, 5),
        (8, 9), (10, 11), (12, 13), (30, 31), (32, 33), (36, 37), (34, 35), (38, 39), (20, 21),
        (28, 29), (40, 41), (42, 43), (44, 45), (46, 47), (48, 49), (50, 51),
    ),  # fmt: skip
    num_seed_pairs=18,
)


@dataclass(frozen=True)
class ModelEntry:
    """One registered pose model.

    Attributes:
        name: Registry key.
        backend: Backend that runs it (``tf-openpose``, ``opencv-openpose``).
        filename: File name of the weights / frozen graph.
        url: Public URL of ``filename``.
        sha256: Expected sha256 of ``filename`` (None where no trusted value is published; the
            loaded file's own sha256 is then what outputs record).
        input_wh: Default network input (width, height) in pixels.
        stride: Output stride (input pixels per output cell).
        layout: Heatmap/PAF channel layout.
        input_scale: Pixel values are multiplied by this ...
        input_mean: ... after subtracting this (per channel, BGR).
        swap_rb: Feed RGB instead of BGR.
        input_name: Input tensor / blob name.
        output_name: Output tensor / blob name.
        config_filename: Second file (Caffe prototxt) where the model has one.
        config_url: Public URL of ``config_filename``.
        config_sha256: sha256 of ``config_filename``.
        description: Free text (provenance, training size).
    """

    name: str
    backend: str
    filename: str
    url: str
    sha256: str | None
    input_wh: tuple[int, int]
    stride: int
    layout: PafLayout
    input_scale: float = 1.0
    input_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    swap_rb: bool = False
    input_name: str = "image"
    output_name: str = "net_output"
    config_filename: str | None = None
    config_url: str | None = None
    config_sha256: str | None = None
    description: str = ""


_OPENPOSE_RAW = "https://raw.githubusercontent.com/CMU-Perceptual-Computing-Lab/openpose/5c5d96523ef917bd30301245fdc8343937cae48d"
_OPENPOSE_MODELS = "http://posefs1.perception.cs.cmu.edu/OpenPose/models/pose"


def _openpose_caffe(
    name: str, folder: str, weights: str, prototxt: str, prototxt_sha256: str, layout: PafLayout, description: str
) -> ModelEntry:
    """One of OpenPose's own Caffe models (backend ``opencv-openpose``), as OpenPose ships them.

    The weights come from CMU's model server (``{folder}/{weights}``; no published sha256), the
    prototxt from the pinned OpenPose commit (``models/pose/{folder}/{prototxt}``, stored as
    ``{folder}_{prototxt}``). OpenPose feeds ``(pixel - 128) / 256`` at 368x368, stride 8.

    Args:
        name: Registry key.
        folder: The model's folder under OpenPose's ``models/pose`` (``coco``, ``mpi``, ``body_25``).
        weights: File name of the ``.caffemodel``.
        prototxt: File name of the prototxt in that folder.
        prototxt_sha256: sha256 of the prototxt at the pinned commit.
        layout: Heatmap/PAF channel layout.
        description: Free text (provenance, stages, outputs).

    Returns:
        The registry entry.
    """
    return ModelEntry(
        name=name,
        backend="opencv-openpose",
        filename=weights,
        url=f"{_OPENPOSE_MODELS}/{folder}/{weights}",
        sha256=None,
        input_wh=(368, 368),
        stride=8,
        layout=layout,
        input_scale=1.0 / 256.0,
        input_mean=(128.0, 128.0, 128.0),
        config_filename=f"{folder}_{prototxt}",
        config_url=f"{_OPENPOSE_RAW}/models/pose/{folder}/{prototxt}",
        config_sha256=prototxt_sha256,
        description=description,
    )


MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(
            name="tf_pose_mobilenet_v2_small",
            backend="tf-openpose",
            filename="graph_opt.pb",
            url="https://github.com/ildoonet/tf-pose-estimation/raw/master/models/graph/mobilenet_v2_small/graph_opt.pb",
            sha256="428a9d6e7bfc0319e1ce4de8c0191a9111cd281bea6ae2b496fd42c92d574160",
            input_wh=(432, 368),
            stride=8,
            layout=COCO18_LAYOUT,
            input_name="image",
            output_name="Openpose/concat_stage7",
            description=(
                "tf-pose-estimation MobileNetV2-small OpenPose graph (frozen TF1 GraphDef), trained at 432x368; "
                "input BGR float 0..255, output 19 heatmaps + 38 PAFs at stride 8. Its batch-norm layers use "
                "batch statistics, so outputs depend on the batch (detected, not assumed)."
            ),
        ),
        _openpose_caffe(
            "openpose_coco", "coco", "pose_iter_440000.caffemodel", "pose_deploy_linevec.prototxt",
            "17051b87f709aa094e09c5da7b78e9016a1f37b2b452ed1f190fe74cce70b1ad", COCO18_LAYOUT,
            "OpenPose COCO-18 Caffe model (VGG-19 + 6 stages); output 19 heatmaps + 38 PAFs.",
        ),
        _openpose_caffe(
            "openpose_mpi", "mpi", "pose_iter_160000.caffemodel", "pose_deploy_linevec.prototxt",
            "92b89236213d5473289c37b90cbacd73169c97a2dba53f5d0511c930c4e42d0c", MPI15_LAYOUT,
            "OpenPose MPI-15 Caffe model (6 stages); output 16 heatmaps + 28 PAFs.",
        ),
        _openpose_caffe(
            "openpose_mpi_faster", "mpi", "pose_iter_160000.caffemodel", "pose_deploy_linevec_faster_4_stages.prototxt",
            "80f9778dd8ca4f72e1f4f961736e8593ba7b433aa1bd0279d4f0f83f710d6679", MPI15_LAYOUT,
            "OpenPose MPI-15 weights run through the first 4 stages only (faster, less accurate).",
        ),
        _openpose_caffe(
            "openpose_body25", "body_25", "pose_iter_584000.caffemodel", "pose_deploy.prototxt",
            "44d6ed3a5268d8d41ca59b3a040491277d876975c3234d82cf7ec0539b4b1f61", BODY25_LAYOUT,
            "OpenPose BODY_25 Caffe model; output 26 heatmaps + 52 PAFs.",
        ),
    )
}

DEFAULT_MODEL: dict[str, str] = {"tf-openpose": "tf_pose_mobilenet_v2_small", "opencv-openpose": "openpose_coco"}


def get_model(name: str) -> ModelEntry:
    """Return the registered model ``name``.

    Raises:
        ConfigError: If no model has that name.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown pose model {name!r}", hint=f"known: {', '.join(sorted(MODELS))}") from None


def model_search_dirs() -> list[Path]:
    """Folders searched for model files when no path is given, first match wins.

    ``$POSEPIPE_MODEL_DIR`` (if set), then ``~/.cache/posepipe/models``. Inside each, a file is looked
    up as ``<dir>/<model name>/<filename>`` and then ``<dir>/<filename>``.
    """
    dirs = []
    if env := os.environ.get("POSEPIPE_MODEL_DIR"):
        dirs.append(Path(env))
    dirs.append(Path.home() / ".cache" / "posepipe" / "models")
    return dirs


def locate_file(entry: ModelEntry, filename: str, url: str | None, explicit: str | Path | None = None) -> Path:
    """Find one file of a model on disk.

    Args:
        entry: The model.
        filename: The file to find (``entry.filename`` or ``entry.config_filename``).
        url: Where to download it (for the error message).
        explicit: A path given by the user (``--model PATH``); used as is.

    Returns:
        An existing file path.

    Raises:
        ModelError: If the file is not found, naming where it was looked for and where to get it.
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist", hint=f"download it from {url} or fix --model")
        return path
    tried = []
    for d in model_search_dirs():
        for cand in (d / entry.name / filename, d / filename):
            tried.append(str(cand))
            if cand.is_file():
                return cand
    raise ModelError(
        f"model file {filename!r} of {entry.name!r} not found (looked in {', '.join(tried)})",
        hint=f"download {url} into $POSEPIPE_MODEL_DIR/{entry.name}/ or pass --model PATH",
    )

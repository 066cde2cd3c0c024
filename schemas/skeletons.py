"""Skeletons as data: joint names, flip pairs, limbs, OKS sigmas, and conversions between them.

Like MMPose's ``dataset_info``: nothing here is code that knows about a particular dataset beyond
the tables. Flip pairs are *derived* from the names (a ``left`` token swapped for ``right``), so a
new skeleton cannot get them wrong by hand. Conversions map joints by name and add *derived* joints
(OpenPose neck = mean of the shoulders, FLIC head = mean of eyes and nose) from explicit recipes.

Coordinates follow DESIGN.md: pixel centres, origin top-left, ``float32``, NaN where unknown;
visibility 0 = not labelled, 1 = labelled but occluded, 2 = labelled and visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from schemas.errors import SkeletonError


def _flip_name(name: str) -> str:
    tokens = name.split("_")
    swapped = ["right" if t == "left" else "left" if t == "right" else t for t in tokens]
    return "_".join(swapped)


@dataclass(frozen=True)
class Skeleton:
    """A named list of joints with its symmetric pairs and drawing limbs.

    Attributes:
        name: Registry key (``coco17``, ``openpose18``, ...).
        joints: Joint names in the order arrays use (index = joint id, 0-based).
        limbs: Pairs of joint names connected when drawing (and for PAFs where applicable).
        sigmas: Per-joint OKS sigmas (COCO definition) or None where the skeleton has none.
        source_names: The names the original dataset uses for the same joints, if different.
    """

    name: str
    joints: tuple[str, ...]
    limbs: tuple[tuple[str, str], ...]
    sigmas: tuple[float, ...] | None = None
    source_names: tuple[str, ...] | None = None
    description: str = ""
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.joints)) != len(self.joints):
            raise SkeletonError(f"skeleton {self.name!r} has duplicate joint names")
        object.__setattr__(self, "_index", {j: i for i, j in enumerate(self.joints)})
        for a, b in self.limbs:
            if a not in self._index or b not in self._index:
                raise SkeletonError(f"skeleton {self.name!r}: limb ({a}, {b}) names an unknown joint")
        if self.sigmas is not None and len(self.sigmas) != len(self.joints):
            raise SkeletonError(f"skeleton {self.name!r}: {len(self.sigmas)} sigmas for {len(self.joints)} joints")
        if self.source_names is not None and len(self.source_names) != len(self.joints):
            raise SkeletonError(f"skeleton {self.name!r}: source_names length differs from joints")

    @property
    def num_joints(self) -> int:
        """Number of joints J."""
        return len(self.joints)

    def index(self, joint: str) -> int:
        """0-based index of ``joint``; accepts the dataset's own source name too."""
        if joint in self._index:
            return self._index[joint]
        if self.source_names is not None and joint in self.source_names:
            return self.source_names.index(joint)
        raise SkeletonError(f"skeleton {self.name!r} has no joint {joint!r}", hint=f"joints: {', '.join(self.joints)}")

    @cached_property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """Index pairs (left, right) swapped by a horizontal flip, derived from the names."""
        pairs = []
        for i, name in enumerate(self.joints):
            partner = _flip_name(name)
            if partner != name and "left" in name.split("_") and partner in self._index:
                pairs.append((i, self._index[partner]))
        return tuple(pairs)

    @cached_property
    def flip_permutation(self) -> np.ndarray:
        """``(J,) int64`` permutation p such that flipped[:, j] = original[:, p[j]]."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @cached_property
    def limb_indices(self) -> np.ndarray:
        """``(L, 2) int64`` joint indices of the limbs."""
        return np.array([[self._index[a], self._index[b]] for a, b in self.limbs], dtype=np.int64).reshape(-1, 2)

    def check(self, keypoints_xy: np.ndarray) -> None:
        """Raise :class:`SkeletonError` unless ``keypoints_xy`` is ``(..., J, 2)`` for this skeleton."""
        if keypoints_xy.ndim < 2 or keypoints_xy.shape[-2] != self.num_joints:
            raise SkeletonError(
                f"keypoints of shape {keypoints_xy.shape} do not fit skeleton {self.name!r} with {self.num_joints} joints"
            )


_COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
_LIMBS_BODY = (
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"), ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
)  # fmt: skip

COCO17 = Skeleton(
    name="coco17",
    joints=_COCO17,
    limbs=_LIMBS_BODY + (
        ("left_hip", "right_hip"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
        ("left_shoulder", "right_shoulder"), ("left_eye", "right_eye"), ("nose", "left_eye"),
        ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
        ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
    ),  # fmt: skip
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
            0.107, 0.107, 0.087, 0.087, 0.089, 0.089),  # fmt: skip
    description="COCO keypoints, 17 joints (person_keypoints_*.json order).",
)

_OPENPOSE18 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
OPENPOSE18 = Skeleton(
    name="openpose18",
    joints=_OPENPOSE18,
    # OpenPose COCO model's 19 part pairs (the order of its 38 PAF channels, see keypoints/).
    limbs=(
        ("neck", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
        ("neck", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
        ("neck", "right_shoulder"), ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
        ("right_shoulder", "right_ear"), ("neck", "left_shoulder"), ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"), ("left_shoulder", "left_ear"), ("neck", "nose"),
        ("nose", "right_eye"), ("nose", "left_eye"), ("right_eye", "right_ear"), ("left_eye", "left_ear"),
    ),  # fmt: skip
    sigmas=(0.026, 0.079, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062, 0.107, 0.087, 0.089, 0.107,
            0.087, 0.089, 0.025, 0.025, 0.035, 0.035),  # fmt: skip
    description="OpenPose COCO-18 (COCO joints plus a neck derived as the mean of the shoulders).",
)

BODY25 = Skeleton(
    name="body25",
    joints=(
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
        "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe",
        "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    ),  # fmt: skip
    limbs=(
        ("neck", "mid_hip"), ("neck", "right_shoulder"), ("neck", "left_shoulder"),
        ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"), ("mid_hip", "right_hip"), ("right_hip", "right_knee"),
        ("right_knee", "right_ankle"), ("mid_hip", "left_hip"), ("left_hip", "left_knee"),
        ("left_knee", "left_ankle"), ("neck", "nose"), ("nose", "right_eye"), ("right_eye", "right_ear"),
        ("nose", "left_eye"), ("left_eye", "left_ear"), ("left_ankle", "left_big_toe"),
        ("left_big_toe", "left_small_toe"), ("left_ankle", "left_heel"), ("right_ankle", "right_big_toe"),
        ("right_big_toe", "right_small_toe"), ("right_ankle", "right_heel"),
    ),  # fmt: skip
    description="OpenPose BODY_25 (COCO-18 plus mid hip and six foot joints).",
)

MPII16 = Skeleton(
    name="mpii16",
    joints=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis",
        "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder",
        "left_shoulder", "left_elbow", "left_wrist",
    ),  # fmt: skip
    limbs=(
        ("right_ankle", "right_knee"), ("right_knee", "right_hip"), ("right_hip", "pelvis"),
        ("pelvis", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
        ("pelvis", "thorax"), ("thorax", "upper_neck"), ("upper_neck", "head_top"),
        ("right_wrist", "right_elbow"), ("right_elbow", "right_shoulder"), ("right_shoulder", "thorax"),
        ("thorax", "left_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ),  # fmt: skip
    source_names=(
        "rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head",
        "rwri", "relb", "rsho", "lsho", "lelb", "lwri",
    ),  # fmt: skip
    description="MPII Human Pose, 16 joints (MPII joint ids 0..15).",
)

LSP14 = Skeleton(
    name="lsp14",
    joints=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
        "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "upper_neck",
        "head_top",
    ),  # fmt: skip
    limbs=(
        ("right_ankle", "right_knee"), ("right_knee", "right_hip"), ("right_hip", "left_hip"),
        ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_wrist", "right_elbow"),
        ("right_elbow", "right_shoulder"), ("right_shoulder", "upper_neck"), ("upper_neck", "left_shoulder"),
        ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("upper_neck", "head_top"),
        ("right_shoulder", "right_hip"), ("left_shoulder", "left_hip"),
    ),  # fmt: skip
    description="Leeds Sports Pose (LSP and LSPET), 14 joints.",
)

_FLIC_SOURCE = (
    "lsho", "lelb", "lwri", "rsho", "relb", "rwri", "lhip", "lkne", "lank", "rhip", "rkne", "rank",
    "leye", "reye", "lear", "rear", "nose", "msho", "mhip", "mear", "mtorso", "mluarm", "mruarm",
    "mllarm", "mrlarm", "mluleg", "mruleg", "mllleg", "mrlleg",
)  # fmt: skip
FLIC29 = Skeleton(
    name="flic29",
    joints=(
        "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
        "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle", "left_eye",
        "right_eye", "left_ear", "right_ear", "nose", "mid_shoulder", "mid_hip", "mid_ear",
        "mid_torso", "mid_left_upper_arm", "mid_right_upper_arm", "mid_left_lower_arm",
        "mid_right_lower_arm", "mid_left_upper_leg", "mid_right_upper_leg", "mid_left_lower_leg",
        "mid_right_lower_leg",
    ),  # fmt: skip
    limbs=(
        ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"),
        ("right_elbow", "right_wrist"), ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"), ("left_hip", "right_hip"), ("left_eye", "right_eye"),
        ("nose", "left_eye"), ("nose", "right_eye"),
    ),  # fmt: skip
    source_names=_FLIC_SOURCE,
    description="FLIC / MODEC's 29 annotation slots in lookupPart order (11 labelled in FLIC).",
)

FLIC7 = Skeleton(
    name="flic7",
    joints=("left_wrist", "left_elbow", "left_shoulder", "head", "right_shoulder", "right_elbow", "right_wrist"),
    limbs=(
        ("left_wrist", "left_elbow"), ("left_elbow", "left_shoulder"), ("left_shoulder", "head"),
        ("head", "right_shoulder"), ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ),  # fmt: skip
    description="The FLIC notebooks' 7-joint upper-body regression target (head = mean of eyes and nose).",
)

SKELETONS: dict[str, Skeleton] = {s.name: s for s in (COCO17, OPENPOSE18, BODY25, MPII16, LSP14, FLIC29, FLIC7)}


def get_skeleton(name: str) -> Skeleton:
    """Return the registered skeleton called ``name``.

    Raises:
        SkeletonError: If no skeleton has that name.
    """
    try:
        return SKELETONS[name]
    except KeyError:
        raise SkeletonError(f"unknown skeleton {name!r}", hint=f"known: {', '.join(sorted(SKELETONS))}") from None


# Derived joints: destination joint -> source joints averaged. Used only when the destination
# joint's name is missing from the source skeleton. A derived joint is known only when every
# component is labelled; its visibility is the minimum of the components'.
DERIVED_JOINTS: dict[str, tuple[str, ...]] = {
    "neck": ("left_shoulder", "right_shoulder"),  # OpenPose's neck
    "mid_hip": ("left_hip", "right_hip"),  # BODY_25
    "pelvis": ("left_hip", "right_hip"),  # MPII
    "thorax": ("left_shoulder", "right_shoulder"),  # MPII
    "mid_shoulder": ("left_shoulder", "right_shoulder"),
    "head": ("left_eye", "right_eye", "nose"),  # FLIC notebooks' head
}


@dataclass(frozen=True)
class Conversion:
    """How each destination joint is computed from source joints.

    Attributes:
        src: Source skeleton name.
        dst: Destination skeleton name.
        recipe: For each destination joint, the source indices averaged (empty: unknown).
    """

    src: str
    dst: str
    recipe: tuple[tuple[int, ...], ...]


def conversion(src: str | Skeleton, dst: str | Skeleton) -> Conversion:
    """Build the conversion between two skeletons: same-name joints, then derived joints.

    Args:
        src: Source skeleton or its name.
        dst: Destination skeleton or its name.

    Returns:
        A :class:`Conversion` whose recipe has one entry per destination joint.
    """
    s = get_skeleton(src) if isinstance(src, str) else src
    d = get_skeleton(dst) if isinstance(dst, str) else dst
    recipe: list[tuple[int, ...]] = []
    for joint in d.joints:
        if joint in s.joints:
            recipe.append((s.index(joint),))
        elif joint in DERIVED_JOINTS and all(c in s.joints for c in DERIVED_JOINTS[joint]):
            recipe.append(tuple(s.index(c) for c in DERIVED_JOINTS[joint]))
        else:
            recipe.append(())
    return Conversion(src=s.name, dst=d.name, recipe=tuple(recipe))


def convert_keypoints(
    keypoints_xy: np.ndarray, visibility: np.ndarray, src: str | Skeleton, dst: str | Skeleton
) -> tuple[np.ndarray, np.ndarray]:
    """Convert keypoints from one skeleton to another.

    Args:
        keypoints_xy: ``(..., J_src, 2) float32`` coordinates, NaN where unknown.
        visibility: ``(..., J_src) int8`` visibility codes (0, 1, 2).
        src: Source skeleton (or name).
        dst: Destination skeleton (or name).

    Returns:
        ``(..., J_dst, 2) float32`` coordinates and ``(..., J_dst) int8`` visibility. Joints the
        source cannot provide are NaN with visibility 0.
    """
    conv = conversion(src, dst)
    s = get_skeleton(conv.src)
    s.check(keypoints_xy)
    xy = np.asarray(keypoints_xy, dtype=np.float32)
    vis = np.asarray(visibility, dtype=np.int8)
    lead = xy.shape[:-2]
    out_xy = np.full((*lead, len(conv.recipe), 2), np.nan, dtype=np.float32)
    out_vis = np.zeros((*lead, len(conv.recipe)), dtype=np.int8)
    for j, parts in enumerate(conv.recipe):
        if not parts:
            continue
        idx = list(parts)
        comp_vis = vis[..., idx]
        comp_xy = xy[..., idx, :]
        known = np.all(comp_vis > 0, axis=-1) & np.all(np.isfinite(comp_xy), axis=(-1, -2))
        mean = comp_xy.mean(axis=-2)
        out_xy[..., j, :] = np.where(known[..., None], mean, np.nan)
        out_vis[..., j] = np.where(known, comp_vis.min(axis=-1), 0)
    return out_xy, out_vis


# OpenPose MPI_15 (its Caffe MPI models' heatmap order). Names follow OpenPose's own ("Head", "Neck",
# "Chest"): they are not mapped onto MPII's head_top/upper_neck/thorax, which OpenPose does not document.
MPI15 = Skeleton(
    name="mpi15",
    joints=(
        "head", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "chest",
    ),  # fmt: skip
    limbs=(
        ("head", "neck"), ("neck", "right_shoulder"), ("right_shoulder", "right_elbow"),
        ("right_elbow", "right_wrist"), ("neck", "left_shoulder"), ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"), ("neck", "chest"), ("chest", "right_hip"), ("right_hip", "right_knee"),
        ("right_knee", "right_ankle"), ("chest", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ),  # fmt: skip
    description="OpenPose MPI-15 (its MPI Caffe models' 15 parts; limbs = the 14 PAF pairs).",
)
SKELETONS[MPI15.name] = MPI15

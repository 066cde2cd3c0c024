"""Leeds Sports Pose (LSP) and its extension LSPET: ``joints.mat`` → canonical ``samples``.

Both datasets ship one ``joints.mat`` whose variable ``joints`` holds 14 joints per image, in the
``lsp14`` order (right ankle … head top), but in two different layouts with two different meanings
of the flag row:

============  ===============  ======================================================================
dataset       layout           third x/y/flag component
============  ===============  ======================================================================
LSP           ``3 × 14 × N``   **occluded** flag: 0 = visible, 1 = occluded; every joint is labelled
                               (occluded positions are estimated), so 0 → visibility 2, 1 → 1.
LSPET         ``14 × 3 × N``   **visible** flag: 1 = labelled and visible, 0 = not labelled (the
                               position is junk, 0 or negative), so 1 → visibility 2, 0 → 0.
============  ===============  ======================================================================

CPM's ``gen_lsp.m`` inverts the LSP row (``1 - joints(3,:,:)``) and not the LSPET one for the same
reason. Coordinates are MATLAB 1-based pixel positions and are converted to 0-based (x-1, y-1) here.
A joint whose raw coordinate is non-positive (LSPET marks hidden joints with 0/negative values) or
non-finite is never used as a position: it becomes NaN with visibility 0, whatever its flag says,
and is counted in ``extra`` / ``stats``.

``bbox_xyxy_px`` is the min/max box of the labelled joints (visibility 1 or 2); a sample with no
labelled joint is rejected (``zero_keypoints``). Images are ``images/im%04d.jpg`` (LSP) and
``images/im%05d.jpg`` (LSPET), 1-based. Splits: LSP's first 1000 images are ``train`` and the last
1000 ``test`` (Johnson & Everingham); LSPET is training data only (``train``).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from schemas.errors import AnnotationFormatError, ConfigError, RejectReason
from schemas.skeletons import get_skeleton
from storage.fs import file_sha256
from tasks.common import joint_box, relative_name, require_file, zero_based_xy
from tasks.datasets._matlab import load_mat
from tasks.datasets.base import AdapterParams, DatasetAdapter, ParseResult, Reject, Source, rejects_table

Layout = Literal["lsp", "lspet"]

NUM_JOINTS = 14
LSP_NUM_TRAIN = 1000  # LSP: images 1..1000 train, 1001..2000 test


class LspParams(AdapterParams):
    """Parse policy of the LSP family.

    Attributes:
        annotation_file: ``joints.mat`` relative to the source folder (or absolute).
        layout: ``auto`` detects it from the array shape; a layout other than the adapter's own is an error.
    """

    annotation_file: str = "joints.mat"
    layout: Literal["auto", "lsp", "lspet"] = "auto"


def detect_layout(joints: np.ndarray, path: Path) -> Layout:
    """Tell the LSP (``3×14×N``) layout from the LSPET (``14×3×N``) one.

    Raises:
        AnnotationFormatError: If ``joints`` is neither, naming the file and the shape.
    """
    if joints.ndim == 2:  # a single image squeezed by the reader
        joints = joints[..., None]
    if joints.ndim == 3 and joints.shape[:2] == (3, NUM_JOINTS):
        return "lsp"
    if joints.ndim == 3 and joints.shape[:2] == (NUM_JOINTS, 3):
        return "lspet"
    raise AnnotationFormatError(
        f"{path}: 'joints' has shape {joints.shape}; expected 3×14×N (LSP) or 14×3×N (LSPET)",
        hint="is this a Leeds Sports Pose joints.mat?",
    )


def decode_joints(joints: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert a raw ``joints`` array to 0-based coordinates and COCO visibility codes.

    Args:
        joints: ``(3, 14, N)`` (LSP) or ``(14, 3, N)`` (LSPET) float, MATLAB 1-based pixels.
        layout: Which of the two it is (the flag row means "occluded" in LSP, "visible" in LSPET).

    Returns:
        ``(N, 14, 2) float32`` 0-based coordinates (NaN where unknown), ``(N, 14) int8`` visibility
        0/1/2, and ``(N, 14) bool`` marking joints dropped for a non-positive/non-finite position.
    """
    arr = np.asarray(joints, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[..., None]
    per_image = np.transpose(arr, (2, 1, 0)) if layout == "lsp" else np.transpose(arr, (2, 0, 1))  # (N, 14, 3)
    raw_xy = per_image[..., :2]
    flag = per_image[..., 2]
    if layout == "lsp":
        vis = np.where(flag > 0.5, 1, 2).astype(np.int8)  # LSP: 1 = occluded, 0 = visible
    else:
        vis = np.where(flag > 0.5, 2, 0).astype(np.int8)  # LSPET: 1 = visible, 0 = not labelled
    finite = np.all(np.isfinite(raw_xy), axis=-1)
    # MATLAB 1-based: pixel 1 covers [0.5, 1.5); a coordinate <= 0 is off the image to the left/top
    # and is how LSPET encodes hidden joints. Never use it as a position.
    bad_position = (~finite | np.any(raw_xy <= 0, axis=-1)) & (vis > 0)
    vis = np.where(bad_position | ~finite, 0, vis).astype(np.int8)
    xy = zero_based_xy(raw_xy, vis > 0)
    return xy, vis, bad_position


class _LeedsAdapter(DatasetAdapter):
    """Shared parse of the LSP family; subclasses fix the layout, naming and split."""

    skeleton: ClassVar[str | None] = "lsp14"
    layout: ClassVar[Layout] = "lsp"
    image_pattern: ClassVar[str] = "images/im{:04d}.jpg"
    Params: ClassVar[type[AdapterParams]] = LspParams

    @abstractmethod
    def split_of(self, index: int, count: int) -> str:
        """Split of the 0-based image ``index`` out of ``count`` images."""

    def parse(self, source: Path, params: AdapterParams) -> ParseResult:
        """Parse ``joints.mat`` under ``source`` (or ``source`` itself when it is the file).

        Raises:
            SourceError: ``joints.mat`` is missing.
            AnnotationFormatError: No ``joints`` variable, a wrong shape, or the other family's layout.
        """
        if not isinstance(params, LspParams):
            raise ConfigError(f"{self.name} expects LspParams, got {type(params).__name__}")
        source = Path(source)
        if source.is_file():
            ann_path, root = source, source.parent
        else:
            ann_path = Path(params.annotation_file)
            ann_path = ann_path if ann_path.is_absolute() else source / ann_path
            root = source
        require_file(ann_path, f"{self.name} annotation file (joints.mat)")
        joints = load_mat(ann_path, ["joints"])["joints"]
        if not isinstance(joints, np.ndarray) or joints.dtype.kind not in "biuf":
            raise AnnotationFormatError(f"{ann_path}: 'joints' is not a numeric array ({type(joints).__name__})")
        layout = detect_layout(joints, ann_path)
        wanted = self.layout if params.layout == "auto" else params.layout
        if layout != wanted:
            raise AnnotationFormatError(
                f"{ann_path} has the {layout.upper()} layout {joints.shape}, but the {self.name} adapter "
                f"expects the {wanted.upper()} layout",
                hint=f"parse it as dataset {layout!r}",
            )
        xy, vis, dropped = decode_joints(joints, layout)
        count = xy.shape[0]
        skeleton = get_skeleton("lsp14")
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        for i in range(count):
            number = i + 1  # image numbers are 1-based in the file names
            image_path = self.image_pattern.format(number)
            key = Path(image_path).stem
            split = self.split_of(i, count)
            labelled = vis[i] > 0
            if not labelled.any():
                rejects.append(Reject(key, RejectReason.ZERO_KEYPOINTS, f"{image_path}: no labelled joint", split=split))
                continue
            bbox, center = joint_box(xy[i], labelled)
            rows.append(
                {
                    "sample_id": f"{self.name}-{key}",
                    "dataset": self.name,
                    "split": split,
                    "image_path": image_path,
                    "image_width_px": None,
                    "image_height_px": None,
                    "person_index": 0,
                    "source_key": key,
                    "bbox_xyxy_px": bbox,
                    "center_xy_px": center,
                    "skeleton": skeleton.name,
                    "keypoints_xy_px": xy[i].tolist(),
                    "keypoints_visibility": vis[i].tolist(),
                    "extra": json.dumps(
                        {"image_number": number, "dropped_joints": np.flatnonzero(dropped[i]).tolist()}
                    ),
                }
            )
        stats = {
            "layout": layout,
            "images": count,
            "labelled_joints": int((vis > 0).sum()),
            "dropped_positions": int(dropped.sum()),
        }
        return ParseResult(
            records=self.table(rows),
            rejects=rejects_table(rejects),
            input_checksums={relative_name(ann_path, root): file_sha256(ann_path)},
            stats=stats,
        )


class LspAdapter(_LeedsAdapter):
    """Leeds Sports Pose: 2000 images, 1000 train / 1000 test, ``joints`` 3×14×2000."""

    name: ClassVar[str] = "lsp"
    layout: ClassVar[Layout] = "lsp"
    image_pattern: ClassVar[str] = "images/im{:04d}.jpg"
    description: ClassVar[str] = (
        "Leeds Sports Pose: 2000 sports images (Flickr), one person each, 14 joints; the first 1000 are "
        "the training set and the last 1000 the test set."
    )
    homepage: ClassVar[str] = "http://sam.johnson.io/research/lsp.html"
    citation: ClassVar[str] = (
        "@inproceedings{Johnson10, title={Clustered Pose and Nonlinear Appearance Models for Human Pose "
        "Estimation}, author={Johnson, Sam and Everingham, Mark}, booktitle={BMVC}, year={2010}}"
    )
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    sources: ClassVar[tuple[Source, ...]] = (
        Source(
            name="dataset",
            url="http://sam.johnson.io/research/lsp_dataset.zip",
            filename="lsp_dataset.zip",
            extract="zip",
            description="joints.mat (3×14×2000) and images/im0001.jpg … im2000.jpg (scaled to ~150 px tall)",
        ),
    )

    def split_of(self, index: int, count: int) -> str:
        """LSP: images 1..1000 train, 1001..2000 test."""
        return "train" if index < LSP_NUM_TRAIN else "test"


class LspetAdapter(_LeedsAdapter):
    """LSP extended: 10,000 training images, ``joints`` 14×3×10000, visibility row = visible."""

    name: ClassVar[str] = "lspet"
    layout: ClassVar[Layout] = "lspet"
    image_pattern: ClassVar[str] = "images/im{:05d}.jpg"
    description: ClassVar[str] = (
        "LSP extended: 10,000 further sports images (gymnastics, parkour, athletics) annotated through "
        "Amazon Mechanical Turk with 14 joints; training data only."
    )
    homepage: ClassVar[str] = "http://sam.johnson.io/research/lspet.html"
    citation: ClassVar[str] = (
        "@inproceedings{Johnson11, title={Learning Effective Human Pose Estimation from Inaccurate "
        "Annotation}, author={Johnson, Sam and Everingham, Mark}, booktitle={CVPR}, year={2011}}"
    )
    splits: ClassVar[tuple[str, ...]] = ("train",)
    sources: ClassVar[tuple[Source, ...]] = (
        Source(
            name="dataset",
            url="http://sam.johnson.io/research/lspet_dataset.zip",
            filename="lspet_dataset.zip",
            extract="zip",
            description="joints.mat (14×3×10000) and images/im00001.jpg … im10000.jpg",
        ),
    )

    def split_of(self, index: int, count: int) -> str:
        """LSPET is training data only."""
        return "train"

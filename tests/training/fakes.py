"""Generated MPII-format data with a learnable activity signal, for the training tasks' tests.

Every image shows one stick figure whose pose depends on its category (arms up / arms out / legs
apart / standing), with random size, position, angle jitter, colours and background noise. The
category is MPII's ``act.cat_name`` of the image, so ``mpii-activity`` can learn it from the pixels
and ``pose-mlp`` from the joints. The files are the real MPII on-disk format (``RELEASE`` in
``mpii_human_pose_v1_u12_1.mat`` written by :func:`tests.datasets.fakes_mpii.write_mat5`, images in
``images/``, Tompson's ``detections.mat`` naming the validation persons), so a version is built by
the real adapter and rebuild sequence (:func:`build_activity_version`, in-process, no Prefect).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from schemas.skeletons import MPII16
from tests.datasets.fakes_mpii import write_mat5, write_valid_persons

#: The categories (sorted = class order) and the act_id of each.
CATEGORIES = ("arms out", "arms up", "legs apart", "standing")

#: (right upper arm, right forearm) angles in degrees from "straight down", mirrored for the left
#: arm; leg spread in degrees from vertical.
_POSES: dict[str, dict[str, float]] = {
    "arms out": {"upper": 90.0, "fore": 95.0, "leg": 5.0},
    "arms up": {"upper": 160.0, "fore": 170.0, "leg": 5.0},
    "legs apart": {"upper": 15.0, "fore": 10.0, "leg": 35.0},
    "standing": {"upper": 10.0, "fore": 5.0, "leg": 4.0},
}


def _at(origin: np.ndarray, length: float, angle_deg: float, side: int) -> np.ndarray:
    """A point ``length`` from ``origin`` at ``angle_deg`` from straight down, towards ``side`` (-1 right = image left)."""
    a = np.deg2rad(angle_deg)
    return origin + length * np.array([side * np.sin(a), np.cos(a)])


def stick_figure(category: str, rng: np.random.Generator, image_wh: tuple[int, int] = (96, 96)) -> tuple[np.ndarray, float]:
    """MPII-16 joints (0-based px) of one figure in ``category``'s pose, and its height H (px).

    The person faces the camera: their right side is on the image's left.
    """
    pose = _POSES[category]
    w, h = image_wh
    height = float(rng.uniform(0.55, 0.68) * h)
    cx = float(rng.uniform(0.42, 0.58) * w)
    cy = float(rng.uniform(0.52, 0.58) * h)
    j = np.zeros((MPII16.num_joints, 2), dtype=np.float64)

    def jit(deg: float) -> float:
        return deg + float(rng.normal(0.0, 6.0))

    pelvis = np.array([cx, cy])
    j[MPII16.index("pelvis")] = pelvis
    j[MPII16.index("thorax")] = pelvis + [0.0, -0.36 * height]
    j[MPII16.index("upper_neck")] = pelvis + [0.0, -0.43 * height]
    j[MPII16.index("head_top")] = pelvis + [0.0, -0.58 * height]
    for side, name in ((-1, "right"), (1, "left")):
        shoulder = pelvis + [side * 0.12 * height, -0.36 * height]
        elbow = _at(shoulder, 0.17 * height, jit(pose["upper"]), side)
        wrist = _at(elbow, 0.15 * height, jit(pose["fore"]), side)
        hip = pelvis + [side * 0.07 * height, 0.0]
        knee = _at(hip, 0.22 * height, jit(pose["leg"]), side)
        ankle = _at(knee, 0.22 * height, jit(pose["leg"]), side)
        for joint, xy in (("shoulder", shoulder), ("elbow", elbow), ("wrist", wrist), ("hip", hip), ("knee", knee), ("ankle", ankle)):
            j[MPII16.index(f"{name}_{joint}")] = xy
    j[:, 0] = np.clip(j[:, 0], 1.0, w - 2.0)
    j[:, 1] = np.clip(j[:, 1], 1.0, h - 2.0)
    return j.astype(np.float32), height


def render(joints: np.ndarray, rng: np.random.Generator, image_wh: tuple[int, int] = (96, 96)) -> np.ndarray:
    """A BGR image with the figure drawn on a noisy background (limbs as thick lines, a head disc)."""
    w, h = image_wh
    base = rng.integers(40, 90, size=3)
    img = np.clip(base[None, None, :] + rng.normal(0.0, 12.0, (h, w, 3)), 0, 255).astype(np.uint8)
    colour = tuple(int(c) for c in rng.integers(170, 256, size=3))
    pts = np.round(joints).astype(np.int32)
    for a, b in MPII16.limb_indices:
        cv2.line(img, tuple(pts[a]), tuple(pts[b]), colour, 3, cv2.LINE_AA)
    head = (pts[MPII16.index("upper_neck")] + pts[MPII16.index("head_top")]) // 2
    radius = max(3, int(np.linalg.norm(pts[MPII16.index("head_top")] - pts[MPII16.index("upper_neck")]) // 2))
    cv2.circle(img, tuple(int(v) for v in head), radius, colour, -1, cv2.LINE_AA)
    return img


def write_activity_source(
    out_dir: Path,
    train_per_class: int = 12,
    valid_per_class: int = 4,
    seed: int = 0,
    image_wh: tuple[int, int] = (96, 96),
    categories: tuple[str, ...] = CATEGORIES,
) -> Path:
    """Write an MPII source folder: ``mpii_human_pose_v1_u12_1.mat``, ``detections.mat``, ``images/``.

    One person per image; images alternate through the categories. The last ``valid_per_class``
    images of each category are Tompson-style validation persons (``split_protocol=single_person``
    puts them in ``valid``, the others in ``train``; no image is in both).

    Returns:
        ``out_dir``.
    """
    rng = np.random.default_rng(seed)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    annolist: list[dict[str, Any]] = []
    acts: list[dict[str, Any]] = []
    valid_images: list[int] = []
    per_class = train_per_class + valid_per_class
    for k in range(per_class):
        for c, category in enumerate(categories):
            idx1 = len(annolist) + 1
            name = f"{idx1:09d}.jpg"
            joints, height = stick_figure(category, rng, image_wh)
            cv2.imwrite(str(images / name), render(joints, rng, image_wh), [cv2.IMWRITE_JPEG_QUALITY, 95])
            one = joints.astype(np.float64) + 1.0  # MATLAB 1-based, as the RELEASE stores them
            neck, top = one[MPII16.index("upper_neck")], one[MPII16.index("head_top")]
            half = 0.5 * float(np.linalg.norm(top - neck)) + 2.0
            centre = one.mean(axis=0)
            rect = {
                "x1": float(top[0] - half), "y1": float(top[1] - 1.0), "x2": float(top[0] + half), "y2": float(neck[1] + 1.0),
                "scale": float(1.15 * height / 200.0), "objpos": {"x": float(centre[0]), "y": float(centre[1])},
                "annopoints": {"point": [{"x": float(x), "y": float(y), "id": float(jid), "is_visible": 1.0}
                                         for jid, (x, y) in enumerate(one)]},
            }  # fmt: skip
            annolist.append({"image": {"name": name}, "annorect": [rect], "frame_sec": None, "vididx": None})
            acts.append({"cat_name": category, "act_name": f"{category}, variant {k % 2}", "act_id": float(10 * (c + 1) + k % 2)})
            if k >= train_per_class:
                valid_images.append(idx1)
    n = len(annolist)
    release = {
        "annolist": annolist,
        "img_train": np.ones((1, n)),
        "version": "12",
        "single_person": [np.array([1.0]) for _ in range(n)],
        "act": acts,
        "video_list": [],
    }
    write_mat5(out_dir / "mpii_human_pose_v1_u12_1.mat", {"RELEASE": release})
    write_valid_persons(out_dir / "detections.mat", valid_images, [1] * len(valid_images))
    return out_dir


def build_activity_version(root: Path, source: Path, crop_px: int = 64, seed: int = 0) -> dict[str, Any]:
    """Build (or reuse) a validated ``mpii`` version of :func:`write_activity_source`'s folder in-process.

    Crops are ``crop_px`` square with little padding, so the figure fills them.

    Returns:
        The rebuild summary (``version``, counts, ...).
    """
    import posepipe
    from tasks.transforms.geometry import CropConfig

    crop = CropConfig(out_height_px=crop_px, out_width_px=crop_px, pad_min=1.1, pad_max=1.1, shift_px=0.0, min_box_px=16.0)
    return posepipe.rebuild(
        "mpii", root=str(root), source=str(source),
        adapter_params={"split_protocol": "single_person", "valid_persons_file": "detections.mat"}, crop=crop, seed=seed,
    )  # fmt: skip

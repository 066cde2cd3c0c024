"""Synthetic COCO-format data: images with drawn stick figures + ``person_keypoints_*.json``.

Used by ``posepipe demo`` (the embedded default) and by tests. The output is the real COCO on-disk
layout (``annotations/person_keypoints_{split}2017.json`` and ``{split}2017/*.jpg``), so it goes
through exactly the code path of the real dataset. It deliberately includes what real COCO has: a
crowd annotation and annotations without labelled keypoints (rejected by the default policy).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from schemas.skeletons import COCO17

# A standing figure in a unit box (x right, y down), COCO-17 order.
_TEMPLATE = np.array(
    [
        [0.50, 0.08], [0.45, 0.05], [0.55, 0.05], [0.40, 0.08], [0.60, 0.08], [0.30, 0.25], [0.70, 0.25],
        [0.22, 0.42], [0.78, 0.42], [0.18, 0.58], [0.82, 0.58], [0.38, 0.58], [0.62, 0.58], [0.36, 0.78],
        [0.64, 0.78], [0.35, 0.97], [0.65, 0.97],
    ],
    dtype=np.float64,
)  # fmt: skip


def _figure(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[float]]:
    box_h = float(rng.uniform(0.45, 0.9) * height)
    box_w = box_h * float(rng.uniform(0.35, 0.55))
    x0 = float(rng.uniform(0, max(1.0, width - box_w)))
    y0 = float(rng.uniform(0, max(1.0, height - box_h)))
    pts = _TEMPLATE + rng.normal(0, 0.015, _TEMPLATE.shape)
    xy = np.column_stack([x0 + pts[:, 0] * box_w, y0 + pts[:, 1] * box_h])
    xy[:, 0] = np.clip(xy[:, 0], 0, width - 1)
    xy[:, 1] = np.clip(xy[:, 1], 0, height - 1)
    return xy, [x0, y0, box_w, box_h]


def write_synthetic_coco(out_dir: Path, images_per_split: dict[str, int] | None = None, seed: int = 0, size_wh: tuple[int, int] = (320, 240)) -> Path:
    """Write a small COCO keypoints dataset.

    Args:
        out_dir: Folder to create (the ``--source`` of a rebuild).
        images_per_split: e.g. ``{"train": 12, "val": 4}``.
        seed: Generator seed (same seed → same bytes).
        size_wh: Image size.

    Returns:
        ``out_dir``.
    """
    images_per_split = images_per_split or {"train": 12, "val": 4}
    rng = np.random.default_rng(seed)
    width, height = size_wh
    ann_id = 1
    image_id = 1
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    for split, n_images in images_per_split.items():
        folder = out_dir / f"{split}2017"
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for _ in range(n_images):
            canvas = np.full((height, width, 3), rng.integers(40, 200, 3), dtype=np.uint8)
            noise = rng.integers(0, 25, (height, width, 1), dtype=np.uint8)
            canvas = cv2.add(canvas, np.repeat(noise, 3, axis=2))
            n_people = int(rng.integers(1, 5))  # mean 2.5, close to COCO train (2.65 keypoint persons per image)
            for _p in range(n_people):
                xy, bbox = _figure(rng, width, height)
                vis = np.where(rng.random(17) < 0.15, 1, 2)
                vis[rng.random(17) < 0.05] = 0
                colour = tuple(int(c) for c in rng.integers(0, 255, 3))
                for a, b in COCO17.limb_indices:
                    if vis[a] and vis[b]:
                        cv2.line(canvas, tuple(int(v) for v in xy[a]), tuple(int(v) for v in xy[b]), colour, 3, cv2.LINE_AA)
                kps = []
                for j in range(17):
                    kps += [round(float(xy[j, 0]), 2), round(float(xy[j, 1]), 2), int(vis[j])] if vis[j] else [0, 0, 0]
                annotations.append(
                    {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": [round(v, 2) for v in bbox],
                     "area": round(bbox[2] * bbox[3], 2), "num_keypoints": int((vis > 0).sum()), "keypoints": kps}
                )  # fmt: skip
                ann_id += 1
            file_name = f"{image_id:012d}.jpg"
            cv2.imwrite(str(folder / file_name), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            image_id += 1
        # what real COCO has and the default policy rejects: a crowd region and a keypoint-less person
        annotations.append({"id": ann_id, "image_id": images[0]["id"], "category_id": 1, "iscrowd": 1, "bbox": [1, 1, 40, 40], "area": 1600, "num_keypoints": 0, "keypoints": [0] * 51})
        annotations.append({"id": ann_id + 1, "image_id": images[-1]["id"], "category_id": 1, "iscrowd": 0, "bbox": [5, 5, 20, 30], "area": 600, "num_keypoints": 0, "keypoints": [0] * 51})
        ann_id += 2
        doc = {
            "info": {"description": "posepipe synthetic COCO keypoints", "seed": seed},
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO17.joints)}],
        }
        (out_dir / "annotations" / f"person_keypoints_{split}2017.json").write_text(json.dumps(doc))
    return out_dir

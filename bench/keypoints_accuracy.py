"""Accuracy and speed of the ``tf-openpose`` backend on COCO-mini (39 val2017 person images).

Runs the network once per image (batch 1, the model is batch-dependent), then decodes the same raw
outputs with several decoder settings and evaluates each with pycocotools (iouType keypoints)
against ``person_keypoints_val2017.json`` restricted to those images. Prints AP / AP50 / AR and the
milliseconds per image of the network and of the post-processing, side by side with a baseline
measured in the same run: our decoder configured like tf-pose-estimation's pipeline (heatmaps
upsampled x4, 25x25 sigma-3 Gaussian, 3x3 NMS, integer peaks).

Reference (the model authors' own pipeline with its C++ pafprocess, measured on this machine and
folder by the issue): AP 0.131 / AP50 0.286 / AR 0.157 at ~75 ms per image (44 ms network).

Usage::

    .venv/bin/python bench/keypoints_accuracy.py [--shared-data ../shared/data] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.evaluation.coco_eval import coco_evaluate, coco_keypoint_results  # noqa: E402
from tasks.keypoints import load_backend  # noqa: E402
from tasks.keypoints.paf import DecodeParams, decode_raw  # noqa: E402

REFERENCE = {"AP": 0.131, "AP50": 0.286, "AR": 0.157, "ms": 75.0}

CONFIGS: dict[str, DecodeParams] = {
    "baseline (tf-pose-like: x4, gauss 25/3, integer peaks)": DecodeParams(
        upsample=4, smooth_sigma=3.0, subpixel=False, paf_min_fraction=0.8
    ),
    "heatmaps x4 bicubic + sub-pixel": DecodeParams(upsample=4),
    "posepipe default (network resolution + sub-pixel)": DecodeParams(),
}


def run(shared: Path, repeat: int) -> None:
    coco_dir = shared / "coco" / "coco_mini_val2017"
    gt_json = coco_dir / "person_keypoints_val2017.json"
    import json

    gt = json.loads(gt_json.read_text())
    by_name = {im["file_name"]: im["id"] for im in gt["images"]}
    images = sorted((coco_dir / "images").glob("*.jpg"))
    backend = load_backend("tf-openpose", str(shared / "models" / "tf_pose_mobilenet_v2_small" / "graph_opt.pb"))
    print(f"backend {backend.name} model sha256 {backend.model_sha256[:12]} batch_invariant={backend.batch_invariant}")
    frames = [cv2.imread(str(p)) for p in images]
    ids = [by_name[p.name] for p in images]
    backend.infer(frames[:1])  # warm-up
    raws, net_s = [], []
    for _ in range(repeat):
        raws = []
        for f in frames:
            t0 = time.perf_counter()
            raws.extend(backend.infer([f]))
            net_s.append(time.perf_counter() - t0)
    net_ms = 1e3 * float(np.median(net_s))
    print(f"{len(frames)} images, network {net_ms:.1f} ms/image (median, batch 1)\n")
    print(f"{'decoder':58s} {'AP':>6s} {'AP50':>6s} {'AR':>6s} {'post ms':>8s} {'total ms':>9s} {'post speed-up':>13s}")
    base_post = None
    for label, params in CONFIGS.items():
        results, post_s = [], []
        for _ in range(repeat):
            results = []
            for raw, image_id in zip(raws, ids, strict=True):
                t0 = time.perf_counter()
                poses = decode_raw(raw, backend.layout, params)
                post_s.append(time.perf_counter() - t0)
                results.extend(coco_keypoint_results(poses.keypoints, poses.person_scores, image_id, backend.skeleton))
        stats = coco_evaluate(gt_json, results, img_ids=ids).named
        post_ms = 1e3 * float(np.median(post_s))
        base_post = base_post or post_ms
        print(
            f"{label:58s} {stats['AP']:6.3f} {stats['AP50']:6.3f} {stats['AR']:6.3f} {post_ms:8.1f} "
            f"{net_ms + post_ms:9.1f} {base_post / post_ms:12.2f}x"
        )
    print(
        f"{'reference: tf-pose-estimation pipeline (issue figures)':58s} {REFERENCE['AP']:6.3f} "
        f"{REFERENCE['AP50']:6.3f} {REFERENCE['AR']:6.3f} {'~27':>8s} {REFERENCE['ms']:9.1f}"
    )
    backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    run(args.shared_data, args.repeat)


if __name__ == "__main__":
    main()

"""A deterministic test-double pose backend: every bright square is a person (pipeline mechanics only).

``infer`` thresholds each frame (the "heatmap"), ``group`` finds connected components: a person per
square, with the nose at the square's centre and the neck 10 px below it; other joints unknown
(NaN, score 0). Its output for a frame never depends on the batch, so ``batch_invariant`` is True.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from schemas.skeletons import get_skeleton
from tasks.keypoints.api import FramePoses, PoseEstimator, RawOutput


class BlobBackend(PoseEstimator):
    """Bright squares -> people (openpose18 skeleton).

    Args:
        sleep_s: Seconds to sleep per frame in ``infer`` (makes a run slow enough to kill).
        fail_above_people: ``infer`` raises on frames with more bright squares than this (a backend error).
        batch: ``max_batch`` to report.
    """

    name = "blob-double"
    skeleton = "openpose18"
    model_sha256 = "0" * 64
    batch_invariant = True

    def __init__(self, sleep_s: float = 0.0, fail_above_people: int | None = None, batch: int = 8) -> None:
        self.sleep_s = sleep_s
        self.fail_above_people = fail_above_people
        self.batch = batch
        self.calls: list[int] = []

    @property
    def max_batch(self) -> int:
        return self.batch

    def infer(self, frames_bgr: Sequence[np.ndarray]) -> list[RawOutput]:
        if len(frames_bgr) > self.max_batch:
            raise ValueError(f"batch of {len(frames_bgr)} > max_batch {self.max_batch}")
        self.calls.append(len(frames_bgr))
        out = []
        for frame in frames_bgr:
            if self.sleep_s:
                time.sleep(self.sleep_s)
            mask = (cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) > 200).astype(np.float32)
            if self.fail_above_people is not None:
                n = cv2.connectedComponents(mask.astype(np.uint8))[0] - 1
                if n > self.fail_above_people:
                    raise RuntimeError(f"{n} blobs")
            h, w = mask.shape
            out.append(RawOutput(mask[..., None], np.zeros((h, w, 0), np.float32), (h, w), (h, w)))
        return out

    def group(self, raw: RawOutput) -> FramePoses:
        mask = raw.heatmaps[..., 0].astype(np.uint8)
        n, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
        people = []
        scores = []
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] < 9:
                continue
            kp = np.full((get_skeleton(self.skeleton).num_joints, 3), np.nan, np.float32)
            kp[:, 2] = 0.0
            cx, cy = centroids[i]
            kp[0] = (cx, cy, 1.0)
            kp[1] = (cx, cy + 10.0, 0.5)
            people.append(kp)
            scores.append(float(stats[i, cv2.CC_STAT_AREA]) / 49.0)
        order = np.argsort([p[0, 0] for p in people], kind="stable")
        kps = np.stack([people[i] for i in order]) if people else np.zeros((0, 18, 3), np.float32)
        return FramePoses(kps.astype(np.float32), np.asarray([scores[i] for i in order], np.float32))


def make_blob_backend(model_path: str | None = None, report_dir: str | None = None, **options: Any) -> BlobBackend:
    """Factory in the ``module:factory`` form :class:`tasks.extract.plan.BackendSpec` accepts.

    Args:
        model_path: Unused (the double has no model file).
        report_dir: If given, the process creating the backend writes ``{pid}.json`` there: inside a
            Dask worker, the cluster it belongs to (worker count, threads per worker); elsewhere ``{}``.
        **options: :class:`BlobBackend` arguments.
    """
    if report_dir is not None:
        import json
        import os
        from pathlib import Path

        report: dict[str, Any] = {}
        try:
            from distributed import get_client, get_worker

            get_worker()  # ValueError outside a worker
            info = get_client().scheduler_info()
            report = {"workers": len(info["workers"]), "threads": sorted(w["nthreads"] for w in info["workers"].values())}
        except (ImportError, ValueError):
            pass
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        Path(report_dir, f"{os.getpid()}.json").write_text(json.dumps(report))
    return BlobBackend(**options)


def make_reporting_blob_backend(model_path: str | None = None, **options: Any) -> BlobBackend:
    """:func:`make_blob_backend` reporting to the folder in ``$BLOB_REPORT_DIR`` (for command-line runs,
    whose backend options cannot be set)."""
    import os

    return make_blob_backend(model_path, report_dir=os.environ["BLOB_REPORT_DIR"], **options)


BLOB = "tests.extract.doubles:make_blob_backend"
REPORTING_BLOB = "tests.extract.doubles:make_reporting_blob_backend"

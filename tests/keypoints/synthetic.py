"""Generate OpenPose-style network outputs (heatmaps + PAFs) for known people, as training targets are made.

Heatmaps: a Gaussian per joint (max over people), background = 1 - max over joints. PAFs: inside a
band of half-width ``paf_width_cells`` around each limb segment, the unit vector from joint a to b
(averaged where people overlap), as in Cao et al.'s ground-truth generation.
"""

from __future__ import annotations

import numpy as np

from tasks.keypoints.models import PafLayout

# A standing person facing the camera in openpose18 order, (u, v) in cells, ~10 x 20 cells.
TEMPLATE_OPENPOSE18 = np.array(
    [
        [5.0, 2.0],   # nose
        [5.0, 5.0],   # neck
        [2.0, 5.0],   # right_shoulder (image left: the person faces us)
        [1.0, 9.0],   # right_elbow
        [1.0, 13.0],  # right_wrist
        [8.0, 5.0],   # left_shoulder
        [9.0, 9.0],   # left_elbow
        [9.0, 13.0],  # left_wrist
        [3.0, 12.0],  # right_hip
        [3.0, 16.0],  # right_knee
        [3.0, 20.0],  # right_ankle
        [7.0, 12.0],  # left_hip
        [7.0, 16.0],  # left_knee
        [7.0, 20.0],  # left_ankle
        [4.0, 1.0],   # right_eye
        [6.0, 1.0],   # left_eye
        [3.0, 1.5],   # right_ear
        [7.0, 1.5],   # left_ear
    ],
    np.float32,
)  # fmt: skip


def render_maps(
    people_uv: np.ndarray,
    layout: PafLayout,
    hw: tuple[int, int],
    sigma_cells: float = 1.0,
    paf_width_cells: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Render heatmaps and PAFs for people at known positions.

    Args:
        people_uv: ``(P, J, 2) float32`` joint positions in cells; NaN joints are absent.
        layout: Channel layout (PAFs are written in ``layout.pairs`` order, x then y).
        hw: Map (height, width) in cells.
        sigma_cells: Gaussian sigma of the heatmaps.
        paf_width_cells: Half-width of the PAF band.

    Returns:
        ``(h, w, J + 1) float32`` heatmaps (background last) and ``(h, w, 2L) float32`` PAFs.
    """
    h, w = hw
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float32)
    num_joints = layout.num_joints
    heat = np.zeros((h, w, num_joints + 1), np.float32)
    for person in people_uv:
        for j in range(num_joints):
            u, v = person[j]
            if np.isnan(u):
                continue
            g = np.exp(-((uu - u) ** 2 + (vv - v) ** 2) / (2 * sigma_cells**2))
            heat[..., j] = np.maximum(heat[..., j], g)
    heat[..., -1] = 1.0 - heat[..., :-1].max(axis=-1)
    pafs = np.zeros((h, w, layout.num_pafs), np.float32)
    for k, (ja, jb) in enumerate(layout.pairs):
        acc = np.zeros((h, w, 2), np.float32)
        cnt = np.zeros((h, w), np.float32)
        for person in people_uv:
            a, b = person[ja], person[jb]
            if np.isnan(a).any() or np.isnan(b).any():
                continue
            d = b - a
            length = float(np.linalg.norm(d))
            if length < 1e-6:
                continue
            unit = d / length
            rel_u, rel_v = uu - a[0], vv - a[1]
            along = rel_u * unit[0] + rel_v * unit[1]
            across = np.abs(rel_u * unit[1] - rel_v * unit[0])
            band = (along >= 0) & (along <= length) & (across <= paf_width_cells)
            acc[band] += unit
            cnt[band] += 1
        nz = cnt > 0
        acc[nz] /= cnt[nz][:, None]
        pafs[..., 2 * k : 2 * k + 2] = acc
    return heat, pafs

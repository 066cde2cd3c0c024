"""Multi-person decoding of OpenPose-style outputs (heatmaps + part affinity fields), in numpy.

The OpenPose algorithm (Cao et al., CVPR'17), written with whole-array operations:

1. :func:`find_peaks`: optional heatmap upsampling and Gaussian smoothing, a max-filter NMS over all
   joint channels at once, threshold, and sub-pixel refinement of each peak (a quadratic fit through
   the peak and its 4 neighbours).
2. :func:`score_limb`: the PAF line integral for *every* candidate pair of one limb at once: the PAF
   is sampled bilinearly at ``K`` points on each segment, projected on the segment's direction, and
   averaged; a distance prior penalises limbs longer than half the map height; a pair is kept only
   if most samples agree (OpenPose's criterion).
3. :func:`match_limb`: OpenPose's greedy bipartite matching per limb (best PAF score first, each
   peak used at most once).
4. :func:`assemble`: connections are merged into people limb by limb (OpenPose's subset assembly),
   then people with too few parts or a low mean score are dropped.

Coordinates: peaks are found in *map cells* (``u`` right, ``v`` down, cell centres at integers) of
the network output; :func:`decode` maps them to original-image pixel centres with
``x = (u + 0.5) * W / w - 0.5`` (``W`` image width, ``w`` map width), the same for ``y``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from schemas.errors import ConfigError, ExtractionError
from tasks.keypoints.api import FramePoses, RawOutput
from tasks.keypoints.models import PafLayout


@dataclass(frozen=True)
class DecodeParams:
    """Knobs of the decoder (defaults: OpenPose / tf-pose-estimation's values where they agree).

    Attributes:
        upsample: Heatmaps are resized by this factor (bicubic) before peak finding; 1 (default)
            keeps the network resolution and relies on sub-pixel refinement: on COCO-mini it is as
            accurate as x4 (AP 0.144 both) and ~3x cheaper.
        smooth_sigma: Gaussian sigma, in *upsampled* pixels, applied before NMS (0 = none;
            tf-pose-estimation uses 3.0).
        peak_threshold: Minimum heatmap value of a peak.
        nms_window: Side of the square max-filter window (odd).
        subpixel: Refine peaks with a quadratic fit through their neighbours.
        max_peaks: At most this many peaks per joint (highest first), as OpenPose caps them.
        paf_samples: Points sampled on each candidate limb (K).
        paf_sample_threshold: A sample "agrees" if its projected PAF exceeds this.
        paf_min_fraction: A candidate limb needs more than this fraction of agreeing samples.
        min_parts: People with fewer found joints are dropped.
        min_mean_score: People whose score per found joint is lower are dropped.
    """

    upsample: int = 1
    smooth_sigma: float = 0.0
    peak_threshold: float = 0.05
    nms_window: int = 3
    subpixel: bool = True
    max_peaks: int = 64
    paf_samples: int = 10
    paf_sample_threshold: float = 0.05
    paf_min_fraction: float = 0.8
    min_parts: int = 4
    min_mean_score: float = 0.4

    def __post_init__(self) -> None:
        if self.upsample < 1:
            raise ConfigError(f"upsample must be >= 1, got {self.upsample}")
        if self.nms_window < 1 or self.nms_window % 2 == 0:
            raise ConfigError(f"nms_window must be a positive odd number, got {self.nms_window}")
        if self.paf_samples < 2:
            raise ConfigError(f"paf_samples must be >= 2, got {self.paf_samples}")
        if not 0.0 <= self.paf_min_fraction < 1.0:
            raise ConfigError(f"paf_min_fraction must be in [0, 1), got {self.paf_min_fraction}")
        if self.max_peaks < 1:
            raise ConfigError(f"max_peaks must be >= 1, got {self.max_peaks}")


@dataclass(frozen=True)
class Peaks:
    """All peaks of one frame, sorted by joint then score (descending).

    Attributes:
        joint: ``(N,) int64`` joint index of each peak.
        uv: ``(N, 2) float32`` position in map cells (u right, v down).
        score: ``(N,) float32`` heatmap value at the peak.
        offsets: ``(J + 1,) int64``: peaks of joint ``j`` are ``offsets[j]:offsets[j + 1]``.
    """

    joint: np.ndarray
    uv: np.ndarray
    score: np.ndarray
    offsets: np.ndarray

    def of(self, j: int) -> slice:
        """Slice of the peaks of joint ``j``."""
        return slice(int(self.offsets[j]), int(self.offsets[j + 1]))


def _resize_channels(maps: np.ndarray, factor: int) -> np.ndarray:
    """Bicubic resize of ``(h, w, C)`` maps by an integer factor (cv2 handles many channels at once)."""
    h, w, c = maps.shape
    out = np.empty((h * factor, w * factor, c), np.float32)
    for start in range(0, c, 512):  # cv2 supports up to 512 channels per call
        chunk = np.ascontiguousarray(maps[..., start : start + 512])
        res = cv2.resize(chunk, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC)
        out[..., start : start + 512] = res.reshape(h * factor, w * factor, -1)
    return out


def find_peaks(heatmaps: np.ndarray, params: DecodeParams = DecodeParams()) -> Peaks:
    """Find local maxima in every joint heatmap.

    Args:
        heatmaps: ``(h, w, J) float32`` joint heatmaps (no background channel).
        params: Decoder parameters (upsample, smoothing, threshold, NMS window, sub-pixel, cap).

    Returns:
        :class:`Peaks` with positions in map cells of the *input* resolution ``(h, w)``.

    Example:
        A single bump at row 2, column 3 of a 5x6 map gives one peak at ``uv = (3, 2)``.
    """
    if heatmaps.ndim != 3:
        raise ExtractionError(f"heatmaps must be (h, w, J), got shape {heatmaps.shape}")
    hm = np.ascontiguousarray(heatmaps, dtype=np.float32)
    num_joints = hm.shape[2]
    f = params.upsample
    up = _resize_channels(hm, f) if f > 1 else hm
    work = up
    if params.smooth_sigma > 0:
        work = cv2.GaussianBlur(up, (0, 0), params.smooth_sigma, borderType=cv2.BORDER_REPLICATE)
        work = work.reshape(up.shape)
    kernel = np.ones((params.nms_window, params.nms_window), np.uint8)
    dilated = cv2.dilate(work, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf).reshape(work.shape)
    mask = (work >= dilated) & (work > params.peak_threshold)
    mask = _first_of_plateaus(mask, params.nms_window // 2)
    ys, xs, js = np.nonzero(mask)
    scores = up[ys, xs, js]
    # Sort by joint, then by score descending; cap each joint at max_peaks.
    order = np.lexsort((-scores, js))
    ys, xs, js, scores = ys[order], xs[order], js[order], scores[order]
    counts = np.bincount(js, minlength=num_joints)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(js.size) - starts[js]
    keep = rank < params.max_peaks
    ys, xs, js, scores = ys[keep], xs[keep], js[keep], scores[keep]
    u = xs.astype(np.float32)
    v = ys.astype(np.float32)
    if params.subpixel and js.size:
        H, W = work.shape[:2]
        c = work[ys, xs, js]
        left = work[ys, np.maximum(xs - 1, 0), js]
        right = work[ys, np.minimum(xs + 1, W - 1), js]
        up_ = work[np.maximum(ys - 1, 0), xs, js]
        down = work[np.minimum(ys + 1, H - 1), xs, js]
        du = _quadratic_offset(left, c, right)
        dv = _quadratic_offset(up_, c, down)
        u += du
        v += dv
        if f == 1:  # the score too: the parabolas' vertex value (c + slope * offset / 2 per axis)
            scores = scores + 0.25 * (right - left) * du + 0.25 * (down - up_) * dv
    if f > 1:  # upsampled pixel q <-> map cell (q + 0.5) / f - 0.5 (half-pixel aligned resize)
        u = (u + 0.5) / f - 0.5
        v = (v + 0.5) / f - 0.5
    offsets = np.concatenate([[0], np.cumsum(np.bincount(js, minlength=num_joints))]).astype(np.int64)
    return Peaks(
        joint=js.astype(np.int64),
        uv=np.stack([u, v], axis=1).astype(np.float32).reshape(-1, 2),
        score=scores.astype(np.float32),
        offsets=offsets,
    )


def _first_of_plateaus(mask: np.ndarray, radius: int) -> np.ndarray:
    """Keep one maximum per plateau: drop a candidate if another lies before it (raster order) in its window.

    Upsampling puts a cell centre between pixels, so a symmetric bump becomes a 2x2 plateau of equal
    maxima; without this each would start its own person.

    Args:
        mask: ``(H, W, C) bool`` local-maximum candidates.
        radius: Half-size of the NMS window.
    """
    if radius == 0 or not mask.any():
        return mask
    h, w = mask.shape[:2]
    padded = np.pad(mask, ((radius, radius), (radius, radius), (0, 0)))
    earlier = np.zeros_like(mask)
    for dy in range(-radius, 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx >= 0:
                break
            earlier |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return mask & ~earlier


def _quadratic_offset(minus: np.ndarray, centre: np.ndarray, plus: np.ndarray) -> np.ndarray:
    """Vertex of the parabola through (-1, minus), (0, centre), (1, plus), clipped to [-0.5, 0.5].

    Example:
        ``_quadratic_offset([0.5], [1.0], [0.5]) == [0.0]``; ``([0.0], [1.0], [1.0]) -> [0.5]``.
    """
    minus = np.asarray(minus, np.float32)
    centre = np.asarray(centre, np.float32)
    plus = np.asarray(plus, np.float32)
    denom = minus - 2.0 * centre + plus
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(denom < -1e-12, 0.5 * (minus - plus) / denom, 0.0)
    return np.clip(off, -0.5, 0.5).astype(np.float32)


def sample_bilinear(field: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear samples of a ``(h, w, C)`` field at ``(..., 2)`` positions (u, v) in cells.

    Positions outside the map are clamped to its border.

    Returns:
        ``(..., C) float32``.
    """
    h, w = field.shape[:2]
    u = np.clip(uv[..., 0], 0.0, w - 1.0)
    v = np.clip(uv[..., 1], 0.0, h - 1.0)
    u0 = np.floor(u).astype(np.int64)
    v0 = np.floor(v).astype(np.int64)
    u1 = np.minimum(u0 + 1, w - 1)
    v1 = np.minimum(v0 + 1, h - 1)
    du = (u - u0)[..., None].astype(np.float32)
    dv = (v - v0)[..., None].astype(np.float32)
    top = field[v0, u0] * (1 - du) + field[v0, u1] * du
    bottom = field[v1, u0] * (1 - du) + field[v1, u1] * du
    return (top * (1 - dv) + bottom * dv).astype(np.float32)


def score_limb(
    paf_xy: np.ndarray,
    uv_a: np.ndarray,
    uv_b: np.ndarray,
    map_height: float,
    params: DecodeParams = DecodeParams(),
) -> tuple[np.ndarray, np.ndarray]:
    """PAF line integral of every (a, b) candidate pair of one limb.

    Args:
        paf_xy: ``(h, w, 2) float32`` the limb's PAF (x then y component).
        uv_a: ``(A, 2) float32`` candidates of the limb's first joint, in cells.
        uv_b: ``(B, 2) float32`` candidates of its second joint.
        map_height: Map height ``h`` in cells (for OpenPose's distance prior).
        params: ``paf_samples``, ``paf_sample_threshold``, ``paf_min_fraction``.

    Returns:
        ``(A, B) float32`` score (mean projected PAF plus ``min(0, 0.5 h / length - 1)``) and
        ``(A, B) bool`` validity (enough agreeing samples, positive score, non-zero length).
    """
    na, nb = len(uv_a), len(uv_b)
    if na == 0 or nb == 0:
        return np.zeros((na, nb), np.float32), np.zeros((na, nb), bool)
    d = uv_b[None, :, :] - uv_a[:, None, :]  # (A, B, 2)
    norm = np.linalg.norm(d, axis=-1)  # (A, B)
    unit = d / np.maximum(norm, 1e-6)[..., None]
    t = np.linspace(0.0, 1.0, params.paf_samples, dtype=np.float32)
    pts = uv_a[:, None, None, :] + t[None, None, :, None] * d[:, :, None, :]  # (A, B, K, 2)
    vec = sample_bilinear(paf_xy, pts)  # (A, B, K, 2)
    proj = np.einsum("abkc,abc->abk", vec, unit)
    mean = proj.mean(axis=-1)
    prior = np.minimum(0.5 * map_height / np.maximum(norm, 1e-6) - 1.0, 0.0)
    score = (mean + prior).astype(np.float32)
    agree = (proj > params.paf_sample_threshold).mean(axis=-1)
    valid = (agree > params.paf_min_fraction) & (score > 0) & (norm > 1e-6)
    return score, valid


def match_limb(score: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """OpenPose's greedy bipartite matching: best valid pair first, each candidate used once.

    Args:
        score: ``(A, B) float32`` pair scores.
        valid: ``(A, B) bool`` pairs allowed.

    Returns:
        ``(M, 2) int64`` matched (a, b) indices, in the order they were taken (best first).

    Example:
        ``score = [[0.9, 0.8], [0.7, 0.1]]`` all valid -> ``[[0, 0], [1, 1]]``.
    """
    ia, ib = np.nonzero(valid)
    if ia.size == 0:
        return np.zeros((0, 2), np.int64)
    s = score[ia, ib]
    order = np.argsort(-s, kind="stable")
    used_a = np.zeros(score.shape[0], bool)
    used_b = np.zeros(score.shape[1], bool)
    out = []
    limit = min(score.shape)
    for k in order.tolist():
        a, b = int(ia[k]), int(ib[k])
        if used_a[a] or used_b[b]:
            continue
        used_a[a] = used_b[b] = True
        out.append((a, b))
        if len(out) == limit:
            break
    return np.asarray(out, np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class People:
    """Assembled people, as indices into a frame's :class:`Peaks`.

    Attributes:
        parts: ``(P, J) int64`` global peak index of each joint, -1 where not found.
        score: ``(P,) float32`` OpenPose's person score: sum of its peak scores and limb scores.
        count: ``(P,) int64`` joints found.
    """

    parts: np.ndarray
    score: np.ndarray
    count: np.ndarray


def assemble(
    peaks: Peaks,
    connections: list[tuple[np.ndarray, np.ndarray]],
    layout: PafLayout,
    params: DecodeParams = DecodeParams(),
) -> People:
    """Merge limb connections into people (OpenPose's subset assembly).

    Args:
        peaks: The frame's peaks.
        connections: Per limb of ``layout.pairs``: ``(M, 2) int64`` *global* peak indices (a, b)
            and ``(M,) float32`` their PAF scores.
        layout: Pairs, joint count and how many leading pairs may start a person.
        params: ``min_parts`` and ``min_mean_score`` for the final filter.

    Returns:
        :class:`People` sorted by score, descending.
    """
    num_joints = layout.num_joints
    rows: list[np.ndarray] = []  # each (J,) int64 of global peak ids
    scores: list[float] = []
    counts: list[int] = []
    pscore = peaks.score
    for k, ((ja, jb), (pairs, cscore)) in enumerate(zip(layout.pairs, connections, strict=True)):
        for (ga, gb), cs in zip(pairs.tolist(), cscore.tolist(), strict=True):
            found = [i for i, r in enumerate(rows) if r[ja] == ga or r[jb] == gb]
            if len(found) == 1:
                r = rows[found[0]]
                if r[jb] != gb:
                    r[jb] = gb
                    counts[found[0]] += 1
                    scores[found[0]] += float(pscore[gb]) + cs
            elif len(found) == 2:
                i1, i2 = found
                r1, r2 = rows[i1], rows[i2]
                if not np.any((r1 >= 0) & (r2 >= 0)):  # disjoint: merge the two partial people
                    rows[i1] = np.where(r1 >= 0, r1, r2)
                    counts[i1] += counts[i2]
                    scores[i1] += scores[i2] + cs
                    del rows[i2], scores[i2], counts[i2]
                else:  # overlapping: only attach b to the first
                    r1[jb] = gb
                    counts[i1] += 1
                    scores[i1] += float(pscore[gb]) + cs
            elif not found and k < layout.seed_pairs:
                r = np.full(num_joints, -1, np.int64)
                r[ja], r[jb] = ga, gb
                rows.append(r)
                counts.append(2)
                scores.append(float(pscore[ga]) + float(pscore[gb]) + cs)
    if not rows:
        return People(np.zeros((0, num_joints), np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64))
    parts = np.stack(rows)
    score = np.asarray(scores, np.float32)
    count = np.asarray(counts, np.int64)
    keep = (count >= params.min_parts) & (score / np.maximum(count, 1) >= params.min_mean_score)
    parts, score, count = parts[keep], score[keep], count[keep]
    order = np.argsort(-score, kind="stable")
    return People(parts[order], score[order], count[order])


def connect(
    peaks: Peaks, pafs: np.ndarray, layout: PafLayout, params: DecodeParams = DecodeParams()
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Score and match every limb of ``layout``.

    Args:
        peaks: The frame's peaks.
        pafs: ``(h, w, 2L) float32`` PAFs in ``layout.pairs`` order (x, y per limb).
        layout: Limb pairs.
        params: PAF scoring parameters.

    Returns:
        Per limb: ``(M, 2) int64`` global peak indices and ``(M,) float32`` scores.
    """
    out = []
    h = pafs.shape[0]
    for k, (ja, jb) in enumerate(layout.pairs):
        sa, sb = peaks.of(ja), peaks.of(jb)
        score, valid = score_limb(pafs[..., 2 * k : 2 * k + 2], peaks.uv[sa], peaks.uv[sb], h, params)
        m = match_limb(score, valid)
        glob = np.stack([m[:, 0] + sa.start, m[:, 1] + sb.start], axis=1) if m.size else m
        out.append((glob.astype(np.int64).reshape(-1, 2), score[m[:, 0], m[:, 1]].astype(np.float32)))
    return out


def decode(
    heatmaps: np.ndarray,
    pafs: np.ndarray,
    layout: PafLayout,
    image_hw: tuple[int, int],
    params: DecodeParams = DecodeParams(),
) -> FramePoses:
    """Decode one frame's heatmaps and PAFs into people in original-image pixels.

    Args:
        heatmaps: ``(h, w, J or J+1) float32`` (a trailing background channel is ignored).
        pafs: ``(h, w, 2L) float32`` in ``layout.pairs`` order.
        layout: Channel layout of the model.
        image_hw: Original image (height, width) in pixels.
        params: Decoder parameters.

    Returns:
        :class:`FramePoses` with ``(P, J, 3)`` (x, y, score), NaN/0 for joints not found, and a
        person score = OpenPose's person score divided by J (the mean over all joints, so people
        with more confident parts rank higher).
    """
    num_joints = layout.num_joints
    if heatmaps.ndim != 3 or heatmaps.shape[2] not in (num_joints, num_joints + 1):
        raise ExtractionError(
            f"heatmaps of shape {heatmaps.shape} do not fit layout {layout.skeleton!r} ({num_joints} joints)",
            hint="check the model's channel layout in tasks/keypoints/models.py",
        )
    if pafs.ndim != 3 or pafs.shape[2] != layout.num_pafs or pafs.shape[:2] != heatmaps.shape[:2]:
        raise ExtractionError(
            f"PAFs of shape {pafs.shape} do not fit heatmaps {heatmaps.shape} and {layout.num_pafs} PAF channels",
            hint="check the model's channel layout in tasks/keypoints/models.py",
        )
    peaks = find_peaks(heatmaps[..., :num_joints], params)
    people = assemble(peaks, connect(peaks, pafs, layout, params), layout, params)
    h, w = heatmaps.shape[:2]
    img_h, img_w = image_hw
    xy = np.empty_like(peaks.uv)
    xy[:, 0] = (peaks.uv[:, 0] + 0.5) * (img_w / w) - 0.5
    xy[:, 1] = (peaks.uv[:, 1] + 0.5) * (img_h / h) - 0.5
    num_people = people.parts.shape[0]
    kp = np.full((num_people, num_joints, 3), np.nan, np.float32)
    kp[..., 2] = 0.0
    found = people.parts >= 0
    idx = people.parts[found]
    kp[found, :2] = xy[idx]
    kp[found, 2] = peaks.score[idx]
    return FramePoses(keypoints=kp, person_scores=(people.score / num_joints).astype(np.float32))


def decode_raw(raw: RawOutput, layout: PafLayout, params: DecodeParams = DecodeParams()) -> FramePoses:
    """:func:`decode` of a backend's :class:`RawOutput`."""
    return decode(raw.heatmaps, raw.pafs, layout, raw.image_hw, params)

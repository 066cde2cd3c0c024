"""Training input: a validated version's crops and joints as ``tf.data`` batches (TensorFlow imported lazily).

What one epoch is:

1. :func:`epoch_order` fixes the order of the split's rows from ``(seed, epoch)`` alone: the shard
   order is shuffled, ``cycle_length`` shards are read side by side (round robin, one block of
   ``block_size`` consecutive rows at a time: the interleave over shards, done here in index space
   so it is deterministic), the blocks of each shard are shuffled, and a bounded shuffle buffer of
   ``buffer_size`` rows mixes the stream (as ``tf.data``'s ``shuffle``, but reproducible). Reads
   stay local (a batch touches a few blocks of a few shards) while the order is a permutation that
   differs per epoch.
2. Batch ``b`` is the pure function :func:`load_batch` of the plan and rows
   ``order[b*B:(b+1)*B]``: crops are read shard by shard through :class:`storage.reader.DatasetVersion`
   (RGB), each sample is augmented with parameters drawn from
   ``np.random.default_rng((seed, epoch, stable_hash(sample_id)))`` (:mod:`tasks.transforms.augment`),
   resized to the network input, and its targets encoded (:func:`encode_sample` is the same thing
   for one sample). So a batch's bytes depend on neither the worker count nor which worker made
   it, and a resumed epoch is identical.
3. ``tf.data`` maps batch indices to :func:`load_batch` on a thread pool (deterministic order), casts
   the pixels to float32 in the graph (uint8 crosses the Python boundary: 4× fewer bytes) and
   prefetches.

Element layout (what models and losses rely on), ``B`` = batch, ``(H, W)`` = ``spec.input_wh``
reversed, ``J`` joints, ``h, w = H / stride, W / stride``:

=========  =============================  ===============================================
kind       x                              y
=========  =============================  ===============================================
heatmaps   ``(B, H, W, 3) float32`` RGB   ``(B, h, w, 2J) float32``: J Gaussians, then each
           0..255 (models normalise)      joint's weight broadcast over its channel
coords     same                           ``(B, J, 3) float32``: ``x / W``, ``y / H``, weight
                                          (0 and coordinates 0 for unlabelled/outside joints)
label      same                           ``(B,) int32`` index into ``spec.classes``
joints     ``(B, J*3) float32``           ``(B,) int32`` (x from :func:`normalise_pose` of
           (normalised pose)              the augmented joints; no pixels are read)
=========  =============================  ===============================================

``label``/``joints`` with ``class_weights`` yield ``(x, y, sample_weight)`` (``(B,) float32``).
Rows whose label is missing or not in ``spec.classes`` are not part of the split for those kinds
(:func:`plan_split` counts them: ``Plan.skipped``).

Threads or processes: measured with ``bench/train_input.py --parallelism`` on this 2-core VM while
three other engineers' test suites ran on it (load average 4-9, so absolute figures are ~5x below an
idle machine's and the spreads are wide; read the ratios). Synthetic COCO version, 1,508 train crops
256×192 → 256×192 input, 17 heatmaps at stride 4, batch 32, full augmentation, HDF5 shards of 256
rows; samples/s in steady state (3 batches skipped per epoch), median (min..max) of 3 interleaved
repeats, two separate runs; "epoch" is the whole epoch's wall time including start-up:

    ==============================================  ======================  ======================
    variant                                          run 1                   run 2
    ==============================================  ======================  ======================
    tf.data map over numpy_function, 1 thread        148 (145..180)          -
    tf.data map over numpy_function, 2 threads       109 (73..151)           151 (148..217), 10.3 s
    tf.data map over numpy_function, 4 threads       182 (147..320)          181 (143..211), 8.6 s
    2 spawned processes -> shared memory            208 (168..233)          124 (44..141), 19.1 s
    keras.utils.PyDataset, workers=2, processes      52 (51..55)             -
    ==============================================  ======================  ======================

Chosen: threads (``backend="threads"``, ``workers=4``). In steady state the process producer is at
best level with threads (208 vs 182 in run 1, 124 vs 181 in run 2: within the noise), but it pays a
spawn (fresh interpreters importing numpy/OpenCV/h5py/pyarrow and unpickling the plan) every epoch
- the whole epoch took 19 s against 9-10 s - and holds a second copy of the plan and libraries per
worker; forking instead is unsafe once TensorFlow's threads run. Keras' ``PyDataset`` forks with
TensorFlow loaded and pickles every batch back through a pipe: 3.5x slower. Threads suffice as the
GIL is held for only a small part of a sample (the per-sample parameter draws and small numpy ops);
OpenCV's warp and numpy's heatmap products release it, and the HDF5 read is one
``read_direct_chunk`` per sample (~30 µs of ~0.6 ms on an idle core). h5py's lock therefore
serialises little, but it must be held: h5py 3.14's ``read_direct_chunk`` does not take it by
itself (h5py PR #2764 fixed that after 3.14; TF 2.21 needs h5py<3.15), and two threads reading at
once fail inside libhdf5 (:class:`VersionSource` holds it).
``backend="processes"`` stays available (:func:`process_batches`); its output is byte-identical.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from schemas.errors import ConfigError, TaskDataError, TrainingError
from schemas.skeletons import convert_keypoints, get_skeleton
from tasks.common import stable_hash
from tasks.transforms.augment import (
    IDENTITY,
    AugmentConfig,
    AugmentParams,
    apply_image,
    apply_keypoints,
    augment_affine,
    make_params,
)
from tasks.transforms.heatmaps import gaussian_heatmaps, heatmap_shape, normalise_pose

if TYPE_CHECKING:
    import tensorflow as tf

    from storage.reader import DatasetVersion

Kind = Literal["heatmaps", "coords", "label", "joints"]
KINDS: tuple[str, ...] = ("heatmaps", "coords", "label", "joints")


@dataclass(frozen=True)
class TargetSpec:
    """What a task feeds its model.

    Attributes:
        kind: ``"heatmaps"``, ``"coords"``, ``"label"`` or ``"joints"`` (see the module docstring).
        input_wh: Network input ``(W, H)``; crops are resized to it (by the augmentation affine).
        convert_to: Skeleton the record joints are converted to (``"flic7"`` from ``"flic29"``), or None.
        stride: Input pixels per heatmap cell (``heatmaps``).
        sigma: Gaussian sigma in heatmap cells (``heatmaps``).
        label_column: Record column holding the class (``label``/``joints``).
        classes: Class names; the class index is the position here.
        class_weights: Per-class loss weights (same length as ``classes``), or None.
    """

    kind: Kind
    input_wh: tuple[int, int]
    convert_to: str | None = None
    stride: int = 4
    sigma: float = 2.0
    label_column: str | None = None
    classes: tuple[str, ...] = ()
    class_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown target kind {self.kind!r}", hint=f"kinds: {', '.join(KINDS)}")
        if len(self.input_wh) != 2 or min(self.input_wh) < 8:
            raise ConfigError(f"input size {self.input_wh} is invalid", hint="give (W, H), each at least 8")
        if self.kind == "heatmaps":
            heatmap_shape(self.input_wh, self.stride)
        if self.kind in ("label", "joints"):
            if not self.label_column or not self.classes:
                raise ConfigError(f"target kind {self.kind!r} needs label_column and classes", hint="set both in the task's target_spec")
            if len(set(self.classes)) != len(self.classes):
                raise ConfigError("classes must be unique")
        if self.class_weights is not None and len(self.class_weights) != len(self.classes):
            raise ConfigError(f"{len(self.class_weights)} class weights for {len(self.classes)} classes")

    @property
    def needs_pixels(self) -> bool:
        """Whether the model input is the image (every kind but ``joints``)."""
        return self.kind != "joints"


# --- order ----------------------------------------------------------------------------------------


def epoch_order(
    shard_rows: Sequence[int],
    seed: int,
    epoch: int,
    block_size: int = 64,
    buffer_size: int = 256,
    shuffle: bool = True,
    cycle_length: int = 4,
) -> np.ndarray:
    """The order of one epoch's rows: a permutation of ``range(sum(shard_rows))``.

    Rows are numbered in shard order (shard 0's rows first), as in ``DatasetVersion.records``.

    Args:
        shard_rows: Rows per shard, in shard index order.
        seed: Run seed (>= 0).
        epoch: Epoch number (>= 0); every epoch gets a different order.
        block_size: Consecutive rows of a shard kept together before the buffer.
        buffer_size: Size of the bounded shuffle buffer (1: no buffer mixing).
        shuffle: False gives ``arange`` (evaluation order).
        cycle_length: Shards read side by side (the interleave).

    Returns:
        ``(N,) int64``; identical for identical arguments, whatever the process.

    Example:
        >>> epoch_order([3, 2], seed=0, epoch=0, shuffle=False).tolist()
        [0, 1, 2, 3, 4]
    """
    rows = np.asarray(list(shard_rows), dtype=np.int64)
    total = int(rows.sum())
    if not shuffle:
        return np.arange(total, dtype=np.int64)
    if seed < 0 or epoch < 0 or block_size < 1 or buffer_size < 1 or cycle_length < 1:
        raise ConfigError("epoch_order needs seed, epoch >= 0 and block_size, buffer_size, cycle_length >= 1")
    rng = np.random.default_rng((int(seed), int(epoch)))
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]])
    shard_order = rng.permutation(len(rows))
    # Each shard: its blocks in a shuffled order, each block (start, stop) in global row numbers.
    queues: list[list[tuple[int, int]]] = []
    for s in shard_order.tolist():
        n_blocks = -(-int(rows[s]) // block_size)
        blocks = [(int(starts[s]) + b * block_size, int(starts[s]) + min((b + 1) * block_size, int(rows[s]))) for b in range(n_blocks)]
        if blocks:
            queues.append([blocks[i] for i in rng.permutation(n_blocks).tolist()])
    # Interleave: cycle_length shards in turn, one block each; an exhausted shard's slot goes to the next shard.
    stream: list[np.ndarray] = []
    active = queues[:cycle_length]
    waiting = queues[cycle_length:][::-1]
    while active:
        nxt: list[list[tuple[int, int]]] = []
        for q in active:
            a, b = q.pop(0)
            stream.append(np.arange(a, b, dtype=np.int64))
            if q:
                nxt.append(q)
            elif waiting:
                nxt.append(waiting.pop())
        active = nxt
    flat = np.concatenate(stream) if stream else np.zeros(0, np.int64)
    # Bounded shuffle buffer (tf.data's algorithm, with draws taken up front).
    out = np.empty(total, np.int64)
    buf = flat[:buffer_size].tolist()
    draws = rng.random(total)
    k = 0
    for incoming in flat[buffer_size:].tolist():
        i = int(draws[k] * len(buf))
        out[k] = buf[i]
        buf[i] = incoming
        k += 1
    while buf:
        i = int(draws[k] * len(buf))
        out[k] = buf[i]
        buf[i] = buf[-1]
        buf.pop()
        k += 1
    return out


def sample_rng(seed: int, epoch: int, sample_id: str) -> np.random.Generator:
    """The generator of one sample's augmentation: ``default_rng((seed, epoch, stable_hash(sample_id)))``."""
    return np.random.default_rng((int(seed), int(epoch), stable_hash(sample_id)))


# --- one sample -----------------------------------------------------------------------------------


def encode_sample(
    crop_rgb: np.ndarray | None,
    kp_crop_xy: np.ndarray,
    visibility: np.ndarray,
    label: int | str | None,
    spec: TargetSpec,
    params: AugmentParams | None,
    flip_permutation: np.ndarray,
    crop_wh: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One sample's model input and target (what a dataset element holds for it, unbatched).

    Args:
        crop_rgb: ``(Hc, Wc, 3) uint8`` RGB crop (None for kind ``joints``).
        kp_crop_xy: ``(J, 2) float32`` joints in crop pixels (already converted to the target skeleton).
        visibility: ``(J,) int8``.
        label: Class index or class name (``label``/``joints``), else ignored.
        spec: The target spec.
        params: Augmentation draws, or None for none.
        flip_permutation: ``(J,)`` of the target skeleton.
        crop_wh: Crop ``(W, H)`` when ``crop_rgb`` is None (kind ``joints``); default ``spec.input_wh``.

    Returns:
        ``x``: ``(H, W, 3) float32`` RGB 0..255 (``joints``: ``(J*3,) float32``), and ``y``:
        ``(h, w, 2J) float32`` / ``(J, 3) float32`` / ``() int32`` by kind.

    Raises:
        TaskDataError: A label that is not one of ``spec.classes``.
    """
    p = params or IDENTITY
    if crop_rgb is not None:
        crop_wh = (crop_rgb.shape[1], crop_rgb.shape[0])
    in_wh = crop_wh or spec.input_wh
    out_wh = spec.input_wh if spec.needs_pixels else in_wh
    affine = augment_affine(p, in_wh, out_wh)
    kp, vis = apply_keypoints(kp_crop_xy, visibility, affine, p.flip, flip_permutation, out_wh)
    if spec.kind == "joints":
        return normalise_pose(kp[None], vis[None])[0].reshape(-1), np.int32(_class_index(label, spec))
    if crop_rgb is None:
        raise ConfigError(f"target kind {spec.kind!r} needs the crop pixels")
    x = apply_image(crop_rgb, affine, out_wh).astype(np.float32)
    y = _target(kp, vis, spec) if spec.kind != "label" else np.int32(_class_index(label, spec))
    return x, y


def _class_index(label: int | str | None, spec: TargetSpec) -> int:
    if isinstance(label, (int, np.integer)):
        return int(label)
    if label in spec.classes:
        return spec.classes.index(label)
    raise TaskDataError(f"label {label!r} is not one of the {len(spec.classes)} classes", hint="the task's classes come from the train split")


def _target(kp: np.ndarray, vis: np.ndarray, spec: TargetSpec, out: np.ndarray | None = None) -> np.ndarray:
    """``heatmaps``/``coords`` target of augmented joints in input pixels (written into ``out`` when given)."""
    j = len(kp)
    if spec.kind == "heatmaps":
        h, w = heatmap_shape(spec.input_wh, spec.stride)
        if out is None:
            out = np.empty((h, w, 2 * j), np.float32)
        _, weights = gaussian_heatmaps(kp, vis, spec.input_wh, spec.stride, spec.sigma, out=out[:, :, :j])
        out[:, :, j:] = weights
        return out
    if out is None:
        out = np.empty((j, 3), np.float32)
    known = (vis > 0) & np.isfinite(kp).all(axis=1)
    out[:, 0] = np.where(known, kp[:, 0] / spec.input_wh[0], 0.0)
    out[:, 1] = np.where(known, kp[:, 1] / spec.input_wh[1], 0.0)
    out[:, 2] = known
    return out


# --- a split, planned once ------------------------------------------------------------------------


class CropSource(Protocol):
    """Where a plan's pixels come from: the version's HDF5 shards, or (bench) an in-RAM array."""

    def read_into(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Write the RGB crops of split rows ``rows`` (sorted ascending) into ``out`` ``(n, H, W, 3) uint8``."""
        ...


class VersionSource:
    """Crops read through the reader, shard by shard (HDF5 handles stay open per process)."""

    def __init__(self, version: DatasetVersion, split: str) -> None:
        self.version = version
        self.shards = version.shards(split)
        self.bounds = np.cumsum([0] + [s.rows for s in self.shards])
        self.pixel_rows = version.records(split, ["pixels_row"]).column("pixels_row").to_numpy().astype(np.int64)

    def read_into(self, rows: np.ndarray, out: np.ndarray) -> None:
        # h5py 3.14's DatasetID.read_direct_chunk does not take h5py's global lock (phil) like its other
        # calls: two threads reading at once fail inside libhdf5 ("Can't read unprocessed chunk data (no
        # VOL object wrap context?)", reproduced here; fixed upstream by h5py PR #2764, after 3.14, and
        # TF 2.21 needs h5py<3.15). Hold that lock, which also orders us against any other thread's
        # h5py call (a Keras checkpoint being written, say).
        from h5py._objects import phil

        which = np.searchsorted(self.bounds, rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(which)) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(rows)], strict=True):
            with phil:
                self.version.read_crops(self.shards[int(which[a])], self.pixel_rows[rows[a:b]], out=out[a:b])


class ArraySource:
    """Crops from an ``(N, H, W, 3) uint8`` RGB array in RAM (the notebooks' way; for the bench)."""

    def __init__(self, crops: np.ndarray) -> None:
        self.crops = crops

    def read_into(self, rows: np.ndarray, out: np.ndarray) -> None:
        np.take(self.crops, rows, axis=0, out=out)


@dataclass
class Plan:
    """Everything :func:`load_batch` needs about a split (records only: pixels stay in the shards).

    Attributes:
        split: Split name.
        spec: Target spec.
        sample_ids: ``(N,)`` ids, in record order (skipped rows removed).
        rows: ``(N,) int64`` the rows' positions in ``version.records(split)``.
        shard_rows: Kept rows per shard (for :func:`epoch_order`).
        keypoints: ``(N, J, 2) float32`` crop-pixel joints in the target skeleton.
        visibility: ``(N, J) int8``.
        labels: ``(N,) int32`` class indices (label kinds) or None.
        crop_wh: Stored crop ``(W, H)``.
        flip_permutation: ``(J,)`` of the target skeleton.
        skipped: Rows left out (label kinds: label missing or not in ``spec.classes``).
        source: Pixel source (None for kind ``joints``).
    """

    split: str
    spec: TargetSpec
    sample_ids: list[str]
    rows: np.ndarray
    shard_rows: list[int]
    keypoints: np.ndarray
    visibility: np.ndarray
    labels: np.ndarray | None
    crop_wh: tuple[int, int]
    flip_permutation: np.ndarray
    skipped: int = 0
    source: CropSource | None = None
    keys: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.keys = np.array([stable_hash(s) for s in self.sample_ids], dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.sample_ids)


def plan_split(version: DatasetVersion, split: str, spec: TargetSpec, source: CropSource | None = None) -> Plan:
    """Read a split's records once: ids, joints (converted to ``spec.convert_to``), labels, where the pixels are.

    Raises:
        TaskDataError: The records have no single skeleton, no crops where the kind needs them, or
            lack ``spec.label_column``.
    """
    skeleton = version.skeleton
    if skeleton is None:
        raise TaskDataError(f"{version.dataset}@{version.version} records have no single skeleton", hint="train on a pose dataset version")
    ids = [str(s) for s in version.records(split, ["sample_id"]).column("sample_id").to_pylist()]
    kp, vis = version.keypoints(split, "crop"), version.visibility(split)
    target = skeleton
    if spec.convert_to and spec.convert_to != skeleton:
        kp, vis = convert_keypoints(kp, vis, skeleton, spec.convert_to)
        target = spec.convert_to
    keep = np.ones(len(ids), bool)
    labels = None
    if spec.kind in ("label", "joints"):
        try:
            raw = version.labels(split, spec.label_column or "")
        except Exception as exc:  # the reader's SchemaError names the columns
            raise TaskDataError(f"{version.dataset}@{version.version} has no label column {spec.label_column!r}: {exc}") from exc
        index = {c: i for i, c in enumerate(spec.classes)}
        labels_all = np.array([index.get(str(v), -1) if v is not None else -1 for v in raw], dtype=np.int32)
        keep = labels_all >= 0
        labels = labels_all[keep]
    rows = np.flatnonzero(keep).astype(np.int64)
    bounds = np.cumsum([0] + [s.rows for s in version.shards(split)])
    shard_rows = [int(keep[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if spec.needs_pixels:
        h, w, _ = version.crop_shape(split) if len(ids) else (spec.input_wh[1], spec.input_wh[0], 3)
        if source is None:
            source = VersionSource(version, split)
    else:
        w, h = (int(v) for v in _crop_wh_of_records(version, split, spec))
    return Plan(
        split=split,
        spec=spec,
        sample_ids=[ids[i] for i in rows.tolist()],
        rows=rows,
        shard_rows=shard_rows,
        keypoints=np.ascontiguousarray(kp[rows], dtype=np.float32),
        visibility=np.ascontiguousarray(vis[rows], dtype=np.int8),
        labels=labels,
        crop_wh=(int(w), int(h)),
        flip_permutation=get_skeleton(target).flip_permutation,
        skipped=int((~keep).sum()),
        source=source if spec.needs_pixels else None,
    )


def _crop_wh_of_records(version: DatasetVersion, split: str, spec: TargetSpec) -> tuple[int, int]:
    """Crop size from the records (kind ``joints`` reads no pixels); ``spec.input_wh`` if the split is empty."""
    t = version.records(split, ["crop_width_px", "crop_height_px"])
    if not t.num_rows:
        return spec.input_wh
    return int(t.column("crop_width_px")[0].as_py()), int(t.column("crop_height_px")[0].as_py())


# --- one batch ------------------------------------------------------------------------------------

_local = threading.local()


def _staging(n: int, crop_wh: tuple[int, int]) -> np.ndarray:
    """A per-thread crop buffer reused across batches (fresh pages are expensive on these VMs)."""
    shape = (n, crop_wh[1], crop_wh[0], 3)
    buf = getattr(_local, "buf", None)
    if buf is None or buf.shape[1:] != shape[1:] or len(buf) < n:
        buf = _local.buf = np.empty(shape, np.uint8)
    return buf[:n]


def batch_layout(spec: TargetSpec, num_joints: int) -> tuple[tuple[tuple[int, ...], Any], tuple[tuple[int, ...], Any]]:
    """Per-sample ``(shape, dtype)`` of the raw ``x`` and ``y`` :func:`load_batch` returns (``x`` uint8 for pixels)."""
    w, h = spec.input_wh
    if spec.kind == "joints":
        x = ((num_joints * 3,), np.float32)
    else:
        x = ((h, w, 3), np.uint8)
    if spec.kind == "heatmaps":
        hh, ww = heatmap_shape(spec.input_wh, spec.stride)
        y: tuple[tuple[int, ...], Any] = ((hh, ww, 2 * num_joints), np.float32)
    elif spec.kind == "coords":
        y = ((num_joints, 3), np.float32)
    else:
        y = ((), np.int32)
    return x, y


def load_batch(
    plan: Plan,
    rows: np.ndarray,
    seed: int,
    epoch: int,
    augment: AugmentConfig | None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One batch from plan positions ``rows`` (in batch order): raw ``x`` (uint8 pixels) and ``y``.

    Equal to stacking :func:`encode_sample` over the rows (pixels as uint8 before the float cast).
    ``out``: ``(x, y)`` buffers of ``len(rows)`` samples (:func:`batch_layout`) to fill instead of new arrays.
    """
    spec = plan.spec
    n = len(rows)
    j = plan.keypoints.shape[1]
    (xs, xt), (ys, yt) = batch_layout(spec, j)
    if out is not None:
        x, y = out
    else:
        x = np.empty((n, *xs), xt)
        y = np.empty((n, *ys), yt)
    crops = None
    order = np.argsort(rows, kind="stable")
    if spec.needs_pixels and n:
        if plan.source is None:
            raise ConfigError(f"target kind {spec.kind!r} needs a pixel source", hint="plan the split with plan_split")
        crops = _staging(n, plan.crop_wh)
        plan.source.read_into(plan.rows[rows[order]], crops)
    in_wh = plan.crop_wh
    out_wh = spec.input_wh if spec.needs_pixels else in_wh
    for k, i in enumerate(order.tolist()):
        r = int(rows[i])
        p = make_params(np.random.default_rng((int(seed), int(epoch), int(plan.keys[r]))), augment) if augment is not None else IDENTITY
        affine = augment_affine(p, in_wh, out_wh)
        kp, vis = apply_keypoints(plan.keypoints[r], plan.visibility[r], affine, p.flip, plan.flip_permutation, out_wh)
        if spec.kind == "joints":
            x[i] = normalise_pose(kp[None], vis[None])[0].reshape(-1)
        else:
            apply_image(crops[k], affine, out_wh, out=x[i])  # type: ignore[index]
        if spec.kind in ("label", "joints"):
            y[i] = plan.labels[r]  # type: ignore[index]
        else:
            _target(kp, vis, spec, out=y[i])
    return x, y


def num_batches(n: int, batch_size: int, drop_remainder: bool) -> int:
    """Batches per epoch."""
    return n // batch_size if drop_remainder else -(-n // batch_size)


# --- worker processes -----------------------------------------------------------------------------


def _slot_views(buf: memoryview | Any, slot: int, n: int, batch_size: int, layout: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` views of ``n`` samples in slot ``slot`` of a shared buffer of batch-sized slots."""
    (xs, xt), (ys, yt) = layout
    xb = batch_size * int(np.prod(xs, dtype=np.int64)) * np.dtype(xt).itemsize
    yb = batch_size * int(np.prod(ys, dtype=np.int64)) * np.dtype(yt).itemsize
    base = slot * (xb + yb)
    x = np.ndarray((batch_size, *xs), xt, buffer=buf, offset=base)[:n]
    y = np.ndarray((batch_size, *ys), yt, buffer=buf, offset=base + xb)[:n]
    return x, y


def _slot_bytes(batch_size: int, layout: Any) -> int:
    (xs, xt), (ys, yt) = layout
    return batch_size * (int(np.prod(xs, dtype=np.int64)) * np.dtype(xt).itemsize + int(np.prod(ys, dtype=np.int64)) * np.dtype(yt).itemsize)


def _worker_main(plan: Plan, order: np.ndarray, batch_size: int, seed: int, epoch: int, augment: AugmentConfig | None, shm_name: str, tasks: Any, results: Any) -> None:
    """A producer process: make the batches it is handed straight into their shared-memory slot."""
    from multiprocessing import shared_memory

    import cv2

    cv2.setNumThreads(1)
    shm = shared_memory.SharedMemory(shm_name)  # (spawned children share the parent's resource tracker: it unlinks)
    layout = batch_layout(plan.spec, plan.keypoints.shape[1])
    try:
        while (item := tasks.get()) is not None:
            b, slot = item
            rows = order[b * batch_size : (b + 1) * batch_size]
            try:
                load_batch(plan, rows, seed, epoch, augment, out=_slot_views(shm.buf, slot, len(rows), batch_size, layout))
            except Exception as exc:  # handed to the parent, which raises it
                results.put((b, slot, exc))
                continue
            results.put((b, slot, None))
    finally:
        shm.close()


def process_batches(
    plan: Plan, order: np.ndarray, batch_size: int, n_batches: int, seed: int, epoch: int, augment: AugmentConfig | None, workers: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches made by ``workers`` spawned processes into ``2 * workers`` shared-memory slots, yielded in order.

    Each yielded pair is a copy (the slot is reused at once). Workers import no TensorFlow.
    """
    import multiprocessing as mp
    from multiprocessing import shared_memory

    layout = batch_layout(plan.spec, plan.keypoints.shape[1])
    slots = max(1, min(2 * workers, n_batches))
    ctx = mp.get_context("spawn")
    shm = shared_memory.SharedMemory(create=True, size=max(1, slots * _slot_bytes(batch_size, layout)))
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=_worker_main, args=(plan, order, batch_size, seed, epoch, augment, shm.name, tasks, results), daemon=True)
        for _ in range(workers)
    ]
    try:
        for p in procs:
            p.start()
        for b in range(slots):
            tasks.put((b, b))
        sent, done = slots, {}
        for b in range(n_batches):
            while b not in done:
                try:
                    bb, slot, err = results.get(timeout=5.0)
                except Exception:  # queue.Empty: check the workers are alive
                    if not all(p.is_alive() for p in procs):
                        raise TrainingError("an input worker process died", hint="see its traceback above; out of memory?") from None
                    continue
                if err is not None:
                    raise err
                done[bb] = slot
            slot = done.pop(b)
            n = len(order[b * batch_size : (b + 1) * batch_size])
            x, y = (a.copy() for a in _slot_views(shm.buf, slot, n, batch_size, layout))
            if sent < n_batches:
                tasks.put((sent, slot))
                sent += 1
            yield x, y
    finally:
        for _ in procs:
            tasks.put(None)
        for p in procs:
            if p.pid is None:  # never started
                continue
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
        shm.close()
        shm.unlink()


# --- tf.data --------------------------------------------------------------------------------------


def make_dataset(
    version: DatasetVersion,
    split: str,
    spec: TargetSpec,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    augment: AugmentConfig | None,
    shuffle: bool,
    drop_remainder: bool = False,
    workers: int = 4,
    backend: Literal["threads", "processes"] = "threads",
    block_size: int = 64,
    buffer_size: int = 256,
    plan: Plan | None = None,
) -> tf.data.Dataset:
    """One epoch of ``split`` as a ``tf.data.Dataset`` of batches (layout in the module docstring).

    Args:
        version: An opened version (:func:`storage.reader.open_version`).
        split: Split name.
        spec: Target spec.
        batch_size: Samples per batch.
        seed: Run seed (>= 0).
        epoch: Epoch number (>= 0): order and augmentation are functions of ``(seed, epoch)``.
        augment: Augmentation ranges, or None (evaluation).
        shuffle: Shuffle (see :func:`epoch_order`), or keep record order.
        drop_remainder: Drop the last, short batch.
        workers: Batches made in parallel; the output does not depend on it.
        backend: ``"threads"`` (a parallel ``tf.data`` map over :func:`load_batch`) or
            ``"processes"`` (:func:`process_batches` behind ``from_generator``); see the module docstring.
        block_size: See :func:`epoch_order`.
        buffer_size: See :func:`epoch_order`.
        plan: A :func:`plan_split` result to reuse across epochs (default: planned here).

    Returns:
        A dataset with known cardinality (``num_batches``), elements ``(x, y)`` or
        ``(x, y, sample_weight)``.
    """
    import tensorflow as tf

    if batch_size < 1 or workers < 1:
        raise ConfigError(f"batch_size ({batch_size}) and workers ({workers}) must be >= 1")
    plan = plan if plan is not None else plan_split(version, split, spec)
    order = epoch_order(plan.shard_rows, seed, epoch, block_size, buffer_size, shuffle)
    n_batches = num_batches(len(order), batch_size, drop_remainder)
    j = plan.keypoints.shape[1]
    (xs, xt), (ys, yt) = batch_layout(spec, j)
    weights = np.asarray(spec.class_weights, np.float32) if spec.class_weights is not None and spec.kind in ("label", "joints") else None

    def produce(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = int(b)
        return load_batch(plan, order[b * batch_size : (b + 1) * batch_size], seed, epoch, augment)

    dim = batch_size if drop_remainder or len(order) % batch_size == 0 else None
    tx, ty = tf.as_dtype(xt), tf.as_dtype(yt)

    def call(b: tf.Tensor) -> tuple[tf.Tensor, ...]:
        x, y = tf.numpy_function(produce, [b], (tx, ty), stateful=False)
        x.set_shape((dim, *xs))
        y.set_shape((dim, *ys))
        if x.dtype == tf.uint8:
            x = tf.cast(x, tf.float32)
        if weights is not None:
            return x, y, tf.gather(tf.constant(weights), y)
        return x, y

    if backend == "processes":

        def gen() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            yield from process_batches(plan, order, batch_size, n_batches, seed, epoch, augment, workers)

        sig = (tf.TensorSpec((dim, *xs), tx), tf.TensorSpec((dim, *ys), ty))
        raw = tf.data.Dataset.from_generator(gen, output_signature=sig).apply(tf.data.experimental.assert_cardinality(n_batches))

        def finish(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, ...]:
            if x.dtype == tf.uint8:
                x = tf.cast(x, tf.float32)
            if weights is not None:
                return x, y, tf.gather(tf.constant(weights), y)
            return x, y

        ds = raw.map(finish)
    elif backend == "threads":
        ds = tf.data.Dataset.range(n_batches).map(call, num_parallel_calls=workers, deterministic=True)
    else:
        raise ConfigError(f"unknown input backend {backend!r}", hint="use 'threads' or 'processes'")
    options = tf.data.Options()
    options.deterministic = True
    options.threading.private_threadpool_size = max(workers, 1)
    return ds.with_options(options).prefetch(2)


def iterate_numpy(
    version: DatasetVersion, split: str, spec: TargetSpec, batch_size: int, plan: Plan | None = None
) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """Evaluation batches in record order, no augmentation, no TensorFlow.

    Yields:
        ``(sample_ids, x, y)`` with ``x`` float32 and ``y`` as in the dataset layout.
    """
    plan = plan if plan is not None else plan_split(version, split, spec)
    for b in range(num_batches(len(plan), batch_size, False)):
        rows = np.arange(b * batch_size, min((b + 1) * batch_size, len(plan)), dtype=np.int64)
        x, y = load_batch(plan, rows, 0, 0, None)
        yield [plan.sample_ids[i] for i in rows.tolist()], x.astype(np.float32, copy=False), y


__all__ = [
    "ArraySource",
    "CropSource",
    "Plan",
    "TargetSpec",
    "VersionSource",
    "batch_layout",
    "encode_sample",
    "epoch_order",
    "iterate_numpy",
    "load_batch",
    "make_dataset",
    "num_batches",
    "plan_split",
    "process_batches",
    "sample_rng",
]

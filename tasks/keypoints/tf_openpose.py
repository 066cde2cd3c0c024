"""Backend ``tf-openpose``: tf-pose-estimation's OpenPose-style frozen TF1 graphs, run in TensorFlow 2.

The only module of posepipe that imports TensorFlow (inside functions: importing this module is
cheap; TF is loaded when a backend is created, i.e. in extraction workers only).

The frozen GraphDef is imported with ``tf.compat.v1.wrap_function(import_graph_def)`` and pruned to
``image -> Openpose/concat_stage7`` (outputs bit-identical to tf-pose-estimation's own TF1 session).
Input: the frame resized to the model's input size (bicubic, as tf-pose-estimation does, or area
for downscaling when asked), BGR float 0..255, no mean or scaling.

Batch-exact batching. tf-pose's MobileNet graphs froze 39 of their 99 ``FusedBatchNorm`` nodes
in training mode (``is_training=True``): they normalise with the statistics of the whole batch, so
batch 8 changes every frame's output (max difference ~0.96). At batch 1 those statistics are the
frame's own per-channel mean and biased variance over H and W: the layer is *instance*
normalisation. :func:`per_sample_norm_graph` rewrites each such node into exactly that for a batch
of N: the batch is split into its samples, the node's own kernel runs on each, and the results are
concatenated, so batch N gives every frame its batch-1 output, bit for bit. A rewritten graph runs
one batch size; a backend imports one per power of two it is sent and runs a batch of any size as
those pieces (:func:`batch_pieces`: 13 frames run as 8 + 4 + 1). The rewrite is the default
(option ``per_sample_norm``); it is cached per model sha256 and batch size in this process and on
disk (:func:`cached_per_sample_graph`), and recorded as the backend's ``graph_revision`` in every
resume key. Measured on the real frames of the test clip: batch 8 and a ragged last batch give
every frame exactly (max difference 0.0) the frozen graph's batch-1 output.

Batch invariance is still *measured*, not assumed (:mod:`tasks.keypoints.batching`): a few different
probe frames run one by one and then as one batch are compared, once per model sha256 and input
size. A graph that fails it (the original graph with ``per_sample_norm=False``, or another model)
keeps ``max_batch`` 1, and asking it for a batch names the nodes that depend on the batch
(:func:`batch_dependent_nodes`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from schemas.errors import ConfigError, ExtractionError, ModelError
from storage.fs import file_sha256
from tasks.keypoints.api import inference_threads
from tasks.keypoints.batching import cached_batch_invariance, cached_fastest_batch
from tasks.keypoints.models import ModelEntry, PafLayout
from tasks.keypoints.openpose_net import OpenPoseNet, channel_indices, check_input_wh
from tasks.keypoints.paf import DecodeParams

log = logging.getLogger(__name__)

_INTERPOLATIONS = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


def configure_threads(intra_op: int | None, inter_op: int | None) -> None:
    """Set TensorFlow's thread pools (only possible before TF's runtime starts; later calls warn)."""
    import tensorflow as tf

    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError as exc:  # TF already initialised in this process: keep its settings
        log.warning("TensorFlow threads already configured, keeping them (%s)", exc)


PER_SAMPLE_NORM = "per-sample-norm-v3"
"""``graph_revision`` of a graph whose training-mode batch norms were rewritten per sample."""

_REDUCTIONS = {"Mean", "Sum", "Max", "Min", "Prod", "All", "Any"}
_REWRITE_CACHE: dict[str, bytes] = {}
_REWRITE_LOCK = threading.Lock()


def read_graph_def(path: Path) -> Any:
    """Parse a frozen TF1 ``GraphDef`` file.

    Raises:
        ModelError: If the file is not a GraphDef.
    """
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(path).read_bytes())
    except Exception as exc:  # protobuf raises its own DecodeError
        raise ModelError(f"{path} is not a frozen TensorFlow GraphDef: {exc}", hint="pass the graph_opt.pb file") from exc
    return graph_def


_PER_SAMPLE = "/per_sample"
"""Name scope of the nodes :func:`per_sample_norm_graph` adds (``{node}/per_sample/norm{k}``...)."""


def _batch_statistics(n: Any) -> bool:
    """A training-mode ``FusedBatchNorm*`` over the batch (not one :func:`per_sample_norm_graph` made)."""
    return n.op.startswith("FusedBatchNorm") and n.attr["is_training"].b and not n.name.rpartition("/")[0].endswith(_PER_SAMPLE)


def training_mode_batch_norms(graph_def: Any) -> list[str]:
    """Names of the ``FusedBatchNorm*`` nodes frozen with ``is_training=True`` (batch statistics)."""
    return [n.name for n in graph_def.node if _batch_statistics(n)]


def batch_dependent_nodes(graph_def: Any) -> list[str]:
    """Nodes whose output for one sample depends on the other samples of the batch, as far as the graph says.

    Training-mode batch norms, and reductions (``Mean``, ``Sum``...) over a constant axis list
    that includes the batch axis 0. A graph may hide batch dependence elsewhere (the probe in
    :mod:`tasks.keypoints.batching` is what decides); this names the usual suspects for the error.

    Args:
        graph_def: A ``tf.compat.v1.GraphDef``.

    Returns:
        Node names, in graph order.
    """
    from tensorflow.python.framework import tensor_util

    consts = {n.name: n for n in graph_def.node if n.op == "Const"}
    out = []
    for n in graph_def.node:
        if _batch_statistics(n):
            out.append(n.name)
        elif n.op in _REDUCTIONS and len(n.input) > 1 and n.input[1].split(":")[0] in consts:
            axes = np.atleast_1d(tensor_util.MakeNdarray(consts[n.input[1].split(":")[0]].attr["value"].tensor))
            if 0 in axes.tolist():
                out.append(n.name)
    return out


def per_sample_norm_graph(graph_def: Any, batch: int) -> tuple[Any, list[str]]:
    """Rewrite every training-mode ``FusedBatchNorm`` to normalise each of ``batch`` samples on its own.

    The graph returned runs exactly ``batch`` samples. Each training-mode node ``x -> norm(x)``
    becomes ``Split`` of ``x`` along axis 0 into ``batch`` single samples, the node's own fused
    kernel (same attributes, same ``gamma``/``beta``) on each sample, and ``ConcatV2`` of the results
    along axis 0 under the node's name (its consumers read output 0; the batch-statistics outputs 1-5
    of a frozen inference graph have no consumers, which is checked). Each sample is normalised by
    its own per-channel moments over H and W: what the frozen graph computes at batch 1, with the
    same kernel on the same numbers, so every frame's output at batch ``batch`` is bit-identical to
    the frozen graph's batch-1 output (measured: max difference 0.0 on real frames). A split along
    axis 0 shares its input's buffer; the concatenation is the one copy the rewrite adds.

    Measured at 432x368 on a 2-core VM (frozen graph at batch 1: 21.6 frames/s): this form at
    batch 8 31.4 frames/s; the earlier transposed form (the batch laid out as one sample of ``N * C``
    channels, one kernel for all, any batch) 25.4; a ``Mean``/``SquaredDifference``/``Rsqrt`` form
    29.5 and 6e-5 away from batch 1; the frozen graph at batch 8 (wrong statistics) 33.7.

    Args:
        graph_def: A ``tf.compat.v1.GraphDef`` (not modified).
        batch: Samples per run of the returned graph (>= 1; at 1 the graph is returned unchanged:
            a sample already is its own batch).

    Returns:
        (the rewritten GraphDef, names of the rewritten nodes).

    Raises:
        ConfigError: ``batch`` < 1.
        ModelError: A consumer reads a training-mode batch norm's batch statistics.
    """
    import tensorflow as tf

    if batch < 1:
        raise ConfigError(f"a per-sample graph needs a batch >= 1, got {batch}")
    targets = set(training_mode_batch_norms(graph_def))
    for n in graph_def.node:
        for i in n.input:
            name, _, port = i.partition(":")
            if name in targets and port not in ("", "0"):
                raise ModelError(f"node {n.name} reads output {port} of the training-mode batch norm {name}: cannot rewrite it per sample")
    if batch == 1:
        return graph_def, []
    i32 = tf.int32.as_datatype_enum

    def node(name: str, op: str, inputs: list[str], **attrs: Any) -> Any:
        nd = tf.compat.v1.NodeDef(name=name, op=op, input=inputs)
        for k, v in attrs.items():
            nd.attr[k].CopyFrom(v)
        return nd

    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    done: list[str] = []
    axis0 = tf.compat.v1.AttrValue(tensor=tf.make_tensor_proto(np.int32(0)))
    for n in graph_def.node:
        if n.name not in targets:
            out.node.append(n)
            continue
        b, t = f"{n.name}{_PER_SAMPLE}", n.attr["T"]
        out.node.extend(
            [
                node(f"{b}/axis0", "Const", [], dtype=tf.compat.v1.AttrValue(type=i32), value=axis0),
                node(f"{b}/split", "Split", [f"{b}/axis0", n.input[0]], T=t, num_split=tf.compat.v1.AttrValue(i=batch)),
            ]
        )
        for k in range(batch):
            one = tf.compat.v1.NodeDef()
            one.CopyFrom(n)
            one.name = f"{b}/norm{k}"
            one.input[0] = f"{b}/split:{k}"
            out.node.append(one)
        out.node.append(node(n.name, "ConcatV2", [f"{b}/norm{k}" for k in range(batch)] + [f"{b}/axis0"], T=t,
                             N=tf.compat.v1.AttrValue(i=batch), Tidx=tf.compat.v1.AttrValue(type=i32)))  # fmt: skip
        done.append(n.name)
    return out, done


def graph_cache_dir() -> Path:
    """Where rewritten graphs are kept: ``$POSEPIPE_CACHE_DIR/graphs`` (default ``~/.cache/posepipe/graphs``)."""
    return Path(os.environ.get("POSEPIPE_CACHE_DIR") or Path.home() / ".cache" / "posepipe") / "graphs"


def cached_per_sample_graph(graph_def: Any, model_sha256: str, batch: int, cache_dir: Path | None = None) -> tuple[Any, int]:
    """:func:`per_sample_norm_graph` of a model's GraphDef for ``batch`` samples, keyed by the model file's sha256 and cached.

    The rewritten GraphDef is kept in this process and in
    ``{cache_dir}/{sha256}.{PER_SAMPLE_NORM}.b{batch}.pb`` (written atomically, with its own sha256
    beside it; a cache file that does not match is rebuilt).

    Args:
        graph_def: The model's GraphDef as read from its file.
        model_sha256: The file's sha256 (the key).
        batch: Samples per run of the rewritten graph (at 1, ``graph_def`` is returned as is).
        cache_dir: Default :func:`graph_cache_dir`; an unwritable folder only skips the disk cache.

    Returns:
        (the rewritten GraphDef, the number of rewritten nodes; 0: nothing to rewrite, ``graph_def``
        is returned as is).
    """
    import tensorflow as tf

    if batch == 1 or not training_mode_batch_norms(graph_def):
        return graph_def, 0
    key = f"{model_sha256}.{PER_SAMPLE_NORM}.b{batch}"
    folder = Path(cache_dir) if cache_dir is not None else graph_cache_dir()
    file, check = folder / f"{key}.pb", folder / f"{key}.pb.sha256"
    with _REWRITE_LOCK:
        data = _REWRITE_CACHE.get(key)
        if data is None and file.is_file() and check.is_file():
            candidate = file.read_bytes()
            if hashlib.sha256(candidate).hexdigest() == check.read_text().strip():
                data = candidate
                log.info("rewritten graph %s read from %s", key, file)
        if data is None:
            rewritten, _ = per_sample_norm_graph(graph_def, batch)
            data = rewritten.SerializeToString(deterministic=True)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                for target, payload in ((file, data), (check, hashlib.sha256(data).hexdigest().encode())):
                    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                    tmp.write_bytes(payload)
                    os.replace(tmp, target)
            except OSError as exc:
                log.warning("cannot cache the rewritten graph in %s (%s); it is rebuilt next time", folder, exc)
        _REWRITE_CACHE[key] = data
    out = tf.compat.v1.GraphDef()
    out.ParseFromString(data)
    return out, sum(1 for n in out.node if n.name.endswith(f"{_PER_SAMPLE}/split"))


def batch_pieces(n: int) -> list[int]:
    """The powers of two, largest first, that sum to ``n``: how a per-sample graph runs ``n`` frames.

    Each batch size needs its own rewritten graph (:func:`per_sample_norm_graph`), imported on first
    use; splitting a batch this way bounds a worker to ``log2(n) + 1`` graphs whatever the ragged
    last batches of its clips are (every frame's output is the same in any piece).

    >>> batch_pieces(13)
    [8, 4, 1]
    """
    return [1 << b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]


def load_frozen_graph(path: Path, input_name: str, output_name: str, graph_def: Any = None) -> Callable[[Any], Any]:
    """Import a frozen TF1 GraphDef and return a TF2 function ``image (N, H, W, 3) -> output``.

    Args:
        path: The graph file (read unless ``graph_def`` is given; named in errors).
        input_name: Input tensor name (without ``:0``).
        output_name: Output tensor name.
        graph_def: An already parsed (e.g. rewritten) GraphDef to import instead of the file.

    Raises:
        ModelError: If the file is not a GraphDef or lacks the named tensors.
    """
    import tensorflow as tf

    if graph_def is None:
        graph_def = read_graph_def(path)

    def _import() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    try:
        wrapped = tf.compat.v1.wrap_function(_import, [])
        graph = wrapped.graph
        pruned = wrapped.prune(graph.as_graph_element(f"{input_name}:0"), graph.as_graph_element(f"{output_name}:0"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(
            f"{path}: cannot import graph with input {input_name!r} and output {output_name!r}: {exc}",
            hint="check the model registry entry (input_name/output_name) for this graph",
        ) from exc

    def run(batch: np.ndarray) -> np.ndarray:
        return pruned(tf.constant(batch, dtype=tf.float32)).numpy()

    return run


class TfOpenPose(OpenPoseNet):
    """OpenPose-style multi-person estimator on a frozen tf-pose-estimation graph.

    Args:
        entry: Registry entry of the model.
        model_path: The frozen graph file.
        input_wh: Network input (width, height); default: the entry's training size.
        decode_params: Decoder parameters.
        intra_op_threads: TensorFlow intra-op threads (None: ``POSEPIPE_INTRA_OP_THREADS``, which
            posepipe's LocalCluster workers get as their share of the cores, else TF's default).
        inter_op_threads: TensorFlow inter-op threads (None: ``POSEPIPE_INTER_OP_THREADS``, else TF's).
        interpolation: Frame resize: ``cubic`` (tf-pose-estimation's), ``linear`` or ``area``.
        batch_invariant: Skip the probe and trust this value (tests of the contract only).
        per_sample_norm: Rewrite training-mode batch norms per sample (:func:`per_sample_norm_graph`)
            so that the graph can be batched exactly; False runs the graph as frozen (batch 1).
        graph_cache_dir: Where the rewritten graph is cached (default :func:`graph_cache_dir`).
    """

    name = "tf-openpose"
    batch_hint = "send at most batch_limit frames per infer() call (1 when this model's outputs depend on the batch)"

    def __init__(
        self,
        entry: ModelEntry,
        model_path: Path,
        input_wh: tuple[int, int] | None = None,
        decode_params: DecodeParams | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        interpolation: str = "cubic",
        batch_invariant: bool | None = None,
        per_sample_norm: bool = True,
        graph_cache_dir: str | None = None,
    ) -> None:
        if interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"unknown interpolation {interpolation!r}", hint=f"one of {sorted(_INTERPOLATIONS)}")
        self.entry = entry
        self.layout: PafLayout = entry.layout
        self.skeleton = entry.layout.skeleton
        self.model_path = Path(model_path)
        self.model_sha256 = file_sha256(self.model_path)
        if entry.sha256 is not None and self.model_sha256 != entry.sha256:
            log.warning(
                "%s: sha256 %s differs from the registered %s (%s); outputs record the file's own sha256",
                self.model_path, self.model_sha256, entry.sha256, entry.name,
            )  # fmt: skip
        self.input_wh = tuple(input_wh or entry.input_wh)
        check_input_wh(self.input_wh, entry.stride)
        self.decode_params = decode_params or DecodeParams()
        self._interp = _INTERPOLATIONS[interpolation]
        env_intra, env_inter = inference_threads()
        configure_threads(intra_op_threads if intra_op_threads is not None else env_intra, inter_op_threads if inter_op_threads is not None else env_inter)
        graph_def = read_graph_def(self.model_path)
        self._graph_def = graph_def
        self._cache_dir = Path(graph_cache_dir) if graph_cache_dir is not None else None  # None: the default folder
        norms = training_mode_batch_norms(graph_def)
        self._per_sample = bool(per_sample_norm and norms)
        self.graph_revision = PER_SAMPLE_NORM if self._per_sample else ""
        # batch size -> network; 1 is the graph as frozen (per sample by itself). A per-sample
        # backend adds one rewritten graph per power of two it is sent (:func:`batch_pieces`).
        self._fns: dict[int, Callable[[Any], Any]] = {}
        self._network(1)  # imported now: a graph without the entry's tensors fails here, not on a frame
        if self._per_sample:
            log.info("%s: %d training-mode batch norms are run per sample", entry.name, len(norms))
            graph_def = cached_per_sample_graph(graph_def, self.model_sha256, 2, self._cache_dir)[0]
        self.batch_dependent_nodes = tuple(batch_dependent_nodes(graph_def))
        self._lock = threading.Lock()
        self._heat_idx, self._paf_idx = channel_indices(self.layout)
        if batch_invariant is None:
            batch_invariant = self._detect_batch_invariance()
        self.batch_invariant = bool(batch_invariant)
        self._default_batch: int | None = None

    @property
    def max_batch(self) -> int:
        """The default batch: the fastest the probe allows here (measured once, cached beside the rewritten graph)."""
        if not self.batch_invariant:
            return 1
        if self._default_batch is None:
            import tensorflow as tf

            w, h = self.input_wh
            threads = int(tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1)
            gid = f"{self.model_sha256}+{self.graph_revision}" if self.graph_revision else self.model_sha256
            cache = (self._cache_dir or graph_cache_dir()) / f"{gid}.{w}x{h}.t{threads}.batch.json"
            self._default_batch = cached_fastest_batch((gid, h, w, threads), self.run_frames, cache)
            log.info("%s at %dx%d, %d threads: fastest batch %d", self.entry.name, w, h, threads, self._default_batch)
        return self._default_batch

    def _network(self, size: int) -> Callable[[Any], Any]:
        """The network for batches of exactly ``size`` frames (imported on first use; caller holds the
        lock). Size 1 is the graph as frozen, which a backend without the rewrite runs at any batch."""
        fn = self._fns.get(size)
        if fn is None:
            graph_def, _ = cached_per_sample_graph(self._graph_def, self.model_sha256, size, self._cache_dir)
            fn = self._fns[size] = load_frozen_graph(self.model_path, self.entry.input_name, self.entry.output_name, graph_def)
        return fn

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            if not self._per_sample:
                out = self._network(1)(batch)
            else:
                outs, start = [], 0
                for size in batch_pieces(len(batch)):
                    outs.append(np.asarray(self._network(size)(batch[start : start + size])))
                    start += size
                out = outs[0] if len(outs) == 1 else np.concatenate(outs)
        out = np.asarray(out, np.float32)
        if out.ndim != 4 or out.shape[-1] != self.layout.num_channels:
            raise ModelError(
                f"{self.model_path}: output shape {out.shape}, expected (N, h, w, {self.layout.num_channels})",
                hint=f"is {self.model_path.name} the {self.entry.name} graph?",
            )
        return out

    def run_frames(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Preprocess and run ``(N, H, W, 3) uint8`` frames as ONE batch: ``(N, h, w, C) float32`` raw output."""
        return self._run(np.stack([self.preprocess(f) for f in frames_bgr]))

    def _detect_batch_invariance(self) -> bool:
        w, h = self.input_wh
        key = f"{self.model_sha256}+{self.graph_revision}" if self.graph_revision else self.model_sha256
        invariant, diff = cached_batch_invariance((key, h, w), self.run_frames)  # the rewritten graph is another graph
        log.info("%s at %dx%d: batch-1 vs batch-3 max diff %.3g -> batch_invariant=%s", self.entry.name, w, h, diff,
                 invariant)  # fmt: skip
        return invariant

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Resize one ``(H, W, 3) uint8`` BGR frame to ``(h_in, w_in, 3) float32`` 0..255 BGR."""
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.size == 0:
            shape = None if frame_bgr is None else frame_bgr.shape
            raise ExtractionError(f"expected an (H, W, 3) BGR frame, got shape {shape}")
        w, h = self.input_wh
        img = frame_bgr
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=self._interp)
        img = img.astype(np.float32)
        if self.entry.swap_rb:
            img = img[..., ::-1]
        if self.entry.input_mean != (0.0, 0.0, 0.0) or self.entry.input_scale != 1.0:
            img = (img - np.asarray(self.entry.input_mean, np.float32)) * self.entry.input_scale
        return np.ascontiguousarray(img)

    def forward(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Preprocess and run up to ``max_batch`` frames as one batch (see :meth:`run_frames`).

        Raises:
            ExtractionError: A frame is not ``(H, W, 3)``.
        """
        return self.run_frames(frames_bgr)

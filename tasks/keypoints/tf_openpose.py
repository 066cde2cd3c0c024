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
normalisation. :func:`per_sample_norm_graph` rewrites each such node into exactly that, per sample
(the same fused kernel on the batch laid out as one sample of ``N * C`` channels),
so batch N gives every frame its batch-1 output. The rewrite is the default
(option ``per_sample_norm``); it is cached per model sha256 in this process and on disk
(:func:`cached_per_sample_graph`), and recorded as the backend's ``graph_revision`` in every
resume key. Measured on the real frames of the test clip: batch 1 vs batch 8 (and a ragged last
batch) of the rewritten graph within 2e-6, and at batch 1 bit-identical to the frozen graph.

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


PER_SAMPLE_NORM = "per-sample-norm-v2"
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


_PER_SAMPLE_NORM_NODE = "/per_sample/norm"


def _batch_statistics(n: Any) -> bool:
    """A training-mode ``FusedBatchNorm*`` over the batch (not one :func:`per_sample_norm_graph` made)."""
    return n.op.startswith("FusedBatchNorm") and n.attr["is_training"].b and not n.name.endswith(_PER_SAMPLE_NORM_NODE)


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


def per_sample_norm_graph(graph_def: Any) -> tuple[Any, list[str]]:
    """Rewrite every training-mode ``FusedBatchNorm`` into per-sample (instance) normalisation.

    The replacement keeps the node's name (its consumers read output 0; the batch-statistics
    outputs 1-5 of a frozen inference graph have no consumers, which is checked). It runs the same
    fused training-mode kernel on the batch laid out as one sample of ``N * C`` channels: NHWC ``x``
    ``(N, H, W, C)`` is transposed to ``(H, W, N, C)`` and reshaped to ``(1, H, W, N*C)``, so the
    kernel's per-channel moments over (batch, H, W) are each sample's own per-channel moments over
    H and W; ``gamma``/``beta`` are tiled ``N`` times, and the result is reshaped and transposed
    back. At batch 1 the transposes move nothing and the output is bit-identical to the frozen
    graph's batch-1 output (measured: max difference 0.0); at batch N each frame gets it to ~2e-6.
    (A formulation with ``Mean``/``SquaredDifference``/``Rsqrt`` ops was measured too: 1e-5 from the
    frozen graph and ~12 % slower at batch 1.)

    Args:
        graph_def: A ``tf.compat.v1.GraphDef`` (not modified).

    Returns:
        (the rewritten GraphDef, names of the rewritten nodes).

    Raises:
        ModelError: A training-mode batch norm is not NHWC, or a consumer reads its batch statistics.
    """
    import tensorflow as tf

    targets = set(training_mode_batch_norms(graph_def))
    for n in graph_def.node:
        for i in n.input:
            name, _, port = i.partition(":")
            if name in targets and port not in ("", "0"):
                raise ModelError(f"node {n.name} reads output {port} of the training-mode batch norm {name}: cannot rewrite it per sample")
    f32, i32 = tf.float32.as_datatype_enum, tf.int32.as_datatype_enum

    def attr(**kw: Any) -> Any:
        return tf.compat.v1.AttrValue(**kw)

    def node(name: str, op: str, inputs: list[str], **attrs: Any) -> Any:
        nd = tf.compat.v1.NodeDef(name=name, op=op, input=inputs)
        for k, v in attrs.items():
            nd.attr[k].CopyFrom(v)
        return nd

    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    done: list[str] = []
    for n in graph_def.node:
        if n.name not in targets:
            out.node.append(n)
            continue
        fmt = n.attr["data_format"].s.decode() or "NHWC"
        if fmt != "NHWC":
            raise ModelError(f"training-mode batch norm {n.name} is {fmt}; only NHWC graphs can be rewritten per sample")
        x, gamma, beta = n.input[:3]
        b, t, i = f"{n.name}/per_sample", attr(type=f32), attr(type=i32)

        def const(name: str, value: np.ndarray, dtype: int) -> Any:
            return node(name, "Const", [], dtype=attr(type=dtype), value=attr(tensor=tf.make_tensor_proto(value)))

        def take(name: str, start: str, stop: str, b: str = b, i: Any = i) -> Any:  # shape[start:stop]
            return node(name, "StridedSlice", [f"{b}/shape", start, stop, f"{b}/c1"], T=i, Index=i, begin_mask=attr(i=0), end_mask=attr(i=0),
                        ellipsis_mask=attr(i=0), new_axis_mask=attr(i=0), shrink_axis_mask=attr(i=0))  # fmt: skip

        out.node.extend(
            [
                const(f"{b}/hwnc", np.array([1, 2, 0, 3], np.int32), i32),
                node(f"{b}/to_hwnc", "Transpose", [x, f"{b}/hwnc"], T=t, Tperm=i),  # (H, W, N, C)
                node(f"{b}/shape", "Shape", [f"{b}/to_hwnc"], T=t, out_type=i),
                const(f"{b}/c0", np.array([0], np.int32), i32),
                const(f"{b}/c1", np.array([1], np.int32), i32),
                const(f"{b}/c2", np.array([2], np.int32), i32),
                const(f"{b}/c3", np.array([3], np.int32), i32),
                const(f"{b}/minus1", np.array([-1], np.int32), i32),
                const(f"{b}/axis0", np.int32(0), i32),
                take(f"{b}/hw", f"{b}/c0", f"{b}/c2"),
                take(f"{b}/n", f"{b}/c2", f"{b}/c3"),
                node(f"{b}/one_hw_nc", "ConcatV2", [f"{b}/c1", f"{b}/hw", f"{b}/minus1", f"{b}/axis0"], T=i, N=attr(i=3), Tidx=i),
                node(f"{b}/flat", "Reshape", [f"{b}/to_hwnc", f"{b}/one_hw_nc"], T=t, Tshape=i),  # (1, H, W, N*C)
                node(f"{b}/gamma", "Tile", [gamma, f"{b}/n"], T=t, Tmultiples=i),
                node(f"{b}/beta", "Tile", [beta, f"{b}/n"], T=t, Tmultiples=i),
                const(f"{b}/none", np.zeros(0, np.float32), f32),
                node(f"{b}/norm", "FusedBatchNormV3", [f"{b}/flat", f"{b}/gamma", f"{b}/beta", f"{b}/none", f"{b}/none"], T=t, U=t,
                     epsilon=attr(f=n.attr["epsilon"].f), is_training=attr(b=True), data_format=attr(s=b"NHWC"),
                     exponential_avg_factor=attr(f=1.0)),  # fmt: skip
                node(f"{b}/unflat", "Reshape", [f"{b}/norm", f"{b}/shape"], T=t, Tshape=i),  # (H, W, N, C)
                const(f"{b}/nhwc", np.array([2, 0, 1, 3], np.int32), i32),
                node(n.name, "Transpose", [f"{b}/unflat", f"{b}/nhwc"], T=t, Tperm=i),
            ]
        )
        done.append(n.name)
    return out, done


def graph_cache_dir() -> Path:
    """Where rewritten graphs are kept: ``$POSEPIPE_CACHE_DIR/graphs`` (default ``~/.cache/posepipe/graphs``)."""
    return Path(os.environ.get("POSEPIPE_CACHE_DIR") or Path.home() / ".cache" / "posepipe") / "graphs"


def cached_per_sample_graph(graph_def: Any, model_sha256: str, cache_dir: Path | None = None) -> tuple[Any, int]:
    """:func:`per_sample_norm_graph` of a model's GraphDef, keyed by the model file's sha256 and cached.

    The rewritten GraphDef is kept in this process and in ``{cache_dir}/{sha256}.{PER_SAMPLE_NORM}.pb``
    (written atomically, with its own sha256 beside it; a cache file that does not match is rebuilt).

    Args:
        graph_def: The model's GraphDef as read from its file.
        model_sha256: The file's sha256 (the key).
        cache_dir: Default :func:`graph_cache_dir`; an unwritable folder only skips the disk cache.

    Returns:
        (the rewritten GraphDef, the number of rewritten nodes; 0: nothing to rewrite, ``graph_def``
        is returned as is).
    """
    import tensorflow as tf

    if not training_mode_batch_norms(graph_def):
        return graph_def, 0
    key = f"{model_sha256}.{PER_SAMPLE_NORM}"
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
            rewritten, _ = per_sample_norm_graph(graph_def)
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
    return out, sum(1 for n in out.node if n.name.endswith(_PER_SAMPLE_NORM_NODE))


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
        self.graph_revision = ""
        if per_sample_norm:
            graph_def, rewritten = cached_per_sample_graph(graph_def, self.model_sha256, None if graph_cache_dir is None else Path(graph_cache_dir))
            if rewritten:
                self.graph_revision = PER_SAMPLE_NORM
                log.info("%s: %d training-mode batch norms rewritten per sample", entry.name, rewritten)
        self.batch_dependent_nodes = tuple(batch_dependent_nodes(graph_def))
        self._fn = load_frozen_graph(self.model_path, entry.input_name, entry.output_name, graph_def)
        self._lock = threading.Lock()
        self._heat_idx, self._paf_idx = channel_indices(self.layout)
        if batch_invariant is None:
            batch_invariant = self._detect_batch_invariance()
        self.batch_invariant = bool(batch_invariant)
        self._cache_dir = Path(graph_cache_dir) if graph_cache_dir is not None else None  # None: the default folder
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

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self._fn(batch)
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

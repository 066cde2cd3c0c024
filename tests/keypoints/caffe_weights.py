"""Write a ``.caffemodel`` (Caffe ``NetParameter`` protobuf) with generated weights for a real prototxt.

OpenPose's trained caffemodels are ~200 MB downloads that are not available here; their prototxts
are. This writes weights of exactly the shapes the prototxt implies, in Caffe's binary format, so
``cv2.dnn.readNetFromCaffe(prototxt, caffemodel)`` loads and runs the real architecture.

The protobuf is encoded by hand (no ``caffe_pb2`` needed): ``NetParameter.layer`` = field 100,
``LayerParameter.name/type/blobs`` = 1/2/7, ``BlobProto.data`` = 5 (packed float),
``BlobProto.shape`` = 7, ``BlobShape.dim`` = 1 (packed int64), as in caffe.proto.

Shapes come from walking the prototxt: ``Convolution`` (weights ``(num_output, C_in / group, k, k)``
and a bias), ``PReLU`` (one slope per channel), ``ReLU``/``Pooling`` (channels unchanged) and
``Concat`` (channels summed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ProtoLayer:
    """The fields of one prototxt layer this generator needs."""

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    num_output: int | None = None
    kernel_size: int = 1
    group: int = 1
    blob_shapes: list[tuple[int, ...]] = field(default_factory=list)


def _layer_blocks(text: str) -> list[str]:
    text = re.sub(r"#[^\n]*", "", text)
    blocks, i = [], 0
    while (m := re.compile(r"\blayers?\s*\{").search(text, i)) is not None:
        depth, j = 0, m.end() - 1
        while True:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                break
        blocks.append(text[m.end() : j - 1])
        i = j
    return blocks


def parse_prototxt(path: Path) -> tuple[int, list[ProtoLayer]]:
    """Parse layers and infer blob shapes. Returns (input channels, layers)."""
    text = Path(path).read_text()
    dims = [int(d) for d in re.findall(r"input_dim:\s*(\d+)", text)]
    in_channels = dims[1] if len(dims) >= 2 else 3
    channels: dict[str, int] = {m: in_channels for m in re.findall(r'^input:\s*"([^"]+)"', text, re.M)}
    layers = []
    for block in _layer_blocks(text):
        name = re.search(r'name:\s*"([^"]+)"', block).group(1)  # type: ignore[union-attr]
        ltype = re.search(r'type:\s*"([^"]+)"', block).group(1)  # type: ignore[union-attr]
        layer = ProtoLayer(
            name=name, type=ltype, bottoms=re.findall(r'bottom:\s*"([^"]+)"', block),
            tops=re.findall(r'top:\s*"([^"]+)"', block),
        )  # fmt: skip
        if m := re.search(r"num_output:\s*(\d+)", block):
            layer.num_output = int(m.group(1))
        if m := re.search(r"kernel_size:\s*(\d+)", block):
            layer.kernel_size = int(m.group(1))
        if m := re.search(r"group:\s*(\d+)", block):
            layer.group = int(m.group(1))
        c_in = [channels[b] for b in layer.bottoms]
        if ltype == "Convolution":
            assert layer.num_output is not None, name
            k = layer.kernel_size
            layer.blob_shapes = [(layer.num_output, c_in[0] // layer.group, k, k), (layer.num_output,)]
            c_out = layer.num_output
        elif ltype == "PReLU":
            layer.blob_shapes = [(c_in[0],)]
            c_out = c_in[0]
        elif ltype == "Concat":
            c_out = sum(c_in)
        elif ltype in ("ReLU", "Pooling"):
            c_out = c_in[0]
        else:
            raise ValueError(f"{path}: layer {name!r} of type {ltype!r} is not supported by this generator")
        for top in layer.tops:
            channels[top] = c_out
        layers.append(layer)
    return in_channels, layers


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _blob(values: np.ndarray) -> bytes:
    dims = b"".join(_varint(int(d)) for d in values.shape)
    shape = _field(1, dims)
    return _field(7, shape) + _field(5, np.ascontiguousarray(values, "<f4").tobytes())


def write_caffemodel(
    prototxt: Path,
    out_path: Path,
    seed: int = 0,
    zero_weights: bool = False,
    biases: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write generated weights for every parametric layer of ``prototxt``.

    Args:
        prototxt: The network definition.
        out_path: Where to write the ``.caffemodel``.
        seed: Seed of the random weights (``N(0, 1 / fan_in)``; slopes of PReLU 0.1).
        zero_weights: All weights and biases 0 (the output is then exactly the last layers' biases).
        biases: Bias vectors to set for named convolution layers (e.g. the last heatmap layer).

    Returns:
        ``out_path``.
    """
    rng = np.random.default_rng(seed)
    biases = biases or {}
    _, layers = parse_prototxt(prototxt)
    with open(out_path, "wb") as fh:
        fh.write(_field(1, b"generated"))
        for layer in layers:
            if not layer.blob_shapes:
                continue
            blobs = []
            for i, shape in enumerate(layer.blob_shapes):
                if layer.type == "PReLU":
                    values = np.full(shape, 0.1, np.float32)
                elif zero_weights:
                    values = np.zeros(shape, np.float32)
                elif i == 0:
                    fan_in = int(np.prod(shape[1:]))
                    values = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=shape).astype(np.float32)
                else:
                    values = np.zeros(shape, np.float32)
                if i == 1 and layer.name in biases:
                    values = np.asarray(biases[layer.name], np.float32).reshape(shape)
                blobs.append(_blob(values))
            body = _field(1, layer.name.encode()) + _field(2, layer.type.encode()) + b"".join(_field(7, b) for b in blobs)
            fh.write(_field(100, body))
    return out_path

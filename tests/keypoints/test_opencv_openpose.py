"""The opencv-openpose backend on OpenPose's real prototxts with generated caffemodels.

The trained caffemodels (~200 MB each) are not available; ``caffe_weights.write_caffemodel`` writes
weights of the shapes each real prototxt implies. Zero weights with chosen biases on the last
layers make the network output known exactly, which checks the heatmap/PAF channel layout; random
weights exercise the real architecture end to end (shapes, batching, decoding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from schemas.errors import ConfigError, ModelError
from tasks.keypoints import load_backend
from tasks.keypoints.models import COCO18_LAYOUT, get_model
from tasks.keypoints.opencv_openpose import OpenCvOpenPose
from tests.keypoints.caffe_weights import parse_prototxt, write_caffemodel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prototxts(shared_data: Path) -> Path:
    return shared_data / "models" / "openpose_prototxt"


@pytest.fixture(scope="module")
def coco_coded(prototxts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COCO caffemodel whose output is heatmap j = 0.01 j and network PAF channel c = 1 + 0.01 c."""
    out = tmp_path_factory.mktemp("coco") / "pose_iter_440000.caffemodel"
    biases = {
        "Mconv7_stage6_L2": 0.01 * np.arange(19, dtype=np.float32),
        "Mconv7_stage6_L1": 1.0 + 0.01 * np.arange(38, dtype=np.float32),
    }
    return write_caffemodel(prototxts / "coco_pose_deploy_linevec.prototxt", out, zero_weights=True, biases=biases)


def _frames(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(90 + 10 * i, 120, 3), dtype=np.uint8) for i in range(n)]


def test_prototxt_shapes_parsed(prototxts: Path) -> None:
    for name, layers, out_channels in [
        ("coco_pose_deploy_linevec", 92, (19, 38)),
        ("mpi_pose_deploy_linevec_faster_4_stages", 64, (16, 28)),
        ("body_25_pose_deploy", 114, (26, 52)),
    ]:
        channels, parsed = parse_prototxt(prototxts / f"{name}.prototxt")
        convs = [p for p in parsed if p.type == "Convolution"]
        assert channels == 3 and len(convs) == layers
        assert convs[0].blob_shapes[0] == (64, 3, 3, 3)
        last = {p.name: p.num_output for p in convs if p.name.startswith("Mconv7")}
        assert set(out_channels) <= set(last.values())


def test_coco_prototxt_output_layout(prototxts: Path, coco_coded: Path) -> None:
    backend = load_backend(
        "opencv-openpose", str(coco_coded), model="openpose_coco",
        config_path=str(prototxts / "coco_pose_deploy_linevec.prototxt"), input_wh=(184, 184),
    )  # fmt: skip
    assert isinstance(backend, OpenCvOpenPose)
    assert backend.skeleton == "openpose18" and backend.entry is get_model("openpose_coco")
    frame = _frames(1)[0]
    net = backend.run_frames([frame])
    assert net.shape == (1, 23, 23, 57)  # 184 / 8 = 23; 19 heatmaps + 38 PAFs
    (raw,) = backend.infer([frame])
    assert raw.heatmaps.shape == (23, 23, 19) and raw.pafs.shape == (23, 23, 38)
    assert raw.input_hw == (184, 184) and raw.image_hw == (90, 120)
    np.testing.assert_allclose(raw.heatmaps[5, 7], 0.01 * np.arange(19), atol=1e-6)
    # PAF limb l of the layout's pair order = network channels paf_channels[l] (OpenPose's mapIdx)
    expected = 1.0 + 0.01 * np.array([c for xy in COCO18_LAYOUT.paf_channels for c in xy])
    np.testing.assert_allclose(raw.pafs[3, 11], expected, atol=1e-6)
    # constant maps: no peaks above threshold except flat ones -> decoding runs and finds no one
    poses = backend.group(raw)
    assert poses.keypoints.shape[1:] == (18, 3)
    assert backend.batch_invariant is True and backend.max_batch == 8


def test_mpi_faster_random_weights_batches_and_decodes(prototxts: Path, tmp_path: Path) -> None:
    proto = prototxts / "mpi_pose_deploy_linevec_faster_4_stages.prototxt"
    weights = write_caffemodel(proto, tmp_path / "pose_iter_160000.caffemodel", seed=3)
    backend = load_backend(
        "opencv-openpose", str(weights), model="openpose_mpi_faster", config_path=str(proto), input_wh=(96, 96),
        peak_threshold=0.0,
    )  # fmt: skip
    assert backend.skeleton == "mpi15"
    assert backend.batch_invariant is True  # measured: no batch norm in OpenPose's Caffe nets
    frames = _frames(3)
    together = backend.infer(frames)
    assert [r.heatmaps.shape for r in together] == [(12, 12, 16)] * 3
    assert [r.pafs.shape for r in together] == [(12, 12, 28)] * 3
    alone = backend.infer([frames[1]])[0]
    np.testing.assert_allclose(together[1].heatmaps, alone.heatmaps, rtol=1e-4, atol=1e-6)
    poses = backend.predict(frames)
    assert len(poses) == 3 and all(p.keypoints.shape[1:] == (15, 3) for p in poses)


def test_body25_random_weights_shapes(prototxts: Path, tmp_path: Path) -> None:
    proto = prototxts / "body_25_pose_deploy.prototxt"
    weights = write_caffemodel(proto, tmp_path / "pose_iter_584000.caffemodel", seed=5)
    backend = load_backend(
        "opencv-openpose", str(weights), model="openpose_body25", config_path=str(proto), input_wh=(64, 64),
        batch_invariant=True,
    )  # fmt: skip
    (raw,) = backend.infer(_frames(1))
    assert raw.heatmaps.shape == (8, 8, 26) and raw.pafs.shape == (8, 8, 52)
    assert np.isfinite(raw.heatmaps).all() and np.isfinite(raw.pafs).all()
    assert backend.group(raw).keypoints.shape[1:] == (25, 3)


def test_wrong_or_broken_files_are_model_errors(prototxts: Path, coco_coded: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "broken.caffemodel"
    garbage.write_bytes(b"\x08\x96\x01not a caffemodel" * 50)
    with pytest.raises(ModelError, match="broken.caffemodel"):
        load_backend("opencv-openpose", str(garbage), config_path=str(prototxts / "coco_pose_deploy_linevec.prototxt"))
    # COCO weights given for the MPI model: the output does not have MPI's 16 + 28 channels
    with pytest.raises(ModelError, match="does not run as openpose_mpi"):
        load_backend(
            "opencv-openpose", str(coco_coded), model="openpose_mpi",
            config_path=str(prototxts / "mpi_pose_deploy_linevec.prototxt"), input_wh=(64, 64),
        )  # fmt: skip
    with pytest.raises(ModelError, match="does not exist"):
        load_backend("opencv-openpose", str(tmp_path / "missing.caffemodel"))
    with pytest.raises(ConfigError, match="runs on backend"):
        load_backend("opencv-openpose", str(coco_coded), model="tf_pose_mobilenet_v2_small")

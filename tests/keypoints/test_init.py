"""Tests of the backend registry (tasks/keypoints/__init__.py): errors before any model is loaded, lazy TF."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from schemas.errors import ConfigError
from tasks.keypoints import BACKENDS, load_backend

REPO = Path(__file__).resolve().parents[2]


def test_backends_registered() -> None:
    assert set(BACKENDS) == {"tf-openpose", "opencv-openpose"}


def test_unknown_backend_and_option_are_config_errors(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="unknown keypoint backend"):
        load_backend("mediapipe")
    graph = shared_data / "models" / "tf_pose_mobilenet_v2_small" / "graph_opt.pb"
    with pytest.raises(ConfigError, match="unknown option"):
        load_backend("tf-openpose", str(graph), batch_size=8)
    with pytest.raises(ConfigError, match="upsample"):
        load_backend("tf-openpose", str(graph), upsample=0)


def test_importing_the_registry_and_backends_does_not_import_tensorflow() -> None:
    code = (
        "import sys, tasks.keypoints, tasks.keypoints.tf_openpose, tasks.keypoints.opencv_openpose;"
        "sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False).returncode == 0

"""End to end: generated image and sequence dataset versions and a retrained model, their cards
written by ``posepipe report``, rendered by headless Chromium (screenshot not blank, headings in
the rendered DOM). One TensorFlow run (``pose-mlp``, 2 epochs, in this process)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks import rebuild as stages
from tests.report.headings import DATASET_HEADINGS, MODEL_HEADINGS
from tests.sequences.fakes import extract, write_ucf101
from tests.training.fakes import build_activity_version, write_activity_source

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
POSEPIPE = str(Path(sys.executable).parent / "posepipe")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([POSEPIPE, *args], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def _chromium(page: Path, tmp: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    profile.mkdir()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,2000"]  # fmt: skip
    return subprocess.run(
        [CHROMIUM, *flags, *mode, page.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )


def render(page: Path, tmp: Path) -> tuple[np.ndarray, str]:
    """(the screenshot, ``(H, W, 3) uint8`` BGR; the DOM after rendering)."""
    shot = tmp / f"{page.parent.parent.name}-{page.parent.name}.png"
    done = _chromium(page, tmp, f"--screenshot={shot}")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    dom = _chromium(page, tmp, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    return image, dom.stdout


def assert_not_blank(image: np.ndarray) -> None:
    assert image is not None and image.shape[:2] == (2000, 1280)
    colours = np.unique(image.reshape(-1, 3)[::7], axis=0)
    assert float(image.std()) > 20.0 and len(colours) > 200, (float(image.std()), len(colours))


def h2(dom: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<h2>(.*?)</h2>", dom)]


@pytest.fixture(scope="module")
def browser() -> str:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (`make test-deps` installs Debian's chromium)")
    return CHROMIUM


def test_dataset_and_model_cards_render_in_chromium(browser: str, tmp_path: Path) -> None:
    from tasks.training.retrain import RetrainRequest, retrain
    from tasks.training.train import TrainRequest

    root = tmp_path / "root"
    source = write_activity_source(tmp_path / "mpii", train_per_class=6, valid_per_class=2)
    built = build_activity_version(root, source)
    assert built["validation"] == "passed"
    run = extract(write_ucf101(tmp_path / "ucf101"), root)
    seq = stages.run(stages.RebuildRequest("ucf101-keypoints", str(root), str(run)), map)
    result = retrain(RetrainRequest(TrainRequest("pose-mlp", str(root), "mpii", epochs=2, seed=0)))
    assert result.decision.status == "first_model"

    done = _cli("report", "mpii", "--root", str(root))
    assert done.returncode == 0, done.stderr
    page = Path(done.stdout.strip())
    assert page == root / "datasets" / "mpii" / built["version"] / "_report" / "index.html"
    html = page.read_text()
    assert "http://" not in html.replace("http://human-pose.mpi-inf.mpg.de/", "") and "<script" not in html
    image, dom = render(page, tmp_path)
    assert_not_blank(image)
    assert h2(dom) == DATASET_HEADINGS
    assert f"Dataset card: mpii@{built['version']}" in dom and "arms up" in dom and "Andriluka" in dom
    assert dom.count('class="tile"') == 12 and ">24</td>" in dom and ">8</td>" in dom and "passed" in dom

    done = _cli(
        "report",
        f"ucf101-keypoints@{seq['version']}",
        "--root",
        str(root),
        "--out",
        str(tmp_path / "seq" / "card.html"),
    )
    assert done.returncode == 0, done.stderr
    image, dom = render(Path(done.stdout.strip()), tmp_path)
    assert_not_blank(image)
    assert "Sample skeleton images" in h2(dom) and dom.count('class="tile"') == seq["counts"]["sequences"]
    assert "no_person" in dom and "nobody detected" in dom  # the fake's clip without people, by reason with its detail

    done = _cli("report", "model", "pose-mlp", "--root", str(root))
    assert done.returncode == 0, done.stderr
    page = Path(done.stdout.strip())
    assert page == Path(result.train.dir) / "report" / "index.html"
    image, dom = render(page, tmp_path)
    assert_not_blank(image)
    assert h2(dom) == MODEL_HEADINGS
    assert f"mpii@{built['version']}" in dom and "macro_f1" in dom and "first_model" in dom and "F1 per class" in dom
    assert dom.count("<img") >= 3  # curves, confusion matrix, worst predictions

    assert _cli("report", "model", "--root", str(root)).returncode == 2

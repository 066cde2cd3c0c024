"""Streaming decode on generated videos, bad files made for real, and the real UCF101 clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from schemas.errors import RejectReason, VideoDecodeError
from tasks.video.decode import VideoReader
from tasks.video.sampling import SamplingSpec
from tests.video.fakes import make_frame, write_frame_folder, write_vfr_video, write_video


def _all(
    reader: VideoReader, spec: SamplingSpec | None = None, clip_id: str = "c"
) -> tuple[list[int], list[np.ndarray]]:
    sel = reader.selector(spec, clip_id) if spec else None
    idx, frames = [], []
    for chunk in reader.chunks(sel):
        idx += chunk.indices
        frames += chunk.frames
    return idx, frames


def test_generated_avi_counts_and_pixels(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.avi", num_frames=23, fps=25, width=64, height=48)
    reader = VideoReader(path, chunk_frames=5)
    assert (reader.info.fps, reader.info.frames_declared, reader.info.width, reader.info.height) == (25.0, 23, 64, 48)
    assert reader.info.decoder.startswith("pyav-") and reader.info.decoder.endswith("/mjpeg")
    idx, frames = _all(reader)
    assert idx == list(range(23)) and reader.report.frames_decoded == 23
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    # MJPG is lossy: the bright square is where it was drawn
    diff = np.abs(frames[7].astype(int) - make_frame(7).astype(int))
    assert diff.mean() < 4
    assert reader.report.max_chunk_frames == 5 and not reader.report.variable_frame_rate


def test_decoder_holds_at_most_chunk_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "long.avi", num_frames=40)
    reader = VideoReader(path, chunk_frames=4)
    chunks = reader.chunks()
    first = next(chunks)
    # lazy: after the first chunk, only that chunk's frames were decoded (streaming, not a full read)
    assert len(first) == 4 and reader.report.frames_decoded == 4
    sizes = [len(first)] + [len(c) for c in chunks]
    assert sizes == [4] * 10 and reader.report.max_chunk_frames == 4


def test_every_k_and_uniform_stop_early(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.avi", num_frames=20)
    idx, _ = _all(VideoReader(path, chunk_frames=3), SamplingSpec(mode="every_k", k=6))
    assert idx == [0, 6, 12, 18]
    reader = VideoReader(path)
    spec = SamplingSpec(mode="uniform", num_frames=4, seed=1)
    idx, _ = _all(reader, spec, "clip")
    expected = reader.selector(spec, "clip").sequence
    assert expected is not None and idx == sorted(set(expected.tolist()))
    assert reader.report.frames_decoded == max(idx) + 1  # decoding stops after the last wanted frame


def test_variable_frame_rate_detected_and_sampled_in_time(tmp_path: Path) -> None:
    path = write_vfr_video(tmp_path / "vfr.mp4", [0, 33, 66, 100, 300, 333, 600, 633])
    reader = VideoReader(path)
    idx, _ = _all(reader, SamplingSpec(mode="fps", target_fps=5))
    assert reader.report.variable_frame_rate and reader.report.frames_decoded == 8
    assert idx == [0, 4, 6]  # 0 s, then first frame at/after 0.2 s (0.3), then after 0.5 s (0.6)
    const = VideoReader(write_vfr_video(tmp_path / "cfr.mp4", [i * 40 for i in range(6)]))
    _all(const)
    assert not const.report.variable_frame_rate


def test_missing_empty_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError) as missing:
        VideoReader(tmp_path / "nope.avi")
    assert missing.value.reason == RejectReason.VIDEO_MISSING
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(VideoDecodeError) as empty:
        VideoReader(tmp_path / "empty.avi")
    assert empty.value.reason == RejectReason.VIDEO_EMPTY
    (tmp_path / "junk.avi").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    with pytest.raises(VideoDecodeError) as junk:
        VideoReader(tmp_path / "junk.avi")
    assert junk.value.reason == RejectReason.VIDEO_UNREADABLE and "junk.avi" in junk.value.message


def test_stream_without_a_decoder_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    # OpenCV muxes an MJPG-tagged stream into MPEG-PS that FFmpeg then opens with no codec context
    path = write_video(tmp_path / "mjpg_in_ps.mpg", num_frames=3, fourcc="MJPG")
    with pytest.raises(VideoDecodeError) as exc:
        VideoReader(path)
    assert exc.value.reason == RejectReason.VIDEO_UNREADABLE and "no decoder" in exc.value.message


def test_truncated_file_is_reported_after_partial_frames(tmp_path: Path) -> None:
    data = write_video(tmp_path / "full.avi", num_frames=30).read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    reader = VideoReader(tmp_path / "cut.avi")
    assert reader.info.frames_declared == 30
    with pytest.raises(VideoDecodeError) as err:
        _all(reader)
    # MJPG cut mid-frame: FFmpeg fails on the partial packet
    assert err.value.reason == RejectReason.VIDEO_TRUNCATED and "cut.avi" in err.value.message
    assert 0 < reader.report.frames_decoded < 30


def test_real_clip_cut_in_half_decodes_fewer_than_declared(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / "media/videos/mmaction2_tests_test.avi").read_bytes()
    (tmp_path / "half.avi").write_bytes(data[: len(data) // 2])
    reader = VideoReader(tmp_path / "half.avi")
    with pytest.raises(VideoDecodeError) as err:
        _all(reader)
    assert err.value.reason == RejectReason.VIDEO_TRUNCATED and "of 164 declared" in err.value.message
    assert 0 < reader.report.frames_decoded < 164


def test_image_sequence_glob(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "R01", "img_l01_c01_s01_a01_r01_{:05d}.pgm", 5)
    write_frame_folder(folder, "other_{:05d}.ppm", 2)
    reader = VideoReader(str(folder / "img_l01_c01_s01_a01_r01_*.pgm"), chunk_frames=2, sequence_fps=22.0)
    assert reader.info.frames_declared == 5 and reader.info.decoder.startswith("opencv-imread/")
    idx, frames = _all(reader)
    assert idx == [0, 1, 2, 3, 4] and frames[0].shape == (48, 64, 3)
    (folder / "img_l01_c01_s01_a01_r01_00002.pgm").write_bytes(b"P5 broken")
    with pytest.raises(VideoDecodeError) as err:
        _all(VideoReader(str(folder / "img_l01_c01_s01_a01_r01_*.pgm")))
    assert err.value.reason == RejectReason.VIDEO_TRUNCATED
    with pytest.raises(VideoDecodeError) as none:
        VideoReader(str(folder / "nothing_*.pgm"))
    assert none.value.reason == RejectReason.VIDEO_EMPTY


def test_real_ucf101_clip_frame_count(shared_data: Path) -> None:
    reader = VideoReader(shared_data / "media/videos/mmaction2_tests_test.avi", chunk_frames=16)
    assert (reader.info.fps, reader.info.frames_declared, reader.info.width, reader.info.height) == (
        25.0,
        164,
        320,
        240,
    )
    idx, _ = _all(reader, SamplingSpec(mode="every_k", k=10))
    assert idx == list(range(0, 164, 10)) and reader.report.frames_decoded == 164
    assert reader.report.max_chunk_frames <= 16


def test_real_h264_mp4_frame_count(shared_data: Path) -> None:
    reader = VideoReader(shared_data / "media/videos/mmaction2_demo.mp4", chunk_frames=64)
    idx, _ = _all(reader, SamplingSpec(mode="fps", target_fps=7))
    assert reader.report.frames_decoded == 280 and reader.info.frames_declared == 280
    assert len(idx) == 70  # 10 s at 28 fps sampled at 7 fps: every 4th frame


def test_image_sequence_with_non_utf8_names_in_a_separate_process(tmp_path: Path) -> None:
    """A frame folder whose files are named in Latin-1: ``cv2.imread`` killed the process (SIGSEGV).

    Run in a child process so a crash fails this test instead of the whole session.
    """
    import os
    import subprocess
    import sys

    folder = write_frame_folder(tmp_path / "caf", "f_{:05d}.ppm", 3)
    for i in range(3):
        os.rename(os.fsencode(folder / f"f_{i:05d}.ppm"), os.fsencode(folder) + b"/caf\xe9_%05d.ppm" % i)
    script = (
        "import sys; from tasks.video.decode import VideoReader; "
        "r = VideoReader(sys.argv[1]); print(sum(len(c) for c in r.chunks()), r.info.width, r.info.height)"
    )
    repo = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, cwd=repo,
                         env={**os.environ, "PYTHONPATH": str(repo)}, timeout=120)  # fmt: skip
    assert res.returncode == 0, f"rc={res.returncode} {res.stderr[-2000:]}"
    assert res.stdout.split() == ["3", "64", "48"]
    reader = VideoReader(folder)  # and the pixels are those written
    idx, frames = _all(reader)
    assert idx == [0, 1, 2] and np.array_equal(frames[1], make_frame(1))

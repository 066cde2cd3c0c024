"""Generators of small real videos and frame folders (test data written to ``tmp_path``).

Frames are black with one or two bright squares whose positions depend on the frame index, so a
test-double pose backend can find them and a test can predict exactly where.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def blob_centres(index: int, width: int, height: int, people: int = 1) -> list[tuple[int, int]]:
    """Centre (x, y) in pixels of each square drawn on frame ``index``."""
    out = []
    for p in range(people):
        x = 8 + (index * 3 + p * 37) % max(1, width - 16)
        y = 8 + (index * 2 + p * 23) % max(1, height - 16)
        out.append((x, y))
    return out


def make_frame(index: int, width: int = 64, height: int = 48, people: int = 1) -> np.ndarray:
    """``(H, W, 3) uint8`` BGR frame with ``people`` 7x7 white squares (none if ``people`` is 0)."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 1] = (index * 5) % 64  # a changing dim background so consecutive frames differ
    for x, y in blob_centres(index, width, height, people):
        frame[y - 3 : y + 4, x - 3 : x + 4] = 255
    return frame


def write_video(
    path: Path, num_frames: int, fps: float = 25.0, width: int = 64, height: int = 48, people: int = 1,
    fourcc: str = "MJPG",
) -> Path:  # fmt: skip
    """Write a real video with OpenCV's VideoWriter (MJPG in .avi by default).

    Args:
        path: Output file (parents are created).
        num_frames: Frames to write.
        fps: Declared frame rate.
        width: Frame width in pixels.
        height: Frame height in pixels.
        people: Squares per frame.
        fourcc: Codec four-character code.

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path} with {fourcc}")
    for i in range(num_frames):
        writer.write(make_frame(i, width, height, people))
    writer.release()
    return path


def write_frame_folder(folder: Path, pattern: str, num_frames: int, width: int = 64, height: int = 48) -> Path:
    """Write ``num_frames`` images named ``pattern.format(i)`` (``.pgm`` greyscale or ``.ppm`` colour)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        frame = make_frame(i, width, height)
        name = pattern.format(i)
        image = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if name.endswith(".pgm") else frame
        if not cv2.imwrite(str(folder / name), image):
            raise RuntimeError(f"cannot write {folder / name}")
    return folder


def write_vfr_video(path: Path, times_ms: list[int], width: int = 64, height: int = 48) -> Path:
    """Write an MP4 (MPEG-4 part 2) whose frames sit at the given presentation times (variable rate).

    Args:
        path: Output ``.mp4`` file.
        times_ms: Increasing presentation time of each frame in milliseconds.
        width: Frame width in pixels.
        height: Frame height in pixels.

    Returns:
        ``path``.
    """
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(make_frame(i, width, height), format="bgr24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

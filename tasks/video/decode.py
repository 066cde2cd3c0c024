"""Streaming video decode in bounded chunks (PyAV), and image sequences read the same way.

Why PyAV (FFmpeg bindings) and not ``cv2.VideoCapture``:

- exact presentation timestamps per frame, so target-fps sampling works in time and variable
  frame rate is detected (OpenCV only offers ``CAP_PROP_POS_MSEC`` guesses);
- the container's declared frame count, compared with the frames actually decoded, detects
  truncated files (``VideoCapture.read`` returns False for both end-of-file and corrupt data);
- decode errors are exceptions with FFmpeg's message, mapped to reject reasons;
- FFmpeg's own decode threads release the GIL, so decoding the next chunk overlaps inference;
- frames that sampling skips are never converted to arrays.

Memory: :meth:`VideoReader.chunks` is a generator that holds at most ``chunk_frames`` decoded
frames at a time (plus the decoder's few internal reference frames), whatever the video length.

A path containing ``*`` (or a folder) is an image sequence (MHAD's ``.pgm``/``.ppm`` frame
folders): files are read in sorted order with OpenCV, greyscale expanded to BGR.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from schemas.errors import RejectReason, VideoDecodeError
from tasks.video.sampling import FrameSelector, SamplingSpec

IMAGE_SUFFIXES = (".pgm", ".ppm", ".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class VideoInfo:
    """What the container declares about a video.

    Attributes:
        path: The file (or frame glob).
        decoder: ``pyav-<version>/<codec>`` or ``opencv-imread/<version>``.
        fps: Declared average frame rate (0 if unknown).
        frames_declared: Frame count in the container header (0 if it has none).
        width: Frame width in pixels.
        height: Frame height in pixels.
    """

    path: str
    decoder: str
    fps: float
    frames_declared: int
    width: int
    height: int


@dataclass
class FrameChunk:
    """Up to ``chunk_frames`` consecutive sampled frames.

    Attributes:
        indices: Frame index (0-based, presentation order) of each frame.
        times_s: Timestamp in seconds of each frame.
        frames: ``(H, W, 3) uint8`` BGR arrays.
    """

    indices: list[int] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class DecodeReport:
    """What decoding actually found, filled while :meth:`VideoReader.chunks` runs.

    Attributes:
        frames_decoded: Frames decoded (sampled or not).
        frames_sampled: Frames yielded.
        variable_frame_rate: True when frame durations differ by more than half a frame.
        max_chunk_frames: Largest chunk yielded (never above ``chunk_frames``).
    """

    frames_decoded: int = 0
    frames_sampled: int = 0
    variable_frame_rate: bool = False
    max_chunk_frames: int = 0


def is_image_sequence(path: str | Path) -> bool:
    """True for a frame glob (contains ``*``) or a folder."""
    return "*" in str(path) or Path(path).is_dir()


def _sequence_files(path: str) -> list[str]:
    pattern = os.path.join(path, "*") if Path(path).is_dir() else path
    return [f for f in sorted(glob.glob(pattern)) if f.lower().endswith(IMAGE_SUFFIXES)]


class VideoReader:
    """Open a video or image sequence and stream its sampled frames in bounded chunks.

    Args:
        path: Video file, frame glob or frame folder.
        chunk_frames: Most frames held (and yielded) at once.
        sequence_fps: Frame rate of an image sequence (its files carry none).

    Raises:
        VideoDecodeError: ``video_missing`` if the file is absent, ``video_unreadable`` if it is not a
            video FFmpeg can open (no video stream, unknown codec), ``video_empty`` for an empty
            image sequence.
    """

    def __init__(self, path: str | Path, chunk_frames: int = 32, sequence_fps: float = 0.0) -> None:
        if chunk_frames < 1:
            raise VideoDecodeError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.path = str(path)
        self.chunk_frames = chunk_frames
        self.report = DecodeReport()
        self._files: list[str] | None = None
        if is_image_sequence(self.path):
            self._files = _sequence_files(self.path)
            if not self._files:
                raise VideoDecodeError(f"no frame images match {self.path}", reason=RejectReason.VIDEO_EMPTY)
            first = _imread(self._files[0])
            if first is None:
                raise VideoDecodeError(
                    f"cannot read frame image {self._files[0]}", reason=RejectReason.VIDEO_UNREADABLE
                )
            self.info = VideoInfo(self.path, f"opencv-imread/{cv2.__version__}", float(sequence_fps),
                                  len(self._files), int(first.shape[1]), int(first.shape[0]))  # fmt: skip
            return
        self.info = self._probe()

    def _probe(self) -> VideoInfo:
        import av

        if not os.path.isfile(self.path):
            raise VideoDecodeError(
                f"video not found: {self.path}", hint="check the clip's video_path", reason=RejectReason.VIDEO_MISSING
            )
        if os.path.getsize(self.path) == 0:
            raise VideoDecodeError(f"video file is empty (0 bytes): {self.path}", reason=RejectReason.VIDEO_EMPTY)
        try:
            with av.open(self.path) as container:
                if not container.streams.video:
                    raise VideoDecodeError(f"{self.path} has no video stream", reason=RejectReason.VIDEO_UNREADABLE)
                stream = container.streams.video[0]
                if stream.codec_context is None:  # e.g. an MJPG tag inside MPEG-PS: FFmpeg has no decoder for it
                    raise VideoDecodeError(
                        f"{self.path}: FFmpeg has no decoder for its video stream",
                        hint="re-encode the clip (e.g. ffmpeg -i in -c:v libx264 out.mp4)", reason=RejectReason.VIDEO_UNREADABLE,
                    )  # fmt: skip
                codec = stream.codec_context.name
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                return VideoInfo(self.path, f"pyav-{av.__version__}/{codec}", float(rate) if rate else 0.0,
                                 int(stream.frames or 0), int(stream.width), int(stream.height))  # fmt: skip
        except av.FFmpegError as exc:
            raise VideoDecodeError(
                f"FFmpeg cannot open {self.path}: {exc}", hint="the file is not a video or its codec is unsupported",
                reason=RejectReason.VIDEO_UNREADABLE,
            ) from exc  # fmt: skip

    def count_frames(self) -> int:
        """Frames in the clip without decoding them (packets demuxed only), for uniform sampling.

        Returns:
            The declared count when the container has one, else the number of video packets.
        """
        if self.info.frames_declared:
            return self.info.frames_declared
        import av

        try:
            with av.open(self.path) as container:
                return sum(1 for pkt in container.demux(container.streams.video[0]) if pkt.size)
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"cannot demux {self.path}: {exc}", reason=RejectReason.VIDEO_UNREADABLE) from exc

    def selector(self, spec: SamplingSpec, clip_id: str) -> FrameSelector:
        """A :class:`FrameSelector` for this clip (counts frames first when ``spec`` needs it)."""
        total = self.count_frames() if spec.needs_frame_count else None
        return FrameSelector(spec, clip_id, total)

    def chunks(self, selector: FrameSelector | None = None) -> Iterator[FrameChunk]:
        """Decode and yield the sampled frames, ``chunk_frames`` at most per chunk.

        Args:
            selector: Which frames to keep (None: every frame).

        Yields:
            :class:`FrameChunk` objects; the caller should drop each before asking for the next.

        Raises:
            VideoDecodeError: ``video_truncated`` if decoding fails part way or fewer frames than
                declared were decoded; ``video_empty`` if no frame decodes at all. Raised after the
                frames decoded so far were yielded: the caller discards the clip's partial results.
        """
        selector = selector or FrameSelector(SamplingSpec())
        source = self._sequence_frames() if self._files is not None else self._video_frames(selector)
        chunk = FrameChunk()
        pts: list[int] = []
        last = selector.last_index
        for index, t_s, pts_value, make_array in source:
            self.report.frames_decoded += 1
            pts.append(pts_value)
            if selector.wants(index, t_s):
                chunk.indices.append(index)
                chunk.times_s.append(t_s)
                chunk.frames.append(make_array())
                if len(chunk) == self.chunk_frames:
                    yield self._emit(chunk)
                    chunk = FrameChunk()
            if last is not None and index >= last:
                break
        if len(chunk):
            yield self._emit(chunk)
        self.report.variable_frame_rate = _variable_rate(pts)
        if self.report.frames_decoded == 0:
            raise VideoDecodeError(f"no frame could be decoded from {self.path}", reason=RejectReason.VIDEO_EMPTY)
        declared = self.info.frames_declared
        if last is None and declared and self.report.frames_decoded < declared:
            raise VideoDecodeError(
                f"{self.path}: decoded {self.report.frames_decoded} of {declared} declared frames",
                hint="the file is truncated; download it again", reason=RejectReason.VIDEO_TRUNCATED,
            )  # fmt: skip

    def _emit(self, chunk: FrameChunk) -> FrameChunk:
        self.report.frames_sampled += len(chunk)
        self.report.max_chunk_frames = max(self.report.max_chunk_frames, len(chunk))
        return chunk

    def _video_frames(self, selector: FrameSelector) -> Iterator[tuple[int, float, int, object]]:
        import av

        try:
            container = av.open(self.path)
        except av.FFmpegError as exc:
            raise VideoDecodeError(
                f"FFmpeg cannot open {self.path}: {exc}", reason=RejectReason.VIDEO_UNREADABLE
            ) from exc
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = self.info.fps or 25.0
            # AVI has no per-frame timestamps (FFmpeg synthesises pts, out of order with packed
            # B-frames: 1, 2, 4, 3, 5...): it is constant-rate by construction, so time = index / fps.
            index_clock = "avi" in (container.format.name or "").split(",")
            index = 0
            last_t_s = float("-inf")
            frames = container.decode(stream)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.FFmpegError as exc:
                    if index == 0:
                        raise VideoDecodeError(
                            f"cannot decode {self.path}: {exc}", reason=RejectReason.VIDEO_UNREADABLE
                        ) from exc
                    raise VideoDecodeError(
                        f"{self.path}: decoding failed after {index} frames: {exc}",
                        hint="the file is truncated or corrupt", reason=RejectReason.VIDEO_TRUNCATED,
                    ) from exc  # fmt: skip
                if index_clock or frame.time is None:
                    t_s, pts_value = index / fps, index
                else:
                    t_s, pts_value = float(frame.time), int(frame.pts)
                t_s = last_t_s = max(t_s, last_t_s)  # never backwards, whatever the container says
                yield index, t_s, pts_value, (lambda f=frame: f.to_ndarray(format="bgr24"))
                index += 1
        finally:
            container.close()

    def _sequence_frames(self) -> Iterator[tuple[int, float, int, object]]:
        fps = self.info.fps or 1.0
        for index, name in enumerate(self._files or []):
            image = _imread(name)
            if image is None:
                raise VideoDecodeError(f"cannot read frame image {name}", reason=RejectReason.VIDEO_TRUNCATED)
            if image.dtype != np.uint8:
                image = cv2.convertScaleAbs(image, alpha=255.0 / max(1.0, float(image.max())))
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            elif image.shape[2] == 4:
                image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
            yield index, index / fps, index, (lambda im=image: im)


def _imread(name: str) -> np.ndarray | None:
    """``cv2.imread(name, IMREAD_UNCHANGED)`` for any file name: the bytes are read by Python.

    ``cv2.imread`` crashes the process (SIGSEGV) on a name that is not UTF-8, which Python holds
    with lone surrogates; ``cv2.imdecode`` of the file's bytes gives the same pixels.

    Returns:
        The image (``(H, W)`` or ``(H, W, C)``, as stored), or None if absent or not decodable.
    """
    try:
        data = np.fromfile(name, np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None


def _variable_rate(pts: list[int]) -> bool:
    """True when presentation-time steps differ by more than half the median step."""
    if len(pts) < 3:
        return False
    steps = np.diff(np.sort(np.asarray(pts, dtype=np.int64)))
    steps = steps[steps > 0]
    if steps.size < 2:
        return False
    median = float(np.median(steps))
    return bool(float(steps.max() - steps.min()) > 0.5 * median)

"""Exports of extracted keypoints: OpenPose per-frame JSON, COCO results JSON, skeleton images
(HDF5), and an overlay video a person can check.

Unknown joints (NaN) are written as ``0, 0, 0`` in OpenPose and COCO files, as those formats do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa

from schemas.errors import ExtractionError
from schemas.skeletons import get_skeleton
from storage.fs import atomic_local_path
from storage.layout import ExtractionPaths
from tasks.evaluation.coco_eval import coco_keypoint_results, keypoint_triples
from tasks.extract.ids import stable_image_id
from tasks.extract.plan import VideoPlan
from tasks.keypoints.api import FramePoses
from tasks.transforms.draw import draw_skeleton
from tasks.video.decode import VideoReader


def openpose_frame_json(poses: FramePoses) -> dict[str, object]:
    """OpenPose's per-frame ``*_keypoints.json`` content (``version`` 1.3).

    Args:
        poses: People in the frame, ``(P, J, 3)``.

    Returns:
        ``{"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": [x, y, c, ...], ...}]}``.
    """
    people = [
        {
            "person_id": [-1],
            "pose_keypoints_2d": keypoint_triples(kp),
            "face_keypoints_2d": [],
            "hand_left_keypoints_2d": [],
            "hand_right_keypoints_2d": [],
            "pose_keypoints_3d": [],
            "face_keypoints_3d": [],
            "hand_left_keypoints_3d": [],
            "hand_right_keypoints_3d": [],
        }
        for kp in poses.keypoints
    ]
    return {"version": 1.3, "people": people}


def write_openpose_json(out_dir: Path, stem: str, frames: Iterable[tuple[int, FramePoses]]) -> list[Path]:
    """Write ``{stem}_{frame:012d}_keypoints.json`` per frame, as OpenPose's ``--write_json`` does.

    Returns:
        The files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, poses in frames:
        path = out_dir / f"{stem}_{index:012d}_keypoints.json"
        with atomic_local_path(str(path)) as tmp:
            Path(tmp).write_text(json.dumps(openpose_frame_json(poses)))
        written.append(path)
    return written


def coco_results(
    images: Iterable[tuple[str, FramePoses]], skeleton: str, image_ids: Mapping[str, int] | None = None
) -> list[dict[str, object]]:
    """COCO keypoint results of named images, written by :func:`tasks.evaluation.coco_eval.coco_keypoint_results`.

    Each keypoint triple's third value is the joint's score (that module's documented convention).

    Args:
        images: (image file name, people) pairs.
        skeleton: Skeleton of the keypoints (``openpose18``...).
        image_ids: File name -> COCO image id (:func:`tasks.extract.images.resolve_image_ids`, which
            settles every id before inference); None: the number of a COCO-style name
            (``000000000785.jpg`` -> 785) or the stable id of any other name.

    Returns:
        The results list (dump it with ``json.dump``).

    Raises:
        ExtractionError: If ``image_ids`` is given and lacks an image.
    """
    out: list[dict[str, object]] = []
    for name, poses in images:
        if image_ids is None:
            image_id = stable_image_id(name)
        elif name in image_ids:
            image_id = image_ids[name]
        else:
            raise ExtractionError(
                f"no image id for {name!r}",
                hint="the --gt json lists images by file_name: pass only images it lists, or leave out --gt",
            )
        if poses.num_people:
            out.extend(coco_keypoint_results(poses.keypoints, poses.person_scores, image_id, skeleton))
    return out


#: Joints scored below this are not drawn in skeleton images and overlays.
MIN_DRAW_SCORE = 0.05


def _draw_people(canvas: np.ndarray, keypoints_xyc: np.ndarray, skeleton: str, scale: float = 1.0) -> np.ndarray:
    """Draw ``(P, J, 3)`` x, y, score people on ``canvas`` in place (one colour per limb, white joints).

    A joint is drawn when it was found with a score of at least :data:`MIN_DRAW_SCORE`
    (:func:`tasks.transforms.draw.draw_skeleton` does the drawing).
    """
    kp = np.asarray(keypoints_xyc, np.float32)
    if kp.shape[0] == 0:  # nobody (FramePoses of no people may be (0, 3))
        return canvas
    found = np.isfinite(kp[..., 0]) & np.isfinite(kp[..., 1]) & (kp[..., 2] >= MIN_DRAW_SCORE)
    vis = np.where(found, 2, 0).astype(np.int8)
    return draw_skeleton(canvas, kp[..., :2], vis, skeleton, scale=scale, palette="limbs", in_place=True)


def skeleton_image(
    poses: FramePoses, skeleton: str, frame_hw: tuple[int, int], canvas_hw: tuple[int, int]
) -> np.ndarray:
    """The notebooks' skeleton image: the frame's people drawn on a blank canvas.

    The frame is scaled to fit ``canvas_hw`` keeping its aspect (top-left aligned).

    Returns:
        ``(H, W, 3) uint8``.
    """
    h, w = canvas_hw
    scale = min(h / frame_hw[0], w / frame_hw[1])
    return _draw_people(np.zeros((h, w, 3), np.uint8), poses.keypoints, skeleton, scale)


def write_skeleton_images_h5(
    path: Path,
    frames: Sequence[tuple[str, int, FramePoses]],
    skeleton: str,
    frame_hw: Mapping[str, tuple[int, int]],
    canvas_hw: tuple[int, int] = (64, 64),
) -> int:
    """Write skeleton images to one HDF5 file (byte-stable: ``track_times=False``), atomically.

    Datasets: ``images`` ``(N, H, W, 3) uint8`` (chunked per image, gzip), ``clip_id`` ``(N,)``,
    ``frame_index`` ``(N,) int32``; attrs ``skeleton``, ``canvas_hw``.

    Args:
        path: Output ``.h5``.
        frames: (clip_id, frame_index, people) per image.
        skeleton: Skeleton name.
        frame_hw: clip_id -> source frame (height, width).
        canvas_hw: Canvas size.

    Returns:
        Images written.
    """
    n = len(frames)
    h, w = canvas_hw
    with atomic_local_path(str(path)) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        images = f.create_dataset("images", (n, h, w, 3), np.uint8, chunks=(1, h, w, 3) if n else None,
                                  compression="gzip" if n else None, track_times=False)  # fmt: skip
        for i, (clip_id, _, poses) in enumerate(frames):
            images[i] = skeleton_image(poses, skeleton, frame_hw[clip_id], canvas_hw)
        f.create_dataset(
            "clip_id", data=np.array([c for c, _, _ in frames], dtype=h5py.string_dtype()), track_times=False
        )
        f.create_dataset("frame_index", data=np.array([k for _, k, _ in frames], np.int32), track_times=False)
        f.attrs["skeleton"] = skeleton
        f.attrs["canvas_hw"] = list(canvas_hw)
    return n


def write_overlay_video(
    video_path: str, poses_by_frame: Mapping[int, FramePoses], skeleton: str, out_path: Path, chunk_frames: int = 32
) -> int:
    """Re-decode ``video_path`` (streaming) and write it with the found skeletons drawn (H.264 MP4).

    Frames without an entry in ``poses_by_frame`` (not sampled) are written undrawn.

    Returns:
        Frames written.
    """
    import av

    reader = VideoReader(video_path, chunk_frames=chunk_frames)
    fps = reader.info.fps or 25.0
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with atomic_local_path(str(out_path)) as tmp, av.open(tmp, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height = (
            reader.info.width - reader.info.width % 2,
            reader.info.height - reader.info.height % 2,
        )
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for chunk in reader.chunks():
            for index, frame in zip(chunk.indices, chunk.frames, strict=True):
                canvas = np.ascontiguousarray(frame[: stream.height, : stream.width])
                if index in poses_by_frame:
                    _draw_people(canvas, poses_by_frame[index].keypoints, skeleton)
                for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="bgr24")):
                    container.mux(packet)
                written += 1
        for packet in stream.encode():
            container.mux(packet)
    return written


def poses_from_table(table: pa.Table, clip_id: str, num_joints: int) -> dict[int, FramePoses]:
    """Frame index -> people of one clip, from KEYPOINTS_SCHEMA rows (inverse of the worker's table).

    Args:
        table: Keypoints rows.
        clip_id: Which clip.
        num_joints: J (for frames' empty arrays).

    Returns:
        Only frames that have rows (frames with nobody are absent).
    """
    import pyarrow.compute as pc

    rows = table.filter(pc.equal(table["clip_id"], clip_id)).sort_by(
        [("frame_index", "ascending"), ("person_index", "ascending")]
    )
    out: dict[int, FramePoses] = {}
    if rows.num_rows == 0:
        return out
    kp = np.asarray(rows["keypoints"].combine_chunks().flatten().flatten().to_numpy(zero_copy_only=False), np.float32)
    kp = kp.reshape(rows.num_rows, num_joints, 3)
    frames = rows["frame_index"].to_numpy()
    scores = rows["person_score"].to_numpy(zero_copy_only=False).astype(np.float32)
    for f in np.unique(frames):
        sel = frames == f
        out[int(f)] = FramePoses(kp[sel], scores[sel])
    return out


def export_video_run(
    plan: VideoPlan,
    skeleton: str,
    openpose_json: Path | None = None,
    skeleton_h5: Path | None = None,
    overlay: Path | None = None,
) -> list[str]:
    """Exports of a finished ``extract video`` run, read back from its part and clips files.

    Args:
        plan: The run (:func:`tasks.extract.plan.plan_videos`), already extracted.
        skeleton: Skeleton of its keypoints.
        openpose_json: Folder for OpenPose per-frame JSON of every extracted clip (every sampled frame,
            people or not).
        skeleton_h5: HDF5 file of skeleton images of every sampled frame.
        overlay: MP4 of the first video with its skeletons drawn.

    Returns:
        One line per export written, saying what and where.

    Raises:
        ExtractionError: If ``overlay`` is asked and the first video was rejected.
    """
    import pyarrow.parquet as pq

    run = ExtractionPaths(plan.run_dir)
    table = pq.read_table(run.part(plan.shard.index))
    rows = {r["clip_id"]: r for r in pq.read_table(run.clips(plan.shard.index)).to_pylist()}
    joints = get_skeleton(skeleton).num_joints
    empty = FramePoses(np.zeros((0, joints, 3), np.float32), np.zeros(0, np.float32))
    extracted = [c for c in plan.clips if c.clip_id in rows]

    def frames_of(clip_id: str) -> list[tuple[int, FramePoses]]:
        per_frame = poses_from_table(table, clip_id, joints)
        return [(i, per_frame.get(i, empty)) for i in sorted(set(rows[clip_id]["sampled_frame_indices"]))]

    lines = []
    if openpose_json is not None:
        for clip in extracted:
            write_openpose_json(openpose_json, clip.clip_id, frames_of(clip.clip_id))
        lines.append(f"OpenPose JSON -> {openpose_json}")
    if skeleton_h5 is not None:
        items, sizes = [], {}
        for clip in extracted:
            info = VideoReader(clip.video_path).info
            sizes[clip.clip_id] = (info.height, info.width)
            items += [(clip.clip_id, i, poses) for i, poses in frames_of(clip.clip_id)]
        write_skeleton_images_h5(skeleton_h5, items, skeleton, sizes)
        lines.append(f"skeleton images ({len(items)}) -> {skeleton_h5}")
    if overlay is not None:
        first = plan.clips[0]
        if first.clip_id not in rows:
            raise ExtractionError(
                f"{first.record.get('video_path') or first.clip_id} was rejected; no overlay to draw",
                hint="see the failures above; --overlay draws the first video given",
            )
        n = write_overlay_video(first.video_path, poses_from_table(table, first.clip_id, joints), skeleton, overlay)
        lines.append(f"overlay ({n} frames) -> {overlay}")
    return lines

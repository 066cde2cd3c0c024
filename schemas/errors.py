"""The domain error hierarchy and the reject reason codes.

Every error says what went wrong *and* what to do about it. Data checks raise these (never a bare
``assert``); per-sample problems become rows in ``rejects`` with a :class:`RejectReason` code instead.
"""

from __future__ import annotations

from enum import StrEnum


class PosepipeError(Exception):
    """Base class of every error posepipe raises on purpose.

    Args:
        message: What went wrong, naming the file, key or parameter involved.
        hint: What the user should do about it.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}" + (f" (hint: {hint})" if hint else ""))


class ConfigError(PosepipeError):
    """A parameter, setting or command-line option is invalid."""


class UnknownDatasetError(ConfigError):
    """No adapter is registered under the requested dataset name."""


class SourceError(PosepipeError):
    """An input file or folder is missing or unusable as a whole."""


class AnnotationFormatError(SourceError):
    """An annotation file is malformed (bad JSON, truncated ``.mat``, missing key, wrong shape)."""


class SchemaError(PosepipeError):
    """Records do not conform to the pyarrow schema they are written with."""


class SkeletonError(PosepipeError):
    """Unknown skeleton, or keypoint arrays whose joint count does not match the skeleton."""


class StorageError(PosepipeError):
    """Reading or writing the dataset store failed."""


class LockError(StorageError):
    """Another process holds the lock of the dataset being rebuilt."""


class VersionNotFoundError(StorageError):
    """The requested dataset version or sample does not exist (or was never committed)."""


class ValidationFailedError(PosepipeError):
    """The validation gate refused a dataset version; ``LATEST`` was left untouched."""


class VersionNotValidatedError(ValidationFailedError):
    """A reader or a training run was pointed at a version whose gate failed (or never ran)."""


class ShardChecksumError(StorageError):
    """A shard's bytes (Parquet) or contents (HDF5) do not match the sha256 its manifest recorded."""


class RejectRatioExceededError(PosepipeError):
    """More samples were rejected than the configured ``max_reject_ratio`` allows."""


class FetchError(PosepipeError):
    """A download or archive extraction failed."""


class TransientFetchError(FetchError):
    """A download failed in a way worth retrying (connection reset, timeout, HTTP 5xx)."""


class ChecksumMismatchError(FetchError):
    """A downloaded file's size or sha256 differs from the registered checksum."""


class UnsafeArchiveError(FetchError):
    """An archive member would escape the target folder, is a device/link, or exceeds the limits."""


class ExtractionError(PosepipeError):
    """Keypoint extraction (video decode or model inference) failed."""


class ModelError(ExtractionError):
    """A pose model file is missing, has the wrong checksum or cannot be loaded."""


class TrainingError(PosepipeError):
    """Training could not start or had to stop (bad configuration, NaN loss, no checkpoint to resume)."""


class TaskDataError(TrainingError):
    """The dataset lacks what the training task needs (FLIC joints on COCO, no activity labels...)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; ``epoch`` and ``step`` say where. Nothing is registered."""

    def __init__(self, message: str, hint: str = "", epoch: int = -1, step: int = -1) -> None:
        self.epoch = epoch
        self.step = step
        super().__init__(message, hint)


class ModelNotFoundError(TrainingError):
    """The requested registered model (task, version or alias) does not exist."""


class ChampionMovedError(TrainingError):
    """The ``champion`` alias changed between reading it and moving it (another retrain promoted first).

    ``expected`` is what this run compared against, ``current`` what the alias holds now.
    """

    def __init__(self, message: str, hint: str = "", expected: str | None = None, current: str | None = None) -> None:
        self.expected = expected
        self.current = current
        super().__init__(message, hint)


class EvaluationInputError(PosepipeError):
    """Ground-truth or prediction files for an evaluation are missing or have the wrong shape."""


class RejectReason(StrEnum):
    """Reason codes of rows in ``rejects``. Stable strings: they are stored in Parquet."""

    CROWD = "crowd"
    ZERO_KEYPOINTS = "zero_keypoints"
    BOX_TOO_SMALL = "box_too_small"
    INVALID_BOX = "invalid_box"
    DUPLICATE_ID = "duplicate_id"
    IMAGE_MISSING = "image_missing"
    IMAGE_UNREADABLE = "image_unreadable"
    IMAGE_SIZE_MISMATCH = "image_size_mismatch"
    PATH_ESCAPES_SOURCE = "path_escapes_source"
    KEYPOINTS_OUT_OF_IMAGE = "keypoints_out_of_image"
    MALFORMED_ANNOTATION = "malformed_annotation"
    UNKNOWN_IMAGE = "unknown_image"
    BAD_FLAG = "flagged_bad"
    UNCHECKED = "unchecked"
    NO_ANNOTATION = "no_annotation"
    VIDEO_MISSING = "video_missing"
    VIDEO_UNREADABLE = "video_unreadable"
    VIDEO_EMPTY = "video_empty"
    VIDEO_TRUNCATED = "video_truncated"
    INFERENCE_FAILED = "inference_failed"
    UNKNOWN_LABEL = "unknown_label"
    NOT_IN_SPLIT = "not_in_split"  # outside the chosen split protocol (FLIC-plus, MPII single-person)
    NONFINITE_KEYPOINT = "nonfinite_keypoint"  # a labelled (v > 0) joint whose x or y is NaN/inf
    BOX_OUTSIDE_IMAGE = "box_outside_image"  # person box misses the image or overhangs it past the tolerance
    IMAGE_SIZE_INVALID = "image_size_invalid"  # annotated image width/height not positive
    IMAGE_TOO_LARGE = "image_too_large"  # annotated or real image over the per-image pixel cap
    PATH_NOT_UTF8 = "path_not_utf8"  # a file name that is not valid UTF-8 (cannot be stored or named)
    NO_PERSON = "no_person"  # a clip of an extraction run with nobody detected in any frame (never zeros)


class DownloadRefusedError(FetchError):
    """The server refused a download with an HTTP 4xx status, or a ``file://`` path is missing.

    Never retried: the same request would get the same answer. ``status`` holds the HTTP status
    (None for a missing local file).
    """

    def __init__(self, message: str, hint: str = "", status: int | None = None) -> None:
        self.status = status
        super().__init__(message, hint)


class CorruptArchiveError(FetchError):
    """An archive cannot be read (truncated, bad headers, CRC error): download it again."""


class VideoDecodeError(ExtractionError):
    """A video (or frame sequence) cannot be decoded; ``reason`` is the reject code it maps to.

    The extraction pipeline turns it into a ``rejects`` row for the clip and goes on with the shard.
    """

    def __init__(self, message: str, hint: str = "", reason: RejectReason = RejectReason.VIDEO_UNREADABLE) -> None:
        self.reason = reason
        super().__init__(message, hint)


class DiskFullError(StorageError):
    """Writing failed for lack of room: the filesystem is full (ENOSPC), over quota (EDQUOT), past the
    process's file size limit (EFBIG) or read-only (EROFS). Not the input's fault, and not transient.

    ``path`` is what was being written, ``filesystem`` the mount point holding it, ``needed_bytes``
    how much more the operation needed when it is known (None otherwise).
    """

    def __init__(
        self,
        message: str,
        hint: str = "",
        path: str = "",
        filesystem: str = "",
        needed_bytes: int | None = None,
    ) -> None:
        self.path = path
        self.filesystem = filesystem
        self.needed_bytes = needed_bytes
        super().__init__(message, hint)

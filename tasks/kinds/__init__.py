"""Record kinds, one module each, registered when first asked for. Use :func:`get_kind`.

Adding a kind (keypoint sequences, predictions...) is one module here plus its test; the rebuild
sequence in ``tasks/rebuild.py`` needs no change.
"""

from __future__ import annotations

from tasks.kinds.base import RecordKind, ShardResult, ShardSpec, ShardSummary, build_and_validate, get_kind

__all__ = ["RecordKind", "ShardResult", "ShardSpec", "ShardSummary", "build_and_validate", "get_kind"]

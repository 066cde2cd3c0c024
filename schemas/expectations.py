"""Expectation suites generated from the record schemas (the schema is the single source of truth).

This module only *describes* the suite as data (GX expectation class names + kwargs), so it has no
Great Expectations import; ``tasks/validate.py`` turns the specs into GX 1.x expectations and runs
them. Every non-nullable field gets a not-null expectation, the column set must match the schema,
and the dataset context adds domain checks (known splits, skeleton name, output size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

_INTEGER_BOUNDS: dict[str, tuple[int | None, int | None]] = {
    "image_width_px": (1, None),
    "image_height_px": (1, None),
    "person_index": (0, None),
    "pixels_row": (0, None),
}


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation as data.

    Attributes:
        type: GX 1.x expectation class name (``ExpectColumnValuesToNotBeNull``...).
        kwargs: Its keyword arguments.
    """

    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short human label: ``type(column)``."""
        col = self.kwargs.get("column")
        return f"{self.type}({col})" if col else self.type


def suite_for(schema: pa.Schema, *, dataset: str, splits: tuple[str, ...], skeleton: str | None, out_hw: tuple[int, int] | None) -> list[ExpectationSpec]:
    """The shard suite for ``schema``.

    Args:
        schema: Record schema of the shard (e.g. ``PROCESSED_SAMPLES_SCHEMA``).
        dataset: Dataset name every row must carry.
        splits: Allowed split names (empty: any).
        skeleton: Skeleton name every row must carry (None: not checked).
        out_hw: Expected crop (height, width), when the schema has crop fields.

    Returns:
        Expectation specs, in a stable order.
    """
    specs = [ExpectationSpec("ExpectTableColumnsToMatchSet", {"column_set": list(schema.names), "exact_match": True})]
    for f in schema:
        if not f.nullable:
            specs.append(ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": f.name}))
        if f.name in _INTEGER_BOUNDS:
            lo, hi = _INTEGER_BOUNDS[f.name]
            specs.append(ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": f.name, "min_value": lo, "max_value": hi}))
    if "sample_id" in schema.names:
        specs.append(ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "sample_id"}))
    if "dataset" in schema.names:
        specs.append(ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "dataset", "value_set": [dataset]}))
    if splits and "split" in schema.names:
        specs.append(ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "split", "value_set": list(splits)}))
    if skeleton and "skeleton" in schema.names:
        specs.append(ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "skeleton", "value_set": [skeleton]}))
    if out_hw and "crop_height_px" in schema.names:
        specs.append(ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "crop_height_px", "value_set": [out_hw[0]]}))
        specs.append(ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "crop_width_px", "value_set": [out_hw[1]]}))
    return specs


#: Semantic checks run beside the GX suite on every shard (names used in reports).
SEMANTIC_CHECKS = (
    "joint_count_matches_skeleton",
    "visibility_in_domain",
    "visible_keypoints_inside_crop",
    "visible_keypoints_finite",
    "crop_box_intersects_image",
    "crop_pixels_present",
    "crop_pixels_not_constant",
)

#: Checks across all shards of a version, run at commit.
VERSION_CHECKS = ("sample_ids_unique_across_shards", "splits_disjoint")

#: Semantic checks of clip shards (video datasets).
CLIP_CHECKS = ("folds_never_cut_a_group", "one_label_index_per_label")

#: Semantic checks of sequence shards (``{dataset}-keypoints``), per shard.
SEQUENCE_CHECKS = (
    "sequence_shape_matches",
    "scores_in_unit_interval",
    "found_keypoints_finite",
    "keypoints_inside_frame",
    "frame_indices_strictly_increasing",
    "frame_indices_within_frames_decoded",
    "labels_known",
    "skeleton_images_present",
)

#: Checks across all shards of a sequence version, run at commit.
SEQUENCE_VERSION_CHECKS = (
    "clip_ids_unique_across_shards",
    "one_side_per_fold",
    "folds_never_cut_a_group",
    "folds_never_cut_a_subject",
    "one_label_index_per_label",
    "one_label_per_label_index",
    "one_skeleton_backend_model",
)


def sequence_expectations(schema: pa.Schema, dataset: str) -> list[ExpectationSpec]:
    """The GX suite of a sequence shard: :func:`suite_for` plus unique ids, known labels and positive sizes.

    Args:
        schema: ``SEQUENCES_SCHEMA``.
        dataset: Dataset name every row must carry.
    """
    specs = suite_for(schema, dataset=dataset, splits=(), skeleton=None, out_hw=None)
    specs.append(ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "clip_id"}))
    specs.append(ExpectationSpec("ExpectColumnValueLengthsToBeBetween", {"column": "label", "min_value": 1}))
    for column in ("label_index", "pixels_row"):
        specs.append(ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": column, "min_value": 0}))
    for column in ("num_frames", "num_people", "num_joints", "frame_width_px", "frame_height_px", "frames_decoded"):
        specs.append(ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": column, "min_value": 1}))
    return specs

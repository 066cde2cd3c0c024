"""The section headings each card must show, in order (the browser test and the builder test both check them)."""

DATASET_HEADINGS = ["Source", "Counts per split", "Rejects by reason", "Samples with skeletons", "Validation", "Build parameters"]
MODEL_HEADINGS = ["Lineage", "Metrics", "Training curves", "Per-joint / per-class", "Worst predictions", "Decision against the champion"]

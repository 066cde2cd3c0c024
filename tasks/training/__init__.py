"""Keras models and shard readers (TensorFlow imported lazily). See DESIGN.md.

Metrics live in :mod:`tasks.evaluation.metrics`, next to evaluation; training imports them from there.
"""

"""Evaluation: reading ground-truth/prediction files, the metrics, COCO evaluation, plots.

The metrics are pure numpy in :mod:`tasks.evaluation.metrics`; training code and ``posepipe evaluate``
(``flows/commands/evaluate.py``, which only parses options and calls into here) both import them from there.
"""

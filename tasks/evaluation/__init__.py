"""Evaluation inputs and outputs: reading ground-truth/prediction files, COCO evaluation, plots.

The metrics themselves are pure numpy in :mod:`tasks.training.metrics`; ``posepipe evaluate``
(``flows/commands/evaluate.py``) only parses options and calls into here.
"""

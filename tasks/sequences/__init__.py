"""Keypoint sequences for action recognition: person tracking, normalisation, frame sampling,
skeleton images and the PYSKL/MMAction2 export. Pure numpy (and OpenCV for drawing); the record
kind that builds a sequence dataset is :mod:`tasks.kinds.sequences`.
"""

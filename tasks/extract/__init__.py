"""Keypoint extraction pipeline: clip shards, the resumable shard worker, exports.

Imports neither Prefect, Dask nor TensorFlow (the backend module imports TensorFlow itself).
"""

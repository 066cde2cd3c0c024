"""Schemas: skeletons, record schemas, errors and settings. Imports neither Prefect nor Dask."""

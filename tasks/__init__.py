"""The work: plain functions that import neither Prefect nor Dask (see flows/ for the wrappers)."""

"""Storage: fsspec paths, atomic writes, Parquet/HDF5 shard writers, manifests and locks."""

"""A run: one shard's scan, the decode sandbox, the Dask graph and cluster, incremental
planning, the job. The only layer that imports Dask."""

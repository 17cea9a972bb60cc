"""Pure values and maths: moments and their kernels, the summary protocol, file sets and
shards, typed keys, scan results. No I/O, no Dask; NumPy (and numba in the kernels) only."""

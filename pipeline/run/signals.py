"""Keeping the terminal's Ctrl-C away from the processes a run starts.

Ctrl-C sends SIGINT to every process of the terminal's foreground process group: the client,
the local Dask workers and their decode sandboxes. Only the client should act on it (it
stops the workers itself, at once, without tracebacks).

- Threads and ``subprocess`` children inherit a blocked SIGINT from the thread that starts
  them: Dask's threads and the processes they start (a batch system's ``sbatch``...) are
  started inside :func:`sigint_blocked`. The main thread, which alone runs Python's signal
  handlers, is unblocked after each block, and a Ctrl-C typed meanwhile is delivered then.
- Processes that multiprocessing *spawns* (the LocalCluster's workers) start with an empty
  signal mask whatever the thread that spawned them (``SigBlk`` 0 in ``/proc/PID/status``), so
  they ignore SIGINT themselves: from their first moments when the CLI started them
  (:mod:`pipeline.cli.main`, imported again as ``__mp_main__`` in each of them, before
  Dask), and once started in any case (the worker preload, :mod:`pipeline.run.prestart`).
  Before that, a worker's asyncio handler sometimes beat the client's SIGKILL and printed a
  ``KeyboardInterrupt`` traceback on the run's stderr. The decode sandboxes ignore it too.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["sigint_blocked"]


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread (and so in the threads and processes it starts) for
    the block; a SIGINT that arrives meanwhile is delivered when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)

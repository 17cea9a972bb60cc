"""Keeping the terminal's Ctrl-C away from the processes a run starts.

Ctrl-C sends SIGINT to every process of the terminal's foreground process group: the client,
the local Dask workers and their decode sandboxes. Only the client should act on it (it
stops the workers itself, at once, without tracebacks), so the workers must be born with
SIGINT blocked: the signal mask is inherited by the threads a thread starts and by the
processes it starts (through fork and exec), while Python handlers are not.

Dask starts worker processes from its own threads, some made when ``distributed`` is
imported, the others when a cluster starts; both moments happen inside :func:`sigint_blocked`
(the CLI imports the run code in it, :mod:`pipeline.graph` starts clusters in it). The main
thread, which alone runs Python's signal handlers, is unblocked after each, and a Ctrl-C typed
meanwhile is delivered then.
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

"""Shard scans in a supervised child process: a decoder that hangs or crashes costs one
skipped file, not a worker or the run.

Decoders are C code fed hostile bytes. A decode that never returns cannot be interrupted in
a thread, and a segfault takes the whole Dask worker down (and, retried, every worker that
gets the task). So each worker thread keeps one child process (``python -m
pipeline.run.sandbox``) that runs :func:`~pipeline.run.scan.scan_shard` on chunks of a shard and
writes the index of the file it is reading or decoding into a shared page. The parent waits
for the chunk's result; if one file's read or decode outlasts the time limit it kills the
child, or if the child dies, it knows which file did it: that file is skipped with the
reason, a fresh child scans the rest of the chunk. Finished chunks are never decoded twice.
(A read that hangs, on a stale network mount say, is stopped like a decode that hangs.)

The child reads its files itself (it opens its own filesystem from the
:class:`~pipeline.fs.location.Location`), so image bytes never cross the process boundary;
only file lists go in and merged results come out.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import mmap
import os
import signal
import site
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ..config import ScanOptions
from ..core.files import Shard
from ..core.result import ScanResult, Skip
from ..fs.location import Location

# The worker side needs none of the decoders, the kernels or the record's Arrow code: only
# the child imports them (``_serve``), so a worker starts ~0.4 s faster (``-X importtime``).

__all__ = [
    "CHUNK_FILES",
    "SandboxError",
    "current_child",
    "prestart_children",
    "scan_in_sandbox",
]

#: Files per request to the child: at most this many are decoded again after a crash.
CHUNK_FILES = 256
#: Child deaths in a row outside any decode (a broken install, the OOM killer...) before
#: the task fails instead of trying once more.
_DEATHS_OUTSIDE_DECODE = 2
#: What the child is doing: the index of the file being decoded + 1, minus (the index of the
#: file being read + 1), or 0 between files.
_PROGRESS = struct.Struct("<q")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class SandboxError(RuntimeError):
    """The sandbox child cannot do its work (it dies before any decode)."""


@dataclass(frozen=True)
class _Died:
    """The child stopped answering: while reading or decoding ``index`` (or between files:
    None)."""

    index: int | None
    reason: str


@dataclass(frozen=True)
class _Busy:
    """The file the child is on, and whether it is ``"reading"`` or ``"decoding"`` it."""

    index: int
    phase: str


def scan_in_sandbox(location: Location, shard: Shard, options: ScanOptions) -> ScanResult:
    """:func:`~pipeline.run.scan.scan_shard` in a child process, each file's decode limited to
    ``options.decode_timeout`` seconds; a file that hangs or crashes the decoder is skipped."""
    started = time.perf_counter()
    total = ScanResult()
    with _borrow_child() as child:
        for start in range(0, len(shard.files), CHUNK_FILES):
            chunk = shard.part(start, start + CHUNK_FILES)
            total = total.merge(child.scan(location, chunk, options))
    return dataclasses.replace(total, seconds=time.perf_counter() - started)


class _Child:
    """One ``python -m pipeline.run.sandbox`` process and the parent's end of its channels."""

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        parent_end, child_end = socket.socketpair()
        self._page_file = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child)
        self._page_file.truncate(mmap.PAGESIZE)
        self._page = mmap.mmap(self._page_file.fileno(), mmap.PAGESIZE)
        env = _child_environ()
        with child_end:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline.run.sandbox",
                    str(child_end.fileno()),
                    str(self._page_file.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=(child_end.fileno(), self._page_file.fileno()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                process_group=0,  # the terminal's Ctrl-C is the client's, not the decoder's
            )
        self._conn = Connection(parent_end.detach())

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def busy(self) -> _Busy | None:
        """The file (index in the current request) being read or decoded, or None."""
        (value,) = _PROGRESS.unpack_from(self._page, 0)
        if not value:
            return None
        return _Busy(value - 1, "decoding") if value > 0 else _Busy(-value - 1, "reading")

    def scan(self, location: Location, shard: Shard, options: ScanOptions) -> ScanResult:
        """Scan ``shard``, skipping (and restarting after) each file that hangs or crashes."""
        result = ScanResult()
        pending = shard
        deaths = 0
        while pending.files:
            outcome = self._request(location, pending, options)
            if isinstance(outcome, ScanResult):
                return result.merge(outcome)
            self._restart()
            if outcome.index is None:
                deaths += 1
                if deaths >= _DEATHS_OUTSIDE_DECODE:
                    raise SandboxError(
                        f"the decode sandbox died {deaths} times outside any decode "
                        f"({outcome.reason})"
                    )
                continue
            deaths = 0
            bad = pending.files[outcome.index]
            pending = pending.without(outcome.index)
            result = result.merge(ScanResult(skipped=(Skip(bad.path, outcome.reason),)))
        return result

    def _request(
        self, location: Location, shard: Shard, options: ScanOptions
    ) -> ScanResult | _Died:
        decode_timeout = options.decode_timeout
        _PROGRESS.pack_into(self._page, 0, 0)
        try:
            self._conn.send((location, shard, options))
        except OSError:
            return _Died(None, self._exit_reason(None))
        tick = min(1.0, max(0.01, decode_timeout / 20))
        watched, since = None, time.monotonic()
        while not self._conn.poll(tick):
            now = time.monotonic()
            busy = self.busy()
            if busy != watched:
                watched, since = busy, now
            elif busy is not None and now - since > decode_timeout:
                return _Died(busy.index, f"{busy.phase} took longer than {decode_timeout:g} s")
            if not self.alive():
                break
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):
            busy = self.busy()
            return _Died(None if busy is None else busy.index, self._exit_reason(busy))
        if status == "error":
            raise value  # what scan_shard raised (a read that kept failing): the task fails
        assert isinstance(value, ScanResult)
        return value

    def _exit_reason(self, busy: _Busy | None) -> str:
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            if busy is not None and busy.phase == "reading":
                return f"the process reading it crashed ({name})"
            return f"the decoder crashed ({name})"
        return f"the decode process exited with status {code}"

    def _restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        """Stop the child (at once: it may be stuck in a decoder) and free the channels."""
        if self.alive():
            self._process.kill()
        self._process.wait()
        self._conn.close()
        self._page.close()
        self._page_file.close()


def _child_environ() -> dict[str, str]:
    """This process's environment, with PYTHONPATH leading to this very ``pipeline`` when it
    is not installed in site-packages (a source checkout on a worker's ``sys.path``)."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    installed = {os.path.abspath(p) for p in (*site.getsitepackages(), site.getusersitepackages())}
    if root not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


_threads = threading.local()
#: Children started ahead of the first task (:func:`prestart_children`), for any thread.
_spare: list[_Child] = []
_spare_lock = threading.Lock()


def current_child() -> _Child | None:
    """This thread's child, if it has started one."""
    return getattr(_threads, "child", None)


def prestart_children(count: int) -> None:
    """Start ``count`` children now, for the first tasks' threads to take: their imports
    and warm-up then overlap the rest of the cluster's start instead of delaying the first
    shard. Call from a thread that lives as long as the process (a worker's event loop):
    each child dies with the thread that started it."""
    started = [_Child() for _ in range(count)]
    with _spare_lock:
        _spare.extend(started)


def _take_spare() -> _Child | None:
    """A prestarted child still alive, or None."""
    with _spare_lock:
        while _spare:
            child = _spare.pop()
            if child.alive():
                return child
            child.close()
    return None


@contextlib.contextmanager
def _borrow_child() -> Iterator[_Child]:
    """This thread's child, started when it has none or when its child died.

    A child belongs to the thread that started it (one per concurrent task): the kernel
    kills it when that thread ends (see :func:`_die_with_parent`), so it is never lent to
    another thread.
    """
    child = current_child()
    if child is None or not child.alive():
        if child is not None:
            child.close()
        child = _threads.child = _take_spare() or _Child()
    try:
        yield child
    except BaseException:
        child.close()  # its state is unknown: a task that failed does not hand it on
        _threads.child = None
        raise


def _warm_up() -> None:
    """Load what a first 8-bit decode would (codecs, the compiled kernel), so that the time
    limit counts decoding only (the 16-bit kernel loads with the first 16-bit image)."""
    from ..core.histogram import summarize
    from ..decode import warm_up_decoders

    for decoded in warm_up_decoders():
        summarize(decoded.pixels)


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when the thread that started it ends (its worker
    was killed, say): a decoder stuck in a hostile file would never read the end of file on
    its channel. Linux only; elsewhere the end of file still stops an idle child."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def _serve(channel_fd: int, page_fd: int) -> None:
    """The child's loop: scan each requested shard, report the file being decoded."""
    from .scan import scan_shard

    conn = Connection(channel_fd)
    page = mmap.mmap(page_fd, mmap.PAGESIZE)
    _warm_up()

    def on_decode(index: int) -> None:
        _PROGRESS.pack_into(page, 0, index + 1)

    def on_read(index: int) -> None:
        _PROGRESS.pack_into(page, 0, -(index + 1))

    while True:
        try:
            location, shard, options = conn.recv()
        except EOFError:  # the parent is gone
            return
        try:
            reply: tuple[str, Any] = (
                "ok", scan_shard(location, shard, options, on_decode, on_read)
            )
        except Exception as exc:
            reply = ("error", exc)
        try:
            conn.send(reply)
        except OSError:  # the parent is gone
            return
        except Exception as exc:  # an exception that does not pickle
            conn.send(("error", SandboxError(f"{type(exc).__name__}: {exc}")))


if __name__ == "__main__":
    # Ctrl-C is the client's to handle (see pipeline.run.signals): this process ends with its
    # parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(int(sys.argv[3]))
    with contextlib.suppress(BrokenPipeError, ConnectionError, EOFError):
        _serve(int(sys.argv[1]), int(sys.argv[2]))

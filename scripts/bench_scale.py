"""Memory and time of ``imgstats compute`` as the collection grows (issue 15), with ``synth://``.

For each size: the listing alone (streamed and counted in a fresh process), then a separate
``dask scheduler`` and ``dask worker`` processes, a full run submitted to them with
``--scheduler``, and an incremental run with 0.1% churn (half new files in new folders after
the last, clustered; half changed files, scattered). Printed per run: client peak RSS (the
``imgstats compute`` process, from ``wait4``), scheduler peak RSS (its VmHWM), client CPU
seconds (listing, planning, submission and merging: they overlap the scan), wall time, and
the record bytes the incremental run read and wrote against the record's size.

    python scripts/bench_scale.py --quick                  # 20,000 files
    python scripts/bench_scale.py --sizes 1000000,3000000 --log scale.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent

LISTING = """
import json, os, sys, time
import fsspec
from pipeline.fs.listing import iter_images
started = time.perf_counter()
fs = fsspec.filesystem("synth", files=int(sys.argv[1]))
count = sum(1 for _ in iter_images(fs, "images"))
seconds = time.perf_counter() - started
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"files": count, "seconds": seconds, "peak_kb": hwm}))
"""


def _hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


def _listing(files: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", LISTING, str(files)], check=True,
                         capture_output=True, text=True).stdout
    return dict(json.loads(out))


class Cluster:
    """A ``dask scheduler`` process and a ``dask worker`` process with ``workers`` workers."""

    def __init__(self, workers: int, folder: Path) -> None:
        address_file = folder / "scheduler.json"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.scheduler = subprocess.Popen(
            [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", address_file], **quiet)  # type: ignore[call-overload]
        while not address_file.exists():
            time.sleep(0.1)
        time.sleep(0.5)
        self.address = json.loads(address_file.read_text())["address"]
        self.workers = subprocess.Popen(
            [BIN / "dask", "worker", self.address, "--nworkers", str(workers), "--nthreads", "1",
             "--no-dashboard", "--memory-limit", "0"], **quiet)  # type: ignore[call-overload]
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)

    def scheduler_peak_kb(self) -> int:
        return _hwm_kb(self.scheduler.pid)

    def close(self) -> None:
        for process in (self.workers, self.scheduler):
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _compute(address: str, store: Path, options: dict[str, Any]) -> dict[str, Any]:
    """One ``imgstats compute`` run: wall, client peak RSS and CPU, its stats file's ``run``."""
    command = [str(BIN / "imgstats"), "compute", "synth://images", "--out", str(store),
               "--source-options", json.dumps(options), "--scheduler", address]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {stderr.decode()}")
    url = stdout.decode().strip().splitlines()[-1]
    run = json.loads(Path(url.removeprefix("file://")).read_text())["run"]
    return {"wall": wall, "peak_kb": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime,
            "run": run}


def _du(folder: Path) -> int:
    """Bytes under ``folder``, counted by ``du`` in a process of its own. A child started
    after a walk here reports this process's peak as its own ``ru_maxrss`` (Linux carries
    the high-water mark across ``exec``): ``rglob`` over the 315,000 segments of 10^7 files
    took a fresh process from 12 to 310 MB, and ``true`` started after it reported 310 MB;
    the incremental client at 10^7 reported 360 MB when its own ``VmHWM`` was 222 MB."""
    out = subprocess.run(["du", "-sb", str(folder)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


def measure(files: int, workers: int) -> dict[str, Any]:
    churn = max(1, files // 2000)  # 0.05% added + 0.05% changed
    listing = _listing(files)
    with tempfile.TemporaryDirectory(prefix="imgstats-scale-") as tmp:
        folder = Path(tmp)
        store = folder / "store"
        cluster = Cluster(workers, folder)
        try:
            full = _compute(cluster.address, store, {"files": files})
            scheduler_full = cluster.scheduler_peak_kb()
            record = _du(store / "segments")
            incremental = _compute(cluster.address, store, {
                "files": files, "added": churn, "changed": churn, "scatter": True})
            scheduler_peak = cluster.scheduler_peak_kb()
        finally:
            cluster.close()
    costs = incremental["run"]["record"]
    return {
        "files": files,
        "listing_seconds": listing["seconds"],
        "listing_peak_mb": listing["peak_kb"] / 1024,
        "full_wall": full["wall"],
        "full_client_cpu": full["cpu"],
        "full_client_peak_mb": full["peak_kb"] / 1024,
        "scheduler_peak_mb_full": scheduler_full / 1024,
        "incremental_wall": incremental["wall"],
        "incremental_client_cpu": incremental["cpu"],
        "incremental_client_peak_mb": incremental["peak_kb"] / 1024,
        "scheduler_peak_mb": scheduler_peak / 1024,
        "incremental_files_read": incremental["run"]["files_read"],
        "record_bytes": record,
        "record_read": costs["bytes_read"],
        "record_written": costs["bytes_written"],
    }


def _row(m: dict[str, Any]) -> str:
    moved = (m["record_read"] + m["record_written"]) / m["record_bytes"]
    return (
        f"| {m['files']:,} | {m['full_client_peak_mb']:.0f} / "
        f"{m['incremental_client_peak_mb']:.0f} | {m['scheduler_peak_mb']:.0f} | "
        f"{m['listing_seconds']:.1f} | {m['full_client_cpu']:.0f} / "
        f"{m['incremental_client_cpu']:.0f} | {m['full_wall']:.0f} / {m['incremental_wall']:.0f} | "
        f"{m['record_read'] / 2**20:.2f} / {m['record_written'] / 2**20:.2f} of "
        f"{m['record_bytes'] / 2**20:.1f} MB ({moved:.2%}) |"
    )


HEADER = (
    "| files | client peak RSS MB (full / incr.) | scheduler peak RSS MB | listing s | "
    "client CPU s (full / incr.) | total wall s (full / incr.) | "
    "record read / written by the 0.1% incremental run |\n|" + " --- |" * 7
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,3000000,10000000")
    parser.add_argument("--quick", action="store_true", help="20,000 files only")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log", type=Path, help="append each size's figures as JSON here")
    args = parser.parse_args()
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    results = []
    for files in sizes:
        results.append(measure(files, args.workers))
        if args.log:
            with args.log.open("a") as log:
                log.write(json.dumps(results[-1]) + "\n")
        print(_row(results[-1]), flush=True)
    print(HEADER)
    print("\n".join(_row(m) for m in results))
    if len(results) > 1:
        first, last = results[0], results[-1]
        for name in ("full_client_peak_mb", "incremental_client_peak_mb", "scheduler_peak_mb"):
            print(f"{name}: {last[name] / first[name]:.2f}x from {first['files']:,} to "
                  f"{last['files']:,} files")

if __name__ == "__main__":
    main()

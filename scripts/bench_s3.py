"""Concurrent versus sequential reads of many small objects from S3 (moto server + latency).

    python scripts/bench_s3.py [--files 300] [--latency 0.02]

Starts moto's S3 server on 127.0.0.1 behind a proxy that adds a fixed latency per request
(real S3 has 10-50 ms to first byte), uploads small PNGs, and reads them all twice in one
run: one blocking ``cat_file`` after another, then through ``pipeline.fs.reading.read_files`` (the
path a shard task takes), which fetches a window of objects concurrently.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pipeline.core.files import FileEntry  # noqa: E402
from pipeline.fs.location import resolve  # noqa: E402
from pipeline.fs.reading import read_files  # noqa: E402

from s3_proxy import ProxyBehaviour, s3_proxy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.02)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "s3_server.py")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        endpoint = f"http://127.0.0.1:{int(server.stdout.readline())}"
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        fs.mkdir("bench")
        rng = np.random.default_rng(0)
        entries = []
        for i in range(args.files):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
            fs.pipe_file(f"bench/small/{i:06d}.png", buffer.getvalue())
            entries.append(FileEntry(f"{i:06d}.png", len(buffer.getvalue()), ""))
        behaviour = ProxyBehaviour(latency=args.latency)
        with s3_proxy(endpoint, behaviour) as proxy:
            location = resolve("s3://bench/small", {"endpoint_url": proxy})
            remote = location.filesystem()
            started = time.perf_counter()
            sequential = [remote.cat_file(location.join(e.path)) for e in entries]
            sequential_s = time.perf_counter() - started
            requests_sequential = behaviour.counts["forwarded"]
            started = time.perf_counter()
            single = [remote.cat_file(location.join(e.path), max_concurrency=1) for e in entries]
            single_s = time.perf_counter() - started
            requests_single = behaviour.counts["forwarded"] - requests_sequential
            started = time.perf_counter()
            concurrent = [data for _, data in read_files(remote, location, entries)]
            concurrent_s = time.perf_counter() - started
            requests_concurrent = (
                behaviour.counts["forwarded"] - requests_sequential - requests_single
            )
        assert sequential == single == concurrent, "the read paths got different bytes"
        print(f"{args.files} objects of ~{entries[0].size} bytes, {args.latency * 1000:.0f} ms "
              "added per request, moto server on 127.0.0.1")
        print(f"{'reads':<26}{'seconds':>9}{'objects/s':>11}{'requests':>10}")
        for name, seconds, requests in (
            ("sequential cat_file", sequential_s, requests_sequential),
            ("sequential, one GET each", single_s, requests_single),
            ("pipeline.fs.reading.read_files", concurrent_s, requests_concurrent),
        ):
            print(f"{name:<26}{seconds:>9.2f}{args.files / seconds:>11.0f}{requests:>10}")
        print(f"speed-up: {sequential_s / concurrent_s:.1f}x over cat_file, "
              f"{single_s / concurrent_s:.1f}x over one GET each (bytes identical)")
    finally:
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    main()

"""S3 listed in parallel by prefix against one sequential listing (moto server + latency).

    python scripts/bench_listing.py [--keys 100000] [--folders 100] [--latency 0.02]

A child process runs moto's S3 server, fills a bucket straight through moto's backend
(``data/cNNN/NNNNNN.png``, ``--folders`` folders), and serves it behind the latency proxy of
``tests/s3_proxy.py`` (real S3 has 10-50 ms to first byte). This process then lists the
prefix three ways: s3fs's ``find`` (one flat listing, one page after another: what imgstats
did before), :func:`pipeline.fs.prefixes.list_by_prefix` with one part (the same, streamed),
and ``list_by_prefix`` split by prefix; it checks that all three agree and prints seconds,
requests and the ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import bisect, logging, sys
sys.path.insert(0, sys.argv[4])
from moto.server import ThreadedMotoServer
from moto.s3.models import S3Backend, s3_backends
from s3_proxy import ProxyBehaviour, s3_proxy
logging.getLogger("werkzeug").setLevel(logging.ERROR)
keys, folders, latency, indexed = (int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]),
                                   sys.argv[5] == "indexed")
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
backend = s3_backends["123456789012"]["aws"]
backend.create_bucket("bench", "us-east-1")
for i in range(keys):
    backend.put_object("bench", f"data/c{i % folders:03d}/{i:06d}.png", b"x" * (100 + i % 7))
names = sorted(backend.get_bucket("bench").keys.keys())


def list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
    # moto's answer, from a sorted index: a page costs what its keys cost, not the bucket's
    prefix = prefix or ""
    after = self._pagination_tokens.get(continuation_token) if continuation_token else start_after
    i = bisect.bisect_right(names, after) if after else bisect.bisect_left(names, prefix)
    page = []
    while i < len(names) and names[i].startswith(prefix) and len(page) <= max_keys:
        rest = names[i][len(prefix):]
        if delimiter and delimiter in rest:
            page.append(prefix + rest.split(delimiter)[0] + delimiter)
            i = bisect.bisect_left(names, page[-1][:-1] + chr(ord(delimiter) + 1))
        else:
            page.append(bucket.keys[names[i]])
            i += 1
    return self._truncate_result(page, max_keys)


if indexed:
    S3Backend.list_objects_v2 = list_objects_v2
behaviour = ProxyBehaviour(latency=latency)
with s3_proxy(f"http://127.0.0.1:{server.get_host_and_port()[1]}", behaviour) as proxy:
    print(proxy, flush=True)
    for line in sys.stdin:  # "count": print the requests forwarded so far
        print(behaviour.counts["forwarded"], flush=True)
server.stop()
"""


def main() -> None:
    """Run the benchmark on each server asked for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--server", choices=["moto", "indexed", "both"], default="both",
                        help="moto as it is (a page costs a scan of the whole bucket), or "
                        "moto answering from a sorted index (a page costs its keys, as on S3)")
    args = parser.parse_args()
    ratios = [bench(args, server) for server in
              (["moto", "indexed"] if args.server == "both" else [args.server])]
    print("; ".join(ratios))


def bench(args: argparse.Namespace, kind: str) -> str:
    """List the bucket the three ways through one server; print the table, return the ratio."""
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.keys), str(args.folders), str(args.latency),
         str(ROOT / "tests"), kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdin is not None and server.stdout is not None
    try:
        endpoint = server.stdout.readline().strip()

        def requests() -> int:
            server.stdin.write("count\n")  # type: ignore[union-attr]
            server.stdin.flush()  # type: ignore[union-attr]
            return int(server.stdout.readline())  # type: ignore[union-attr]

        import s3fs

        from pipeline.fs.listing import _find_objects
        from pipeline.fs.prefixes import CONCURRENCY, PARTS, list_by_prefix

        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        runs: dict[str, Callable[[], list[tuple[str, int, str]]]] = {
            "s3fs find, sorted (sequential)": lambda: sorted(_find_objects(fs, "bench/data")),
            "list_by_prefix, 1 part (sequential)": lambda: list(
                list_by_prefix(fs, "bench/data", 1, 1)),
            f"list_by_prefix, {PARTS} parts, {CONCURRENCY} threads": lambda: list(
                list_by_prefix(fs, "bench/data")),
        }
        figures = {}
        listings = []
        for name, run in runs.items():
            fs.invalidate_cache()
            before = requests()
            started = time.perf_counter()
            listings.append(run())
            figures[name] = (time.perf_counter() - started, requests() - before)
        assert all(listing == listings[0] for listing in listings), "the listings differ"
        assert len(listings[0]) == args.keys
    finally:
        server.stdin.close()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print(f"{args.keys:,} keys in {args.folders} folders, {args.latency * 1000:.0f} ms added per "
          f"request, moto server on 127.0.0.1 ({kind})")
    print(f"{'listing':<40}{'seconds':>9}{'requests':>10}{'keys/s':>10}")
    for name, (seconds, count) in figures.items():
        print(f"{name:<40}{seconds:>9.2f}{count:>10}{args.keys / seconds:>10,.0f}")
    baseline = next(iter(figures.values()))[0]
    parallel = list(figures.values())[-1][0]
    print(f"parallel listing: {baseline / parallel:.1f}x the sequential find ({kind})\n")
    return f"{kind}: {baseline / parallel:.1f}x"


if __name__ == "__main__":
    main()

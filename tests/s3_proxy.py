"""A small HTTP proxy on 127.0.0.1 in front of the moto server, to play a misbehaving store.

It can drop request headers (a proxy that ignores S3's conditional writes), add latency
(real S3's first-byte delay), and answer a seeded fraction of requests with 500/503 or a
dropped connection (transient faults).
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class ProxyBehaviour:
    drop_headers: frozenset[str] = frozenset()  # lower-case request header names
    latency: float = 0.0  # seconds before each forwarded request
    fault_rate: float = 0.0  # share of requests answered with a fault
    faults: tuple[str, ...] = ("500", "503", "drop")
    seed: int = 0
    objects_only: bool = False  # faults only on object GETs (listing and writes go through)
    fail_first: int = 0  # the first N eligible requests are answered with the first fault
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def pick_fault(self, method: str, path: str) -> str | None:
        is_object_read = method == "GET" and "?" not in path and path.strip("/").count("/") >= 1
        with self._lock:
            self.counts["object reads"] += is_object_read
            eligible = is_object_read or not self.objects_only
            if eligible and self.fail_first > 0:
                self.fail_first -= 1
                self.counts[self.faults[0]] += 1
                return self.faults[0]
            if eligible and self.fault_rate and self._random.random() < self.fault_rate:
                fault = self._random.choice(self.faults)
                self.counts[fault] += 1
                return fault
            self.counts["forwarded"] += 1
            return None


def _handler(upstream: str, behaviour: ProxyBehaviour) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self) -> None:
            body = self._body()
            fault = behaviour.pick_fault(self.command, self.path)
            if fault == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if fault is not None:
                code = int(fault)
                error = b"SlowDown" if code == 503 else b"InternalError"
                message = b"<Error><Code>" + error + b"</Code><Message>injected</Message></Error>"
                self.send_response(code)
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)
                return
            if behaviour.latency:
                time.sleep(behaviour.latency)
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in _HOP_BY_HOP | behaviour.drop_headers
            }
            headers["Content-Length"] = str(len(body))
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            finally:
                connection.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP | {"content-length"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


@contextmanager
def s3_proxy(upstream: str, behaviour: ProxyBehaviour) -> Iterator[str]:
    """Run the proxy for the block; yields its ``http://127.0.0.1:PORT`` endpoint."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream, behaviour))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

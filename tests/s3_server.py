"""A moto S3 server on 127.0.0.1, port chosen by the OS, in its own process.

    python tests/s3_server.py   # prints the port, serves until stdin closes
"""

from __future__ import annotations

import logging
import sys

from moto.server import ThreadedMotoServer


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()  # the fixture closes stdin (or kills us) to stop the server
    server.stop()


if __name__ == "__main__":
    main()

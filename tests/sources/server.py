"""The local server both source tests answer from: recorded API answers and small generated JPEGs on 127.0.0.1."""

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


def jpeg(seed: int) -> bytes:
    """A small JPEG of random pixels: ``seed`` decides its bytes."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


class Recorded(ThreadingHTTPServer):
    """A server on a free port of 127.0.0.1; ``log`` holds (monotonic time, path, query) of every request."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.log: list[tuple[float, str, dict]] = []

    @property
    def port(self) -> int:
        return self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    """Quiet, with :meth:`send`; a subclass answers ``do_GET`` and calls :meth:`logged` first."""

    server: Recorded

    def log_message(self, *args) -> None:  # quiet
        pass

    def logged(self, path: str, query: dict) -> None:
        self.server.log.append((time.monotonic(), path, query))

    def send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serving(server: Recorded) -> Iterator[Recorded]:
    """``server`` answering in a thread for the length of the block."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()

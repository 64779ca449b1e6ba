"""The local server both source tests answer from: recorded API answers and small generated JPEGs on 127.0.0.1."""

import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

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


def kill_half_way_and_resume(server: Recorded, cmd: list[str], out: Path, photos: int) -> None:
    """Run ``cmd`` (a ``taxolens data`` command writing ``out``), kill it -9 once 3 photos are logged, run it
    again to the end, and check that nothing done before the kill was fetched again and ``photos`` are logged."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / ".fetch" / "log.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {urlparse(e["url"]).path for e in map(json.loads, log.read_text().splitlines())}
    served_before = len(server.log)
    assert 3 <= len(done_before) < photos, "the kill should land half-way"
    assert subprocess.run(cmd, cwd=root, capture_output=True).returncode == 0
    again = [path for _, path, _ in server.log[served_before:] if path.startswith("/photos/")]
    assert not set(again) & done_before, "a photo done before the kill was fetched again"
    assert again  # the second run did fetch the rest
    fetched = [path for _, path, _ in server.log if path.startswith("/photos/")]
    assert len(fetched) - len(set(fetched)) <= 1  # at most the one in flight when the kill came
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert len({e["photo_id"] for e in entries}) == len(entries) == photos
    assert not list(out.rglob("*.part"))

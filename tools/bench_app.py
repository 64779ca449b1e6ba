"""``taxolens bench-app``: many users at once on the local web app, through gradio_client.

Launch::

    taxolens bench-app --detector runs/demo/detector/model.pt --classifier runs/demo/classifier/model.pt \
        --photos ../shared/data/bees-hornets/valid/images --users 20 --per-user 5

Starts the app on 127.0.0.1 in its own process, lets ``--users`` clients each send ``--per-user`` photos
(at once, through Gradio's queue), and prints how many were answered, the median and 95th-percentile
latency, and the app process's peak memory. Only loopback traffic; the run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.config import check_settings
from core.defaults import DETECTOR_SCORE_THRESHOLD, THRESHOLD
from core.io import list_images


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens bench-app``."""
    p = argparse.ArgumentParser(prog="taxolens bench-app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--photos", required=True, help="folder of photos to send")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--per-user", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency")
    p.add_argument("--timeout", type=float, default=900, help="seconds before the run gives up")
    p.add_argument("--engine", default=None, help="the app's --engine (default: configs/inference.yaml's)")
    p.add_argument("--proposals", type=int, default=None, help="the app's --proposals")
    p.add_argument("--threads", type=int, default=None, help="the app's --threads")
    p.add_argument("--json", default=None)
    args = check_settings(p.parse_args(argv))
    import logging

    from gradio_client import Client, handle_file

    logging.getLogger("httpx").setLevel(logging.WARNING)

    photos = list_images(args.photos)
    if not photos:
        raise ValueError(f"{args.photos}: no photos")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    app = subprocess.Popen([sys.executable, "-m", "gradio_app", "--detector", args.detector,
                            "--classifier", args.classifier, "--port", str(port), "--device", "cpu",
                            "--concurrency", str(args.concurrency),
                            *(["--engine", args.engine] if args.engine else []),
                            *(["--proposals", str(args.proposals)] if args.proposals is not None else []),
                            *(["--threads", str(args.threads)] if args.threads is not None else [])],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() > deadline or app.poll() is not None:
                    raise RuntimeError("the app did not start") from None
                time.sleep(0.5)
        start_memory = _peak_mb(app.pid)

        def user(u: int) -> list[float | None]:
            client = Client(url, verbose=False)
            times: list[float | None] = []
            for k in range(args.per_user):
                photo = photos[(u * args.per_user + k) % len(photos)]
                t0 = time.perf_counter()
                try:
                    client.predict(handle_file(str(photo)), DETECTOR_SCORE_THRESHOLD, THRESHOLD, "English",
                                   api_name="/identify")
                    times.append(time.perf_counter() - t0)
                except Exception:  # an unanswered request is counted, not raised
                    times.append(None)
            return times

        app_cpu, clients_cpu = _cpu_s(app.pid), time.process_time()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.users) as pool:
            results = [f.result(timeout=args.timeout) for f in [pool.submit(user, u) for u in range(args.users)]]
        wall = time.perf_counter() - t0
        app_cpu_end, clients_cpu = _cpu_s(app.pid), time.process_time() - clients_cpu
        latencies = sorted(x for r in results for x in r if x is not None)
        sent = args.users * args.per_user
        report = {"users": args.users, "per_user": args.per_user, "sent": sent, "answered": len(latencies),
                  "median_s": round(statistics.median(latencies), 2) if latencies else None,
                  "p95_s": round(latencies[max(0, int(0.95 * len(latencies)) - 1)], 2) if latencies else None,
                  "wall_s": round(wall, 1), "photos_per_second": round(len(latencies) / wall, 2),
                  "app_cpu_s_per_photo": (round((app_cpu_end - app_cpu) / len(latencies), 3)
                                          if latencies and app_cpu is not None and app_cpu_end is not None else None),
                  "clients_cpu_s_per_photo": round(clients_cpu / len(latencies), 3) if latencies else None,
                  "app_memory_after_start_mb": start_memory, "app_peak_memory_mb": _peak_mb(app.pid),
                  "app_concurrency": args.concurrency, "engine": args.engine, "proposals": args.proposals,
                  "threads": args.threads}
    finally:
        app.terminate()
        app.wait(timeout=30)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["answered"] == sent else 1

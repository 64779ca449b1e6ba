r"""Photos downloaded into a data set taxolens trains on as it is, resumable, with an attribution table.

``OUT/<taxon>/obs<observation>_<photo>.jpg`` (``--group-regex '^(obs\d+)_'`` keeps the photos of one
observation on one side of the split), ``OUT/attribution.csv`` (one row per photo) and ``OUT/dataset.md``
(the photographers credited as their licences require). ``OUT/.fetch/log.jsonl`` records every photo tried,
appended and flushed after each one: a run killed at any point and started again fetches nothing twice (a
photo whose file is complete but whose line was not written is read from disk, not downloaded again).
Photos whose id or bytes were seen already are dropped; a photo that fails to download or to decode is
recorded with the reason and skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from core.io import atomic_write_text, csv_text
from sources.photos import Photo

LOGGER = logging.getLogger(__name__)
GROUP_REGEX = r"^(obs\d+)_"
#: iNaturalist's media limits: more than this many bytes of photos an hour, or a day, may get a user blocked
MEDIA_BYTES_PER_HOUR = 5 * 1024**3
MEDIA_BYTES_PER_DAY = 24 * 1024**3
ATTRIBUTION_COLUMNS = ("file", "folder", "group", "source", "observation_id", "observation_url", "photo_id",
                       "photo_url", "observer", "licence", "attribution", "date", "place", "taxon_identified",
                       "sha256")


class MediaBudget:
    """Bytes downloaded in the last hour and day; :meth:`wait` says how long to pause before the next photo."""

    def __init__(self, per_hour: float = MEDIA_BYTES_PER_HOUR, per_day: float = MEDIA_BYTES_PER_DAY) -> None:
        self.per_hour, self.per_day = per_hour, per_day
        self.events: list[tuple[float, int]] = []

    def add(self, nbytes: int, now: float) -> None:
        """Record a download of ``nbytes`` at time ``now`` (seconds)."""
        self.events.append((now, nbytes))

    def wait(self, now: float) -> float:
        """Seconds to wait at ``now`` so that neither limit is passed (0: go on)."""
        self.events = [(t, b) for t, b in self.events if now - t < 86400]
        waits = [0.0]
        for window, limit in ((3600.0, self.per_hour), (86400.0, self.per_day)):
            inside = [(t, b) for t, b in self.events if now - t < window]
            total = sum(b for _, b in inside)
            # wait until enough of the oldest downloads leave the window
            for t, b in inside:
                if total < limit:
                    break
                total -= b
                waits.append(t + window - now)
        return max(waits)


def _log_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            LOGGER.warning("%s: a line cut short by a kill is ignored", path)
    return lines


def _append(path: Path, entry: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _decodes(data: bytes) -> str | None:
    """``None`` if ``data`` is a whole image, else why not."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return None
    except Exception as exc:  # PIL raises many kinds for broken files
        return f"not a readable image ({exc.__class__.__name__}: {exc})"


def fetch(photos: dict[str, Sequence[Photo]], out: Path, get: Callable[[str], Any], *,
          budget: MediaBudget | None = None, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Download ``photos`` (by folder) into ``out``; returns counts per folder and the failures.

    ``get(url)`` returns a response with ``status_code`` and ``content`` (the source's rate-limited session).
    """
    state = out / ".fetch"
    state.mkdir(parents=True, exist_ok=True)
    log = state / "log.jsonl"
    done = {(e["source"], e["photo_id"]): e for e in _log_lines(log)}
    hashes = {e["sha256"]: e["file"] for e in done.values() if e.get("status") == "ok"}
    budget = budget or MediaBudget()
    for folder, chosen in photos.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        for photo in tqdm(chosen, desc=folder, unit="photo"):
            if (photo.source, photo.photo_id) in done:
                continue
            entry = _fetch_one(photo, folder, out, get, hashes, budget, sleep)
            _append(log, entry)
            done[(photo.source, photo.photo_id)] = entry
    return summarise(out, photos)


def _fetch_one(photo: Photo, folder: str, out: Path, get: Callable[[str], Any], hashes: dict[str, str],
               budget: MediaBudget, sleep: Callable[[float], None]) -> dict:
    rel = f"{folder}/{photo.group}_{photo.photo_id}.jpg"
    entry: dict[str, Any] = {**asdict(photo), "group": photo.group, "folder": folder, "file": rel}
    dest = out / rel
    if dest.is_file():  # written by a run killed before its log line: read back, not fetched again
        data = dest.read_bytes()
    else:
        if pause := budget.wait(time.monotonic()):
            LOGGER.info("media limit: pausing %.0f s", pause)
            sleep(pause)
        try:
            response = get(photo.url)
        except Exception as exc:  # a connection refused or reset after the session's retries
            return {**entry, "status": "failed", "reason": f"{exc.__class__.__name__}: {exc}"}
        if response.status_code != 200:
            return {**entry, "status": "failed", "reason": f"HTTP {response.status_code} for {photo.url}"}
        data = response.content
        budget.add(len(data), time.monotonic())
    if reason := _decodes(data):
        dest.unlink(missing_ok=True)
        return {**entry, "status": "failed", "reason": reason}
    digest = hashlib.sha256(data).hexdigest()
    if digest in hashes and hashes[digest] != rel:
        dest.unlink(missing_ok=True)
        return {**entry, "status": "duplicate", "reason": f"the same bytes as {hashes[digest]}", "sha256": digest}
    if not dest.is_file():
        tmp = dest.with_name(f".{dest.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    hashes[digest] = rel
    return {**entry, "status": "ok", "sha256": digest}


def summarise(out: Path, photos: dict[str, Sequence[Photo]]) -> dict:
    """attribution.csv and dataset.md from the log; counts per folder and the failures."""
    entries = _log_lines(out / ".fetch" / "log.jsonl")
    ok = [e for e in entries if e.get("status") == "ok"]
    rows = [[{**e, "photo_url": e.get("url")}.get(c) or "" for c in ATTRIBUTION_COLUMNS]
            for e in sorted(ok, key=lambda e: e["file"])]
    atomic_write_text(out / "attribution.csv", csv_text(list(ATTRIBUTION_COLUMNS), rows))
    atomic_write_text(out / "dataset.md", credits(ok))
    failures = [{k: e.get(k) for k in ("folder", "photo_id", "url", "reason")} for e in entries
                if e.get("status") == "failed"]
    counts = {folder: sum(e["folder"] == folder for e in ok) for folder in photos}
    return {"photos": counts, "observations": len({e["observation_id"] for e in ok}),
            "observers": len({e["observer"] for e in ok}), "failures": failures,
            "duplicates": sum(e.get("status") == "duplicate" for e in entries), "group_regex": GROUP_REGEX}


def credits(entries: Iterable[dict]) -> str:
    """dataset.md: where the photos come from and who took them, under which licence."""
    entries = list(entries)
    by_observer: dict[tuple[str, str], list[dict]] = {}
    for e in entries:
        by_observer.setdefault((e["observer"], e["licence"]), []).append(e)
    lines = ["# Data set", "",
             f"{len(entries)} photos of {len({e['folder'] for e in entries})} taxa from "
             f"{', '.join(sorted({e['source'] for e in entries})) or 'no source'}, one folder per taxon. "
             "Each photo's source, observation, observer, licence and date are in `attribution.csv`.", "",
             f"Photos of one observation share a group: train with `--group-regex '{GROUP_REGEX}'` so that they "
             "stay on one side of the train/validation split.", "",
             "## Credits", "",
             "Photos under CC BY licences must be credited as below wherever they or models trained on them are "
             "shown; NC licences allow no commercial use; ND licences allow no modified copies to be shared.", ""]
    for (observer, licence), photos in sorted(by_observer.items()):
        obs = sorted({e["observation_url"] for e in photos})
        lines.append(f"- (c) {observer}, {licence.upper()}: {len(photos)} photo(s), observation(s) "
                     + ", ".join(obs[:5]) + (f" and {len(obs) - 5} more" if len(obs) > 5 else ""))
    return "\n".join(lines) + "\n"

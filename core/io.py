"""Reading photos safely and writing files atomically.

Every stage reads photos through :func:`read_image`, so EXIF orientation, odd pixel modes and
corrupt files are handled once, and every error names the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.defaults import MAX_PIXELS

LOGGER = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")


class ImageReadError(ValueError):
    """A photo that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether a file name has one of the photo extensions taxolens reads."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def scan_images(folder: str | os.PathLike, recursive: bool = True,
                exclude: Iterable[str | os.PathLike] = ()) -> tuple[list[Path], list[str]]:
    """Photos under ``folder`` in a stable (sorted) order, and the problems met while listing.

    Hidden files and folders are left out, and so is every folder in ``exclude`` (a run's own output
    folder inside its input). Linked folders are followed once (a link loop is not). A folder that
    cannot be listed (no permission, a path too long, too deep) is not silently skipped: each is a
    problem naming it. A dangling link is listed, so that it is reported as unreadable rather than missed.
    """
    root = Path(folder)
    excluded = {os.path.realpath(e) for e in exclude}
    found: list[Path] = []
    problems: list[str] = []
    seen: set[str] = set()
    stack = [root]
    while stack:  # iterative: a tree thousands of folders deep cannot exhaust Python's stack
        current = stack.pop()
        real = os.path.realpath(current)
        if real in seen or real in excluded:
            continue
        seen.add(real)
        try:
            with os.scandir(current) as entries:
                listed = list(entries)
        except OSError as exc:
            problems.append(f"{current}: folder cannot be listed ({exc.strerror or exc}); its photos are skipped")
            continue
        for entry in listed:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if recursive:
                    stack.append(path)
            elif is_image_file(entry.name):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix()), sorted(problems)


def list_images(folder: str | os.PathLike, recursive: bool = True,
                exclude: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """:func:`scan_images`'s photos; each listing problem is logged as a warning naming the folder."""
    found, problems = scan_images(folder, recursive, exclude)
    for problem in problems:
        LOGGER.warning("%s", problem)
    return found


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a photo as an ``HxWx3`` uint8 RGB array, upright as the camera meant it.

    Args:
        path: the photo.
        max_pixels: photos with more pixels than this are refused before decoding.

    Raises:
        ImageReadError: for a missing, empty, truncated, non-image or oversized file.
    """
    return read_photo(path, max_pixels)[0]


def read_photo(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, *,
               short_side: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """A photo's pixels and its facts, both from one read of its bytes.

    The facts (``sha256`` of the bytes, upright ``width`` and ``height``, EXIF ``taken_at``, ``latitude``,
    ``longitude``) are those of the very bytes that were decoded: a file rewritten while a run goes on (a sync
    client, a card still copying) can never have its answer filed under the new file's hash or size.

    Args:
        path: the photo.
        max_pixels: photos with more pixels than this are refused before decoding.
        short_side: where above 0, a JPEG at least twice this size is decoded at a reduced scale (libjpeg's 1/2,
            1/4 or 1/8: PIL's ``draft``, several times faster than decoding every pixel) that keeps its short side
            at or above ``short_side`` pixels. ``width`` and ``height`` stay the photo's own: the pixels returned
            are ``width / pixels.shape[1]`` times smaller.

    Raises:
        ImageReadError: for a missing, empty, truncated, non-image or oversized file.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageReadError(p, f"cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise ImageReadError(p, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageReadError(
                        p, f"image too large to decode safely: {w}x{h} = {w * h} pixels > limit {max_pixels}"
                    )
                facts = exif_facts(img)
                if short_side > 0 and img.format == "JPEG" and min(w, h) >= 2 * short_side:
                    k = short_side / min(w, h)
                    img.draft(None, (math.ceil(w * k), math.ceil(h * k)))  # the largest reduction at least this big
                img.load()
                rgb = _to_rgb(ImageOps.exif_transpose(img))
                turned = rgb.size != img.size  # EXIF orientations 5-8 stand the photo on its side
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(p, "not an image file (unrecognised format)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(p, f"image too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(p, f"corrupt or truncated image ({exc})") from exc
    width, height = (h, w) if turned else (w, h)
    facts |= {"sha256": hashlib.sha256(data).hexdigest(), "width": width, "height": height}
    return np.array(rgb), facts  # a writable copy: torch.from_numpy warns on read-only arrays


def _gps_degrees(values: Any, ref: str) -> float | None:
    try:
        d, m, s = (float(v) for v in values)
    except (TypeError, ValueError):
        return None
    sign = -1.0 if ref in ("S", "W") else 1.0
    return round(sign * (d + m / 60 + s / 3600), 7)


def exif_facts(img: Image.Image) -> dict[str, Any]:
    """EXIF capture time (ISO 8601, local as the camera wrote it) and GPS position, where the photo has them."""
    from PIL import ExifTags

    facts: dict[str, Any] = {"taken_at": None, "latitude": None, "longitude": None}
    try:
        exif = img.getexif()
        stamp = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.DateTimeOriginal) or exif.get(
            ExifTags.Base.DateTime)
        if isinstance(stamp, str) and len(stamp) >= 19:
            facts["taken_at"] = stamp[:10].replace(":", "-") + "T" + stamp[11:19]
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        if gps.get(2) and gps.get(4):
            facts["latitude"] = _gps_degrees(gps[2], str(gps.get(1, "N")))
            facts["longitude"] = _gps_degrees(gps[4], str(gps.get(3, "E")))
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):
        pass  # a broken EXIF block: the photo is still usable, without these facts
    return facts


def file_facts(path: str | os.PathLike) -> dict[str, Any]:
    """sha256 of a file's bytes, and (where PIL reads its header) its upright size, EXIF time and GPS."""
    p = Path(path)
    data = p.read_bytes()
    facts: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "width": None, "height": None,
                             "taken_at": None, "latitude": None, "longitude": None}
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
            facts |= exif_facts(img)
            facts["width"], facts["height"] = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    except (OSError, ValueError, SyntaxError):
        pass  # a photo PIL cannot read still has its sha256; its record says why it failed
    return facts


def check_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Decode a photo fully and return its upright ``(width, height)``; raises :class:`ImageReadError`."""
    arr = read_image(path, max_pixels=max_pixels)
    return arr.shape[1], arr.shape[0]


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Upright ``(width, height)`` of a photo from its header only (no decode)."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except FileNotFoundError as exc:
        raise ImageReadError(p, "file not found") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(p, "not an image file (unrecognised format)") from exc
    except OSError as exc:
        raise ImageReadError(p, f"cannot read image header ({exc})") from exc
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], mode: str = "w") -> None:
    """The one atomic writer: ``write(fh)`` fills a temporary file beside ``path``, which then replaces it.

    Readers see the old file or the whole new one, never a half; a failure leaves no temporary file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        failed = exc if isinstance(exc, OSError) else exc.__context__ if isinstance(exc.__context__, OSError) else None
        if failed is not None or (isinstance(exc, RuntimeError) and "writ" in str(exc)):
            # a full disk (or a quota, a yanked card): one line that names the file, not a chain of tracebacks
            # (torch.save turns the OSError into a RuntimeError of its own)
            reason = (failed.strerror or str(failed)) if failed is not None else str(exc).splitlines()[0][:120]
            raise OSError(getattr(failed, "errno", None) or errno.EIO,
                          f"could not be written ({reason}); free some space and run the same command again",
                          str(target)) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text so that readers see the old file or the whole new one, never a half."""
    atomic_write(path, lambda fh: fh.write(text), "w")


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None``: strict JSON has no NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def to_json(obj: Any, indent: int | None = None) -> str:
    r"""Strict JSON (RFC 8259) that every reader accepts: a value that is not finite is written ``null``.

    A file name that is not valid UTF-8 (a Latin-1 byte from an old camera: Python holds it as a lone
    surrogate, ``\udce9``) cannot be written as UTF-8; such a document is written with every non-ASCII
    character escaped (``"caf\udce9.jpg"``), which Python's ``json`` reads back to the exact name.
    """
    text = json.dumps(finite(obj), indent=indent, ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(finite(obj), indent=indent, ensure_ascii=True, allow_nan=False)
    return text


def display_name(name: str) -> str:
    r"""A file name as valid UTF-8 text: bytes that are not UTF-8 shown as ``\xe9`` (for CSV, the store, logs).

    Valid names come back unchanged; the exact name stays in the JSON records (see :func:`to_json`).
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


#: first characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection list)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    r"""A value safe to put in a CSV cell that a spreadsheet will open (OWASP's advice on CSV injection).

    Text beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` so that
    it is shown, never run; numbers stay numbers (``-0.5`` as a number or as its text is left alone). A file
    name that is not valid UTF-8 is shown with ``\xNN`` escapes (:func:`display_name`).
    """
    if not isinstance(value, str) or not value:
        return value
    value = display_name(value)
    if value.startswith(FORMULA_STARTS):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]], **dialect: Any) -> str:
    """The one CSV maker: ``header``, then ``rows``, every cell through :func:`csv_cell`.

    ``rows`` are sequences, or mappings keyed by the header; ``dialect`` goes to :func:`csv.writer` (a tab
    delimiter for Darwin Core).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, **dialect)
    writer.writerow(header)
    for row in rows:
        cells = [row.get(k, "") for k in header] if isinstance(row, Mapping) else row
        writer.writerow([csv_cell("" if c is None else c) for c in cells])
    return buffer.getvalue()


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Atomically write ``obj`` as strict JSON (see :func:`to_json`)."""
    atomic_write_text(path, to_json(obj, indent) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file and ``os.replace``: a kill never leaves half a checkpoint."""
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh), "wb")


def atomic_write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]
                     ) -> None:
    """Atomically write a CSV file: ``header``, then ``rows`` (sequences, or mappings keyed by the header).

    Every cell goes through :func:`csv_cell` (no formula reaches a spreadsheet).
    """
    text = csv_text(header, rows)
    atomic_write(path, lambda fh: fh.write(text), "w")


def atomic_save_figure(figure: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """Atomically save a matplotlib figure (format from the file's extension)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    atomic_write(path, lambda fh: figure.savefig(fh, dpi=dpi, format=fmt), "wb")


@contextlib.contextmanager
def saved_figure(path: str | os.PathLike, figsize: tuple[float, float], ncols: int = 1) -> Iterator[tuple[Any, Any]]:
    """A matplotlib figure to draw on, laid out, saved atomically and closed when the block ends.

    Headless (matplotlib's Agg backend). Yields ``(fig, ax)``; ``ncols > 1`` gives a row of axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, ncols, figsize=figsize)
    try:
        yield fig, ax
        fig.tight_layout()
        atomic_save_figure(fig, path)
    finally:
        plt.close(fig)


def atomic_save_image(image: np.ndarray, path: str | os.PathLike, **params: Any) -> None:
    """Atomically save an RGB array as a photo (format from the file's extension; ``params`` go to Pillow)."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    atomic_write(path, lambda fh: Image.fromarray(image).save(fh, format=fmt, **params), "wb")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Records of a JSON-lines file; lines that are not a JSON object (a torn last line) are left out."""
    for _, record in check_jsonl(path)[0]:
        yield record


def check_jsonl(path: str | os.PathLike) -> tuple[list[tuple[int, dict]], list[tuple[int, bytes, str]]]:
    """A JSON-lines file's records and its broken lines, each with its line number (from 1).

    A line is broken when it is not UTF-8, not JSON, or not a JSON object; blank lines are neither.
    """
    records: list[tuple[int, dict]] = []
    broken: list[tuple[int, bytes, str]] = []
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                broken.append((n, raw, f"not UTF-8 text (byte {exc.start})"))
                continue
            except json.JSONDecodeError as exc:
                broken.append((n, raw, f"not valid JSON ({exc.msg}, column {exc.colno})"))
                continue
            if isinstance(obj, dict):
                records.append((n, obj))
            else:
                broken.append((n, raw, f"a JSON {type(obj).__name__}, not a record"))
    return records, broken


class FolderInUseError(ValueError):
    """Another live process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "taxolens run") -> Iterator[Path]:
    """Hold ``folder/.taxolens.lock`` for the block: a second process asking for it is refused at once.

    The lock is the kernel's (``flock``), so it dies with its holder: a lock file left by a killed run is
    stale and is simply taken over. The file holds the holder's pid, for the refusal's message.

    Raises:
        FolderInUseError: a live process holds it; the message names the folder and that process.
    """
    path = Path(folder) / ".taxolens.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise FolderInUseError(f"{folder}: in use by another {what} (pid {holder}); wait for it to end or "
                                   "choose another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the lock

"""YAML files set argparse defaults; the command line overrides them; the result is written to the run.

As in timm's ``train.py``: a ``--config`` file only changes defaults, so ``--help`` stays the single
list of settings (and shows the defaults in force), a key the parser does not know is an error naming
the file, and the resolved settings saved next to each run reproduce it.

The profiles ship inside the package (``configs/*.yaml``, read with :mod:`importlib.resources`), so an
installed taxolens finds them wherever it runs. ``--config`` takes a file path or a profile's name
(``demo-classifier``, ``demo-classifier.yaml`` or ``configs/demo-classifier.yaml``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from core.io import atomic_write_text

CONFIG_PACKAGE = "configs"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the module docstring's layout and shows each option's default (the YAML's, where one applies)."""


def packaged(name: str) -> Traversable:
    """A file shipped in the ``configs`` package (``species.yaml``, ``ui.yaml``, a profile)."""
    return resources.files(CONFIG_PACKAGE).joinpath(name)


def profile_names() -> list[str]:
    """Names of the packaged YAML profiles."""
    return sorted(p.name[:-5] for p in resources.files(CONFIG_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def find_config(name: str) -> Path | Traversable:
    """A ``--config`` value as a file: an existing path wins, else the packaged profile of that name.

    Raises:
        FileNotFoundError: neither a file nor a packaged profile.
    """
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    candidate = packaged(f"{stem}.yaml")
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"{name}: no such config file, and no packaged profile {stem!r} "
                            f"(packaged: {', '.join(profile_names())})")


def read_yaml(source: Path | Traversable) -> Any:
    """Parse a YAML file (a path or a packaged resource).

    Raises:
        ValueError: unreadable or not YAML; the message names the file.
    """
    try:
        return yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{source}: cannot read YAML ({exc})") from exc


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None, default: str | None = None,
                      overrides: Mapping[str, Any] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with defaults from ``--config`` (or the packaged profile ``default``).

    Args:
        parser: the command's parser.
        argv: the command line.
        default: packaged profile used when no ``--config`` is given.
        overrides: defaults that win over the YAML's (a caller's own defaults, such as fewer epochs
            for a comparison); the command line still wins over them.

    Raises:
        SystemExit: through ``parser.error`` for an unreadable file or an unknown key.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    source: Path | Traversable | None = None
    try:
        if known.config:
            source = find_config(known.config)
        elif default:
            source = find_config(default)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    if source is not None:
        try:
            values = read_yaml(source) or {}
        except ValueError as exc:
            parser.error(str(exc))
        if not isinstance(values, dict):
            parser.error(f"{source}: expected a mapping of setting: value")
        dests = {a.dest for a in parser._actions}
        unknown = sorted(k for k in values if k.replace("-", "_") not in dests)
        if unknown:
            parser.error(f"{source}: unknown setting(s) {', '.join(unknown)}; see --help")
        parser.set_defaults(**{k.replace("-", "_"): v for k, v in values.items()})
    if overrides:
        parser.set_defaults(**overrides)
    args = parser.parse_args(argv)
    args.config = str(source) if source is not None else None
    return args


def write_resolved(args: argparse.Namespace | Mapping[str, Any], path: str | Path) -> None:
    """Write the settings a run used, as YAML, so ``--config`` on it reproduces the run."""
    items = vars(args).items() if isinstance(args, argparse.Namespace) else args.items()
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(items)
              if k not in ("config", "func", "command")}
    atomic_write_text(path, yaml.safe_dump(values, sort_keys=True))


def add_config_arg(parser: argparse.ArgumentParser, name: str) -> None:
    """The ``--config`` option every command shares."""
    parser.add_argument("--config", default=None,
                        help=f"YAML file of defaults, or a packaged profile's name ({', '.join(profile_names())}); "
                             f"default: {name}. Command-line options win")

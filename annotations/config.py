"""YAML files set argparse defaults; the command line overrides them; the result is written to the run.

As in timm's ``train.py``: a ``--config`` file only changes defaults, so ``--help`` stays the single
list of settings, a key the parser does not know is an error naming the file, and the resolved
settings saved next to each run reproduce it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def default_config(name: str) -> Path | None:
    """``configs/<name>.yaml`` of this checkout, if it exists."""
    path = CONFIG_DIR / f"{name}.yaml"
    return path if path.is_file() else None


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                      default: str | None = None) -> argparse.Namespace:
    """Parse ``argv`` with defaults from ``--config`` (or ``configs/<default>.yaml``).

    Raises:
        SystemExit: through ``parser.error`` for an unreadable file or an unknown key.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    path = Path(known.config) if known.config else (default_config(default) if default else None)
    if path is not None:
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            parser.error(f"{path}: cannot read config ({exc})")
        if not isinstance(values, dict):
            parser.error(f"{path}: expected a mapping of setting: value")
        dests = {a.dest for a in parser._actions}
        unknown = sorted(k for k in values if k.replace("-", "_") not in dests)
        if unknown:
            parser.error(f"{path}: unknown setting(s) {', '.join(unknown)}; see --help")
        parser.set_defaults(**{k.replace("-", "_"): v for k, v in values.items()})
    args = parser.parse_args(argv)
    args.config = str(path) if path else None
    return args


def write_resolved(args: argparse.Namespace, path: str | Path) -> None:
    """Write the settings a run used, as YAML, so ``--config`` on it reproduces the run."""
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(vars(args).items())
              if k not in ("config", "func", "command")}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(values, sort_keys=True))


def add_config_arg(parser: argparse.ArgumentParser, name: str) -> None:
    """The ``--config`` option every command shares."""
    parser.add_argument("--config", default=None,
                        help=f"YAML file of defaults (default: configs/{name}.yaml); command-line options win")

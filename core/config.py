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
import math
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from core.io import atomic_write_text

CONFIG_PACKAGE = "configs"


class SettingError(ValueError):
    """A setting outside its allowed values; the message names the setting, the value and what is allowed."""


def _probability(v: float) -> bool:
    return 0.0 <= v <= 1.0


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _at_least_one(v: float) -> bool:
    return v >= 1


#: allowed values of the numeric settings, by name, whichever command has them: (check, what is allowed).
#: Checked after parsing, on values from the command line and from YAML alike; NaN and infinities never pass.
LIMITS: dict[str, tuple[Callable[[float], bool], str]] = {
    **dict.fromkeys(("threshold", "score_threshold", "target_precision", "unknown_pass_rate", "min_score",
                     "paste_background", "lighting"),
                    (_probability, "a probability from 0 to 1")),
    "val_fraction": (lambda v: 0 < v < 1, "a fraction between 0 and 1 (both excluded)"),
    "momentum": (lambda v: 0 <= v < 1, "from 0 to 1 (1 excluded)"),
    **dict.fromkeys(("lr", "gamma", "suppress_iou", "suppress_containment", "per_second"),
                    (_positive, "a number above 0")),
    **dict.fromkeys(("weight_decay", "clip_grad", "padding", "max_overlap"), (_non_negative, "a number from 0 up")),
    **dict.fromkeys(("epochs", "batch_size", "step_size", "head_size", "rois_per_image", "max_pixels",
                     "concurrency", "users", "per_user"), (_at_least_one, "a whole number from 1 up")),
    **dict.fromkeys(("workers", "warmup_iters", "proposals", "threads", "max_steps_per_epoch", "trainable_layers",
                     "limit", "random_per_empty", "max_per_photo", "timeout", "decode_side"),
                    (_non_negative, "a whole number from 0 up")),
    **dict.fromkeys(("input_size", "min_size", "max_size"), (lambda v: v >= 16, "a size in pixels from 16 up")),
    "crop_scale": (lambda v: 0 < v <= 1, "two fractions of the photo's area, above 0 and at most 1"),
}


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
        values = {k.replace("-", "_"): v for k, v in values.items()}
        actions = {a.dest: a for a in parser._actions}
        for key, value in values.items():
            problem = _yaml_value_problem(actions[key], value)
            if problem:
                raise SettingError(f"{source}: {key}: {value!r} is not allowed ({problem})")
        parser.set_defaults(**values)
    if overrides:
        parser.set_defaults(**overrides)
    args = parser.parse_args(argv)
    args.config = str(source) if source is not None else None
    check_settings(args)
    return args


def _yaml_value_problem(action: argparse.Action, value: Any) -> str | None:
    """What is wrong with a YAML value for an option (argparse checks only what is typed on the command line)."""
    if value is None:
        return None
    if action.nargs == 0:  # a flag
        return None if isinstance(value, bool) else "true or false"
    many = action.nargs in ("*", "+") or isinstance(action.nargs, int)
    if many != isinstance(value, list):
        return "a list of values" if many else "one value, not a list"
    for item in value if many else [value]:
        if action.type is int and (isinstance(item, bool) or not isinstance(item, int)):
            return "a whole number"
        if action.type is float and (isinstance(item, bool) or not isinstance(item, int | float)):
            return "a number"
        if action.type in (None, str) and not isinstance(item, str | int | float) or isinstance(item, dict | list):
            return "text"
        if action.choices is not None and item not in action.choices:
            return "one of " + ", ".join(map(str, action.choices))
    return None


def check_settings(args: argparse.Namespace) -> argparse.Namespace:
    """Refuse numeric settings outside :data:`LIMITS` (and any that is NaN or infinite) before any work starts.

    Returns ``args``. Raises:
        SettingError: one line naming the setting, its value and what is allowed.
    """
    for dest, value in vars(args).items():
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int | float):
                continue
            flag = "--" + dest.replace("_", "-")
            if not math.isfinite(item):
                raise SettingError(f"{flag} {item}: not a number; expected "
                                   f"{LIMITS[dest][1] if dest in LIMITS else 'a finite number'}")
            if dest in LIMITS and not LIMITS[dest][0](item):
                raise SettingError(f"{flag} {item}: not allowed; expected {LIMITS[dest][1]}")
    scale = getattr(args, "crop_scale", None)
    if scale is not None and len(scale) == 2 and scale[0] > scale[1]:
        raise SettingError(f"--crop-scale {scale[0]} {scale[1]}: the smaller fraction comes first")
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

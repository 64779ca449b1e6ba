"""The ``taxolens`` command: one entry point, a sub-command per stage.

``taxolens annotations|detector|classifier COMMAND`` and
``taxolens run|evaluate|unknown-study|lighting-probe|bench|bench-app|app|demo|export``.
Each sub-command's ``--help`` lists its options. This module sits on top of every package: it imports
a command's module only when that command runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence

# group -> sub-command -> "module:function"; modules are imported only when their command runs
COMMANDS: dict[str, dict[str, str]] = {
    "classifier": {
        "train": "classifier.train:main",
        "evaluate": "classifier.evaluate:main",
        "refit": "classifier.refit:main",
        "soup": "classifier.soup:main",
        "ensemble": "classifier.soup:ensemble_main",
        "compare": "classifier.experiments:compare_main",
        "sweep": "classifier.experiments:sweep_main",
        "report-data": "classifier.experiments:report_data_main",
        "audit": "classifier.audit:main",
    },
    "annotations": {
        "import": "annotations.commands:import_main",
        "validate": "annotations.commands:validate_main",
        "split": "annotations.commands:split_main",
        "stats": "annotations.commands:stats_main",
        "crops": "annotations.commands:crops_main",
        "propose": "detector.propose:main",
        "background": "detector.propose:background_main",
    },
    "detector": {
        "train": "detector.train:main",
        "evaluate": "detector.evaluate:main",
    },
    "data": {
        "inaturalist": "sources.commands:inaturalist_main",
        "gbif": "sources.commands:gbif_main",
    },
    "review": {
        "stats": "review.commands:stats_main",
        "export-coco": "review.commands:export_coco_main",
        "export-dwc": "review.commands:export_dwc_main",
        "export-camtrapdp": "review.commands:export_camtrapdp_main",
        "report": "review.commands:report_main",
    },
}
# commands without a group
TOP: dict[str, str] = {"run": "pipeline.run:main", "evaluate": "pipeline.evaluate:main",
                       "unknown-study": "tools.unknown_study:main", "lighting-probe": "tools.lighting_probe:main",
                       "bench": "tools.bench:main",
                       "bench-app": "tools.bench_app:main", "app": "gradio_app:main", "demo": "tools.demo:main",
                       "export": "tools.export:main"}


def _usage() -> str:
    lines = ["usage: taxolens <group> <command> [options]   (each command has --help)", ""]
    lines += [f"  taxolens {group} {'|'.join(cmds)}" for group, cmds in COMMANDS.items()]
    lines += [f"  taxolens {name}" for name in TOP]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``taxolens GROUP COMMAND ...``; errors print one line and exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=os.environ.get("TAXOLENS_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in TOP:
        return _call(argv[0], TOP[argv[0]], argv[1:])
    group = COMMANDS.get(argv[0])
    if group is None:
        print(f"taxolens: unknown command {argv[0]!r}\n{_usage()}", file=sys.stderr)
        return 2
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(f"usage: taxolens {argv[0]} {{{','.join(group)}}} [options]")
        return 0 if len(argv) >= 2 else 2
    target = group.get(argv[1])
    if target is None:
        print(f"taxolens {argv[0]}: unknown command {argv[1]!r}; choose one of {', '.join(group)}", file=sys.stderr)
        return 2
    return _call(f"{argv[0]} {argv[1]}", target, argv[2:])


def _call(name: str, target: str, argv: list[str]) -> int:
    module, func = target.split(":")
    from core.io import ImageReadError
    from core.modelfile import ModelFileError, WeightsError

    try:
        result = getattr(importlib.import_module(module), func)(argv)
    except (ModelFileError, WeightsError, ImageReadError, OSError, ValueError) as exc:
        print(f"taxolens {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

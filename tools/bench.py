"""``taxolens bench``: every engine and setting, its speed and its answers, against PyTorch and a naive loop.

Launch::

    taxolens bench --demo-sets runs/demo --detector D --classifier C \
        --modes naive torch torch:proposals=300 onnx openvino openvino-int8

or with folders of your own in ``taxolens evaluate``'s layout (``SET/<taxon>/*.jpg``) as positional arguments.
Every mode runs in a fresh process (so each peak memory, VmHWM, is its own) over every photo of every set:

- ``ENGINE[:key=value,...]``: the real ``taxolens evaluate`` path (loader workers, batches, crops in one batch)
  with the engine ``torch``, ``onnx``, ``onnx-int8``, ``openvino`` or ``openvino-int8`` (the exported files of
  ``taxolens export``) and settings: ``proposals``, ``threads``, ``decode_side`` (inference settings), ``workers``,
  ``batch_size`` (the folder run's). ``pipeline`` is ``torch``.
- ``naive``: the same models one photo at a time, no workers, default settings (the model files' 1000
  proposals, every box scored, one classifier call per crop, ``torch.no_grad``), with the same suppression,
  calibration, unknown score and decision.
- ``detector``, ``classifier``: one stage alone (the classifier on whole photos), batched.

**The rule** (issue 20): a mode is accepted when its ``taxolens evaluate`` figures on every set and folder
(answered, answers right, named wrongly: shares of organisms; boxes per photo) are those of the reference mode
(the first engine mode, ``torch`` by default) within one point each (a point of a share is a percentage point;
of boxes per photo, one per cent of the reference's), and every record it writes passes
:func:`pipeline.records.record_problems`. The naive loop's records must equal the reference's (organisms per
photo, decisions, boxes within 1 px). The figures of every mode are printed side by side, with photos/s, the
speed-up over the naive loop and the share of this CPU's fp32 peak achieved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.answers import REASON_NO_ORGANISM
from core.config import check_settings
from core.runtime import WorkerInit

#: what a mode of the real evaluate path may set: inference settings, then the folder run's own
MODE_SETTINGS = {"proposals": int, "threads": int, "decode_side": int}
MODE_RUN = {"workers": int, "batch_size": int}
#: the folder-run engines (``pipeline``: the PyTorch one, as earlier versions named it)
ENGINE_MODES = ("torch", "pipeline", "onnx", "onnx-int8", "openvino", "openvino-int8")
STAGE_MODES = ("naive", "detector", "classifier")
#: the figures the rule compares, per folder of every set
RULE_FIGURES = ("answered", "answers_right", "named_wrongly", "boxes_per_photo")


def parse_mode(spec: str, batch_size: int = 4, workers: int = 1) -> dict[str, Any]:
    """``ENGINE[:key=value,...]`` as ``{name, engine, settings, run}``; a stage mode as ``{name, engine: None}``.

    Raises:
        ValueError: an unknown engine, key or a value that is not a whole number, naming the mode.
    """
    if spec in STAGE_MODES:
        return {"name": spec, "engine": None, "settings": {}, "run": {"batch_size": batch_size, "workers": workers}}
    engine, _, rest = spec.partition(":")
    if engine not in ENGINE_MODES:
        raise ValueError(f"mode {spec!r}: {engine!r} is no engine; choose one of "
                         f"{', '.join(ENGINE_MODES + STAGE_MODES)}")
    settings: dict[str, int] = {}
    run = {"batch_size": batch_size, "workers": workers}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in MODE_SETTINGS and key not in MODE_RUN:
            raise ValueError(f"mode {spec!r}: unknown setting {key!r} (choose from "
                             f"{', '.join([*MODE_SETTINGS, *MODE_RUN])})")
        try:
            number = int(value)
        except ValueError as exc:
            raise ValueError(f"mode {spec!r}: {key}={value!r} is not a whole number") from exc
        (settings if key in MODE_SETTINGS else run)[key] = number
    return {"name": spec, "engine": "torch" if engine == "pipeline" else engine, "settings": settings, "run": run}


def compare_figures(reference: dict, other: dict, points: float = 1.0) -> dict[str, Any]:
    """How far a mode's figures are from the reference's, by the rule: ``{within, largest, differences}``.

    Both are ``{set: {folder: {figure: value}}}``. Shares are compared in percentage points, boxes per photo
    in per cent of the reference's; a figure one has and the other lacks (no answer at all) is infinitely far.
    """
    differences = []
    for set_name, folders in reference.items():
        for folder, figures in folders.items():
            for figure in RULE_FIGURES:
                a = figures.get(figure)
                b = other.get(set_name, {}).get(folder, {}).get(figure)
                if a is None and b is None:
                    continue
                if a is None or b is None:
                    diff = float("inf")
                elif figure == "boxes_per_photo":
                    diff = 100 * abs(b - a) / a if a else (0.0 if b == a else float("inf"))
                else:
                    diff = 100 * abs(b - a)
                differences.append({"set": set_name, "folder": folder, "figure": figure, "reference": a,
                                    "value": b, "difference": round(diff, 3)})
    largest = max(differences, key=lambda d: d["difference"], default=None)
    return {"within": all(d["difference"] <= points + 1e-9 for d in differences), "largest": largest,
            "beyond": [d for d in differences if d["difference"] > points + 1e-9]}


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - not Linux


def bench_sets(paths: Sequence[str], demo: str | None, limit: int, tmp: Path) -> list[tuple[str, Path]]:
    """The sets as ``(name, folder)``: ``paths`` (``SET/<taxon>/*.jpg``), then the demo's held-out sets.

    With ``limit``, each set is cut to its first ``limit`` photos (sorted, every folder kept) in ``tmp``.
    """
    from core.io import list_images

    sets = [(Path(p).name, Path(p)) for p in paths]
    if demo:
        from tools.demo import make_eval_sets

        sets += [(name, folder) for name, folder in make_eval_sets(Path(demo)).items()]
    if not sets:
        raise ValueError("no photos to measure: give folders (SET/<taxon>/*.jpg) or --demo-sets runs/demo")
    found = []
    for name, folder in sets:
        taxa = sorted(d for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
        if not taxa:
            raise ValueError(f"{folder}: expected a folder per taxon (SET/<taxon>/*.jpg), as taxolens evaluate")
        if limit:
            photos = sorted((p for d in taxa for p in list_images(d)), key=lambda p: p.relative_to(folder).as_posix())
            cut = tmp / "sets" / name
            for p in photos[:limit]:
                dest = cut / p.relative_to(folder)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(p.resolve())
            folder = cut
        found.append((name, folder))
    return found


def _all_photos(sets: list[tuple[str, Path]]) -> list[tuple[str, Path, str]]:
    """``(set, folder, file)`` of every photo, ``file`` relative to its set's folder (as the records name it)."""
    from core.io import list_images

    return [(name, folder, p.relative_to(folder).as_posix()) for name, folder in sets for p in list_images(folder)]


def _naive(args: argparse.Namespace, photos: list[tuple[str, Path, str]]) -> dict[str, list[dict]]:
    """The naive loop: records by ``set/file``."""
    from classifier.predict import Classifier
    from core.crops import crop_box
    from core.io import read_image
    from detector.predict import Detector
    from detector.suppress import suppress
    from pipeline.decision import decide

    det = Detector.from_file(args.detector, "cpu")
    clf = Classifier.from_file(args.classifier, "cpu")
    records = {}
    with torch.no_grad():
        for set_name, folder, file in photos:
            image = read_image(folder / file)
            out = det.model([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]
            scores, boxes = out["scores"].numpy(), out["boxes"].numpy()
            above = np.flatnonzero(scores >= det.score_threshold)
            keep = above[suppress(boxes[above], scores[above], **det.suppression)]
            dets = []
            for box, score in zip(boxes[keep].tolist(), scores[keep].tolist()):
                xywh = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
                crop = crop_box(image, xywh, clf.preprocessing.crop_padding)
                analysis = clf.analyse([crop])  # one classifier call per crop: calibration and unknown score
                unknown = None if analysis.unknown_scores is None else float(analysis.unknown_scores[0])
                members = None if analysis.member_probabilities is None else analysis.member_probabilities[0]
                d = decide(probabilities=analysis.probabilities[0], threshold=clf.threshold,
                           unknown_score=unknown, member_probabilities=members, **clf.decision_settings)
                if d["reason"] != REASON_NO_ORGANISM:  # as the record moves it to "dropped"
                    dets.append({"box": xywh, "taxon": d["taxon"], "detector_score": score})
            records[f"{set_name}/{file}"] = dets
    return records


def _child(args: argparse.Namespace) -> dict:
    """One mode, in this process; returns its figures."""
    from classifier.predict import Classifier
    from detector.predict import Detector
    from pipeline.evaluate import evaluate_folders
    from pipeline.predictor import Pipeline
    from pipeline.records import record_problems
    from pipeline.run import PhotoDataset, collate_list
    from pipeline.settings import InferenceSettings

    mode = parse_mode(args.mode, args.batch_size, args.workers)
    sets = [(name, Path(folder)) for name, folder in json.loads(args.sets_json)]
    photos = _all_photos(sets)
    row: dict[str, Any] = {"mode": mode["name"], "photos": len(photos)}
    seconds = 0.0
    if mode["name"] == "naive":
        start = time.perf_counter()
        row["records"] = _naive(args, photos)
        seconds = time.perf_counter() - start
    elif mode["engine"]:
        settings = InferenceSettings(device="cpu", engine=mode["engine"], **mode["settings"])
        pipe = Pipeline.from_files(args.detector, args.classifier, settings)
        row |= {"settings": settings.as_dict(), "run": mode["run"], "figures": {}, "records": {}, "problems": []}
        with tempfile.TemporaryDirectory() as tmp:
            for name, folder in sets:
                report = evaluate_folders(pipe, folder, Path(tmp) / name, workers=mode["run"]["workers"],
                                          batch_size=mode["run"]["batch_size"])
                seconds += report["seconds"]
                row["figures"][name] = {f["folder"]: {k: f.get(k) for k in (*RULE_FIGURES, "at_species")}
                                        for f in report["folders"]}
                for r in json.loads((Path(tmp) / name / "records.json").read_text()):
                    row["problems"] += record_problems({k: v for k, v in r.items() if k != "folder"})
                    row["records"][f"{name}/{r['file']}"] = r["detections"]
    else:
        det = Detector.from_file(args.detector, "cpu")
        clf = Classifier.from_file(args.classifier, "cpu")
        start = time.perf_counter()
        for name, folder in sets:
            files = [f for s_, _, f in photos if s_ == name]
            ds = PhotoDataset(folder, files, det.info["min_size"], det.info["max_size"], 10**9)
            loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers,
                                                 collate_fn=collate_list, worker_init_fn=WorkerInit())
            with torch.inference_mode():
                for batch in loader:
                    ok = [b for b in batch if "failure" not in b]
                    if mode["name"] == "detector":
                        det.batch_predict_tensors([b["input"][0] for b in ok])
                    else:
                        clf.batch_predict([b["image"] for b in ok])
        seconds = time.perf_counter() - start
    return row | {"seconds": round(seconds, 2), "photos_per_second": round(len(photos) / seconds, 3),
                  "peak_memory_mb": round(_peak_rss_mb(), 1), "threads": torch.get_num_threads()}


def _flops_per_photo(args: argparse.Namespace, photos: list[Path], n: int = 5) -> float:
    """Floating-point operations of the detector and the classifier per photo (FlopCounterMode).

    The mean over the first ``n`` photos, at the detector's input size, with their crops.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from core.crops import crop_box
    from pipeline.predictor import Pipeline
    from pipeline.settings import InferenceSettings

    pipe = Pipeline.from_files(args.detector, args.classifier, InferenceSettings(device="cpu"))
    totals = []
    for p in photos[:n]:
        item = pipe.load(p)
        if "failure" in item:
            continue
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            out = pipe.detector.model([item["input"][0]])[0]
            boxes = out["boxes"][out["scores"] >= pipe.score_threshold] / item["input"][1]
            crops = [crop_box(item["image"], [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                              pipe.classifier.preprocessing.crop_padding) for b in boxes.tolist()]
            if crops:
                pipe.classifier.model(torch.stack([pipe.classifier.preprocess(c) for c in crops]))
        totals.append(counter.get_total_flops())
    return float(np.mean(totals)) if totals else 0.0


def cpu_peak_gflops() -> tuple[float, str]:
    """This CPU's fp32 peak, from its cores, clock and vector width, with the assumption stated."""
    cores = os.cpu_count() or 1
    mhz, flags = 0.0, ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":")[1])
            elif line.startswith("flags") and not flags:
                flags = line
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    per_cycle = lanes * 2 * 2  # fused multiply-add (2 FLOPs) on two vector units
    return cores * mhz / 1000 * per_cycle, (f"{cores} cores x {mhz / 1000:.2f} GHz x {per_cycle} fp32 FLOPs/cycle "
                                            f"({lanes}-lane FMA on two units)")


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x, y, w, h]`` boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _same(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> dict:
    """How far two runs' results are apart: detections of each photo paired by overlap (best IoU first)."""
    count_diff = taxon_diff = box_diff = unpaired = 0
    worst = 0.0
    for k, x in a.items():
        y = b.get(k, [])
        count_diff += len(x) != len(y)
        pairs = sorted(((_iou(dx["box"], dy["box"]), i, j) for i, dx in enumerate(x) for j, dy in enumerate(y)),
                       reverse=True)
        used_x: set[int] = set()
        used_y: set[int] = set()
        for iou, i, j in pairs:
            if iou < 0.5 or i in used_x or j in used_y:
                continue
            used_x.add(i)
            used_y.add(j)
            taxon_diff += x[i]["taxon"] != y[j]["taxon"]
            err = float(np.max(np.abs(np.array(x[i]["box"]) - np.array(y[j]["box"]))))
            worst = max(worst, err)
            box_diff += err > 1.0
        unpaired += len(x) - len(used_x) + len(y) - len(used_y)
    return {"photos_with_other_count": count_diff, "unpaired_detections": unpaired, "other_taxon": taxon_diff,
            "boxes_off_by_more_than_1px": box_diff, "largest_box_difference_px": round(worst, 2),
            "same": count_diff == 0 and unpaired == 0 and taxon_diff == 0 and box_diff == 0}


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens bench``."""
    p = argparse.ArgumentParser(prog="taxolens bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sets", nargs="*", help="folders in taxolens evaluate's layout (SET/<taxon>/*.jpg)")
    p.add_argument("--demo-sets", default=None, metavar="DEMO_OUT",
                   help="also every held-out set `make demo` made there (runs/demo): hornet-frames, bumblebee, "
                        "bees-hornets valid, hornets-3class test, hymenoptera val, giant-hornet val")
    p.add_argument("--detector", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--limit", type=int, default=0, help="photos per set (0: all)")
    p.add_argument("--batch-size", type=int, default=4, help="photos per batch (a mode may set its own)")
    p.add_argument("--workers", type=int, default=1, help="photo-decoding processes (a mode may set its own)")
    p.add_argument("--modes", nargs="+", default=["naive", "torch"],
                   help="naive, detector, classifier, or ENGINE[:key=value,...] with ENGINE one of "
                        f"{', '.join(ENGINE_MODES)} and keys {', '.join([*MODE_SETTINGS, *MODE_RUN])} "
                        "(exported engines need `taxolens export`'s files)")
    p.add_argument("--reference", default=None, help="the mode the rule compares with (default: the first engine "
                                                     "mode)")
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--mode", default=None, help=argparse.SUPPRESS)  # internal: run one mode in this process
    p.add_argument("--sets-json", default=None, help=argparse.SUPPRESS)  # internal: the sets the parent chose
    return p


def _figures_table(rows: dict[str, dict], modes: list[str]) -> list[str]:
    """The rule's figures of every engine mode side by side, a row per set, folder and figure."""
    lines = ["| set / folder | figure | " + " | ".join(modes) + " |", "|---|---|" + "---:|" * len(modes)]
    ref = rows[modes[0]]["figures"]
    for set_name, folders in ref.items():
        for folder in folders:
            for figure in RULE_FIGURES:
                values = []
                for m in modes:
                    v = rows[m]["figures"].get(set_name, {}).get(folder, {}).get(figure)
                    values.append("n/a" if v is None else f"{v:.2f}" if figure == "boxes_per_photo"
                                  else f"{100 * v:.1f}")
                lines.append(f"| {set_name} / {folder} | {figure} | " + " | ".join(values) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens bench``."""
    args = check_settings(get_args_parser().parse_args(argv))
    if args.mode:
        print("BENCH " + json.dumps(_child(args)))
        return 0
    modes = [parse_mode(m, args.batch_size, args.workers) for m in args.modes]
    engine_modes = [m["name"] for m in modes if m["engine"]]
    reference = args.reference or (engine_modes[0] if engine_modes else None)
    if reference is not None and reference not in engine_modes:
        raise ValueError(f"--reference {reference}: not one of the engine modes {engine_modes}")
    with tempfile.TemporaryDirectory() as tmp:
        sets = bench_sets(args.sets, args.demo_sets, args.limit, Path(tmp))
        photos = _all_photos(sets)
        print(f"{len(photos)} photos in {len(sets)} sets: " + ", ".join(
            f"{name} ({sum(s == name for s, _, _ in photos)})" for name, _ in sets), flush=True)
        rows = {}
        for mode in modes:
            cmd = [sys.executable, "-m", "tools.bench", "--detector", args.detector, "--classifier", args.classifier,
                   "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--mode", mode["name"],
                   "--sets-json", json.dumps([[n, str(f)] for n, f in sets])]
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
            if proc.returncode or line is None:
                raise RuntimeError(f"bench mode {mode['name']} failed:\n{proc.stderr[-2000:]}")
            r = rows[mode["name"]] = json.loads(line[6:])
            print(f"{mode['name']:>24}: {r['photos_per_second']:7.2f} photos/s  peak {r['peak_memory_mb']:7.0f} MB  "
                  f"({r['photos']} photos in {r['seconds']} s, {r['threads']} threads)", flush=True)
        flops = _flops_per_photo(args, [folder / file for _, folder, file in photos])
    report: dict[str, Any] = {"device": "cpu", "cores": os.cpu_count(), "photos": len(photos),
                              "sets": {name: sum(s == name for s, _, _ in photos) for name, _ in sets},
                              "reference": reference, "rows": {}}
    peak, assumption = cpu_peak_gflops()
    report["gflop_per_photo"] = round(flops / 1e9, 3)
    report["cpu_peak_gflops"] = {"value": round(peak, 1), "assumption": assumption}
    print(f"\n{flops / 1e9:.2f} GFLOP per photo (PyTorch, the model files' settings); CPU peak {peak:.0f} GFLOP/s "
          f"({assumption})")
    naive = rows.get("naive")
    print("\n| mode | photos/s | x naive | peak MB | % of peak | largest difference from " + str(reference)
          + " | record problems | rule |\n|---|---:|---:|---:|---:|---|---:|---|")
    for name, r in rows.items():
        out = {k: v for k, v in r.items() if k != "records"}
        out["speedup_vs_naive"] = round(r["photos_per_second"] / naive["photos_per_second"], 2) if naive else None
        achieved = flops / 1e9 * r["photos_per_second"]
        out["share_of_peak"] = round(achieved / peak, 4) if peak and name not in ("detector", "classifier") else None
        verdict, largest = "", ""
        if name == "naive" and reference in rows:
            out["same_as_reference"] = _same(rows[reference]["records"], r["records"])
            verdict = "same records" if out["same_as_reference"]["same"] else "records differ"
        elif "figures" in r and reference in rows:
            out["rule"] = compare_figures(rows[reference]["figures"], r["figures"])
            out["rule"]["accepted"] = out["rule"]["within"] and not r["problems"]
            big = out["rule"]["largest"]
            largest = "" if big is None else (f"{big['difference']:.1f} ({big['set']} / {big['folder']}, "
                                              f"{big['figure']})")
            verdict = "accepted" if out["rule"]["accepted"] else "refused"
        report["rows"][name] = out
        share = "" if out["share_of_peak"] is None else f"{100 * out['share_of_peak']:.1f}"
        speed = "" if out["speedup_vs_naive"] is None else f"{out['speedup_vs_naive']:.2f}"
        print(f"| {name} | {r['photos_per_second']:.2f} | {speed} | {r['peak_memory_mb']:.0f} | {share} | {largest} | "
              f"{len(r.get('problems', []))} | {verdict} |")
    if reference is not None:
        print("\nFigures (shares in %, boxes per photo as they are):\n")
        print("\n".join(_figures_table(rows, [reference, *[m for m in engine_modes if m != reference]])))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

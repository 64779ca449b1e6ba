"""``taxolens bench``: photos/s and peak memory of each stage and of the pipeline, against a naive baseline.

Launch::

    taxolens bench ../shared/data/bees-hornets/valid/images --detector D --classifier C --limit 60

Every mode runs in a fresh process on the same photos, so each peak memory (VmHWM) is its own:

- ``detector``: the detector alone, photos decoded by loader workers, batched, inference_mode.
- ``classifier``: the classifier alone on the whole photos, batched.
- ``pipeline``: the whole ``taxolens run`` path (workers, batches, crops in one batch); ``--proposals``
  passes a cap on region proposals to it.
- ``onnx``, ``onnx-int8``: the same folder run with the networks in ONNX Runtime (the files ``taxolens
  export --format onnx [--quantize]`` wrote beside the model files).
- ``naive``: the same models one photo at a time, no workers, default settings (the model files'
  1000 proposals, every box scored, one classifier call per crop, ``torch.no_grad``), with the same
  suppression, calibration, unknown score and decision as the folder run.

Each folder-run mode and the naive baseline must give the same results: same number of organisms per photo,
same decisions, boxes within 1 px; the comparison is printed.
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

#: modes that run the real folder run, and the engine each uses
PIPELINE_MODES = {"pipeline": "torch", "onnx": "onnx", "onnx-int8": "onnx-int8"}


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - not Linux


def _photos(folder: str, limit: int) -> list[Path]:
    from core.io import list_images

    photos = list_images(folder)[:limit] if limit else list_images(folder)
    if not photos:
        raise ValueError(f"{folder}: no photos")
    return photos


def _child(args: argparse.Namespace) -> dict:
    """One mode, in this process; returns its figures."""
    from classifier.predict import Classifier
    from core.crops import crop_box
    from core.io import read_image
    from detector.predict import Detector
    from detector.suppress import suppress
    from pipeline.decision import decide
    from pipeline.predictor import Pipeline
    from pipeline.run import FolderRun, PhotoDataset, collate_list, run_folder
    from pipeline.settings import InferenceSettings

    photos = _photos(args.folder, args.limit)
    root = Path(args.folder)
    files = [p.relative_to(root).as_posix() for p in photos]
    records: list = []
    start = time.perf_counter()
    if args.mode == "naive":
        det = Detector.from_file(args.detector, "cpu")
        clf = Classifier.from_file(args.classifier, "cpu")
        with torch.no_grad():
            for p in photos:
                image = read_image(p)
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
                    d = decide(probabilities=analysis.probabilities[0], threshold=clf.threshold,
                               unknown_score=unknown, **clf.decision_settings)
                    if d["reason"] != REASON_NO_ORGANISM:  # as the record moves it to "dropped"
                        dets.append({"box": xywh, "taxon": d["taxon"], "detector_score": score})
                records.append(dets)
    elif args.mode in PIPELINE_MODES:
        engine = PIPELINE_MODES[args.mode]
        pipe = Pipeline.from_files(args.detector, args.classifier, InferenceSettings(
            device="cpu", engine=engine, proposals=args.proposals if engine == "torch" else 0))
        with tempfile.TemporaryDirectory() as tmp:
            subset = Path(tmp) / "photos"
            for f in files:  # the same photos, through the real folder run
                (subset / f).parent.mkdir(parents=True, exist_ok=True)
                (subset / f).symlink_to((root / f).resolve())
            start = time.perf_counter()
            result = run_folder(pipe, subset, Path(tmp) / "out", FolderRun(batch_size=args.batch_size,
                                                                            workers=args.workers))
        records = [r["detections"] for r in result["images"]]
    elif args.mode in ("detector", "classifier"):
        det = Detector.from_file(args.detector, "cpu")
        clf = Classifier.from_file(args.classifier, "cpu")
        ds = PhotoDataset(root, files, det.info["min_size"], det.info["max_size"], 10**9)
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers,
                                             collate_fn=collate_list, worker_init_fn=WorkerInit())
        with torch.inference_mode():
            for batch in loader:
                if args.mode == "detector":
                    det.batch_predict_tensors([b["input"][0] for b in batch])
                else:
                    clf.batch_predict([b["image"] for b in batch])
    seconds = time.perf_counter() - start
    return {"mode": args.mode, "photos": len(photos), "seconds": round(seconds, 2),
            "photos_per_second": round(len(photos) / seconds, 3), "peak_memory_mb": round(_peak_rss_mb(), 1),
            "threads": torch.get_num_threads(), "records": records}


def _flops_per_photo(args: argparse.Namespace, n: int = 5) -> float:
    """Floating-point operations of the detector and the classifier per photo (FlopCounterMode).

    The mean over the first ``n`` photos, at the detector's input size, with their crops.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from core.crops import crop_box
    from pipeline.predictor import Pipeline
    from pipeline.settings import InferenceSettings

    pipe = Pipeline.from_files(args.detector, args.classifier, InferenceSettings(device="cpu"))
    totals = []
    for p in _photos(args.folder, args.limit)[:n]:
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


def _same(a: list[list[dict]], b: list[list[dict]]) -> dict:
    """How far two runs' results are apart."""
    count_diff = sum(len(x) != len(y) for x, y in zip(a, b))
    taxon_diff = box_diff = 0
    worst = 0.0
    for x, y in zip(a, b):
        if len(x) != len(y):
            continue
        for dx, dy in zip(sorted(x, key=lambda d: -d["detector_score"]), sorted(y, key=lambda d: -d["detector_score"])):
            taxon_diff += dx["taxon"] != dy["taxon"]
            err = float(np.max(np.abs(np.array(dx["box"]) - np.array(dy["box"]))))
            worst = max(worst, err)
            box_diff += err > 1.0
    return {"photos_with_other_count": count_diff, "other_taxon": taxon_diff, "boxes_off_by_more_than_1px": box_diff,
            "largest_box_difference_px": round(worst, 2),
            "same": count_diff == 0 and taxon_diff == 0 and box_diff == 0}


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens bench``."""
    p = argparse.ArgumentParser(prog="taxolens bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--detector", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--limit", type=int, default=60, help="photos (0: all)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--proposals", type=int, default=0, help="cap on region proposals in the pipeline mode")
    p.add_argument("--modes", nargs="+", default=["naive", "detector", "classifier", "pipeline"],
                   choices=["naive", "detector", "classifier", *PIPELINE_MODES],
                   help="onnx and onnx-int8 need the files of `taxolens export --format onnx --quantize`")
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--mode", default=None, help=argparse.SUPPRESS)  # internal: run one mode in this process
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens bench``."""
    args = check_settings(get_args_parser().parse_args(argv))
    if args.mode:
        print("BENCH " + json.dumps(_child(args)))
        return 0
    _photos(args.folder, args.limit)
    rows = {}
    for mode in args.modes:
        cmd = [sys.executable, "-m", "tools.bench", args.folder, "--detector", args.detector, "--classifier",
               args.classifier, "--limit", str(args.limit), "--batch-size", str(args.batch_size), "--workers",
               str(args.workers), "--proposals", str(args.proposals), "--mode", mode]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
        if proc.returncode or line is None:
            raise RuntimeError(f"bench mode {mode} failed:\n{proc.stderr[-2000:]}")
        rows[mode] = json.loads(line[6:])
        r = rows[mode]
        print(f"{mode:>10}: {r['photos_per_second']:7.2f} photos/s  peak {r['peak_memory_mb']:7.0f} MB  "
              f"({r['photos']} photos in {r['seconds']} s, {r['threads']} threads)", flush=True)
    summary_rows = {m: {k: v for k, v in r.items() if k != "records"} for m, r in rows.items()}
    report: dict[str, Any] = {"device": "cpu", "cores": os.cpu_count(), "rows": summary_rows}
    for mode in (m for m in PIPELINE_MODES if m in rows and "naive" in rows):
        speedup = round(rows[mode]["photos_per_second"] / rows["naive"]["photos_per_second"], 2)
        same = _same(rows["naive"]["records"], rows[mode]["records"])
        report[f"speedup_{mode}_vs_naive"] = speedup
        report[f"same_results_{mode}"] = same
        print(f"{mode} vs naive: {speedup}x; results: {same}")
    flops = _flops_per_photo(args)
    peak, assumption = cpu_peak_gflops()
    report["gflop_per_photo"] = round(flops / 1e9, 3)
    report["cpu_peak_gflops"] = {"value": round(peak, 1), "assumption": assumption}
    for mode, r in rows.items():
        if mode in ("naive", *PIPELINE_MODES):
            achieved = flops / 1e9 * r["photos_per_second"]
            report["rows"][mode]["achieved_gflops"] = round(achieved, 2)
            report["rows"][mode]["share_of_peak"] = round(achieved / peak, 4) if peak else None
            print(f"{mode:>10}: {achieved:6.1f} GFLOP/s achieved = {100 * achieved / peak:.1f} % of the peak "
                  f"{peak:.0f} GFLOP/s ({assumption}); {flops / 1e9:.2f} GFLOP per photo")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

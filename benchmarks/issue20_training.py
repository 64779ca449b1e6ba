"""Issue 20: images/s of one training step of each demo stage on this CPU: fp32, channels_last, bf16 autocast.

Usage: ``benchmarks/issue20_training.py [STEPS]``. The demo profiles' networks (EfficientNet-Lite0 classifier at
160 px, batch 16; the EfficientNet-Lite0 FPN Faster R-CNN at 352 px, batch 4, with its boxes), real photos of
bees-hornets train read once, SGD steps after two warm-up steps, every variant in this one run against fp32.
bf16 autocast runs where the CPU has avx512_bf16 or AMX (lscpu); it changes the arithmetic, so a variant that
is faster must still be trained over three seeds and judged on the held-out sets before any profile uses it.
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, ".")
from annotations.coco import image_path, load_coco  # noqa: E402
from classifier.models import build_classifier  # noqa: E402
from core.crops import crop_box  # noqa: E402
from core.io import read_image  # noqa: E402
from detector.models import build_detector  # noqa: E402
from detector.predict import preprocess  # noqa: E402

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 8
coco = load_coco(Path("runs/demo/data/bh-train.json"))
by_image: dict[int, list] = {}
for a in coco["annotations"]:
    by_image.setdefault(a["image_id"], []).append(a["bbox"])
photos = [im for im in coco["images"] if im["id"] in by_image][:16]
images = [read_image(image_path(coco, im)) for im in photos]
crops = [crop_box(image, box, 0.1) for image, im in zip(images, photos) for box in by_image[im["id"]]][:16]
x_clf = torch.stack([torch.nn.functional.interpolate(torch.from_numpy(c).permute(2, 0, 1)[None].float() / 255,
                                                     size=(160, 160), mode="bilinear")[0] for c in crops])
y_clf = torch.arange(len(x_clf)) % 5
det_inputs, det_targets = [], []
for image, im in zip(images[:4], photos[:4]):
    t, scale = preprocess(image, 352, 352)
    boxes = torch.tensor([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in by_image[im["id"]]]) * scale
    det_inputs.append(t)
    det_targets.append({"boxes": boxes.float(), "labels": torch.ones(len(boxes), dtype=torch.int64)})
flags = Path("/proc/cpuinfo").read_text()
has_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, avx512_bf16/amx: {has_bf16}, {steps} steps")


def measure(stage: str, channels_last: bool, bf16: bool) -> float:
    """Images/s of training steps of ``stage``'s network in that memory format and precision."""
    torch.manual_seed(0)
    if stage == "classifier":
        model, _ = build_classifier("efficientnet_lite0", 5, "imagenet")
        batch = len(x_clf)
    else:
        model = build_detector("fasterrcnn_efficientnet_lite0_fpn", 1, "imagenet", min_size=352, max_size=352,
                               head_size=256, rois_per_image=128)
        batch = len(det_inputs)
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if stage == "classifier":
                x = x_clf.to(memory_format=torch.channels_last) if channels_last else x_clf
                loss = torch.nn.functional.cross_entropy(model(x).float(), y_clf)
            else:
                loss = sum(model(det_inputs, det_targets).values())
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


for stage in ("classifier", "detector"):
    base = None
    for cl, bf in ((False, False), (True, False), (False, True), (True, True)):
        if bf and not has_bf16:
            continue
        rate = measure(stage, cl, bf)
        base = base or rate
        name = "+".join(n for n, on in (("channels_last", cl), ("bf16 autocast", bf)) if on) or "fp32"
        print(f"{stage:>10} {name:<28} {rate:7.2f} images/s  ({rate / base:.2f}x fp32)", flush=True)

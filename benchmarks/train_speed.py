"""Offline-training throughput (images/s) per backbone, on CPU and (when available) CUDA.

Times what one optimizer step of ``masktrack train`` does on the training device: the
per-sample previous-mask deformation, forward pass (bf16 autocast with ``--amp``), cross-entropy,
backward pass and the optimizer update, on random frames with one rectangular object each
(data loading runs in parallel worker processes and is not timed). Backbones are timed
round-robin, so load from other processes affects all alike; the median is reported.

    .venv/bin/python benchmarks/train_speed.py                       # CPU, 240x427, batch 8
    .venv/bin/python benchmarks/train_speed.py --backbones mobilenet_v2 --output-strides 8 16 --skip both
    .venv/bin/python benchmarks/train_speed.py --device cuda --amp --batch-size 16
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from collections.abc import Callable

import torch

from masktrack.augment.deform import DeformConfig
from masktrack.model import ModelConfig, build_model
from masktrack.model.losses import segmentation_loss
from masktrack.train.dataset import previous_masks

SKIP_CHOICES = {"off": [False], "on": [True], "both": [False, True]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "efficientnet_lite0", "resnet18", "resnet50"])
    parser.add_argument("--output-strides", nargs="+", type=int, default=[16])
    parser.add_argument("--head", type=int, default=128, help="head_channels (0 = DeepLab-v2 head)")
    parser.add_argument("--skip", choices=list(SKIP_CHOICES), default="off", help="low_level_skip (light head)")
    parser.add_argument("--size", default="240x427", help="HEIGHTxWIDTH of the training samples")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=5, help="timed rounds (one step per backbone each)")
    parser.add_argument("--warmup", type=int, default=2)
    return parser.parse_args()


def prepare(config: ModelConfig, size: tuple[int, int], batch: int, device: str, amp: bool) -> Callable[[], None]:
    """One training step of a randomly initialised model, as a zero-argument function."""
    model = build_model(config).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, fused=True)
    images = torch.rand(batch, 3, *size, device=device)
    masks = torch.zeros(batch, *size, dtype=torch.uint8, device=device)
    masks[:, size[0] // 4: 3 * size[0] // 4, size[1] // 4: 3 * size[1] // 4] = 1
    seeds = torch.arange(batch)
    deform = DeformConfig()

    def step() -> None:
        previous = previous_masks(masks, seeds, deform)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images, previous)
        optimizer.zero_grad(set_to_none=True)
        segmentation_loss(logits, masks).backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return step


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    skips = SKIP_CHOICES[args.skip] if args.head else [False]
    steps = {
        (backbone, output_stride, skip): prepare(
            ModelConfig(backbone=backbone, output_stride=output_stride, head_channels=args.head, low_level_skip=skip),
            size, args.batch_size, args.device, args.amp)
        for backbone, output_stride, skip in itertools.product(args.backbones, args.output_strides, skips)
    }
    seconds: dict[tuple[str, int, bool], list[float]] = {case: [] for case in steps}
    for round_index in range(args.warmup + args.steps):
        for case, step in steps.items():
            start = time.perf_counter()
            step()
            if round_index >= args.warmup:
                seconds[case].append(time.perf_counter() - start)
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"cpu, {args.threads} threads"
    print(f"torch {torch.__version__}, {device}, {platform.machine()}, {args.size}, batch {args.batch_size}, "
          f"head {args.head or 'DeepLab-v2'}, amp {'bf16' if args.amp else 'off'}, "
          f"{args.steps} rounds\n")
    print("| backbone | OS | skip | median s/step | best s/step | images/s (median) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (backbone, output_stride, skip), times in seconds.items():
        median = statistics.median(times)
        print(f"| {backbone} | {output_stride} | {'yes' if skip else 'no'} | {median:.3f} | {min(times):.3f} | "
              f"{args.batch_size / median:.1f} |")


if __name__ == "__main__":
    main()

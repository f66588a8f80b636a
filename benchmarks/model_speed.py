"""MaskTrackNet inference throughput on CPU or CUDA, one frame and one object at a time.

Times ``model(image, prev_mask)`` under ``torch.inference_mode`` at 240p (427x240) for each
backbone x output stride x head combination and mode (plain eval, or
``prepare_for_inference``: batch norms folded; the network is channels-last in both), and prints a Markdown table. Configurations are timed round-robin, so that load from other
processes affects all alike; the best time is the least disturbed estimate. Parameters and
float32 size (MB) are those of the trainable model (the checkpoint size).

    .venv/bin/python benchmarks/model_speed.py
    .venv/bin/python benchmarks/model_speed.py --backbones mobilenet_v2 --heads 0 128 --skip both
    python benchmarks/model_speed.py --device cuda --amp --size 854x480 --backbones mobilenet_v2 resnet50
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from collections.abc import Callable

import torch

from masktrack.devices import device_name
from masktrack.model import ModelConfig, build_model
from masktrack.model.inference import prepare_for_inference

MODES = ("eager", "prepared")
SKIP_CHOICES = {"off": [False], "on": [True], "both": [False, True]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "efficientnet_lite0", "resnet18"])
    parser.add_argument("--output-strides", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--heads", nargs="+", type=int, default=[0, 128], help="head_channels values (0 = DeepLab-v2)")
    parser.add_argument("--skip", choices=list(SKIP_CHOICES), default="off", help="low_level_skip (light heads)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="eager: model.eval(); prepared: prepare_for_inference (batch norms folded)")
    parser.add_argument("--size", default="427x240", help="WIDTHxHEIGHT of the frames")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--runs", type=int, default=15, help="timed rounds (one forward pass per configuration each)")
    parser.add_argument("--warmup", type=int, default=3)
    return parser.parse_args()


def prepare(config: ModelConfig, size: tuple[int, int], mode: str, device: str, amp: bool
            ) -> tuple[Callable[[], None], int, float]:
    """A zero-argument forward pass of a randomly initialised model on one random frame (waiting
    for the device to finish), the model's parameter count and its state dict's size in MB."""
    width, height = size
    model = build_model(config).eval()
    params = sum(p.numel() for p in model.parameters())
    megabytes = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
    image = torch.rand(1, 3, height, width, device=device)
    mask = (torch.rand(1, 1, height, width, device=device) > 0.5).float()
    if mode == "prepared":
        model = prepare_for_inference(model)
    model = model.to(device)

    def forward() -> None:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            model(image, mask)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return forward, params, megabytes


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    cases = {}
    for backbone, output_stride, head, mode in itertools.product(
        args.backbones, args.output_strides, args.heads, args.modes
    ):
        for skip in SKIP_CHOICES[args.skip] if head else [False]:
            config = ModelConfig(backbone=backbone, output_stride=output_stride, head_channels=head, low_level_skip=skip)
            cases[(backbone, output_stride, head, skip, mode)] = prepare(config, size, mode, args.device, args.amp)
    seconds = {case: [] for case in cases}
    with torch.inference_mode():
        for round_index in range(args.warmup + args.runs):  # round-robin, so load from others hits all alike
            for case, (forward, _, _) in cases.items():
                start = time.perf_counter()
                forward()
                if round_index >= args.warmup:
                    seconds[case].append(time.perf_counter() - start)
    print(f"torch {torch.__version__}, {device_name(args.device)}, {platform.machine()}, {args.size}, batch 1, "
          f"amp {'bf16' if args.amp else 'off'}, {args.runs} rounds\n")
    print("| backbone | OS | head | skip | params (M) | MB | mode | median ms | best ms | fps (median) | fps (best) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (backbone, output_stride, head, skip, mode), times in seconds.items():
        median, best = statistics.median(times), min(times)
        _, params, megabytes = cases[(backbone, output_stride, head, skip, mode)]
        print(f"| {backbone} | {output_stride} | {head or 'DeepLab-v2'} | {'yes' if skip else 'no'} | "
              f"{params / 1e6:.2f} | {megabytes:.1f} | {mode} | {1000 * median:.0f} | {1000 * best:.0f} | "
              f"{1 / median:.1f} | {1 / best:.1f} |")


if __name__ == "__main__":
    main()

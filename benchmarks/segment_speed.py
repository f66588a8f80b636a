"""Speed of `masktrack segment` on CPU: online fine-tuning time and propagation frames per second.

Renders a synthetic video at 240p (427x240), fine-tunes a MaskTrackNet on its first frame
(one object, or several in ``shared`` and ``per_object`` modes) and propagates through the
remaining frames, with the settings `masktrack segment` uses (inference mode, channels-last,
``--threads`` CPU threads). Prints a Markdown table. The network is randomly initialised unless
``--weights`` is given: speed does not depend on the weights.

    .venv/bin/python benchmarks/segment_speed.py
    .venv/bin/python benchmarks/segment_speed.py --objects 1 3 --modes shared per_object --steps 100
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from masktrack.data.synth import generate_video
from masktrack.model import ModelConfig, build_model, load_checkpoint
from masktrack.online.finetune import FinetuneConfig, finetune
from masktrack.propagate.propagate import PropagateConfig, propagate


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="a checkpoint (default: a random network of --backbone etc.)")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--output-stride", type=int, default=16)
    parser.add_argument("--head-channels", type=int, default=128)
    parser.add_argument("--size", default="427x240", help="WIDTHxHEIGHT of the video (the network runs at this size)")
    parser.add_argument("--frames", type=int, default=40, help="video length")
    parser.add_argument("--objects", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--modes", nargs="+", default=["shared", "per_object"], choices=["shared", "per_object"])
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps")
    parser.add_argument("--batch-size", type=int, default=4, help="fine-tuning batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser.parse_args()


def parent_model(args: argparse.Namespace) -> torch.nn.Module:
    if args.weights:
        model, _ = load_checkpoint(args.weights)
    else:
        config = ModelConfig(backbone=args.backbone, output_stride=args.output_stride, head_channels=args.head_channels)
        model = build_model(config)
    return model.to(memory_format=torch.channels_last).eval()


def measure(parent: torch.nn.Module, video, mode: str, steps: int, batch_size: int) -> tuple[float, float]:
    """Seconds of fine-tuning and propagation frames per second (first frame excluded)."""
    config = FinetuneConfig(steps=steps, batch_size=batch_size, mode=mode)
    start = time.perf_counter()
    models = finetune(parent, [(video.frames[0], video.labels[0])], config, "cpu", torch.Generator().manual_seed(0), progress=False)
    finetune_s = time.perf_counter() - start
    stream = propagate(iter(video.frames), models, {0: video.labels[0]}, PropagateConfig(), "cpu")
    next(stream)  # the given first frame
    start = time.perf_counter()
    count = sum(1 for _ in stream)
    return finetune_s, count / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    parent = parent_model(args)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"{width}x{height}, {args.frames} frames, {args.steps} fine-tuning steps of batch {args.batch_size}")
    print("| objects | mode | fine-tuning (s) | propagation (frames/s) |")
    print("| --- | --- | --- | --- |")
    for count in args.objects:
        video = generate_video(count, num_frames=args.frames, size=(height, width), num_objects=count)
        for mode in args.modes if count > 1 else args.modes[:1]:
            finetune_s, fps = measure(parent, video, mode, args.steps, args.batch_size)
            print(f"| {count} | {mode} | {finetune_s:.1f} | {fps:.1f} |", flush=True)


if __name__ == "__main__":
    main()

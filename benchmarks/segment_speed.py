"""Speed of `masktrack segment` on CPU: online fine-tuning time and propagation frames per second.

Renders synthetic videos at 240p (427x240), fine-tunes a MaskTrackNet on each first frame
(one object, or several in ``shared`` and ``per_object`` modes) and propagates through the
remaining frames, with the settings `masktrack segment` uses (inference mode, channels-last,
``--threads`` CPU threads). Wall-clock figures depend on other processes; the process's CPU
seconds (all threads) depend much less on them. On a busy machine set ``OMP_WAIT_POLICY=PASSIVE``
(or ``--threads 1``): OpenMP threads that spin-wait for a descheduled sibling make each
operator several times slower. Prints a Markdown table, one row per output stride, object count
and mode; times are means over ``--videos`` videos. The network is randomly initialised (MobileNetV2,
light ASPP head of 128 channels, stride-4 skip: the DAVIS 2016 benchmark's configuration)
unless ``--weights`` is given: speed does not depend on the weights. With ``--weights``, the
J&F mean of the propagated masks against the generated ones (first and last frames not scored,
as in DAVIS) compares the fine-tuning modes.

    .venv/bin/python benchmarks/segment_speed.py
    .venv/bin/python benchmarks/segment_speed.py --output-strides 16 --objects 3 --weights parent.safetensors --videos 5
    .venv/bin/python benchmarks/segment_speed.py --output-strides 16 --objects 1 --steps 0 --flip off on  # test-time flip's cost
    .venv/bin/python benchmarks/segment_speed.py --output-strides 16 --objects 1 --amp off on --videos 3  # bf16 autocast's gain
    .venv/bin/python benchmarks/segment_speed.py --output-strides 16 --objects 1 --width 0 240 --videos 3  # fine-tuning on crops
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from dataclasses import replace

import numpy as np
import torch

from masktrack.data.synth import SyntheticVideo, generate_video
from masktrack.evaluate.metrics import frame_scores
from masktrack.model import ModelConfig, build_model, load_checkpoint
from masktrack.online.finetune import FinetuneConfig, finetune
from masktrack.propagate.propagate import PropagateConfig, propagate


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="a checkpoint (default: a random network of --backbone etc.); adds J&F")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--output-strides", nargs="+", type=int, default=[16, 8], help="one row set per stride (default: 16 8)")
    parser.add_argument("--head-channels", type=int, default=128)
    parser.add_argument("--low-level-skip", action=argparse.BooleanOptionalAction, default=True, help="stride-4 skip (default: on)")
    parser.add_argument("--size", default="427x240", help="WIDTHxHEIGHT of the video (the network runs at this size)")
    parser.add_argument("--frames", type=int, default=40, help="video length")
    parser.add_argument("--videos", type=int, default=1, help="videos per row (seeds 0..N-1)")
    parser.add_argument("--objects", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--modes", nargs="+", default=["shared", "per_object"], choices=["shared", "per_object"])
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps")
    parser.add_argument("--batch-size", type=int, default=4, help="fine-tuning batch size")
    parser.add_argument("--flip", nargs="+", choices=["off", "on"], default=["off"],
                        help="mirrored-frame averaging in propagation ('off on': a row for each, side by side)")
    parser.add_argument("--amp", nargs="+", choices=["off", "on"], default=["off"],
                        help="bf16 autocast in fine-tuning and propagation ('off on': a row for each, side by side)")
    parser.add_argument("--width", nargs="+", type=int, default=[0],
                        help="fine-tuning's crop width, 0 for whole frames ('0 240': a row for each, side by side)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser.parse_args()


def parent_models(args: argparse.Namespace) -> dict[int, torch.nn.Module]:
    """Output stride -> the parent network (the checkpoint's alone with ``--weights``)."""
    if args.weights:
        model, _ = load_checkpoint(args.weights)
        models = {model.config.output_stride: model}
    else:
        config = ModelConfig(backbone=args.backbone, head_channels=args.head_channels, low_level_skip=args.low_level_skip)
        models = {stride: build_model(replace(config, output_stride=stride)) for stride in args.output_strides}
    return {stride: model.eval() for stride, model in models.items()}


def clocks() -> np.ndarray:
    """Wall-clock and process CPU seconds (all threads) now."""
    return np.array([time.perf_counter(), time.process_time()])


def measure(parent: torch.nn.Module, video: SyntheticVideo, mode: str, steps: int, batch_size: int, flip: bool, amp: bool,
            width: int) -> np.ndarray:
    """Fine-tuning wall and CPU seconds, propagation frames per wall and per CPU second (first
    frame excluded), and the J&F mean."""
    config = FinetuneConfig(steps=steps, batch_size=batch_size, mode=mode, amp=amp,
                            width=width or None)
    start = clocks()
    models = finetune(parent, [(video.frames[0], video.labels[0])], config, "cpu", torch.Generator().manual_seed(0), progress=False)
    finetune_s = clocks() - start
    stream = propagate(iter(video.frames), models, {0: video.labels[0]}, PropagateConfig(flip=flip, amp=amp), "cpu")
    next(stream)  # the given first frame
    ids = [int(i) for i in np.unique(video.labels[0]) if i != 0]
    scores = []
    elapsed = np.zeros(2)
    start = clocks()
    for result in stream:
        elapsed += clocks() - start
        if result.index < len(video.frames) - 1:
            scores.append(np.mean(frame_scores(video.labels[result.index], result.labels, ids), axis=1))
        start = clocks()
    return np.array([*finetune_s, *((len(video.frames) - 1) / elapsed), np.mean(scores)])


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    parents = parent_models(args)
    config = next(iter(parents.values())).config
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"{config.backbone} head {config.head_channels} skip {config.low_level_skip}, {width}x{height}, {args.frames} frames, "
          f"{args.videos} video(s) per row, {args.steps} fine-tuning steps of batch {args.batch_size}, "
          f"{'weights ' + args.weights if args.weights else 'random weights'}")
    print("| output stride | objects | mode | flip | amp | crop width | fine-tuning (s) | fine-tuning (CPU s) | propagation (frames/s) | propagation (frames/CPU s) |"
          + (" J&F mean |" if args.weights else ""))
    print("| ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if args.weights else ""))
    for stride, parent in parents.items():
        for count in args.objects:
            videos = [generate_video(seed, num_frames=args.frames, size=(height, width), num_objects=count) for seed in range(args.videos)]
            for mode in args.modes if count > 1 else args.modes[:1]:
                for flip, amp, crop in itertools.product(args.flip, args.amp, args.width):
                    finetune_s, finetune_cpu, fps, fps_cpu, score = np.mean(
                        [measure(parent, video, mode, args.steps, args.batch_size, flip == "on", amp == "on", crop) for video in videos], axis=0)
                    row = f"| {stride} | {count} | {mode} | {flip} | {amp} | {crop or 'frame'} | {finetune_s:.1f} | {finetune_cpu:.1f} | {fps:.1f} | {fps_cpu:.1f} |"
                    row += f" {100 * score:.1f} |" if args.weights else ""
                    print(row, flush=True)


if __name__ == "__main__":
    main()

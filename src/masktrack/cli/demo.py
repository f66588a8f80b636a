"""`masktrack demo`: the whole pipeline on generated videos, in a few minutes on a CPU."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "the whole pipeline on synthetic videos: fine-tune the shipped model, segment, evaluate, report"
EXAMPLES = """\
examples:
  # the demo (a few minutes on 2 CPU cores): prints the report's path and the J&F
  masktrack demo --out demo-run --overwrite

  # train a parent on the synthetic videos instead of using the shipped model (slower, more accurate here)
  masktrack demo --out demo-trained --train

  # start from your own parent network instead, without progress bars
  masktrack demo --out demo-own --weights runs/parent/model.safetensors --quiet

what it does: writes 8 synthetic videos (48 frames at 128x96, 2-3 textured objects each, one
appearing mid-video in every other video, one leaving the frame in every third) in the DAVIS
2017 layout; takes the shipped model as the parent network (or --weights; with --train, or
when this install has no shipped model, trains a MobileNetV2 parent from scratch on the 6 train
videos); fine-tunes it online on each val video's given masks; segments the 2 val videos,
evaluates them and writes the report, all with the default preset. The output folder appears
only when complete. Its J&F and time: docs/results.md.

outputs (OUT = --out):
  OUT/data/ (the synthetic dataset)  OUT/parent/ (the training run, when trained)
  OUT/run/ (the segment run folder: masks, eval/, report/index.html)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-run"), metavar="DIR", help="folder to create (default: demo-run)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parent = parser.add_mutually_exclusive_group()
    parent.add_argument("--weights", type=Path, metavar="CKPT", help="parent model to fine-tune (skips offline training)")
    parent.add_argument("--train", action="store_true", help="train the parent on the synthetic videos instead of using the shipped model")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from masktrack.api.parents import shipped_model
    from masktrack.demo import run_demo
    from masktrack.devices import set_threads
    from masktrack.errors import InputError

    if args.weights is not None and not args.weights.is_file():
        raise InputError(f"{args.weights}: no such checkpoint")
    shipped = None if args.weights is not None or args.train else shipped_model()
    parent = args.weights or shipped
    set_threads(args.threads, 1, "cpu")
    result = run_demo(args.out, overwrite=args.overwrite, parent=parent, progress=not args.quiet)
    name = "trained here on the synthetic train split" if parent is None else f"{'the shipped model ' if shipped else ''}{parent}"
    print(f"masktrack demo: parent: {name}, fine-tuned online on each val video")
    print(f"masktrack demo: report {result.report}")
    print(f"masktrack demo: J&F {result.metrics['J&F-Mean']:.3f} (J {result.metrics['J-Mean']:.3f}, F {result.metrics['F-Mean']:.3f}) "
          f"on {result.run_dir.parent / 'data'} val, in {result.seconds:.0f} s")
    return 0

"""`masktrack synth`: write a synthetic VOS dataset in the DAVIS 2017 layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from masktrack.errors import InputError

HELP = "write a synthetic video object segmentation dataset in the DAVIS 2017 layout"
EXAMPLES = """examples:
  masktrack synth data/synth                          # 4 videos of 24 frames at 120x160
  masktrack synth data/synth --videos 8 --frames 40 --size 240x320 --seed 3
  masktrack synth data/synth --overwrite              # replace an existing dataset
  masktrack synth data/synth --videos 8 --occlusions  # videos 3 and 7: an object hides behind a pillar
  masktrack synth data/look --videos 6 --lookalike   # 2-3 identical objects that cross, hide each other and leave

The output has JPEGImages/<H>p/<seq>/*.jpg, Annotations/<H>p/<seq>/*.png (DAVIS palette,
every frame annotated) and ImageSets/2017/{train,val}.txt (the last quarter is val)."""


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``120x160``) into ``(height, width)``."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 120x160, got {text!r}") from None
    if min(height, width) < 32:
        raise argparse.ArgumentTypeError(f"size must be at least 32x32, got {text!r}")
    return height, width


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="dataset folder to create")
    parser.add_argument("--videos", type=int, default=4, help="number of videos (default: 4)")
    parser.add_argument("--frames", type=int, default=24, help="frames per video (default: 24)")
    parser.add_argument("--size", type=parse_size, default=(120, 160), help="frame size HxW (default: 120x160)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--occlusions", action="store_true",
                        help="in every fourth video (3, 7, ...) one object passes wholly behind a pillar inside the frame")
    parser.add_argument("--lookalike", action="store_true",
                        help="2 or 3 objects of the same outline, texture and size per video, whose paths cross "
                             "(they hide each other); one leaves the frame in videos 2, 5, ...; no --occlusions")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")


def run(args: argparse.Namespace) -> int:
    from masktrack.atomic import atomic_output_dir
    from masktrack.data.synth import generate_dataset

    if args.videos < 1 or args.frames < 2:
        raise InputError(f"{args.out_dir}: need --videos >= 1 and --frames >= 2")
    if args.lookalike and args.occlusions:
        raise InputError(f"{args.out_dir}: --lookalike and --occlusions cannot be combined")
    with atomic_output_dir(args.out_dir, overwrite=args.overwrite) as partial:
        generate_dataset(partial, num_videos=args.videos, num_frames=args.frames, size=args.size, seed=args.seed,
                         occlusions=args.occlusions, lookalike=args.lookalike, progress=True)
    print(f"wrote {args.videos} synthetic video{'s' * (args.videos != 1)} to {args.out_dir}")
    return 0

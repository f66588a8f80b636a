"""`masktrack mask`: a first mask from boxes and clicks, for `masktrack segment --mask`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from masktrack.prompt import ObjectPrompt

HELP = "propose a first-frame mask from boxes and clicks (one object per box)"
EXAMPLES = """\
examples:
  # two objects on the first frame, one box each (x, y, width, height in pixels); look at the proposal
  masktrack mask clip.mp4 --box 120,40,200,310 --box 400,80,90,150 --out first.png --show first-preview.png

  # refine object 1 with a positive click and a negative one; object 3 from a click alone
  masktrack mask clip.mp4 --box 120,40,200,310 --point 1:180,90,+ --point 1:150,330,- --point 3:500,200 --out first.png

  # the object appears at frame 40
  masktrack mask clip.mp4 --frame 40 --box 10,60,80,80 --out frame40.png

  # then segment from it (or in one step: masktrack segment clip.mp4 --box 120,40,200,310 --out runs/clip)
  masktrack segment clip.mp4 --mask first.png --out runs/clip

how: the MaskTrack network refines the box as it would a rough previous mask, a salient-object model
(U^2-Netp) looks inside it, and clicks refine the result with GrabCut (docs/segmentation.md)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="video file or frame folder")
    parser.add_argument("--box", action="append", default=[], metavar="X,Y,W,H", help="an object's box (repeat: objects 1, 2, ...)")
    parser.add_argument("--point", action="append", default=[], metavar="[ID:]X,Y[,+|-]",
                        help="a click on object ID (default 1): + on it (default), - not on it; an ID without a box is "
                        "proposed from its clicks")
    parser.add_argument("--frame", type=int, default=0, metavar="N", help="the frame to propose on (default: 0, the first)")
    parser.add_argument("--out", type=Path, required=True, metavar="PNG", help="the palette PNG to write (ids as the objects)")
    parser.add_argument("--show", type=Path, metavar="PNG", help="also write the frame with the proposal drawn over it")
    parser.add_argument("--weights", type=Path, metavar="CKPT", help="parent checkpoint (default: the shipped model)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    from masktrack.api.inputs import open_file
    from masktrack.api.predictor import Predictor
    from masktrack.atomic import atomic_file, check_output_file
    from masktrack.data.masks import write_mask
    from masktrack.errors import InputError
    from masktrack.prompt import prompts_by_frame

    if not args.box and not args.point:
        raise InputError("give at least one --box X,Y,W,H or --point X,Y")
    if any(":" in box for box in args.box):
        raise InputError("--box N:X,Y,W,H places a box on frame N in `masktrack segment`; here use --frame N")
    prompts = prompts_by_frame(args.box, args.point, args.frame)[args.frame]
    for path in (args.out, args.show):
        if path is not None:
            check_output_file(path)
            if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                raise InputError(f"{path}: give a .png (or, for --show, .jpg) file name")
    sequence = open_file(args.input)
    if not 0 <= args.frame < len(sequence):
        raise InputError(f"{args.input}: --frame {args.frame} is not one of its {len(sequence)} frames")
    frame = sequence.read_frame(args.frame)
    labels = Predictor([args.weights] if args.weights else None, device=args.device).propose(frame, prompts)
    with atomic_file(args.out) as temporary:
        write_mask(temporary, labels)
    if args.show is not None:
        write_preview(args.show, frame, labels, prompts)
    found = sorted(int(i) for i in set(labels.flat) - {0})
    print(f"masktrack mask: {len(found)} object{'s' * (len(found) != 1)} on frame {args.frame} -> {args.out}"
          + (f" (preview {args.show})" if args.show else ""))
    missing = sorted({prompt.object_id for prompt in prompts} - set(found))
    if missing:
        print(f"masktrack mask: warning: no pixel proposed for object{'s' * (len(missing) != 1)} {missing}: add a positive click")
    return 0


def write_preview(path: Path, frame: np.ndarray, labels: np.ndarray, prompts: list[ObjectPrompt]) -> None:
    """The frame with the proposed objects tinted, their boxes drawn and clicks marked (green +, red -)."""
    import cv2
    import numpy as np

    from masktrack.atomic import atomic_file
    from masktrack.data.masks import DAVIS_PALETTE
    from masktrack.data.video import overlay

    picture = overlay(frame, labels)
    for prompt in prompts:
        colour = tuple(int(c) for c in DAVIS_PALETTE[prompt.object_id])
        if prompt.box is not None:
            x, y, w, h = prompt.box
            cv2.rectangle(picture, (x, y), (x + w - 1, y + h - 1), colour, 2)
        for x, y, positive in prompt.points:
            cv2.circle(picture, (x, y), 4, (0, 200, 0) if positive else (220, 0, 0), -1)
    with atomic_file(path) as temporary:
        cv2.imwrite(str(temporary), np.ascontiguousarray(picture[:, :, ::-1]))

"""`masktrack deform`: a picture of the simulated previous-frame masks made from a mask PNG."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from masktrack.errors import InputError

HELP = "show simulated previous-frame masks (the training deformations) of a mask PNG as a picture"
EXAMPLES = """examples:
  masktrack deform Annotations/480p/bear/00000.png          # writes 00000-deformations.png here
  masktrack deform mask.png --out grid.png --count 6 --seed 3
  masktrack deform mask.png --show                           # also open it in an image viewer

One block per object: a row per deformation (affine, tps, dilate, coarsen, drop, box, then the
default mix used in training), the true mask first and COUNT samples after it. The true mask is
grey with a white outline; each deformed mask is a coloured fill with a coloured outline."""

MAX_COUNT = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mask", type=Path, metavar="MASK_PNG", help="mask image (palette, binary or colour-coded PNG)")
    parser.add_argument("--out", type=Path, help="picture to write (default: <MASK_PNG name>-deformations.png here)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--count", type=int, default=4, help=f"samples of each deformation, 1-{MAX_COUNT} (default: 4)")
    parser.add_argument("--show", action="store_true", help="open the picture in an image viewer if a display exists")


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from masktrack.atomic import atomic_file, check_output_file
    from masktrack.augment.preview import deformation_sheet
    from masktrack.data.masks import object_ids, read_mask

    if not 1 <= args.count <= MAX_COUNT:
        raise InputError(f"--count must be between 1 and {MAX_COUNT}, got {args.count}")
    out = args.out or Path(f"{args.mask.stem}-deformations.png")
    check_output_file(out)
    picture_format = Image.registered_extensions().get(out.suffix.lower())
    if picture_format is None:
        raise InputError(f"{out}: unknown picture format {out.suffix or '(no extension)'}; name it .png or .jpg")
    labels = read_mask(args.mask)
    ids = object_ids(labels)
    if not ids:
        raise InputError(f"{args.mask}: the mask has no object (all background)")
    sheet = Image.fromarray(deformation_sheet(labels, args.count, args.seed))
    try:
        with atomic_file(out) as partial:
            sheet.save(partial, format=picture_format)
    except (ValueError, OSError) as error:
        raise InputError(f"{out}: cannot write the picture ({error})") from None
    print(f"wrote {out}: {len(ids)} object(s), {args.count} sample(s) of each deformation")
    if args.show:
        if _has_display():
            sheet.show()
        else:
            print(f"no display found; open {out.resolve()} in an image viewer")
    return 0


def _has_display() -> bool:
    """Whether PIL's ``Image.show`` can reach a screen (always assumed on macOS and Windows)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))

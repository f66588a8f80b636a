"""`masktrack report`: the HTML report of a segmentation run, a folder that loads nothing from elsewhere."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write the HTML report of a run folder: objects, frames, scores, plots, overlays, timings, settings"
EXAMPLES = """examples:
  masktrack report runs/val                            # writes runs/val/report/index.html
  masktrack report runs/val --images data/DAVIS        # draw masks over the frames, compare with ground truth
  masktrack report runs/val --out /tmp/val-report

RUN_DIR is the output of `masktrack segment` (<seq>/<frame>.png), optionally with eval/
(from `masktrack eval`), overlays/<seq>.mp4, timings.json and config.yaml. Without --images
the masks are drawn over the input that config.yaml records, when it is still there. Open
index.html in a browser; the page loads only the files beside it, so the folder can be copied
or archived as a whole. --out replaces only a folder that a report wrote."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder with prediction PNGs per sequence")
    parser.add_argument("--images", type=Path, metavar="DATASET_ROOT", help="DAVIS-layout dataset with the frames and ground truth")
    parser.add_argument("--out", type=Path, metavar="DIR", help="report folder (default: RUN_DIR/report); a previous report there is replaced, any other folder refused")


def run(args: argparse.Namespace) -> int:
    from masktrack.report import write_report

    page = write_report(args.run_dir, out_dir=args.out, images_root=args.images, progress=True)
    print(f"wrote {page}")
    return 0

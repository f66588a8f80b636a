"""`masktrack app`: a local web page to prompt objects, segment, correct frames and export the masks."""

from __future__ import annotations

import argparse
from pathlib import Path

from masktrack.errors import InputError

HELP = "a local web page: open a video, draw objects, segment, correct frames, export masks"
EXAMPLES = """\
examples:
  # open a video in the page at http://127.0.0.1:7860 (the page can also upload one)
  masktrack app clip.mp4

  # a frame folder, the fast preset, another port; keep the masks in a run folder
  masktrack app frames/ --preset fast --port 8000 --out runs/clip-app

  # reachable from other machines of the network (anyone who can reach the port can use the page)
  masktrack app clip.mp4 --host 0.0.0.0

the page: draw a box, clicks or brush strokes per object, Run, check the overlay, correct a frame that went
wrong and Run again (frames from there on are redone), then download palette PNGs, binary PNGs, an overlay
MP4 or COCO RLE JSON. docs/app.md describes every control.
"""
DEFAULT_PORT = 7860


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", type=Path, help="video file or frame folder to open (else upload one in the page)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="run folder for the masks, uploads and downloads (default: a temporary folder, removed on exit)")
    parser.add_argument("--overwrite", action="store_true", help="reuse an existing --out folder")
    parser.add_argument("--max-upload-mb", type=int, default=500, metavar="MB", help="largest upload accepted (default: 500)")
    parser.add_argument("--weights", type=Path, metavar="CKPT", help="parent model checkpoint (default: the shipped model)")
    parser.add_argument("--preset", choices=("fast", "default", "best"), help="settings preset (default: default)")
    parser.add_argument("--config", type=Path, metavar="YAML", help="settings file over the preset (docs/segmentation.md)")
    parser.add_argument("--finetune-steps", type=int, metavar="N", help="online fine-tuning steps per new object")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all cores)")


def check_arguments(args: argparse.Namespace) -> None:
    """InputErrors for bad flags, before the model loads."""
    if not 0 < args.port < 65536:
        raise InputError(f"--port must be 1..65535, got {args.port}")
    if args.max_upload_mb < 1:
        raise InputError(f"--max-upload-mb must be at least 1, got {args.max_upload_mb}")
    if args.finetune_steps is not None and args.finetune_steps < 0:
        raise InputError(f"--finetune-steps must be >= 0, got {args.finetune_steps}")
    if args.input is not None and not args.input.exists():
        raise InputError(f"{args.input}: no such file or folder")


def run(args: argparse.Namespace) -> int:
    import tempfile

    from masktrack.api.predictor import Predictor
    from masktrack.atomic import check_output_dir
    from masktrack.devices import set_threads
    from masktrack.web.serve import serve
    from masktrack.web.state import Workspace

    check_arguments(args)
    if args.out is not None:
        check_output_dir(args.out, args.overwrite)
    overrides = {"finetune": {"steps": args.finetune_steps}} if args.finetune_steps is not None else {}
    predictor = Predictor(args.weights, args.preset, args.device, config=args.config, **overrides)
    set_threads(args.threads, 1, predictor.device)
    with tempfile.TemporaryDirectory(prefix="masktrack-app-") as temporary:
        run_dir = args.out if args.out is not None else Path(temporary)
        run_dir.mkdir(parents=True, exist_ok=True)
        space = Workspace(predictor, run_dir, args.max_upload_mb * 2**20)
        if args.input is not None:
            space.open(args.input)
        serve(space, args.host, args.port)
    return 0

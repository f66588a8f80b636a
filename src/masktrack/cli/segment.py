"""`masktrack segment`: fine-tune on the given masks, then segment every frame."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from masktrack.errors import InputError

HELP = "segment objects through videos: online fine-tuning, then frame-by-frame propagation"
EXAMPLES = """\
examples:
  # a video file and the mask of its first frame (palette, binary or colour-coded PNG), with the shipped model
  masktrack segment clip.mp4 --mask first.png --out runs/clip --overlay clip-overlay.mp4

  # from boxes instead of a mask (x, y, width, height; one object each); an object that appears at frame 40
  masktrack segment clip.mp4 --box 120,40,200,310 --box 400,80,90,150 --box 40:10,60,80,80 --out runs/clip

  # the most accurate preset (longer fine-tuning, mirrored frames, the motion stream), or the fastest
  masktrack segment clip.mp4 --mask first.png --preset best --out runs/clip-best
  masktrack segment clip.mp4 --mask first.png --preset fast --out runs/clip-fast

  # your own parent model
  masktrack segment clip.mp4 --mask first.png --weights parent.safetensors --out runs/clip-own

  # a video cut short (an interrupted download): segment the frames that decode instead of stopping
  masktrack segment partial.mp4 --mask first.png --allow-truncated --out runs/partial

  # a frame folder, with a mask for each frame where new objects appear (named like the frames)
  masktrack segment frames/ --mask 00000.png --mask 00005.png --weights parent.safetensors --out runs/f

  # the DAVIS val split at 240p, one shared network for all objects, overlays, a CodaLab zip; scored when ground truth exists
  masktrack segment --davis data/davis2016 --split val --size 240 --finetune-mode shared --overlay --zip --out runs/davis-val

  # mirrored-frame averaging (slower, more accurate); without the optical-flow warping of the previous masks
  masktrack segment clip.mp4 --mask first.png --flip --out runs/clip-flip
  masktrack segment clip.mp4 --mask first.png --no-flow --out runs/clip-no-flow

  # without zooming into small objects, and fine-tuning twice as long
  masktrack segment clip.mp4 --mask first.png --no-zoom --finetune-steps 200 --out runs/clip-long

  # two parents trained with different seeds as an ensemble (each fine-tuned; probabilities averaged every frame)
  masktrack segment clip.mp4 --mask first.png --weights seed0.safetensors --weights seed1.safetensors --out runs/clip-ensemble

  # bf16 autocast for fine-tuning and propagation: faster on GPUs and on CPUs with native bf16 (AVX512-BF16, AMX)
  masktrack segment clip.mp4 --mask first.png --amp --out runs/clip-bf16

  # no fine-tuning, on the GPU
  masktrack segment clip.mp4 --mask first.png --finetune-steps 0 --device cuda --out runs/plain

  # shard a split over 4 processes writing one run folder
  torchrun --nproc-per-node 4 -m masktrack segment --davis data/davis2016 --split val --out runs/davis-val

outputs (OUT = --out):
  OUT/<seq>/<frame>.png  OUT/overlays/<seq>.mp4  OUT/probabilities/<seq>/<frame>.npz
  OUT/timings.json  OUT/config.yaml  OUT/eval/  OUT/report/  OUT/submission.zip
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("input (one of)")
    source.add_argument("input", nargs="?", type=Path, help="video file, frame folder or DAVIS-layout sequence folder")
    source.add_argument("--davis", type=Path, metavar="ROOT", help="a DAVIS dataset root (with --split)")
    source.add_argument("--youtube-vos", type=Path, metavar="ROOT", help="a YouTube-VOS dataset root (with --split)")
    source.add_argument("--split", help="dataset split, e.g. val (DAVIS) or valid (YouTube-VOS)")
    source.add_argument("--sequences", nargs="+", metavar="NAME", help="only these sequences of the split")
    source.add_argument("--mask", action="append", type=Path, default=[], metavar="PNG",
                        help="mask PNG of the objects given at the frame of the same name (repeatable; "
                        "a single mask belongs to the first frame)")
    source.add_argument("--box", action="append", default=[], metavar="[N:]X,Y,W,H",
                        help="instead of --mask: an object's box on frame N (default 0), its first mask proposed as "
                        "`masktrack mask` does (repeat: objects 1, 2, ...)")
    source.add_argument("--point", action="append", default=[], metavar="[ID:]X,Y[,+|-]",
                        help="with --box: a click on object ID (default 1), + on it or - not on it (as in `masktrack mask`)")
    parser.add_argument("--allow-truncated", action="store_true",
                        help="segment the frames that decode of a truncated or damaged video file (else it is an error)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    parser.add_argument("--weights", type=Path, action="append", metavar="CKPT",
                        help="parent model checkpoint (.safetensors); default: the shipped model. Repeat it to run several "
                        "parents as an ensemble: each is fine-tuned, and their probabilities are averaged on every frame")
    parser.add_argument("--preset", choices=("fast", "default", "best"),
                        help="settings preset (default: default; docs/results.md gives each one's accuracy and time)")
    parser.add_argument("--config", type=Path, metavar="YAML", help="settings file (preset:, finetune:, propagate:, motion:, seed:) "
                        "over the preset, key by key; the flags below override both (docs/segmentation.md)")
    parser.add_argument("--finetune-steps", type=int, metavar="N", help="online fine-tuning steps (0: use the parent as is)")
    parser.add_argument("--finetune-mode", choices=("shared", "per_object"), help="one network per object (default) or one for all objects (cheaper for many objects)")
    parser.add_argument("--size", type=int, metavar="H", help="network input height (frames are resized; masks come back at frame size)")
    parser.add_argument("--flip", action="store_true",
                        help="also segment each frame mirrored and average the two (test-time augmentation; about twice the propagation's compute)")
    parser.add_argument("--flow", action=argparse.BooleanOptionalAction, default=None,
                        help="warp each previous mask along optical flow (OpenCV DIS) before the network sees it, as MaskTrack "
                        "does (on by default)")
    parser.add_argument("--amp", action="store_true",
                        help="run the network in bf16 autocast while fine-tuning and propagating: faster on GPUs and on CPUs with native "
                        "bf16 instructions (AVX512-BF16, AMX), possibly slower elsewhere (docs/segmentation.md)")
    parser.add_argument("--zoom", action=argparse.BooleanOptionalAction, default=True,
                        help="zoom into small objects, both in the fine-tuning samples and in the propagation views (on by default)")
    parser.add_argument("--overlay", nargs="?", const=True, default=False, type=Path, metavar="FILE",
                        help="write OUT/overlays/<seq>.mp4 (and, for a single input, a copy at FILE if given)")
    parser.add_argument("--zip", action="store_true", help="write OUT/submission.zip with <seq>/<frame>.png entries")
    parser.add_argument("--save-probabilities", action="store_true", help="write per-object probabilities (uint8 npz per frame)")
    parser.add_argument("--runtime", choices=("auto", "torch", "onnxruntime", "openvino"),
                        help="what runs the networks while propagating (default auto: OpenVINO if installed, else ONNX Runtime, on a CPU; PyTorch on a GPU)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all cores, shared by torchrun processes)")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags set, nested like a settings file (each flag overrides the preset and --config)."""
    finetune: dict[str, Any] = {}
    propagate: dict[str, Any] = {}
    if args.finetune_steps is not None:
        if args.finetune_steps < 0:
            raise InputError(f"--finetune-steps must be >= 0, got {args.finetune_steps}")
        finetune["steps"] = args.finetune_steps
    if args.finetune_mode is not None:
        finetune["mode"] = args.finetune_mode
    if args.size is not None:
        if args.size < 16:
            raise InputError(f"--size must be at least 16 pixels, got {args.size}")
        finetune["size"] = propagate["size"] = args.size
    if args.flip:
        propagate["flip"] = True
    if args.flow is not None:
        propagate["flow"] = args.flow
    if args.amp:
        finetune["amp"] = propagate["amp"] = True
    if args.runtime is not None:
        propagate["runtime"] = args.runtime
    if not args.zoom:
        finetune["object_zoom"] = propagate["object_zoom"] = 0.0
    return {key: value for key, value in (("finetune", finetune), ("propagate", propagate)) if value}


def run(args: argparse.Namespace) -> int:
    import tempfile
    import time

    import torch

    from masktrack.api.config import segment_config
    from masktrack.api.predictor import Predictor
    from masktrack.app.prompts import propose_given_masks
    from masktrack.app.run import RunOutputs, copy_overlay, open_sequences, segment_run
    from masktrack.atomic import check_output_dir, check_output_file
    from masktrack.devices import choose_device, set_threads
    from masktrack.distributed import close_ranks, init_ranks
    from masktrack.prompt import prompts_by_frame

    start = time.perf_counter()
    segment_config(args.preset, args.config, overrides(args))  # bad settings and outputs fail before any work
    check_output_dir(args.out, args.overwrite)
    if isinstance(args.overlay, Path):
        check_output_file(args.overlay)
    device = choose_device(args.device)
    prompts = prompts_by_frame(args.box, args.point) if args.box or args.point else None
    if prompts is not None and (args.input is None or args.mask):
        raise InputError("--box/--point give the objects of a single INPUT, instead of --mask")
    sequences = open_sequences(args.input, args.mask, args.davis, args.youtube_vos, args.split, args.sequences,
                               args.allow_truncated, need_masks=prompts is None)
    if isinstance(args.overlay, Path) and len(sequences) != 1:
        raise InputError(f"--overlay {args.overlay}: a file name needs a single input; without one a split writes OUT/overlays/<seq>.mp4")
    ranks = init_ranks(device)
    given_folder = tempfile.TemporaryDirectory(prefix="masktrack-given-")  # the masks proposed from --box
    try:
        if device.startswith("cuda") and ranks.world_size > 1:
            device = f"cuda:{torch.cuda.current_device()}"
        set_threads(args.threads, ranks.world_size, device)
        predictor = Predictor(args.weights, args.preset, device, config=args.config, progress=not args.quiet, **overrides(args))
        if prompts is not None:
            propose_given_masks(predictor, sequences[0], prompts, Path(given_folder.name))
        outputs = RunOutputs(bool(args.overlay), args.save_probabilities, args.zip, not args.no_report)
        segment_run(predictor, sequences, args.out, vars(args), outputs, args.overwrite, ranks, args.davis,
                    progress=not args.quiet, start=start)
        if ranks.is_main and isinstance(args.overlay, Path):
            copy_overlay(args.out / "overlays" / f"{sequences[0].name}.mp4", args.overlay)
        if ranks.is_main and not args.quiet:
            print(summary(args, sequences, time.perf_counter() - start))
    finally:
        close_ranks(ranks)
        given_folder.cleanup()
    return 0


def summary(args: argparse.Namespace, sequences: list, seconds: float) -> str:
    """What a run wrote and where: objects tracked, frames, time, masks, overlay, report."""
    import numpy as np

    from masktrack.data.sources import first_appearances

    objects = sum(len({int(i) for labels in first_appearances(s).values() for i in np.unique(labels) if i}) for s in sequences)
    frames = sum(len(sequence) for sequence in sequences)
    names = sequences[0].name if len(sequences) == 1 else f"{len(sequences)} sequences"
    minutes, rest = divmod(round(seconds), 60)
    lines = [f"masktrack segment: {objects} object{'s' * (objects != 1)} tracked through {frames} frames of {names} "
             f"in {f'{minutes} min ' if minutes else ''}{rest} s",
             f"  masks    {args.out / sequences[0].name}/ (one palette PNG per frame{', per sequence' if len(sequences) > 1 else ''})"]
    if args.overlay:
        overlay = args.overlay if isinstance(args.overlay, Path) else args.out / "overlays"
        lines.append(f"  overlay  {overlay}")
    if not args.no_report:
        lines.append(f"  report   {args.out / 'report' / 'index.html'}")
    if (args.out / "eval").is_dir():
        lines.append(f"  scores   {args.out / 'eval'}")
    return "\n".join(lines)

"""`masktrack segment`: fine-tune on the given masks, then segment every frame."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "segment objects through videos: online fine-tuning, then frame-by-frame propagation"
EXAMPLES = """\
examples:
  # a video file and the mask of its first frame (palette, binary or colour-coded PNG)
  masktrack segment clip.mp4 --mask first.png --weights parent.safetensors --out runs/clip --overlay clip-overlay.mp4

  # a frame folder, with a mask for each frame where new objects appear (named like the frames)
  masktrack segment frames/ --mask 00000.png --mask 00005.png --weights parent.safetensors --out runs/f

  # the DAVIS val split at 240p, one shared network for all objects, overlays, a CodaLab zip; scored when ground truth exists
  masktrack segment --davis data/davis2016 --split val --size 240 --finetune-mode shared --overlay --zip --out runs/davis-val

  # optical-flow warping of the previous masks (the paper's) and mirrored-frame averaging: slower, more accurate
  masktrack segment clip.mp4 --mask first.png --flow --flip --out runs/clip-flow

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
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    parser.add_argument("--weights", type=Path, action="append", metavar="CKPT",
                        help="parent model checkpoint (.safetensors); default: the shipped model. Repeat it to run several "
                        "parents as an ensemble: each is fine-tuned, and their probabilities are averaged on every frame")
    parser.add_argument("--config", type=Path, metavar="YAML", help="settings file (finetune:, propagate:, motion:, seed:) over the recommended ones (fine-tuning on cross-entropy "
                        "plus the Lovász hinge, previous masks dilated by 10 px at 480p, object threshold 0.4; "
                        "docs/segmentation.md), overridden by the flags below")
    parser.add_argument("--finetune-steps", type=int, metavar="N", help="online fine-tuning steps of 4 samples (default 50; 0: use the parent as is)")
    parser.add_argument("--finetune-mode", choices=("shared", "per_object"), help="one network per object (default) or one for all objects (cheaper for many objects)")
    parser.add_argument("--size", type=int, metavar="H", help="network input height (frames are resized; masks come back at frame size)")
    parser.add_argument("--flip", action="store_true",
                        help="also segment each frame mirrored and average the two (test-time augmentation; propagation about 1.7x slower)")
    parser.add_argument("--flow", action="store_true",
                        help="warp each previous mask along optical flow (OpenCV DIS) before the network sees it, as MaskTrack does "
                        "(+1.4 J&F on DAVIS 2016; about 20 ms more per 240p frame)")
    parser.add_argument("--amp", action="store_true",
                        help="run the network in bf16 autocast while fine-tuning and propagating: faster on GPUs and on CPUs with native "
                        "bf16 instructions (AVX512-BF16, AMX), possibly slower elsewhere (docs/segmentation.md)")
    parser.add_argument("--zoom", action=argparse.BooleanOptionalAction, default=True,
                        help="zoom into small objects until they span 60%% of the view, at most 3x, both in the fine-tuning samples "
                        "and in the propagation views (on by default; with the DAVIS 2016 benchmark's flow settings: +5 J&F, at the same cost)")
    parser.add_argument("--overlay", nargs="?", const=True, default=False, type=Path, metavar="FILE",
                        help="write OUT/overlays/<seq>.mp4 (and, for a single input, a copy at FILE if given)")
    parser.add_argument("--zip", action="store_true", help="write OUT/submission.zip with <seq>/<frame>.png entries")
    parser.add_argument("--save-probabilities", action="store_true", help="write per-object probabilities (uint8 npz per frame)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all cores, shared by torchrun processes)")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from masktrack.errors import InputError
    from masktrack.model.precision import require_bf16
    from masktrack.propagate.distributed import close_ranks, init_ranks
    from masktrack.propagate.run import (
        choose_device, copy_overlay, inherit_offline_settings, load_parents, open_sequences, recommended_settings, segment_config,
        segment_run, set_threads, zoom_small_objects,
    )

    start = time.perf_counter()
    segment_config(args.config, args.finetune_steps, args.finetune_mode, args.size)  # bad settings fail before any work
    device = choose_device(args.device)
    sequences = open_sequences(args.input, args.mask, args.davis, args.youtube_vos, args.split, args.sequences)
    if isinstance(args.overlay, Path) and len(sequences) != 1:
        raise InputError(f"--overlay {args.overlay}: a file name needs a single input; without one a split writes OUT/overlays/<seq>.mp4")
    ranks = init_ranks(device)
    try:
        if device.startswith("cuda") and ranks.world_size > 1:
            device = f"cuda:{torch.cuda.current_device()}"
        set_threads(args.threads, ranks.world_size, device)
        parents, metadatas = load_parents(args.weights, device)
        config = segment_config(args.config, args.finetune_steps, args.finetune_mode, args.size, args.flip, args.flow,
                                args.amp, base=recommended_settings(metadatas[0]))
        inherit_offline_settings(config, metadatas[0])
        if config.finetune.amp or config.propagate.amp:
            require_bf16(device)
        if args.zoom:
            zoom_small_objects(config)
        segment_run(parents, sequences, config, args.out, device, vars(args), overwrite=args.overwrite, ranks=ranks,
                    overlay=bool(args.overlay), save_probabilities=args.save_probabilities, zip_masks=args.zip,
                    report=not args.no_report, images_root=args.davis, progress=not args.quiet, start=start)
        if ranks.is_main and isinstance(args.overlay, Path):
            copy_overlay(args.out / "overlays" / f"{sequences[0].name}.mp4", args.overlay)
    finally:
        close_ranks(ranks)
    if ranks.is_main and not args.quiet:
        print(f"masktrack segment: wrote {args.out}")
    return 0

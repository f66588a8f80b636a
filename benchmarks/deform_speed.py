"""Previous-frame mask simulation throughput on one CPU thread, in masks per second.

Times ``deform_masks`` on 854x480 masks for each deformation alone and for the default mix, at
batch sizes 1 and 16, and prints a Markdown table. The masks are DAVIS 2016 first-frame
annotations when ``--davis`` points at a DAVIS 2016 folder, else synthetic objects. Rates are
measured in CPU time of this process (``time.process_time``), so a machine shared with other work
still gives the one-core figure; each rate is the best of ``--trials`` timed runs.

    .venv/bin/python benchmarks/deform_speed.py
    .venv/bin/python benchmarks/deform_speed.py --davis ../shared/data/davis2016 --batch-sizes 1 16 64
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from masktrack.augment.deform import DEFORMATIONS, DeformConfig, deform_masks
from masktrack.data.masks import read_mask
from masktrack.data.synth import generate_video

SIZE = (480, 854)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, help="DAVIS 2016 root (uses Annotations/480p/*/00000.png)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--masks", type=int, default=64, help="masks deformed per timed run (default: 64)")
    parser.add_argument("--trials", type=int, default=5, help="timed runs per configuration (default: 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    return parser.parse_args()


def load_masks(davis: Path | None) -> torch.Tensor:
    """Binary ``(N, 480, 854)`` masks: DAVIS first frames, or one object of each of 16 synthetic videos."""
    if davis is not None:
        paths = sorted((davis / "Annotations" / "480p").glob("*/00000.png"))
        masks = [read_mask(path) != 0 for path in paths]
        masks = [mask for mask in masks if mask.shape == SIZE]
    else:
        masks = [generate_video(seed, num_frames=2, size=SIZE).labels[0] == 1 for seed in range(16)]
    return torch.from_numpy(np.stack(masks))


def masks_per_second(masks: torch.Tensor, config: DeformConfig, batch_size: int, count: int, trials: int) -> float:
    """Best rate over ``trials`` runs of deforming ``count`` masks in batches of ``batch_size``."""
    generator = torch.Generator().manual_seed(0)
    batches = [masks[torch.arange(start, start + batch_size) % len(masks)] for start in range(0, count, batch_size)]
    deform_masks(batches[0], config, generator)  # warm-up
    best = float("inf")
    for _ in range(trials):
        start = time.process_time()
        for batch in batches:
            deform_masks(batch, config, generator)
        best = min(best, time.process_time() - start)
    return len(batches) * batch_size / best


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    masks = load_masks(args.davis)
    source = f"{len(masks)} DAVIS 2016 first frames" if args.davis else f"{len(masks)} synthetic objects"
    print(f"deform_masks at {SIZE[1]}x{SIZE[0]}, {source}, {args.threads} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"coverage: {masks.float().mean().item():.1%} of pixels are object\n")
    print("| deformation | " + " | ".join(f"batch {size} (masks/s)" for size in args.batch_sizes) + " |")
    print("|---|" + "---:|" * len(args.batch_sizes))
    for kind in (*DEFORMATIONS, "default mix"):
        config = DeformConfig() if kind == "default mix" else DeformConfig().only(kind)
        rates = [masks_per_second(masks, config, size, args.masks, args.trials) for size in args.batch_sizes]
        print(f"| {kind} | " + " | ".join(f"{rate:.0f}" for rate in rates) + " |", flush=True)


if __name__ == "__main__":
    main()

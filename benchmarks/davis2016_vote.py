"""Majority vote of finished DAVIS 2016 val runs: how far an ensemble of whole pipelines reaches.

Each ``--runs`` folder holds one run's 480p predictions (``<run>/val-480p`` of
``benchmarks/davis2016.py``, or the ``--out`` of ``benchmarks/davis2016_propagation.py``), one
folder of palette PNGs per sequence. A pixel gets an object id where more than half of the runs
give it that id, background elsewhere. The vote is written as palette PNGs to ``--out`` and scored
against the official 480p masks, as the other DAVIS 2016 scripts do.

The runs propagate independently (each from its own previous masks), so this measures what post-hoc
ensembling reaches, not a pipeline that fits the benchmark's 2-hour budget: each run is
a parent of about 70 minutes plus half an hour of fine-tuning.

    .venv/bin/python benchmarks/davis2016_vote.py --out runs/vote-3 \\
        --runs runs/d16-shipped-amd/val-480p runs/d16-all30/val-480p runs/d16-effl0/val-480p
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from masktrack.data.masks import read_mask, write_mask
from masktrack.evaluate import evaluate_dataset, write_results

SHARED = Path(__file__).resolve().parents[2] / "shared"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, default=SHARED / "data" / "davis2016", help="DAVIS 2016 root (480p masks)")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="prediction folders, one per run (at least 3)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the voted masks and their evaluation")
    args = parser.parse_args()
    if len(args.runs) < 3:
        parser.error("a majority vote needs at least 3 runs")
    sequences = val_sequences(args.davis)
    for run in args.runs:
        missing = [name for name in sequences if not (run / name).is_dir()]
        if missing:
            parser.error(f"{run}: no predictions for {len(missing)} val sequence(s), e.g. {missing[0]}")
    return args


def val_sequences(davis: Path) -> list[str]:
    """The 20 DAVIS 2016 val sequence names."""
    return (davis / "ImageSets" / "val.txt").read_text().split()


def majority(masks: list[np.ndarray]) -> np.ndarray:
    """Per pixel, the id that more than half of ``masks`` give it, else 0 (background)."""
    stacked = np.stack(masks)
    voted = np.zeros(stacked.shape[1:], dtype=np.uint8)
    for object_id in np.unique(stacked):
        if object_id != 0:
            voted[(stacked == object_id).sum(axis=0) * 2 > len(masks)] = object_id
    return voted


def main() -> None:
    args = parse_args()
    sequences = val_sequences(args.davis)
    for sequence in tqdm(sequences, desc="vote", unit="sequence"):
        (args.out / sequence).mkdir(parents=True, exist_ok=True)
        for name in sorted(path.name for path in (args.runs[0] / sequence).glob("*.png")):
            write_mask(args.out / sequence / name, majority([read_mask(run / sequence / name) for run in args.runs]))
    evaluation = evaluate_dataset(args.davis / "Annotations" / "480p", args.out, sequences=sequences, progress=False)
    write_results(evaluation, args.out / "eval")
    scores = evaluation.global_metrics
    print(f"J&F {scores['J&F-Mean']:.3f} (J {scores['J-Mean']:.3f}, F {scores['F-Mean']:.3f}) from {len(args.runs)} runs")


if __name__ == "__main__":
    main()

"""Propagation ablations on DAVIS 2016 val: fine-tune each sequence's networks once, propagate many times.

A ``benchmarks/davis2016.py`` row spends most of its online hour on fine-tuning. To compare
propagation settings (views, mirroring, thresholds) this script fine-tunes each val sequence as
that script does (by default its settings, ``benchmarks/davis2016-segment.yaml`` with 400 steps;
the same seed, so the same networks), keeps the networks in ``--networks`` (safetensors, one per
object, with the fine-tuning settings beside them), and on later runs only propagates, upsamples to
854x480 and scores, the way ``benchmarks/davis2016.py`` does: a few minutes for the 20 sequences
on 2 cores instead of an hour.

    .venv/bin/python benchmarks/davis2016_propagation.py --networks runs/ft400 --out runs/prop-default
    .venv/bin/python benchmarks/davis2016_propagation.py --networks runs/ft400 --out runs/prop-no-motion \\
        --segment-config benchmarks/davis2016-ablations/no-motion.yaml     # without the motion stream

A ``--segment-config`` with a ``motion:`` section (the default's has one) adds the motion stream; its
networks are kept in ``NETWORKS/motion-<steps>``. Several ``--parent`` files with as many ``--networks``
folders (in the same order) propagate the parents' networks as an ensemble, their probabilities averaged
on every frame:

    .venv/bin/python benchmarks/davis2016_propagation.py --out runs/ens-2 \\
        --parent src/masktrack/weights/default.safetensors runs/d16-seed1/parent/model.safetensors \\
        --networks runs/ft400-shipped runs/ft400-seed1

and one parent's networks fine-tuned with two seeds likewise, one ``--finetune-config`` per folder
(here the settings until 2026-12-06, without the motion stream; ``seed-1.yaml``: the lines of
``finetune-lovasz.yaml`` plus ``seed: 1``):

    .venv/bin/python benchmarks/davis2016_propagation.py --out runs/ens-ftseeds \\
        --parent src/masktrack/weights/default.safetensors src/masktrack/weights/default.safetensors \\
        --networks runs/ft-shipped-400 runs/ft-shipped-400-seed1 \\
        --finetune-config benchmarks/davis2016-ablations/finetune-lovasz.yaml seed-1.yaml \\
        --segment-config benchmarks/davis2016-ablations/finetune-lovasz.yaml
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from masktrack.api.config import SegmentConfig, segment_config
from masktrack.api.parents import for_parent
from masktrack.data.masks import write_mask
from masktrack.data.sources import Sequence, first_appearances, open_davis
from masktrack.evaluate import evaluate_dataset, write_results
from masktrack.model import ensemble_per_object, load_checkpoint, save_checkpoint
from masktrack.model.inputs import processing_size
from masktrack.online.finetune import finetune
from masktrack.propagate.motion import annotated_motion_image
from masktrack.propagate.propagate import merge_probabilities, propagate

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FULL_SIZE = (480, 854)
FINETUNE_YAML = "finetune.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, default=SHARED / "data" / "davis2016", help="DAVIS 2016 root (240p frames, 480p masks)")
    parser.add_argument("--parent", type=Path, nargs="+", default=[REPO / "src" / "masktrack" / "weights" / "default.safetensors"],
                        help="parent checkpoint(s) (default: the shipped model); several run as an ensemble")
    parser.add_argument("--networks", type=Path, nargs="+", required=True,
                        help="folder of fine-tuned networks (filled when missing), one per --parent")
    parser.add_argument("--finetune-config", type=Path, nargs="+", default=[REPO / "benchmarks" / "davis2016-segment.yaml"],
                        help="YAML whose finetune: section fine-tunes the networks (default: the benchmark's); "
                             "one for all parents, or one per --parent (e.g. another fine-tuning seed)")
    parser.add_argument("--finetune-steps", type=int, default=400, help="online fine-tuning steps (default: 400, the benchmark's)")
    parser.add_argument("--segment-config", type=Path, default=REPO / "benchmarks" / "davis2016-segment.yaml",
                        help="YAML whose propagate: section is measured (default: the benchmark's)")
    parser.add_argument("--size", type=int, default=240, help="network input height (default: 240, the frames' own)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the 480p masks and the evaluation")
    parser.add_argument("--sequences", nargs="+", metavar="NAME", help="only these val sequences")
    args = parser.parse_args()
    if len(args.parent) != len(args.networks):
        parser.error(f"{len(args.parent)} --parent file(s) for {len(args.networks)} --networks folder(s): give one folder per parent")
    if len(args.finetune_config) not in (1, len(args.parent)):
        parser.error(f"{len(args.finetune_config)} --finetune-config files for {len(args.parent)} --parent file(s): give one, or one per parent")
    args.finetune_config *= len(args.parent) // len(args.finetune_config)
    return args


def record_networks(networks_dir: Path, parent: Path, config: SegmentConfig) -> None:
    """Write the fine-tuning settings into ``networks_dir``; stop if networks made with others are there.

    Recorded settings are compared with their defaults filled in, so networks recorded before a
    setting existed still match when it is at its default.
    """
    values = {"parent": str(parent.resolve()), "finetune": config.to_dict()["finetune"], "seed": config.seed}
    recorded = networks_dir / FINETUNE_YAML
    if recorded.is_file():
        previous = yaml.safe_load(recorded.read_text())
        filled = SegmentConfig.from_dict({"finetune": previous["finetune"], "seed": previous["seed"]}, source=str(recorded))
        if {**previous, "finetune": filled.to_dict()["finetune"]} != values:
            sys.exit(f"davis2016_propagation: {recorded}: these networks were fine-tuned with other settings; use another --networks")
    networks_dir.mkdir(parents=True, exist_ok=True)
    recorded.write_text(yaml.safe_dump(values))


def fine_tuned(networks_dir: Path, parent: torch.nn.Module, config: SegmentConfig, sequence: Sequence,
               appearances: dict[int, np.ndarray], motion_steps: int | None = None) -> dict[int, torch.nn.Module]:
    """The sequence's networks from ``networks_dir``, fine-tuned as ``masktrack segment`` does when missing;
    with ``motion_steps``, its motion networks from ``networks_dir/motion-<steps>``."""
    ids = sorted({int(i) for labels in appearances.values() for i in np.unique(labels) if i != 0})
    if motion_steps is not None:
        networks_dir = networks_dir / f"motion-{motion_steps}"
        networks_dir.mkdir(exist_ok=True)
    paths = {i: networks_dir / f"{sequence.name}_{i}.safetensors" for i in ids}
    if not all(path.is_file() for path in paths.values()):
        if motion_steps is None:
            annotations = [(sequence.read_frame(index), labels) for index, labels in sorted(appearances.items())]
            finetune_config = config.finetune
        else:
            size, preset = config.propagate.size, config.propagate.flow_preset
            annotations = [(annotated_motion_image(sequence, index, processing_size(labels.shape, size), preset), labels)
                           for index, labels in sorted(appearances.items())]
            finetune_config = replace(config.finetune, steps=motion_steps)
        networks = finetune(parent, annotations, finetune_config, "cpu", torch.Generator().manual_seed(config.seed), progress=False)
        for object_id, network in networks.items():
            save_checkpoint(paths[object_id], network)
    return {object_id: load_checkpoint(path)[0] for object_id, path in paths.items()}


def main() -> None:
    args = parse_args()
    loaded = [load_checkpoint(path) for path in args.parent]
    parents = [model.eval() for model, _ in loaded]
    overrides = {"finetune": {"steps": args.finetune_steps, "size": args.size}, "propagate": {"size": args.size}}
    config = for_parent(segment_config(None, args.segment_config, overrides), loaded[0][1])
    tunings = []  # each parent is fine-tuned with the settings it was trained with, as in a run of its own
    for parent_path, networks_dir, (_, metadata), finetune_config in zip(args.parent, args.networks, loaded, args.finetune_config):
        tunings.append(for_parent(segment_config(None, finetune_config, overrides), metadata))
        record_networks(networks_dir, parent_path, tunings[-1])
    sequences = open_davis(args.davis, split="val", sequences=args.sequences)
    start = time.perf_counter()
    for sequence in tqdm(sequences, desc="sequences", unit="sequence"):
        appearances = first_appearances(sequence, first_frame_only=False)
        networks = ensemble_per_object([fine_tuned(networks_dir, parent, tuning, sequence, appearances)
                                        for parent, networks_dir, tuning in zip(parents, args.networks, tunings)])
        motion_networks = ensemble_per_object([fine_tuned(networks_dir, parent, tuning, sequence, appearances, config.motion.steps)
                                               for parent, networks_dir, tuning in zip(parents, args.networks, tunings)]) \
            if config.motion.weight > 0 else None
        (args.out / sequence.name).mkdir(parents=True, exist_ok=True)
        stream = propagate(sequence.frames(), networks, appearances, config.propagate, "cpu", motion_networks,
                           config.motion.weight)
        for result, name in zip(stream, sequence.frame_names):
            ids = list(result.probabilities)
            if ids:  # quantised as `masktrack segment --save-probabilities` stores them, then as benchmarks/davis2016.py
                probabilities = (torch.stack([result.probabilities[i] for i in ids]) * 255).round() / 255
                full = F.interpolate(probabilities[None], size=FULL_SIZE, mode="bilinear", align_corners=False)[0]
                labels = merge_probabilities(full, ids, config.propagate.threshold)
            else:
                labels = F.interpolate(torch.from_numpy(result.labels)[None, None].float(), size=FULL_SIZE, mode="nearest")[0, 0].to(torch.uint8)
            write_mask(args.out / sequence.name / f"{name}.png", labels.numpy())
    evaluation = evaluate_dataset(args.davis / "Annotations" / "480p", args.out, sequences=[s.name for s in sequences], progress=False)
    write_results(evaluation, args.out / "eval")
    for obj in evaluation.objects:
        print(f"{obj.name:24s} J&F {(obj.j_statistics.mean + obj.f_statistics.mean) / 2:.3f}")
    g = evaluation.global_metrics
    print(f"DAVIS 2016 val ({args.segment_config}): J&F {g['J&F-Mean']:.4f}  J {g['J-Mean']:.4f}  F {g['F-Mean']:.4f}"
          f"  ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()

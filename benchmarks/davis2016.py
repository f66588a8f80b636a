"""DAVIS 2016 val J&F end to end on the CPU: offline training, online fine-tuning, 480p scoring.

Stages (each skipped when its output already exists, so an interrupted run continues):

1. ``masktrack train`` on DAVIS 2016 train at 240p from ImageNet MobileNetV2 weights, on 240x240
   crops of the 427x240 frames since 2026-12-07 (settings: ``benchmarks/davis2016.yaml``; whole
   frames, as the shipped model: add ``benchmarks/davis2016-ablations/train-whole-frames.yaml``),
   into ``RUN/parent`` (``--resume`` after a crash);
   with ``--ensemble-config``, one more parent per file (the same settings plus that file, e.g.
   another seed) into ``RUN/parent-<file name>``;
2. ``masktrack segment`` on the val split at 240p: online fine-tuning on each first frame, on
   240x240 crops too since 2026-12-07 (400 steps of 2 samples; 100 steps of 4 until 2026-12-06,
   0.728) on cross-entropy plus the Lovász hinge,
   small objects zoomed in both when fine-tuning and when propagating, the previous masks warped along
   optical flow, each frame also segmented mirrored, MaskTrack's motion stream (a second network per
   object on optical-flow magnitude, 30 % of the probabilities), object pixels above probability 0.4,
   an object lost clear of the frame's edge found again above 0.5 (the package default since
   2026-12-07; 0.9 before) (``benchmarks/davis2016-segment.yaml``; several parents: each fine-tuned, their probabilities
   averaged on every frame), per-object probabilities saved, into ``RUN/val-240p``; with
   ``--processes N``, the sequences are shared out over N torchrun processes, each on its share of
   the cores;
3. upsampling to 854x480 as the shared data's README prescribes: a bilinear upsample of each
   object's probabilities, then the propagation's merge rule and threshold, into ``RUN/val-480p``;
4. ``masktrack eval`` against ``Annotations/480p`` (first and last frames not scored), and a
   Markdown table per sequence with the global J&F, settings and times (``--doc``); without
   ``Annotations/480p`` the script stops after stage 3.

    .venv/bin/python benchmarks/davis2016.py --processes 2         # everything: 101 to 115 min on 2 slow cores
    .venv/bin/python benchmarks/davis2016.py --parent runs/davis2016/parent/model.safetensors \\
        --finetune-steps 0 --run runs/davis2016-ft0 --doc ''        # an ablation row from a trained parent
    .venv/bin/python benchmarks/davis2016.py --run runs/d16-ensemble --doc '' \\
        --ensemble-config benchmarks/davis2016-ablations/train-seed-1.yaml    # two parents (seeds 0 and 1) as an ensemble
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from masktrack.data.masks import read_mask, write_mask
from masktrack.evaluate import evaluate_dataset, write_results
from masktrack.model import load_checkpoint
from masktrack.propagate.propagate import merge_probabilities

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FULL_SIZE = (480, 854)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, default=SHARED / "data" / "davis2016", help="DAVIS 2016 root (240p frames, 480p masks)")
    parser.add_argument("--imagenet", type=Path, default=SHARED / "weights" / "mobilenetv2-imagenet-bottleneck.pt", help="ImageNet backbone weights")
    parser.add_argument("--train-config", type=Path, nargs="+", default=[REPO / "benchmarks" / "davis2016.yaml"], metavar="YAML",
                        help="offline training settings (several: later files override earlier ones)")
    parser.add_argument("--parent", type=Path, nargs="+", metavar="CKPT",
                        help="use these trained parent checkpoints instead of training (several: an ensemble)")
    parser.add_argument("--ensemble-config", type=Path, nargs="+", default=[], metavar="YAML",
                        help="train one more parent per file, with the --train-config files plus that one (e.g. another seed), "
                        "and run all parents as an ensemble")
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "davis2016", help="run folder (default: runs/davis2016)")
    parser.add_argument("--finetune-steps", type=int, help="online fine-tuning steps per sequence (default: the segment config's preset's)")
    parser.add_argument("--finetune-mode", choices=("shared", "per_object"), help="fine-tuning mode (default: segment's)")
    parser.add_argument("--size", type=int, default=240, help="network input height for fine-tuning and propagation (default: 240, the frames' own)")
    parser.add_argument("--segment-config", type=Path, default=REPO / "benchmarks" / "davis2016-segment.yaml",
                        help="YAML for masktrack segment (finetune:, propagate:; default: benchmarks/davis2016-segment.yaml, "
                        "batches of 2, zoomed small objects, optical-flow warping and 10 px dilation of the previous masks, mirroring, "
                        "threshold 0.4, the motion stream)")
    parser.add_argument("--sequences", nargs="+", metavar="NAME", help="only these val sequences")
    parser.add_argument("--processes", type=int, default=1,
                        help="online-stage processes (torchrun), each fine-tuning and propagating its share of the sequences on its "
                             "share of the cores (default: 1; on 2 cores, 2 take about 14 %% less time; the figures differ as another "
                             "fine-tuning seed's would, since arithmetic on 1 thread differs in its last bits from arithmetic on 2)")
    parser.add_argument("--doc", default="", help="Markdown results file to write (default: none)")
    args = parser.parse_args()
    if args.parent and args.ensemble_config:
        parser.error("--ensemble-config trains parents; with --parent, list every parent checkpoint there instead")
    if args.processes < 1:
        parser.error(f"--processes must be >= 1, got {args.processes}")
    return args


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it, for the results page."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def masktrack(*arguments: str, processes: int = 1) -> None:
    """Run a masktrack subcommand (in ``processes`` torchrun processes); stop this script if it fails."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] if processes > 1 else []
    command = [sys.executable, *launcher, "-m", "masktrack", *arguments]
    print("$", " ".join(command), flush=True)
    if subprocess.run(command).returncode != 0:
        sys.exit(f"davis2016: `{' '.join(command)}` failed")


def train_parents(args: argparse.Namespace) -> list[Path]:
    """The parent checkpoints: ``--parent``, or those in ``RUN/parent`` (and ``RUN/parent-<name>`` for each
    ``--ensemble-config``), each trained now if missing."""
    if args.parent:
        return args.parent
    runs = [(args.run / "parent", [])] + [(args.run / f"parent-{extra.stem}", [extra]) for extra in args.ensemble_config]
    models = []
    for parent_dir, extra in runs:
        model = parent_dir / "model.safetensors"
        if not model.is_file():
            resume = ["--resume"] if (parent_dir / "checkpoint.pt").is_file() else []
            configs = [option for path in [*args.train_config, *extra] for option in ("--config", str(path))]
            masktrack("train", *configs, "--data", f"{args.davis}:train", "--pretrained",
                      str(args.imagenet), "--out", str(parent_dir), *resume)
        models.append(model)
    return models


def training_seconds(parent: Path) -> float | None:
    """Wall-clock training time of the parent from its run's metrics.csv, summed over resumed
    segments (``elapsed_s`` restarts at each resume); None when the run folder is not beside it."""
    metrics = parent.parent / "metrics.csv"
    if not metrics.is_file():
        return None
    total = previous = 0.0
    for row in csv.DictReader(metrics.open()):
        elapsed = float(row["elapsed_s"])
        if elapsed < previous:
            total += previous
        previous = elapsed
    return total + previous


def parent_summary(parent: Path) -> str:
    """Backbone, output stride and training steps of a parent checkpoint, from its header."""
    model, metadata = load_checkpoint(parent)
    steps = metadata.get("step")
    return (f"{model.config.backbone}, output stride {model.config.output_stride}"
            + (f", {steps} training steps" if steps is not None else ""))


def segment_val(args: argparse.Namespace, parents: list[Path]) -> Path:
    """Fine-tune and segment the val split at 240p, keeping the probabilities."""
    out = args.run / "val-240p"
    if (out / "timings.json").is_file():
        return out
    weights = [option for parent in parents for option in ("--weights", str(parent))]
    options = [*weights, "--size", str(args.size), "--save-probabilities", "--no-report", "--overwrite"]
    if args.finetune_steps is not None:
        options += ["--finetune-steps", str(args.finetune_steps)]
    if args.finetune_mode:
        options += ["--finetune-mode", args.finetune_mode]
    if args.segment_config:
        options += ["--config", str(args.segment_config)]
    if args.sequences:
        options += ["--sequences", *args.sequences]
    masktrack("segment", "--davis", str(args.davis), "--split", "val", "--out", str(out), *options, processes=args.processes)
    return out


def upsample_to_480p(low: Path, out: Path, sequences: list[str], threshold: float) -> None:
    """Bilinear-upsample each object's probabilities to 854x480 and merge them at the propagation's
    ``threshold`` (frames without probabilities, i.e. the annotated first frame, are upsampled nearest)."""
    frames = [(sequence, mask) for sequence in sequences for mask in sorted((low / sequence).glob("*.png"))]
    for sequence in sequences:
        (out / sequence).mkdir(parents=True, exist_ok=True)
    for sequence, mask in tqdm(frames, desc="upsample to 480p", unit="frame"):
        stored = np.load(low / "probabilities" / sequence / f"{mask.stem}.npz")
        ids = [int(i) for i in stored["ids"]]
        if ids:
            probabilities = torch.from_numpy(stored["probabilities"]).float()[None] / 255.0
            full = F.interpolate(probabilities, size=FULL_SIZE, mode="bilinear", align_corners=False)[0]
            labels = merge_probabilities(full, ids, threshold).numpy()
        else:
            small = torch.from_numpy(read_mask(mask))[None, None].float()
            labels = F.interpolate(small, size=FULL_SIZE, mode="nearest")[0, 0].to(torch.uint8).numpy()
        write_mask(out / sequence / mask.name, labels)


def markdown(args: argparse.Namespace, parents: list[Path], scores: dict, timings: dict, segment_config: str, run_s: float) -> str:
    """The results page: settings, global figures, per-sequence table."""
    g = scores["global"]
    rows = "\n".join(f"| {name} | {j:.3f} | {f:.3f} | {(j + f) / 2:.3f} |" for name, (j, f) in scores["objects"].items())
    finetune_s = sum(t["finetune_s"] for t in timings["sequences"].values())
    propagate_s = sum(t["propagate_s"] for t in timings["sequences"].values())
    frames = sum(t["frames"] for t in timings["sequences"].values())
    trained = [training_seconds(parent) for parent in parents]
    if None in trained:
        train = "not recorded beside the checkpoint"
    else:
        train = " + ".join(f"{seconds / 60:.0f}" for seconds in trained) + " min on this machine"
    if args.parent:
        source = ", ".join(map(shown, args.parent))
    else:
        source = " + ".join(map(shown, args.train_config)) + "".join(f"`, then also + `{shown(extra)}" for extra in args.ensemble_config)
    kind = f"an ensemble of {len(parents)} parents (probabilities averaged on every frame), each " if len(parents) > 1 else ""
    return f"""# DAVIS 2016 val: J&F of the CPU pipeline

Written by `benchmarks/davis2016.py` on {date.today()} ({platform.processor() or platform.machine()},
{torch.get_num_threads()} threads, {timings['device']}). Input frames 427x240 (240p); predictions
upsampled to 854x480 (bilinear probabilities) and scored against the official `Annotations/480p`,
first and last frames not scored.

    {' '.join(['.venv/bin/python', 'benchmarks/davis2016.py', *sys.argv[1:]])}

| J&F | J mean | J recall | J decay | F mean | F recall | F decay |
|---:|---:|---:|---:|---:|---:|---:|
| **{g['J&F-Mean']:.3f}** | {g['J-Mean']:.3f} | {g['J-Recall']:.3f} | {g['J-Decay']:.3f} | {g['F-Mean']:.3f} | {g['F-Recall']:.3f} | {g['F-Decay']:.3f} |

- Parent: {kind}{parent_summary(parents[0])}, `{source}` on DAVIS 2016 train
  (240p), from ImageNet `{args.imagenet.name}`; training time {train}.
- Online: {segment_config}
- Times: the online stage {timings['total_s'] / 60:.1f} min (wall clock); within it, summed over its processes,
  fine-tuning {finetune_s / 60:.1f} min for {len(timings['sequences'])} sequences and propagation
  {propagate_s:.0f} s for {frames} frames ({frames / max(propagate_s, 1e-9):.1f} frames/s per process); this run of the
  script {run_s / 60:.0f} min (stages found done are skipped, not counted).

| sequence | J | F | J&F |
|---|---:|---:|---:|
{rows}
"""


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    parents = train_parents(args)
    low = segment_val(args, parents)
    sequences = sorted(json.loads((low / "timings.json").read_text())["sequences"])
    settings = yaml.safe_load((low / "config.yaml").read_text())
    finetune, propagate, motion = settings["finetune"], settings["propagate"], settings.get("motion") or {}
    high = args.run / "val-480p"
    upsample_to_480p(low, high, sequences, propagate.get("threshold", 0.5))
    truth = args.davis / "Annotations" / "480p"
    if not truth.is_dir():  # e.g. a data pack on a GPU machine (benchmarks/device_pack.py): score elsewhere
        print(f"davis2016: no {truth}; the 480p masks are in {high}: score them with `masktrack eval`")
        return
    result = evaluate_dataset(truth, high, sequences=sequences)
    write_results(result, args.run / "eval-480p")
    scores = {
        "global": result.global_metrics,
        "objects": {obj.name: (obj.j_statistics.mean, obj.f_statistics.mean) for obj in result.objects},
    }
    timings = json.loads((low / "timings.json").read_text())
    zoom = finetune.get("object_zoom", 0.0)
    view_zoom, max_view_zoom = propagate.get("object_zoom", 0.0), propagate.get("max_zoom", 3.0)
    lovasz = finetune.get("lovasz_weight", 0.0)
    redetect, inside = propagate.get("redetect_confidence", 0.9), propagate.get("redetect_confidence_inside")
    inside_text = f" ({inside:g} if it was lost clear of the frame's edge)" if inside is not None else ""
    motion_text = (f", a motion stream (networks fine-tuned {motion['steps']} steps on optical-flow magnitude) weighted {motion['weight']:.0%}"
                   if motion.get("weight") else "")
    summary = (f"{finetune['mode']} fine-tuning, {finetune['steps']} steps of {finetune['batch_size']} samples, lr {finetune['lr']}"
               f"{f', loss cross-entropy + {lovasz:g} x Lovász hinge' if lovasz else ''}"
               f"{f', small objects zoomed in to span {zoom:.0%} of the crop' if zoom else ''}"
               "; "
               f"propagation at height {propagate['size']}, previous masks "
               f"dilated by {propagate['dilate_previous']} px (at 480p){', warped along optical flow' if propagate['flow'] else ''}"
               f"{', mirrored-frame averaging' if propagate['flip'] else ''}"
               f"{', dense CRF on each frame' if propagate.get('crf') else ''}"
               f"{f', small objects segmented in views zoomed until they span {view_zoom:.0%} (at most {max_view_zoom:g}x)' if view_zoom else ''}"
               f"{motion_text}"
               f", a lost object back where its probability exceeds {redetect:g}"
               f"{inside_text}"
               f", object pixels where the probability exceeds {propagate.get('threshold', 0.5):g}")
    if args.doc:
        Path(args.doc).write_text(markdown(args, parents, scores, timings, summary, time.perf_counter() - start))
    g = scores["global"]
    print(f"DAVIS 2016 val (240p input, scored at 480p): J&F {g['J&F-Mean']:.4f}  J {g['J-Mean']:.4f}  F {g['F-Mean']:.4f}"
          f"  ({(time.perf_counter() - start) / 60:.1f} min this run)")


if __name__ == "__main__":
    main()

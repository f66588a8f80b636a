"""`masktrack eval`: DAVIS 2017 semi-supervised J and F of predicted masks against ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from masktrack.errors import InputError

HELP = "score predicted masks against ground truth with the DAVIS J (region IoU) and F (boundary) measures"
EXAMPLES = """examples:
  masktrack eval data/DAVIS/Annotations/480p runs/val
  masktrack eval data/DAVIS/Annotations/480p runs/val --sequences data/DAVIS/ImageSets/2017/val.txt
  masktrack eval data/DAVIS/Annotations/480p runs/val --csv runs/val/eval --workers 4

GT_DIR and PRED_DIR hold one folder of PNG masks per sequence (palette ids, binary 0/255 =
object 1, or colour-coded). The objects are the ids of each sequence's first ground-truth
frame; the first and last frames are not scored, as in the official DAVIS 2017 toolkit, whose
figures this reproduces. Where a sequence has several objects, the table also counts each object's
identity switches: frames where its mask lies mostly on another object. --csv writes global_results.csv and per-sequence_results.csv (the
toolkit's columns), per-frame_results.json and jf_per_object.png."""


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gt_dir", type=Path, metavar="GT_DIR", help="ground-truth folder: <seq>/<frame>.png")
    parser.add_argument("pred_dir", type=Path, metavar="PRED_DIR", help="predictions folder: <seq>/<frame>.png")
    parser.add_argument("--sequences", type=Path, metavar="FILE", help="text file with one sequence name per line (default: every folder of GT_DIR)")
    parser.add_argument("--csv", type=Path, metavar="OUT_DIR", help="write the CSVs, per-frame JSON and per-object plot into OUT_DIR")
    parser.add_argument("--workers", type=positive_int, default=1, metavar="N", help="processes evaluating sequences in parallel (default: 1)")


def read_sequence_list(path: Path) -> list[str]:
    """Sequence names of a list file: one per line, blank lines skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the sequence list ({error})") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise InputError(f"{path}: the sequence list is empty")
    return names


def run(args: argparse.Namespace) -> int:
    from masktrack.atomic import check_output_file
    from masktrack.evaluate import dataset_switches, evaluate_dataset, write_results
    from masktrack.evaluate.evaluator import GLOBAL_CSV

    if args.csv:  # before the work: the folder must take the files
        check_output_file(args.csv / GLOBAL_CSV)
    sequences = read_sequence_list(args.sequences) if args.sequences else None
    result = evaluate_dataset(args.gt_dir, args.pred_dir, sequences=sequences, workers=args.workers, progress=True)
    print(format_table(result, dataset_switches(args.gt_dir, args.pred_dir, multi_object_sequences(result))))
    if args.csv:
        write_results(result, args.csv)
        print(f"wrote {args.csv}")
    return 0


def multi_object_sequences(result) -> list[str]:
    """The scored sequences with more than one object (where identities can switch)."""
    counts: dict[str, int] = {}
    for obj in result.objects:
        counts[obj.sequence] = counts.get(obj.sequence, 0) + 1
    return sorted(name for name, count in counts.items() if count > 1)


def format_table(result, switches: dict[str, dict[int, int]] | None = None) -> str:
    """Per-object J and F means (and identity switches, where given), then the global figures, as aligned text."""
    switches = switches or {}
    width = max(len("Sequence"), *(len(obj.name) for obj in result.objects))
    lines = [f"{'Sequence':<{width}}  J-Mean  F-Mean" + ("  Switches" if switches else "")]
    for obj in result.objects:
        count = switches.get(obj.sequence, {}).get(obj.object_id)
        lines.append(f"{obj.name:<{width}}  {obj.j_statistics.mean:6.3f}  {obj.f_statistics.mean:6.3f}"
                     + (f"  {count:8d}" if count is not None else ""))
    metrics = result.global_metrics
    lines += ["", "  ".join(f"{name:>8}" for name in metrics), "  ".join(f"{value:8.3f}" for value in metrics.values())]
    sequences = len({obj.sequence for obj in result.objects})
    lines.append(
        f"\nJ&F: {metrics['J&F-Mean']:.3f}  (J {metrics['J-Mean']:.3f}, F {metrics['F-Mean']:.3f}; "
        f"{len(result.objects)} objects in {sequences} sequences)"
    )
    if switches:
        total = sum(sum(counts.values()) for counts in switches.values())
        lines.append(f"identity switches: {total} object-frames in {len(switches)} multi-object sequences")
    return "\n".join(lines)

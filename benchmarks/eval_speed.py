"""Speed of `masktrack eval` against vos-benchmark 0.1.0 on DAVIS 2016 val at 480p.

Predictions are the 240p annotations upsampled to 854x480 (nearest) and written as PNGs into a
temporary folder: realistic masks that differ from the ground truth at the boundaries. Both
tools score them against ``Annotations/480p`` (the 20 sequences of ``ImageSets/val.txt``, first
and last frames skipped) with the same number of processes. Runs alternate between the tools,
so that load from other processes affects both alike; the best time of each is the least
disturbed estimate. The script checks that both give the same J and F means.

    .venv/bin/python benchmarks/eval_speed.py
    .venv/bin/python benchmarks/eval_speed.py --workers 1 2 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2
from vos_benchmark.benchmark import benchmark

from masktrack.evaluate import evaluate_dataset

DEFAULT_DAVIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, default=DEFAULT_DAVIS, help="DAVIS 2016 root (Annotations/480p, Annotations/240p, ImageSets)")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="process counts to compare (default: 1 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each tool per process count (default: 3)")
    return parser.parse_args()


def write_predictions(davis: Path, sequences: list[str], out: Path) -> int:
    """Upsample the 240p annotations of ``sequences`` to 854x480 (nearest) into ``out``; return the frame count."""
    count = 0
    for sequence in sequences:
        (out / sequence).mkdir(parents=True)
        for path in sorted((davis / "Annotations" / "240p" / sequence).glob("*.png")):
            small = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(out / sequence / path.name), cv2.resize(small, (854, 480), interpolation=cv2.INTER_NEAREST))
            count += 1
    return count


def time_masktrack(gt: Path, pred: Path, sequences: list[str], workers: int) -> tuple[float, float, float]:
    start = time.perf_counter()
    metrics = evaluate_dataset(gt, pred, sequences=sequences, workers=workers, progress=False).global_metrics
    return time.perf_counter() - start, 100 * metrics["J-Mean"], 100 * metrics["F-Mean"]


def time_vos_benchmark(gt: Path, pred: Path, workers: int) -> tuple[float, float, float]:
    start = time.perf_counter()
    _, [j], [f], _ = benchmark([str(gt)], [str(pred)], strict=False, num_processes=workers, verbose=False)
    return time.perf_counter() - start, float(j), float(f)


def main() -> None:
    args = parse_args()
    sequences = (args.davis / "ImageSets" / "val.txt").read_text().split()
    gt = args.davis / "Annotations" / "480p"
    with tempfile.TemporaryDirectory() as folder:
        pred = Path(folder) / "pred"
        frames = write_predictions(args.davis, sequences, pred)
        print(f"DAVIS 2016 val: {len(sequences)} sequences, {frames} frames at 854x480; {platform.processor() or platform.machine()}")
        print("| processes | vos-benchmark 0.1.0 (s) | masktrack eval (s) | speed-up | J mean | F mean |")
        print("|---:|---:|---:|---:|---:|---:|")
        for workers in args.workers:
            ours, theirs = [], []
            for _ in range(args.repeats):
                theirs.append(time_vos_benchmark(gt, pred, workers))
                ours.append(time_masktrack(gt, pred, sequences, workers))
            for (_, our_j, our_f), (_, their_j, their_f) in zip(ours, theirs):
                if abs(our_j - their_j) > 1e-6 or abs(our_f - their_f) > 1e-6:
                    raise SystemExit(f"J/F means differ: masktrack {our_j}/{our_f}, vos-benchmark {their_j}/{their_f}")
            best_ours, best_theirs = min(t for t, _, _ in ours), min(t for t, _, _ in theirs)
            print(f"| {workers} | {best_theirs:.2f} | {best_ours:.2f} | {best_theirs / best_ours:.2f}x | {ours[0][1]:.4f} | {ours[0][2]:.4f} |")


if __name__ == "__main__":
    main()

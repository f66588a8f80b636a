"""DAVIS 2016 val J&F and time of each `masktrack segment` preset, with the shipped model.

For each preset: `masktrack segment --davis ROOT --split val --preset P` on the 240p frames (in ``--processes``
torchrun processes), its probabilities upsampled to 854x480 and scored against ``Annotations/480p`` as
``benchmarks/davis2016.py`` does (first and last frames not scored). Prints one table row per preset:

    .venv/bin/python benchmarks/presets.py --presets fast default best --out runs/presets
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from davis2016 import masktrack, upsample_to_480p  # noqa: E402

from masktrack.evaluate import evaluate_dataset, write_results  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def measure(preset: str, davis: Path, out: Path, processes: int, extra: list[str]) -> str:
    """Segment, upsample, score one preset; its markdown table row."""
    low, high = out / f"{preset}-240p", out / f"{preset}-480p"
    start = time.perf_counter()
    masktrack("segment", "--davis", str(davis), "--split", "val", "--preset", preset, "--save-probabilities",
              "--no-report", "--quiet", "--overwrite", "--out", str(low), *extra, processes=processes)
    minutes = (time.perf_counter() - start) / 60
    timings = json.loads((low / "timings.json").read_text())
    sequences = sorted(timings["sequences"])
    threshold = __import__("yaml").safe_load((low / "config.yaml").read_text())["propagate"]["threshold"]
    upsample_to_480p(low, high, sequences, threshold)
    result = evaluate_dataset(davis / "Annotations" / "480p", high, sequences=sequences, progress=False)
    write_results(result, out / f"{preset}-eval-480p")
    g = result.global_metrics
    finetune = sum(t["finetune_s"] for t in timings["sequences"].values()) / 60
    return (f"| {preset} | {g['J&F-Mean']:.3f} | {g['J-Mean']:.3f} | {g['F-Mean']:.3f} | {minutes:.1f} | {finetune:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["fast", "default", "best"])
    parser.add_argument("--davis", type=Path, default=SHARED / "data" / "davis2016", help="DAVIS 2016 root (240p frames, 480p masks)")
    parser.add_argument("--out", type=Path, default=Path("runs/presets"))
    parser.add_argument("--processes", type=int, default=1, help="torchrun processes sharing the sequences")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more `masktrack segment` options, after --")
    args = parser.parse_args()
    extra = [option for option in args.extra if option != "--"]
    print(f"{date.today()}, {platform.processor() or platform.machine()}, {args.processes} process(es)")
    print("| preset | J&F | J | F | minutes (wall) | of which fine-tuning (summed) |\n|---|---:|---:|---:|---:|---:|")
    for preset in args.presets:
        print(measure(preset, args.davis, args.out, args.processes, extra), flush=True)


if __name__ == "__main__":
    main()

"""Interactive segmentation on DAVIS 2016: first masks from boxes, `segment --box`, and corrections.

Three measurements, each selectable with ``--measure`` (all by default):

- ``proposal``: on the first frame of every sequence of ``--splits`` (240p), the box of the true mask is given to
  ``Predictor.propose``; prints the mean IoU of the proposal with the true mask;
- ``box``: ``masktrack segment FRAMES --box X,Y,W,H --preset P --save-probabilities`` on each val sequence, upsampled
  to 854x480 and scored against ``Annotations/480p`` as ``benchmarks/presets.py`` scores ``--mask`` runs;
- ``corrections``: ``Predictor.session`` on each val sequence with its true first mask; after each pass the worst
  scored frame (lowest J, first and last frames not scored) not yet corrected gets its true mask, and propagation
  restarts from it; J&F after 0, 1 and 2 corrections, scored on the 240p masks.

    .venv/bin/python benchmarks/prompts.py --out runs/prompts
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from davis2016 import masktrack, upsample_to_480p  # noqa: E402

from masktrack.data.masks import read_mask  # noqa: E402
from masktrack.evaluate import evaluate_dataset, write_results  # noqa: E402
from masktrack.evaluate.metrics import frame_scores  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def sequences(davis: Path, split: str) -> list[str]:
    return (davis / "ImageSets" / f"{split}.txt").read_text().split()


def true_masks(davis: Path, name: str) -> list[np.ndarray]:
    return [read_mask(path) for path in sorted((davis / "Annotations" / "240p" / name).glob("*.png"))]


def box_text(mask: np.ndarray) -> str:
    """``X,Y,W,H`` of the mask's bounding box."""
    ys, xs = np.nonzero(mask)
    return f"{xs.min()},{ys.min()},{xs.max() - xs.min() + 1},{ys.max() - ys.min() + 1}"


def proposal_iou(predictor, davis: Path, split: str) -> dict[str, float]:  # noqa: ANN001 - masktrack.Predictor
    """Mean IoU with the true first masks of ``split``: the box proposals, and their parts alone (the filled box,
    the network without the salient-object model, the salient-object model inside the box)."""
    from masktrack import ObjectPrompt
    from masktrack.prompt import propose
    from masktrack.prompt.saliency import salient_probabilities

    scores: dict[str, list[float]] = {"proposal": [], "filled box": [], "network alone": [], "U^2-Netp alone": []}
    config = propose.ProposalConfig()
    for name in sequences(davis, split):
        truth = true_masks(davis, name)[0] > 0
        frame = predictor.session(davis / "JPEGImages" / "240p" / name).read_frame(0)
        prompt = ObjectPrompt(1, box=tuple(int(value) for value in box_text(truth).split(",")))
        x0, y0, x1, y1 = box = prompt.frame_box(truth.shape)
        inside = np.zeros_like(truth)
        inside[y0:y1 + 1, x0:x1 + 1] = True
        with_saliency = propose.salient_probabilities
        propose.salient_probabilities = lambda *_: None
        network, _ = propose.object_probabilities(predictor.parents[0], frame, prompt, predictor.config.propagate.size, config)
        propose.salient_probabilities = with_saliency
        masks = {"proposal": predictor.propose(frame, [prompt]) == 1, "filled box": inside,
                 "network alone": network > config.threshold,
                 "U^2-Netp alone": (salient_probabilities(frame, box, config.saliency_margin) > config.threshold) & inside}
        for part, mask in masks.items():
            scores[part].append((mask & truth).sum() / (mask | truth).sum())
    return {part: float(np.mean(values)) for part, values in scores.items()}


def segment_from_boxes(davis: Path, out: Path, preset: str) -> str:
    """``segment --box`` on each val sequence; the J&F row scored at 480p."""
    names = sequences(davis, "val")
    for name in names:
        box = box_text(true_masks(davis, name)[0] > 0)
        masktrack("segment", str(davis / "JPEGImages" / "240p" / name), "--box", box, "--preset", preset, "--save-probabilities",
                  "--no-report", "--quiet", "--overwrite", "--out", str(out / "box-240p" / name))
        upsample_to_480p(out / "box-240p" / name, out / "box-480p", [name], 0.4)
    result = evaluate_dataset(davis / "Annotations" / "480p", out / "box-480p", sequences=names, progress=False)
    write_results(result, out / "box-eval-480p")
    g = result.global_metrics
    return f"| segment --box, preset {preset} | {g['J&F-Mean']:.3f} | {g['J-Mean']:.3f} | {g['F-Mean']:.3f} |"


def sequence_scores(truth: list[np.ndarray], labels: dict[int, np.ndarray]) -> np.ndarray:
    """``(frames - 2, 2)`` J and F of the object in each scored frame."""
    return np.array([[float(s[0]) for s in frame_scores(truth[k], labels[k], [1])] for k in range(1, len(truth) - 1)])


def corrections(predictor, davis: Path, count: int) -> list[tuple[float, float]]:  # noqa: ANN001 - masktrack.Predictor
    """Mean J and F over val after 0..``count`` corrections (frames of every sequence pooled per sequence first)."""
    per_round: list[list[np.ndarray]] = [[] for _ in range(count + 1)]
    for name in sequences(davis, "val"):
        truth = true_masks(davis, name)
        session = predictor.session(davis / "JPEGImages" / "240p" / name)
        session.add_mask(0, truth[0])
        labels = dict(session.propagate())
        corrected: set[int] = set()
        for round_ in range(count + 1):
            scores = sequence_scores(truth, labels)
            per_round[round_].append(scores.mean(axis=0))
            order = [int(k) + 1 for k in np.argsort(scores[:, 0], kind="stable") if int(k) + 1 not in corrected]
            if round_ < count and order:
                corrected.add(order[0])
                session.add_mask(order[0], truth[order[0]])
                labels.update(session.propagate())
        print(name, " ".join(f"{np.mean(r[-1]):.3f}" for r in per_round), flush=True)
    return [tuple(np.mean(r, axis=0)) for r in per_round]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", nargs="+", choices=("proposal", "box", "corrections"), default=["proposal", "box", "corrections"])
    parser.add_argument("--davis", type=Path, default=SHARED / "data" / "davis2016", help="DAVIS 2016 root (240p frames, 480p masks)")
    parser.add_argument("--splits", nargs="+", default=["val", "train"], help="splits whose first frames the proposals are scored on")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--corrections", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/prompts"))
    args = parser.parse_args()
    import torch

    import masktrack

    torch.set_num_threads(2)
    print(f"{date.today()}, {platform.processor() or platform.machine()}, preset {args.preset}")
    predictor = masktrack.Predictor(preset=args.preset, device="cpu")
    if "proposal" in args.measure:
        for split in args.splits:
            for part, iou in proposal_iou(predictor, args.davis, split).items():
                print(f"| {part}, first frames of {split} | mean IoU {iou:.3f} |", flush=True)
    if "box" in args.measure:
        print(segment_from_boxes(args.davis, args.out, args.preset), flush=True)
    if "corrections" in args.measure:
        rows = corrections(predictor, args.davis, args.corrections)
        for count, (j, f) in enumerate(rows):
            print(f"| {count} correction{'s' * (count != 1)} | {(j + f) / 2:.3f} | {j:.3f} | {f:.3f} |", flush=True)


if __name__ == "__main__":
    main()

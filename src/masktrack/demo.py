"""The demo: synthetic videos, a parent model, online fine-tuning, segmentation, J&F and a report.

``OUT/data`` is a synthetic dataset in the DAVIS 2017 layout (:mod:`masktrack.data.synth`),
``OUT/parent`` the offline training run of the parent network on its train split (skipped
when a parent network is given: the `masktrack demo` command gives the shipped model unless
``--train``), and ``OUT/run`` the `masktrack segment`
run folder of its val split, with ``eval/`` and ``report/``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from masktrack.api.predictor import Predictor
from masktrack.app.run import segment_run
from masktrack.atomic import atomic_output_dir
from masktrack.data.sources import open_davis
from masktrack.data.synth import generate_dataset
from masktrack.settings import plain
from masktrack.train import TrainConfig, train

# A MobileNetV2 with a light head at output stride 16: learns the synthetic objects in minutes on a CPU.
DEMO_MODEL = {"backbone": "mobilenet_v2", "output_stride": 16, "head_channels": 32, "low_level_skip": True}


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo: the dataset, offline training and online fine-tuning."""

    videos: int = 8  # the last quarter is the val split
    frames: int = 48  # slow motion per frame: the parent learns small frame-to-frame changes
    size: tuple[int, int] = (96, 128)
    train_steps: int = 300
    batch_size: int = 8
    lr: float = 0.01
    finetune_steps: int | None = None  # per object; None: the default preset's
    scratch_finetune_lr: float = 1e-3  # fine-tuning a parent trained here from scratch (the presets suit ImageNet-started ones)
    seed: int = 0


DEFAULT_SETTINGS = DemoSettings()


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its run and report, and the val split's scores."""

    run_dir: Path
    report: Path
    metrics: dict[str, float]  # the evaluator's global figures, "J&F-Mean" first
    seconds: float


def parent_config(data: Path, settings: DemoSettings) -> TrainConfig:
    """The demo's offline training recipe on the train split of the synthetic dataset ``data``."""
    height, width = settings.size
    return TrainConfig.from_dict({
        "data": [f"{data}:train"], "model": DEMO_MODEL, "height": height, "width": width,
        "batch_size": settings.batch_size, "steps": settings.train_steps, "optimizer": "adamw", "lr": settings.lr,
        "warmup_steps": min(10, settings.train_steps), "batch_norm": "train", "workers": 0, "val_fraction": 0.0,
        "checkpoint_every": 0, "log_every": 10, "seed": settings.seed, "device": "cpu",
    })


def train_parent(data: Path, out: Path, settings: DemoSettings, progress: bool = True) -> Path:
    """Train the demo's parent network on ``data``'s train split into the run folder ``out``; its weights."""
    return train(parent_config(data, settings), out, progress=progress)


def demo_predictor(weights: Path, settings: DemoSettings, progress: bool = True, trained_here: bool = False) -> Predictor:
    """The default preset on the CPU, with the demo's fine-tuning steps when it sets them, and for a parent
    ``trained_here`` (a small network trained from scratch for a few minutes) a higher fine-tuning learning rate."""
    finetune: dict[str, float] = {} if settings.finetune_steps is None else {"steps": settings.finetune_steps}
    if trained_here:
        finetune["lr"] = settings.scratch_finetune_lr
    return Predictor(weights, device="cpu", progress=progress, seed=settings.seed, finetune=finetune)


def run_demo(
    out: Path,
    settings: DemoSettings | None = None,
    overwrite: bool = False,
    parent: Path | None = None,
    progress: bool = True,
) -> DemoResult:
    """Write the demo into the atomic folder ``out`` and return its scores.

    The parent network is ``parent`` if given, else one trained here on the synthetic train
    split. Either way it is fine-tuned online on each val video's given masks before segmenting
    it. ``settings`` default to ``DEFAULT_SETTINGS``.
    """
    start = time.perf_counter()
    settings = settings or DEFAULT_SETTINGS
    with atomic_output_dir(out, overwrite) as folder:
        data = generate_dataset(folder / "data", num_videos=settings.videos, num_frames=settings.frames,
                                size=settings.size, seed=settings.seed, progress=progress)
        weights = parent if parent is not None else train_parent(data, folder / "parent", settings, progress)
        record = {"demo": True, "parent": "trained" if parent is None else "given", "weights": str(weights),
                  "settings": plain(asdict(settings))}
        evaluation = segment_run(demo_predictor(weights, settings, progress, parent is None), open_davis(data, split="val"),
                                 folder / "run", record, images_root=data, progress=progress)
    if evaluation is None:
        raise RuntimeError(f"{data}: the synthetic val split lacks ground truth")
    run_dir = Path(out) / "run"
    return DemoResult(run_dir, run_dir / "report" / "index.html", evaluation.global_metrics, time.perf_counter() - start)


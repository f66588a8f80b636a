"""`masktrack train`: offline training of the MaskTrack network on annotated images and videos."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from masktrack.train import TrainConfig

HELP = "offline training: learn to refine deformed masks on DAVIS, YouTube-VOS or image/mask folders"
EXAMPLES = """\
examples:
  # DAVIS 2016 train split at 240p (width from the frames: 427), MobileNetV2 from local ImageNet weights
  masktrack train --data ../shared/data/davis2016:train --out runs/parent --backbone mobilenet_v2 \\
      --pretrained ../shared/weights/mobilenetv2-imagenet-bottleneck.pt --size 240 --epochs 10

  # mix sources: a DAVIS 2017 root (train split by default), YouTube-VOS, and images/ + masks/ folders
  masktrack train --data data/davis2017 --data data/youtube-vos:train --data data/coco-people \\
      --out runs/mixed --backbone resnet50 --pretrained imagenet --size 320x576 --steps 20000

  # the paper's network (settings in YAML; flags override the file), then continue it after a crash
  masktrack train --config faithful.yaml --data data/davis2017 --out runs/faithful
  masktrack train --out runs/faithful --resume

  # adapt the shipped model to your own images/ + masks/ (its network settings are benchmarks/davis2016.yaml's)
  masktrack train --config benchmarks/davis2016.yaml --init src/masktrack/weights/default.safetensors \
      --data data/my-objects --out runs/adapted --steps 500 --lr 0.001

  # 4 GPUs with DDP: the same total --batch-size trains the same model as one process
  torchrun --nproc-per-node 4 -m masktrack train --data data/davis2017 --out runs/ddp --device cuda --batch-size 32

--data: a DAVIS root (ROOT or ROOT:split, default split train), a YouTube-VOS root (ROOT or ROOT:split)
or a folder with images/ and masks/ (PNG masks with the images' stems). Every object of every
annotated frame is a sample. Whole sequences are held out for validation (val_fraction,
val_sequences in the YAML); validation IoU is logged next to the IoU of the deformed input masks.

--config YAML: any TrainConfig setting (model:, deform:, augment:, optimizer:, batch_norm:, amp: ...);
the run folder's config.yaml lists them all and is itself a valid --config file. Given several
times, later files override earlier ones key by key (a base file plus a small variant file).

outputs (OUT = --out):
  OUT/model.safetensors (the trained network, written last)  OUT/config.yaml  OUT/metrics.csv
  OUT/checkpoint.pt (training state for --resume)  OUT/tensorboard/
"""


class BackboneOption(argparse.Action):
    """``--backbone NAME``, whose help lists the backbone registry: read (with torch) only when help is shown."""

    @property
    def help(self) -> str:
        from masktrack.model import ModelConfig
        from masktrack.model.backbones import BACKBONES

        return (f"network backbone: {', '.join(BACKBONES)} (default {ModelConfig().backbone}); "
                "measured accuracy and speed: docs/results.md")

    @help.setter
    def help(self, value: str | None) -> None:  # argparse.Action.__init__ assigns help=None
        pass

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", action="append", metavar="DIR[:SPLIT]",
                        help="training data (repeatable): DAVIS root, YouTube-VOS root or images/+masks/ folder")
    parser.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run folder")
    parser.add_argument("--backbone", action=BackboneOption, metavar="NAME")
    parser.add_argument("--pretrained", metavar="PATH|imagenet", help="ImageNet backbone weights: a local file or 'imagenet'")
    parser.add_argument("--init", metavar="PATH",
                        help="start from this trained masktrack checkpoint (e.g. the shipped model) instead of --pretrained")
    parser.add_argument("--size", metavar="H|HxW", help="training size: a height (width keeps the data's aspect ratio) or HxW")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, metavar="N", help="passes over the training samples (default 10)")
    length.add_argument("--steps", type=int, metavar="N", help="optimizer steps (instead of epochs)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="samples per optimizer step, over all processes (default 8)")
    parser.add_argument("--accumulate", type=int, metavar="N", help="gradient accumulation micro-steps per optimizer step")
    parser.add_argument("--lr", type=float, metavar="X", help="base learning rate")
    parser.add_argument("--workers", type=int, metavar="N", help="data-loading worker processes per training process")
    parser.add_argument("--seed", type=int, metavar="N", help="random seed of sampling, augmentation and deformation")
    parser.add_argument("--device", metavar="cpu|cuda", help="training device (default: cuda when available)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads per process (default: the cores shared by the processes)")
    parser.add_argument("--config", type=Path, action="append", metavar="YAML",
                        help="settings file (repeatable: later files override earlier ones), overridden by the flags above")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def flag_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig values given as flags (nested like the YAML)."""
    from masktrack.errors import InputError

    values: dict[str, Any] = {}
    if args.data:
        values["data"] = args.data
    if args.backbone:
        values["model"] = {"backbone": args.backbone}
    if args.size:
        height, _, width = args.size.lower().partition("x")
        if not height.isdigit() or (width and not width.isdigit()):
            raise InputError(f"--size {args.size}: expected a height (240) or HEIGHTxWIDTH (240x427)")
        values.update(height=int(height), width=int(width) if width else None)
    if args.epochs is not None:
        values.update(epochs=args.epochs, steps=None)
    plain = ("steps", "batch_size", "accumulate", "lr", "workers", "seed", "device", "pretrained", "init")
    values.update({key: getattr(args, key) for key in plain if getattr(args, key) is not None})
    return values


def train_settings(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: the saved ones when resuming, then each --config file in order, then the flags."""
    from masktrack.settings import load_yaml, merge
    from masktrack.train import CONFIG_FILE, TrainConfig

    values: dict[str, Any] = {}
    saved = args.out / CONFIG_FILE
    if args.resume and saved.is_file():
        values = load_yaml(saved)
    for path in args.config or []:
        values = merge(values, load_yaml(path))
    values = merge(values, flag_settings(args))
    return TrainConfig.from_dict(values, source=", ".join(str(path) for path in args.config or []) or "settings")


def run(args: argparse.Namespace) -> int:
    from masktrack.devices import set_threads
    from masktrack.train import train

    config = train_settings(args)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if args.threads is not None or world_size > 1:  # else torch's default (OMP_NUM_THREADS or all cores)
        set_threads(args.threads, world_size, "cuda" if config.device.startswith("cuda") else "cpu")
    final = train(config, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"masktrack train: wrote {final}")
    return 0

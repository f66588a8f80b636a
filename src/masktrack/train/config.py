"""TrainConfig: every setting of offline training, read from and written to YAML.

Precedence (lowest first): the dataclass defaults, a ``--config`` YAML file, command-line
flags. The run folder keeps the full effective config as ``config.yaml``, which is a valid
``--config`` file itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from masktrack.atomic import atomic_file
from masktrack.augment.deform import DeformConfig
from masktrack.augment.transforms import AugmentConfig
from masktrack.model import ModelConfig
from masktrack.settings import from_dict, plain

OPTIMIZERS = ("sgd", "adamw")
BATCH_NORM_MODES = ("auto", "frozen", "train")


@dataclass
class TrainConfig:
    """Offline training settings.

    ``batch_size`` is the total batch of one optimizer step, summed over processes and
    accumulation steps, so a config trains the same model on any number of processes
    (each process runs micro-batches of ``batch_size / (world_size * accumulate)``).
    ``height`` x ``width`` is the training size; ``width`` None takes the aspect ratio of the
    first data source's first frame. ``steps`` (when set) overrides ``epochs``. Learning
    rate: linear warmup over ``warmup_steps``, then poly decay ``(1 - step/total)^poly_power``.
    ``batch_norm``: ``frozen`` keeps the backbone's ImageNet statistics and affine parameters
    (DeepLab-v2 style), ``train`` updates them; ``auto`` freezes them when pretrained weights
    are loaded. ``init`` starts from a trained masktrack checkpoint instead (e.g. the shipped
    model, to adapt it to new data), with a fresh optimizer and schedule. The head's batch
    norms always train. Training batch norms normalise over the micro-batches of all processes
    together (``batch_size / accumulate`` samples, on CPU/gloo too), so the world size does not
    change the model but ``accumulate`` does. ``amp`` None: bf16 autocast on CUDA devices that
    support it, off on CPU. Validation holds out whole sequences: those named in
    ``val_sequences`` plus a seeded ``val_fraction`` of the rest, at most ``val_samples`` samples
    (evenly spaced) evaluated every epoch and every ``val_every`` steps (0: epochs only).
    """

    data: list[str] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrained: str | None = None
    init: str | None = None  # start from this trained masktrack checkpoint (its model config must be `model`)
    deform: DeformConfig = field(default_factory=DeformConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    height: int = 240
    width: int | None = None
    batch_size: int = 8
    accumulate: int = 1
    epochs: int = 10
    steps: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 100
    poly_power: float = 0.9
    batch_norm: str = "auto"
    amp: bool | None = None
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    checkpoint_every: int = 500
    val_fraction: float = 0.1
    val_sequences: list[str] = field(default_factory=list)
    val_samples: int = 200
    val_every: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        self.data = [str(item) for item in self.data]
        self.val_sequences = [str(item) for item in self.val_sequences]
        checks = {
            "optimizer must be one of " + ", ".join(OPTIMIZERS): self.optimizer in OPTIMIZERS,
            "batch_norm must be one of " + ", ".join(BATCH_NORM_MODES): self.batch_norm in BATCH_NORM_MODES,
            "height must be >= 16": self.height >= 16,
            "width must be >= 16 or null": self.width is None or self.width >= 16,
            "batch_size and accumulate must be >= 1": self.batch_size >= 1 and self.accumulate >= 1,
            "batch_size must be a multiple of accumulate": self.batch_size % self.accumulate == 0,
            "epochs must be >= 1 (or steps set)": self.epochs >= 1 or self.steps is not None,
            "steps must be >= 1 or null": self.steps is None or self.steps >= 1,
            "lr must be > 0": self.lr > 0,
            "weight_decay, warmup_steps, poly_power and workers must be >= 0": min(
                self.weight_decay, self.warmup_steps, self.poly_power, self.workers) >= 0,
            "checkpoint_every, val_every and log_every must be >= 0": min(
                self.checkpoint_every, self.val_every, self.log_every) >= 0,
            "val_fraction must be in [0, 1)": 0 <= self.val_fraction < 1,
            "val_samples must be >= 1": self.val_samples >= 1,
            "init and pretrained are exclusive (a trained checkpoint holds the whole network)": (
                self.init is None or self.pretrained is None),
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("; ".join(failed))

    @property
    def freeze_batch_norm(self) -> bool:
        """Whether the backbone's batch norms stay fixed (``auto``: when starting from pretrained or init weights)."""
        return self.batch_norm == "frozen" or (
            self.batch_norm == "auto" and (self.pretrained is not None or self.init is not None))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested values (tuples as lists), ready for YAML."""
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        values["model"] = self.model.to_dict()
        values["deform"] = plain(dataclasses.asdict(self.deform))
        values["augment"] = plain(dataclasses.asdict(self.augment))
        return plain(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from nested plain values; unknown keys and bad values raise InputError naming ``source``."""
        return from_dict(cls, values, source)


def save_yaml(config: TrainConfig, path: str | Path) -> None:
    """Write ``config`` as YAML to ``path`` atomically."""
    with atomic_file(path) as temporary:
        temporary.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

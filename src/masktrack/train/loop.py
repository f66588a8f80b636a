"""Offline training: the MaskTrack network learns to refine deformed masks into true ones.

One function, :func:`train`, runs alone or under ``torchrun`` (DDP: gloo on CPU, NCCL on CUDA;
rank 0 writes every file). The run folder holds::

    config.yaml         the full effective TrainConfig (a valid --config file)
    metrics.csv         one row per logged training step and per validation
    tensorboard/        the same scalars for TensorBoard (when tensorboard is installed)
    checkpoint.pt       training state (model, optimizer, schedule, step, RNG), for --resume
    model.safetensors   the trained network (written last: its presence means the run finished)

Training state is saved atomically every ``checkpoint_every`` steps and after every epoch.
A non-finite loss or gradient stops the run with :class:`TrainingDiverged` before the
optimizer step, so the last checkpoint on disk is always a good one.
"""

from __future__ import annotations

import csv
import math
import random
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from masktrack.atomic import atomic_file, check_output_file
from masktrack.devices import choose_device
from masktrack.distributed import Ranks, close_ranks, init_ranks
from masktrack.errors import InputError
from masktrack.model import (
    MaskTrackNet,
    build_model,
    checkpoint_weights,
    save_checkpoint,
)
from masktrack.model.checkpoint import check_weights_file, load_torch_file
from masktrack.model.inputs import processing_size
from masktrack.model.losses import segmentation_loss
from masktrack.model.precision import bf16_autocast, require_bf16
from masktrack.model.training import batch_norms, loss_backward, training_mode
from masktrack.train.config import TrainConfig, save_yaml
from masktrack.train.dataset import (
    AnnotatedSequence,
    EpochSampler,
    MaskTrackSamples,
    SampleIndex,
    held_out_names,
    index_samples,
    open_source,
    previous_masks,
    split_samples,
)
from masktrack.train.sync_norm import convert_batch_norms

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
STATE_FILE = "checkpoint.pt"
MODEL_FILE = "model.safetensors"
TENSORBOARD_DIR = "tensorboard"
METRIC_FIELDS = ("step", "epoch", "phase", "loss", "lr", "iou", "input_iou", "images_per_s", "elapsed_s")
# Settings a resumed run may change: those that do not change the result, and the learning rate
# (a lower one after a divergence; the schedule continues from the saved step, rescaled).
RESUME_MAY_CHANGE = ("device", "workers", "amp", "log_every", "lr")
STATE_KEYS = ("step", "config", "model", "optimizer", "scheduler", "rng", "last_validation")  # checkpoint.pt


class TrainingDiverged(InputError):
    """The loss or the gradients became NaN or infinite; the last good checkpoint is kept."""


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train a MaskTrackNet as ``config`` says; return the final ``out_dir/model.safetensors``.

    ``resume`` continues from ``out_dir/checkpoint.pt`` (the config must match the one it was
    saved with, apart from ``RESUME_MAY_CHANGE``; a run without a checkpoint starts afresh).
    Otherwise an existing, non-empty ``out_dir`` is refused unless ``overwrite``. Under
    ``torchrun`` (``WORLD_SIZE > 1``) every process calls this with the same arguments.
    """
    device = choose_device(None if config.device == "auto" else config.device)
    joined = dist.is_initialized()
    ranks = init_ranks(device)
    if device.startswith("cuda") and ranks.world_size > 1:
        device = f"cuda:{torch.cuda.current_device()}"
    try:
        return _Trainer(config, Path(out_dir), ranks, device, progress).run(resume, overwrite)
    finally:
        if not joined:
            close_ranks(ranks)


def mask_iou(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """IoU per image of ``(B, H, W)`` boolean masks (1 when both are empty)."""
    intersection = (predicted & truth).flatten(1).sum(1).float()
    union = (predicted | truth).flatten(1).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), 1.0)


def poly_schedule(warmup_steps: int, total_steps: int, power: float):
    """LR factor at a step: linear warmup, then ``(1 - step / total) ** power``."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        return warm * max(0.0, 1.0 - step / total_steps) ** power

    return factor


class _Trainer:
    """One training run on this process (state shared by the steps of :func:`train`)."""

    def __init__(self, config: TrainConfig, out_dir: Path, ranks: Ranks, device: str, progress: bool) -> None:
        self.config, self.out_dir, self.ranks, self.device = config, out_dir, ranks, torch.device(device)
        self.progress = progress and ranks.is_main
        self.amp = (self.device.type == "cuda" and torch.cuda.is_bf16_supported()) if config.amp is None else bool(config.amp)
        if self.amp:
            require_bf16(self.device)
        micro_total = ranks.world_size * config.accumulate
        if config.batch_size % micro_total:
            raise InputError(f"batch_size {config.batch_size} is not a multiple of world size x accumulate = {micro_total}")
        self.micro_batch = config.batch_size // micro_total

    # --- setup --------------------------------------------------------------------------------

    def run(self, resume: bool, overwrite: bool) -> Path:
        if not self.config.data:
            raise InputError("no training data: give --data DIR (or data: in the config)")
        self._check_inputs(resume, overwrite)
        state = self._load_state() if resume else None
        sequences = [sequence for spec in self.config.data for sequence in open_source(spec)]
        train_set, val_set = self._datasets(sequences)
        self.steps_per_epoch = len(train_set) // self.config.batch_size
        if self.steps_per_epoch == 0:
            raise InputError(f"{len(train_set)} training samples are fewer than one batch of {self.config.batch_size}")
        self.total_steps = self.config.steps or self.config.epochs * self.steps_per_epoch
        if state is not None:
            self._check_resumable(state)
        self.model, self.network = self._model(load_pretrained=state is None)
        self.optimizer = self._optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, poly_schedule(self.config.warmup_steps, self.total_steps, self.config.poly_power))
        self.step = 0
        self.last_validation: dict[str, float] = {}
        if state is not None:
            self._restore(state)
        created = self._prepare_folder(resume, overwrite)
        try:
            with _RunLog(self.out_dir, self.ranks.is_main, self.step) as self.log:
                self._loop(train_set, val_set)
        except BaseException:
            if created and self.ranks.is_main and not (self.out_dir / STATE_FILE).exists():
                shutil.rmtree(self.out_dir, ignore_errors=True)  # nothing to resume: no folder to refuse the rerun
            raise
        final = self.out_dir / MODEL_FILE
        if self.ranks.is_main:
            save_checkpoint(final, self.network, {"train_config": self.config.to_dict(), "step": self.step,
                                                  **self.last_validation})
        self.ranks.gather(None)  # the final model exists before any rank returns
        return final

    def _check_inputs(self, resume: bool, overwrite: bool) -> None:
        """Before any work: the weights files are safe to load, and rank 0 can write the run folder (an existing
        one only with ``resume`` or ``overwrite``); every rank learns the outcome."""
        for path in (self.config.pretrained if self.config.pretrained != "imagenet" else None, self.config.init):
            if path is not None:
                check_weights_file(path)
        problem = ""
        if self.ranks.is_main:
            try:
                check_output_file(self.out_dir / STATE_FILE)
            except InputError as error:
                problem = str(error)
            if not problem and any(self.out_dir.glob("*")) and not (resume or overwrite):
                problem = f"{self.out_dir}: run folder exists (pass --overwrite to replace it or --resume to continue it)"
        problem = self.ranks.gather(problem)[0]
        if problem:
            raise InputError(problem)

    def _prepare_folder(self, resume: bool, overwrite: bool) -> bool:
        """Rank 0 clears an existing run folder when overwriting, makes the folder and writes the effective settings
        (so that a later --resume continues with them); whether this run created the folder."""
        if not self.ranks.is_main:
            return False
        existed = any(self.out_dir.glob("*"))
        if existed and overwrite and not resume:
            shutil.rmtree(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(self.config, self.out_dir / CONFIG_FILE)
        return not existed or (overwrite and not resume)

    def _datasets(self, sequences: list[AnnotatedSequence]) -> tuple[MaskTrackSamples, MaskTrackSamples | None]:
        """Index the samples (rank 0, shared with the others), fix the width, hold out validation."""
        config = self.config
        rows = [index_samples(sequences, self.progress).rows if self.ranks.is_main else None]
        if self.ranks.world_size > 1:
            dist.broadcast_object_list(rows, src=0)
        index = SampleIndex(sequences, rows[0])
        if config.width is None:
            self.config = config = replace(config, width=processing_size(tuple(sequences[0].size), config.height)[1])
        held_out = held_out_names([s.name for s in sequences], config.val_sequences, config.val_fraction, config.seed)
        train_index, val_index = split_samples(index, held_out, config.val_samples)
        if len(train_index) == 0:
            raise InputError(f"{', '.join(config.data)}: no training samples (no object masks outside the held-out sequences)")
        size = (config.height, config.width)
        val_set = MaskTrackSamples(val_index, size, None, config.seed) if len(val_index) else None
        return MaskTrackSamples(train_index, size, config.augment, config.seed), val_set

    def _model(self, load_pretrained: bool) -> tuple[nn.Module, MaskTrackNet]:
        """The network on the device, initialised from the seed, DDP-wrapped when distributed."""
        torch.manual_seed(self.config.seed)
        network = build_model(self.config.model, self.config.pretrained if load_pretrained else None)
        if load_pretrained and self.config.init is not None:
            network.load_state_dict(checkpoint_weights(self.config.init, self.config.model))
        if self.ranks.world_size > 1:  # batch statistics over the global batch, as in one process
            network = convert_batch_norms(network)
        network = network.to(self.device)
        self.frozen_norms = batch_norms(network.backbone) if self.config.freeze_batch_norm else []
        for module in self.frozen_norms:
            module.requires_grad_(False)
        training_mode(network, self.frozen_norms)
        if self.ranks.world_size == 1:
            return network, network
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(network, device_ids=device_ids), network

    def _optimizer(self) -> torch.optim.Optimizer:
        """SGD with momentum or AdamW; no weight decay on biases and normalisation weights."""
        decay, no_decay = [], []
        for parameter in self.network.parameters():
            if parameter.requires_grad:
                (decay if parameter.ndim > 1 else no_decay).append(parameter)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = self.device.type in ("cpu", "cuda")  # one kernel per step: 3-4x faster than the loop on CPU
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.config.lr, momentum=self.config.momentum, fused=fused)
        return torch.optim.AdamW(groups, lr=self.config.lr, fused=fused)

    # --- training -----------------------------------------------------------------------------

    def _loop(self, train_set: MaskTrackSamples, val_set: MaskTrackSamples | None) -> None:
        config = self.config
        sampler = EpochSampler(train_set, self.ranks.world_size, self.ranks.rank, config.seed)
        loader = self._loader(train_set, sampler)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step", disable=not self.progress)
        with bar:
            while self.step < self.total_steps:
                epoch, position = divmod(self.step, self.steps_per_epoch)
                sampler.set_position(epoch, position * self.micro_batch * config.accumulate)
                batches = iter(loader)
                for _ in range(position, min(self.steps_per_epoch, position + self.total_steps - self.step)):
                    loss, images = self._optimizer_step(batches)
                    self.step += 1
                    bar.update()
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}", refresh=False)
                    self.log.train(self.step, epoch, loss, self.scheduler.get_last_lr()[0], images, config.log_every)
                    epoch_done = self.step % self.steps_per_epoch == 0 or self.step == self.total_steps
                    if val_set is not None and (epoch_done or (config.val_every and self.step % config.val_every == 0)):
                        self._validate(val_set, epoch)
                    if epoch_done or (config.checkpoint_every and self.step % config.checkpoint_every == 0):
                        self._save_state()
                del batches

    def _loader(self, dataset: MaskTrackSamples, sampler: Iterable) -> DataLoader:
        workers = self.config.workers
        return DataLoader(dataset, batch_size=self.micro_batch, sampler=sampler, num_workers=workers,
                          pin_memory=self.device.type == "cuda", drop_last=True, persistent_workers=False,
                          prefetch_factor=4 if workers else None)

    def _optimizer_step(self, batches: Iterator) -> tuple[float, int]:
        """Accumulate gradients over the micro-batches of one step, check them, step; global mean loss."""
        config = self.config
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, images
        for micro in range(config.accumulate):
            images, masks, seeds = next(batches)
            images = images.to(self.device, non_blocking=True)
            masks = masks.to(self.device, non_blocking=True)
            previous = previous_masks(masks, seeds, config.deform)
            last = micro == config.accumulate - 1
            with nullcontext() if last or self.ranks.world_size == 1 else self.model.no_sync():
                loss = loss_backward(self.model, images, previous, masks, amp=self.amp, scale=1 / config.accumulate)
            total += torch.stack([loss.double() * len(images), torch.tensor(len(images), device=self.device)])
        if self.ranks.world_size > 1:
            dist.all_reduce(total)
        loss = (total[0] / total[1]).item()
        gradient = torch.nn.utils.get_total_norm([p.grad for p in self.network.parameters() if p.grad is not None])
        if not (math.isfinite(loss) and torch.isfinite(gradient)):
            self._diverged(loss, gradient.item())
        self.optimizer.step()
        self.scheduler.step()
        return loss, int(total[1].item())

    def _diverged(self, loss: float, gradient: float) -> None:
        saved = self.out_dir / STATE_FILE
        advice = (f"kept the last good checkpoint {saved}; continue it with a lower learning rate (--resume --lr)"
                  if saved.exists() else "no checkpoint had been written yet; try a lower learning rate (--lr)")
        raise TrainingDiverged(
            f"{self.out_dir}: training diverged at step {self.step + 1} (loss {loss:.4g}, gradient norm {gradient:.4g}); "
            f"{advice}")

    @torch.no_grad()
    def _validate(self, val_set: MaskTrackSamples, epoch: int) -> None:
        """Mean IoU of the predictions and of the deformed input masks over the held-out samples."""
        network = self.network.eval()
        keys = [(0, index) for index in range(self.ranks.rank, len(val_set), self.ranks.world_size)]
        loader = DataLoader(val_set, batch_size=self.micro_batch, sampler=keys, num_workers=self.config.workers)
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, iou, input iou, samples
        for images, masks, seeds in loader:
            images, masks = images.to(self.device), masks.to(self.device)
            previous = previous_masks(masks, seeds, self.config.deform)
            with bf16_autocast(self.device, self.amp):
                logits = network(images, previous)
            truth = masks.bool()
            sums += torch.stack([
                segmentation_loss(logits, masks).double() * len(images),
                mask_iou(logits.argmax(1) == 1, truth).sum().double(),
                mask_iou(previous[:, 0] >= 0.5, truth).sum().double(),
                torch.tensor(len(images), dtype=torch.float64, device=self.device),
            ])
        if self.ranks.world_size > 1:
            dist.all_reduce(sums)
        training_mode(self.network, self.frozen_norms)
        loss, iou, input_iou = (sums[:3] / sums[3]).tolist()
        self.last_validation = {"val_loss": loss, "val_iou": iou, "val_input_iou": input_iou}
        self.log.validation(self.step, epoch, loss, iou, input_iou)

    # --- checkpoints --------------------------------------------------------------------------

    def _save_state(self) -> None:
        rng = self.ranks.gather(rng_states())
        if not self.ranks.is_main:
            return
        state = {  # STATE_KEYS
            "step": self.step,
            "config": self.config.to_dict(),
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "last_validation": self.last_validation,
        }
        with atomic_file(self.out_dir / STATE_FILE) as temporary:
            torch.save(state, temporary)

    def _load_state(self) -> dict[str, Any] | None:
        """The training state saved in the run folder (None when there is none); InputError naming the file when
        it is unsafe, unreadable or not a masktrack training checkpoint."""
        path = self.out_dir / STATE_FILE
        if not path.is_file():
            return None
        state = load_torch_file(path)
        missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
        if missing:
            raise InputError(f"{path}: not a masktrack training checkpoint (no {', '.join(missing)})")
        if not isinstance(state["config"], dict) or not isinstance(state["model"], dict):
            raise InputError(f"{path}: not a masktrack training checkpoint (config and model must be mappings)")
        return state

    def _check_resumable(self, state: dict[str, Any]) -> None:
        saved, current = dict(state["config"]), self.config.to_dict()
        changed = sorted(key for key in current if key not in RESUME_MAY_CHANGE and saved.get(key) != current[key])
        if changed:
            raise InputError(f"{self.out_dir / STATE_FILE}: saved with different settings ({', '.join(changed)}); "
                             "resume with the run's config.yaml or start a new run")

    def _restore(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.base_lrs = [self.config.lr for _ in self.optimizer.param_groups]
        for group, factor in zip(self.optimizer.param_groups, self.scheduler.lr_lambdas, strict=True):
            group["lr"] = self.config.lr * factor(self.scheduler.last_epoch)
        self.step = int(state["step"])
        self.last_validation = dict(state["last_validation"])
        rng = state["rng"]
        set_rng_states(rng[self.ranks.rank] if len(rng) == self.ranks.world_size else rng[0])
        if self.ranks.is_main:
            print(f"train: resumed {self.out_dir / STATE_FILE} at step {self.step} of {self.total_steps}")


def rng_states() -> dict[str, Any]:
    """This process's Python, NumPy and torch (CPU and CUDA) RNG states, as tensors."""
    version, words, gauss = random.getstate()
    _, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": torch.tensor([version, *words], dtype=torch.int64),
        "python_gauss": gauss,
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_extra": [int(position), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    python = states["python"].tolist()
    random.setstate((python[0], tuple(python[1:]), states["python_gauss"]))
    position, has_gauss, cached = states["numpy_extra"]
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class _RunLog:
    """metrics.csv and TensorBoard scalars (rank 0 only); rows after ``start_step`` are dropped on resume."""

    def __init__(self, out_dir: Path, enabled: bool, start_step: int) -> None:
        self.path, self.enabled, self.start = out_dir / METRICS_FILE, enabled, time.perf_counter()
        self.window: list[tuple[float, int]] = []
        self.window_start = time.perf_counter()
        self.writer = None
        if not enabled:
            return
        kept = []
        if self.path.exists():
            with self.path.open(newline="") as handle:
                kept = [row for row in csv.DictReader(handle) if int(row["step"]) <= start_step]
        with atomic_file(self.path) as temporary, temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.writer = SummaryWriter(str(out_dir / TENSORBOARD_DIR), purge_step=start_step + 1 if start_step else None)

    def __enter__(self) -> _RunLog:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.writer is not None:
            self.writer.close()

    def train(self, step: int, epoch: int, loss: float, lr: float, images: int, every: int) -> None:
        """Record a step; every ``every`` steps write the window's mean loss and throughput."""
        self.window.append((loss, images))
        if not self.enabled or not every or step % every:
            return
        seconds = time.perf_counter() - self.window_start
        mean_loss = sum(value for value, _ in self.window) / len(self.window)
        speed = sum(count for _, count in self.window) / max(seconds, 1e-9)
        self.window, self.window_start = [], time.perf_counter()
        self._write(step, epoch, "train", loss=mean_loss, lr=lr, images_per_s=speed)

    def validation(self, step: int, epoch: int, loss: float, iou: float, input_iou: float) -> None:
        if self.enabled:
            self._write(step, epoch, "val", loss=loss, iou=iou, input_iou=input_iou)

    def _write(self, step: int, epoch: int, phase: str, **values: float) -> None:
        row = {"step": step, "epoch": epoch, "phase": phase, "elapsed_s": round(time.perf_counter() - self.start, 2),
               **{key: f"{value:.6g}" for key, value in values.items()}}
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, METRIC_FIELDS).writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{phase}/{key}", value, step)
            self.writer.flush()

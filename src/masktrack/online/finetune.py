"""Online fine-tuning: adapt the parent network to one video from its annotated frames.

Each object contributes one sample: the frame where its mask is first given, and that mask.
Training batches apply the offline stage's joint augmentation (flip, rotation, scale) and its
previous-mask deformations, so the network learns this video's objects and how to refine a
rough mask of them. Two modes:

- ``per_object`` (default): one deep copy of the parent per object, trained on that object
  alone (the reference implementation's way); cost grows linearly with the number of objects;
- ``shared``: one copy trained on all objects at once (each batch mixes objects); cost does not
  depend on the number of objects, and propagation batches all objects in one forward pass.

Per-object is the default because it is more accurate where objects are several (docs/ablations.md);
``shared`` is the cheap choice for videos with many objects.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from masktrack.augment.deform import DeformConfig, deform_masks
from masktrack.augment.distractors import DistractorConfig, draw_distractors, paste_distractors
from masktrack.augment.transforms import AugmentConfig, augment_batch
from masktrack.model.ensemble import ensemble_per_object
from masktrack.model.inputs import image_tensor, mask_tensor, processing_size
from masktrack.model.training import batch_norms, loss_backward, training_mode

MODES = ("shared", "per_object")
StepCallback = Callable[[], object]  # called once per fine-tuning step


@dataclass
class FinetuneConfig:
    """Online fine-tuning settings; ``steps = 0`` uses the parent network unchanged."""

    steps: int = 50  # steps of ``batch_size`` samples
    lr: float = 1e-4
    batch_size: int = 4
    mode: str = "per_object"
    size: int | None = None  # training sample height (the propagation size); None: the parent's training height
    width: int | None = None  # training crops this wide (at most the frame's width); None: whole frames, as propagated
    distractors: float = 0.5  # share of samples with another object of the video pasted over or behind theirs
    lovasz_weight: float = 1.0  # loss: cross-entropy plus this times the Lovász hinge (an IoU surrogate)
    object_zoom: float = 0.6  # zoom small objects until their box spans this fraction of the sample (0: off)
    augment: AugmentConfig | None = None  # None: the parent's offline settings (else the defaults)
    deform: DeformConfig | None = None  # None: the parent's offline settings (else the defaults)
    amp: bool = False  # forward passes in bf16 autocast (masktrack.model.precision: faster where bf16 is native)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"fine-tuning mode must be one of {MODES}, got {self.mode!r}")
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0 or self.lovasz_weight < 0:
            raise ValueError("fine-tuning needs steps >= 0, batch_size >= 1, lr > 0 and lovasz_weight >= 0")
        if self.width is not None and self.width < 16:
            raise ValueError(f"fine-tuning width must be >= 16 or null, got {self.width}")
        if not 0.0 <= self.distractors <= 1.0:
            raise ValueError(f"fine-tuning distractors must be in [0, 1], got {self.distractors}")
        if not 0.0 <= self.object_zoom <= 1.0:
            raise ValueError(f"fine-tuning object_zoom must be in [0, 1], got {self.object_zoom}")

    def sample_augmentation(self) -> AugmentConfig:
        """The joint augmentation of the fine-tuning samples: ``augment`` (or the defaults) with ``object_zoom``."""
        return replace(self.augment or AugmentConfig(), object_zoom=self.object_zoom)


def object_samples(
    annotations: Sequence[tuple[np.ndarray, np.ndarray]], size: int | None, device: torch.device | str
) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Object ids, their frames ``(N, 3, h, w)`` and binary masks ``(N, h, w)`` at network size.

    ``annotations`` holds ``(image (H, W, 3) uint8, labels (H, W) uint8)`` pairs, one per frame
    where objects are first given; every object id must be given once.
    """
    ids: list[int] = []
    images: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    for image, labels in annotations:
        shape = processing_size(labels.shape, size)
        frame = image_tensor(image, shape, device)[0]
        for object_id in (int(i) for i in np.unique(labels) if i != 0):
            if object_id in ids:
                raise ValueError(f"object {object_id} is given on more than one frame")
            ids.append(object_id)
            images.append(frame)
            masks.append((mask_tensor(labels == object_id, shape, device) >= 0.5).float())
    if not ids:
        raise ValueError("no object masks to fine-tune on")
    return ids, torch.stack(images), torch.stack(masks)


def finetune(
    model: nn.Module,
    annotations: Sequence[tuple[np.ndarray, np.ndarray]],
    config: FinetuneConfig,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    progress: bool = True,
    on_step: StepCallback | None = None,
) -> dict[int, nn.Module]:
    """Fine-tune copies of ``model`` on the given objects; return object id -> its network.

    In ``shared`` mode every id maps to the same network. ``model`` itself is never changed,
    so a parent can be fine-tuned for many videos in turn. ``on_step`` is called after every
    step (:func:`training_steps` of them in all), e.g. to advance an overall progress bar.
    """
    ids, images, masks = object_samples(annotations, config.size, device)
    if config.mode == "per_object":
        return {
            object_id: _train_copy(model, Samples(images[k : k + 1], masks[k : k + 1], _others(images, k), _others(masks, k)),
                                   config, device, generator, progress, f"object {object_id}", on_step)
            for k, object_id in enumerate(ids)
        }
    samples = Samples(images, masks, images, masks, pool_is_samples=True)
    shared = _train_copy(model, samples, config, device, generator, progress, f"{len(ids)} object(s)", on_step)
    return dict.fromkeys(ids, shared)


def training_steps(config: FinetuneConfig, objects: int) -> int:
    """How many steps :func:`finetune` takes for ``objects`` objects (one network each, or one for all)."""
    return config.steps * (objects if config.mode == "per_object" else min(objects, 1))


def finetune_parents(
    parents: Sequence[nn.Module],
    annotations: Sequence[tuple[np.ndarray, np.ndarray]],
    config: FinetuneConfig,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
    on_step: StepCallback | None = None,
) -> dict[int, nn.Module]:
    """:func:`finetune` each parent (each from ``seed``); with several, each object's networks become one ensemble."""
    return ensemble_per_object([finetune(parent, annotations, config, device, torch.Generator().manual_seed(seed), progress, on_step)
                                for parent in parents])


@dataclass
class Samples:
    """What one network is fine-tuned on: its objects' frames and masks, and the video's objects that may be pasted
    into them as distractors (``pool_is_samples``: the pool is the samples themselves, each never its own)."""

    images: torch.Tensor  # (N, 3, h, w)
    masks: torch.Tensor  # (N, h, w) binary float
    pool_images: torch.Tensor  # (K, 3, h, w)
    pool_masks: torch.Tensor  # (K, h, w)
    pool_is_samples: bool = False

    def batch(self, pick: torch.Tensor, config: FinetuneConfig,
              generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The picked samples, with distractors pasted into a ``config.distractors`` share of them."""
        images, masks = self.images[pick], self.masks[pick]
        settings = DistractorConfig(probability=config.distractors)
        choices = draw_distractors(pick, len(self.pool_masks), pick if self.pool_is_samples else None, settings, generator)
        return paste_distractors(images, masks, self.pool_images, self.pool_masks, choices, settings, generator)


def _others(tensor: torch.Tensor, k: int) -> torch.Tensor:
    """``tensor`` without its ``k``-th row."""
    return torch.cat([tensor[:k], tensor[k + 1 :]])


def _train_copy(
    parent: nn.Module,
    samples: Samples,
    config: FinetuneConfig,
    device: torch.device | str,
    generator: torch.Generator | None,
    progress: bool,
    label: str,
    on_step: StepCallback | None = None,
) -> nn.Module:
    """A copy of ``parent`` trained for ``config.steps`` steps on batches drawn from the samples."""
    model = copy.deepcopy(parent).to(device)
    if config.steps == 0:
        return model.eval()
    training_mode(model, frozen=batch_norms(model))  # a few-sample batch must not move the statistics
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    images = samples.images
    out_size = (images.shape[-2], min(config.width or images.shape[-1], images.shape[-1]))
    augment, deform = config.sample_augmentation(), config.deform or DeformConfig()
    for _ in tqdm(range(config.steps), desc=f"fine-tune {label}", unit="step", disable=not progress, leave=False):
        pick = torch.randint(len(images), (config.batch_size,), generator=generator).to(images.device)
        batch_images, batch_masks = augment_batch(*samples.batch(pick, config, generator), out_size, augment, generator)
        previous = deform_masks(batch_masks, deform, generator)[:, None].to(batch_images.dtype)
        optimizer.zero_grad(set_to_none=True)
        loss_backward(model, batch_images, previous, batch_masks, config.lovasz_weight, config.amp)
        optimizer.step()
        if on_step is not None:
            on_step()
    return model.eval()

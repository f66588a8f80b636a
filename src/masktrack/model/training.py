"""What offline training and online fine-tuning share: batch norms held fixed, and one loss-and-backward pass."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from masktrack.model.losses import segmentation_loss
from masktrack.model.precision import bf16_autocast


def batch_norms(module: nn.Module) -> list[nn.Module]:
    """Every batch-norm layer inside ``module``."""
    return [layer for layer in module.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)]


def training_mode(model: nn.Module, frozen: Iterable[nn.Module] = ()) -> None:
    """``model`` in training mode, except the ``frozen`` layers (batch norms whose statistics must not move)."""
    model.train()
    for layer in frozen:
        layer.eval()


def loss_backward(
    model: nn.Module,
    images: torch.Tensor,
    previous: torch.Tensor,
    masks: torch.Tensor,
    lovasz_weight: float = 0.0,
    amp: bool = False,
    scale: float = 1.0,
) -> torch.Tensor:
    """One forward pass (bf16 autocast with ``amp``), the segmentation loss, and its gradients times ``scale``.

    ``images`` ``(B, 3, H, W)``, ``previous`` ``(B, 1, H, W)`` previous masks, ``masks`` ``(B, H, W)`` the
    truth. Returns the loss, detached.
    """
    with bf16_autocast(images.device, amp):
        logits = model(images, previous)
    loss = segmentation_loss(logits.float(), masks > 0.5, lovasz_weight=lovasz_weight)
    (loss * scale if scale != 1.0 else loss).backward()
    return loss.detach()

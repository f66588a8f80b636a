"""Previous-frame masks simulated from the network's own predictions (scheduled-sampling style).

At inference a network's 4th channel is its own last prediction, whose errors (a thin part
missed, a blob of background taken) are not the errors that deforming a true mask makes.
:func:`fed_back_masks` replaces chosen samples' simulated previous masks by the network's
prediction from them, deformed again as if the object had moved, so training also sees masks
with the network's own errors and learns to recover from them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def fed_back_masks(
    network: nn.Module,
    images: torch.Tensor,
    previous: torch.Tensor,
    chosen: torch.Tensor,
    deform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``previous`` ``(B, 1, H, W)`` with the ``chosen`` ``(B,)`` rows replaced by deformed predictions.

    Each chosen row becomes ``deform(predictions, rows)[k]``: the network's hard prediction
    (object class wins) on its image and previous mask, made in eval mode without gradients,
    then deformed (``deform`` gets the ``(K, H, W)`` bool predictions and their row numbers and
    returns ``(K, H, W)`` masks). The network's train/eval modes are left as they were.
    """
    rows = chosen.nonzero().squeeze(1).to(images.device)
    if len(rows) == 0:
        return previous
    modes = [(module, module.training) for module in network.modules()]
    network.eval()
    with torch.no_grad():
        predicted = network(images[rows], previous[rows]).argmax(1) == 1
    for module, training in modes:
        module.training = training
    mixed = previous.clone()
    mixed[rows, 0] = deform(predicted, rows).to(mixed.dtype)
    return mixed

"""Segmentation losses shared by offline training and online fine-tuning."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, lovasz_weight: float = 0.0) -> torch.Tensor:
    """Mean per-pixel cross-entropy of ``(B, 2, H, W)`` logits against ``(B, H, W)`` binary masks,
    plus ``lovasz_weight`` times the Lovász hinge (:func:`lovasz_hinge`)."""
    loss = F.cross_entropy(logits.float(), masks.long())
    if lovasz_weight > 0:
        loss = loss + lovasz_weight * lovasz_hinge(logits, masks)
    return loss


def lovasz_hinge(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The Lovász hinge (Berman et al., CVPR 2018): a convex surrogate of ``1 - IoU`` of the object,
    per image, averaged over the batch. ``logits`` ``(B, 2, H, W)``, ``masks`` ``(B, H, W)`` binary."""
    margins = (logits[:, 1] - logits[:, 0]).float().flatten(1)
    truth = masks.flatten(1).float()
    sorted_errors, order = (1 - margins * (2 * truth - 1)).sort(dim=1, descending=True)
    return (F.relu(sorted_errors) * jaccard_gradient(truth.gather(1, order))).sum(1).mean()


def jaccard_gradient(sorted_truth: torch.Tensor) -> torch.Tensor:
    """The Lovász extension's weights, per row of ``(B, P)``: the increments of ``1 - IoU`` as the pixels
    sorted by error (``sorted_truth``, 1 for object pixels) are predicted wrong one after the other."""
    objects = sorted_truth.sum(dim=-1, keepdim=True)
    intersection = objects - sorted_truth.cumsum(dim=-1)
    union = objects + (1 - sorted_truth).cumsum(dim=-1)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard.diff(dim=-1)], dim=-1)

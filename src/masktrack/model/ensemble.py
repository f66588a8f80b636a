"""Several networks run as one: their object probabilities averaged.

Parents trained with different seeds make different errors (docs/ablations.md), so their
fine-tuned networks' probabilities are averaged on every frame, before the mask is thresholded
and fed back as the next frame's fourth channel, at one forward pass per member. On DAVIS 2016
two parents score above their mean, not always above the better one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


class ProbabilityEnsemble(nn.Module):
    """Averages the class probabilities of ``members``; returns their log, so a softmax of it is the average."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` images and ``(N, 1, H, W)`` previous masks -> ``(N, 2, H, W)`` log-probabilities."""
        probabilities = torch.stack([member(image, mask).float().softmax(dim=1) for member in self.members]).mean(dim=0)
        return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()


def ensemble_per_object(networks: Sequence[Mapping[int, nn.Module]]) -> dict[int, nn.Module]:
    """Object id -> the ensemble of its network from each mapping (one mapping: its networks as they are).

    Objects that share a network in every mapping (``shared`` fine-tuning) share one ensemble, so
    propagation still batches them.
    """
    if len(networks) == 1:
        return dict(networks[0])
    ensembles: dict[tuple[int, ...], nn.Module] = {}
    combined: dict[int, nn.Module] = {}
    for object_id in networks[0]:
        members = [mapping[object_id] for mapping in networks]
        key = tuple(id(member) for member in members)
        if key not in ensembles:
            ensembles[key] = ProbabilityEnsemble(members)
        combined[object_id] = ensembles[key]
    return combined

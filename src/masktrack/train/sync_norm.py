"""Batch norm whose training statistics cover the global batch of all DDP processes.

``torch.nn.SyncBatchNorm`` refuses CPU tensors, so under gloo each process would normalise
with the statistics of its own micro-batch and train a different model than one process
with the same total batch. :class:`GlobalBatchNorm2d` all-reduces the per-channel sums
(differentiably, so the gradients flow across processes too) on any device and backend.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` that, in training mode under ``torch.distributed``, uses the statistics of
    the whole global batch; otherwise (one process, evaluation) it is a plain ``BatchNorm2d``."""

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        x = input.float()
        local = torch.cat([x.sum((0, 2, 3)), x.new_tensor([x.numel() // x.shape[1]])])
        totals = all_reduce(local)
        count = totals[-1]
        mean = totals[:-1] / count
        centred = x - mean[:, None, None]
        var = all_reduce(centred.square().sum((0, 2, 3))) / count  # two passes: no cancellation
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
            with torch.no_grad():
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        output = centred * torch.rsqrt(var + self.eps)[:, None, None]
        if self.affine:
            output = output * self.weight[:, None, None] + self.bias[:, None, None]
        return output.to(input.dtype)


def convert_batch_norms(module: nn.Module) -> nn.Module:
    """``module`` (on the CPU) with every ``BatchNorm2d`` replaced in place by a
    :class:`GlobalBatchNorm2d` holding the same values (state dict keys do not change)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                            child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            convert_batch_norms(child)
    return module

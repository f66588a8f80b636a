"""Faster CPU inference: batch norms folded into convolutions (the network is channels-last already).

The result is for inference only: it cannot be trained or saved as a checkpoint (speed: docs/results.md).
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from masktrack.model.network import MaskTrackNet

# Convolution / batch-norm attribute pairs of torchvision's ResNet stem and blocks.
RESNET_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def prepare_for_inference(model: MaskTrackNet) -> MaskTrackNet:
    """A copy of ``model`` in eval mode with batch norms folded; feed it inputs of any size."""
    prepared = copy.deepcopy(model).eval()
    prepared.inference_only = True
    fold_batch_norms(prepared)
    return prepared


def fold_batch_norms(module: nn.Module) -> None:
    """Fold every batch norm that directly follows a convolution into it, in place (eval only).

    Pairs are consecutive children of ``nn.Sequential`` containers and the ``convN`` /
    ``bnN`` attributes of ResNet stems and blocks; folded batch norms become ``nn.Identity``.
    """
    for parent in module.modules():
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            pairs = list(zip(names, names[1:]))
        else:
            pairs = [pair for pair in RESNET_PAIRS if all(hasattr(parent, name) for name in pair)]
        for conv_name, bn_name in pairs:
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                weight, bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
                )
                conv.weight, conv.bias = weight, bias
                setattr(parent, bn_name, nn.Identity())

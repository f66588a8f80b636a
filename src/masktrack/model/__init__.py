"""MaskTrackNet: network, ImageNet backbones and checkpoints."""

from masktrack.model.checkpoint import load_checkpoint, save_checkpoint
from masktrack.model.network import MaskTrackNet, ModelConfig, build_model

__all__ = ["MaskTrackNet", "ModelConfig", "build_model", "load_checkpoint", "save_checkpoint"]

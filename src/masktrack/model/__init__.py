"""MaskTrackNet: network, ImageNet backbones and checkpoints."""

from masktrack.model.checkpoint import checkpoint_weights, load_checkpoint, save_checkpoint
from masktrack.model.network import MaskTrackNet, ModelConfig, build_model

__all__ = ["MaskTrackNet", "ModelConfig", "build_model", "checkpoint_weights", "load_checkpoint", "save_checkpoint"]

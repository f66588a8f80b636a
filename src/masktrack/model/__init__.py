"""MaskTrackNet: network, ImageNet backbones and checkpoints."""

from masktrack.model.checkpoint import checkpoint_weights, load_checkpoint, save_checkpoint
from masktrack.model.network import MaskTrackNet, ModelConfig, at_output_stride, build_model

__all__ = ["MaskTrackNet", "ModelConfig", "at_output_stride", "build_model", "checkpoint_weights", "load_checkpoint", "save_checkpoint"]

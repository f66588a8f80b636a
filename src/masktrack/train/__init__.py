"""Offline training of MaskTrackNet: config, samples, and the training loop."""

from masktrack.train.config import TrainConfig, save_yaml
from masktrack.train.loop import (
    CONFIG_FILE,
    MODEL_FILE,
    STATE_FILE,
    TrainingDiverged,
    train,
)

__all__ = ["CONFIG_FILE", "MODEL_FILE", "STATE_FILE", "TrainConfig", "TrainingDiverged", "save_yaml", "train"]

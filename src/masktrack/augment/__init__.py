"""Training-sample simulation: previous-frame mask deformations and joint image+mask augmentation."""

from masktrack.augment.deform import DEFORMATIONS, DeformConfig, deform_masks
from masktrack.augment.transforms import AugmentConfig, augment_batch, resize_pair

__all__ = ["DEFORMATIONS", "AugmentConfig", "DeformConfig", "augment_batch", "deform_masks", "resize_pair"]

"""Training-sample simulation: previous-frame mask deformations, joint image+mask augmentation, recomposition."""

from masktrack.augment.deform import DEFORMATIONS, DeformConfig, deform_masks
from masktrack.augment.recompose import RecomposeConfig, inpaint_backgrounds, recompose
from masktrack.augment.transforms import AugmentConfig, augment_batch, resize_pair

__all__ = [
    "DEFORMATIONS",
    "AugmentConfig",
    "DeformConfig",
    "RecomposeConfig",
    "augment_batch",
    "deform_masks",
    "inpaint_backgrounds",
    "recompose",
    "resize_pair",
]

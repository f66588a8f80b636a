"""masktrack: MaskTrack semi-supervised video object segmentation in modern PyTorch."""

__version__ = "0.1.0"

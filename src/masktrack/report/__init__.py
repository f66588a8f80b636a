"""HTML reports of segmentation runs: a page and its images in one folder that loads nothing from elsewhere."""

from masktrack.report.html import write_report

__all__ = ["write_report"]

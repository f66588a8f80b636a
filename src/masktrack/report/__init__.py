"""Self-contained HTML reports of segmentation runs."""

from masktrack.report.html import write_report

__all__ = ["write_report"]

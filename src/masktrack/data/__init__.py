"""Data layer: mask formats, lazy video/frame readers, training datasets, synthetic videos."""

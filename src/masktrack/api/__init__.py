"""The Python API: settings and presets, parent networks, and the Predictor."""

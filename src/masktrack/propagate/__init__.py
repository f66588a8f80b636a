"""Frame-by-frame propagation: previous masks, optical flow, zoomed views, the motion stream, the CRF."""

"""Online fine-tuning: adapt a parent network to one video from its annotated frames."""

"""DAVIS evaluation: J (region IoU) and F (boundary F-measure) per object and overall."""

from masktrack.evaluate.evaluator import (
    EvaluationResult,
    ObjectResult,
    evaluate_dataset,
    evaluate_sequence,
    write_results,
)

__all__ = ["EvaluationResult", "ObjectResult", "evaluate_dataset", "evaluate_sequence", "write_results"]

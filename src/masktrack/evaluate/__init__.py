"""DAVIS evaluation: J (region IoU) and F (boundary F-measure) per object and overall; identity switches."""

from masktrack.evaluate.evaluator import (
    EvaluationResult,
    ObjectResult,
    evaluate_dataset,
    evaluate_sequence,
    write_results,
)
from masktrack.evaluate.switches import (
    dataset_switches,
    identity_switches,
    object_switches,
    sequence_switches,
)

__all__ = [
    "EvaluationResult",
    "ObjectResult",
    "dataset_switches",
    "evaluate_dataset",
    "evaluate_sequence",
    "identity_switches",
    "object_switches",
    "sequence_switches",
    "write_results",
]

"""Fast decoding of 8-bit mask PNGs: moved to ``masktrack.data.png`` (below the evaluator, beside
``read_mask``, which decodes with it); these names stay importable from here until
``evaluate/evaluator.py`` and ``tests/test_evaluate.py`` import them from there.
"""

from masktrack.data.png import GREY, PALETTE, decode_samples

__all__ = ["GREY", "PALETTE", "decode_samples"]

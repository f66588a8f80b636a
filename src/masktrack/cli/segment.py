"""`masktrack segment` (placeholder until its module lands)."""

HELP = "segment (not yet available)"
EXAMPLES = ""


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError("masktrack segment is not yet available")

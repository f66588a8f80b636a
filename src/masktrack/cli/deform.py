"""`masktrack deform` (placeholder until its module lands)."""

HELP = "deform (not yet available)"
EXAMPLES = ""


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError("masktrack deform is not yet available")

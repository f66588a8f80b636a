"""`masktrack train` (placeholder until its module lands)."""

HELP = "train (not yet available)"
EXAMPLES = ""


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError("masktrack train is not yet available")

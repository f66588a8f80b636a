"""`masktrack eval` (placeholder until its module lands)."""

HELP = "eval (not yet available)"
EXAMPLES = ""


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError("masktrack eval is not yet available")

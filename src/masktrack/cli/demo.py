"""`masktrack demo` (placeholder until its module lands)."""

HELP = "demo (not yet available)"
EXAMPLES = ""


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError("masktrack demo is not yet available")

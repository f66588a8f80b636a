"""`masktrack report` (placeholder until its module lands)."""

HELP = "report (not yet available)"
EXAMPLES = ""


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError("masktrack report is not yet available")

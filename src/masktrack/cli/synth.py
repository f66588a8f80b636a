"""`masktrack synth` (placeholder until its module lands)."""

HELP = "synth (not yet available)"
EXAMPLES = ""


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError("masktrack synth is not yet available")

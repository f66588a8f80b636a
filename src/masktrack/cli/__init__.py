"""The `masktrack` command: one subcommand per pipeline stage.

Each subcommand lives in its own module ``masktrack.cli.<name>`` exposing
``HELP`` (one line), ``EXAMPLES`` (epilog text), ``add_arguments(parser)`` and
``run(args) -> int``. Modules import heavy libraries (torch) inside ``run`` so
that ``masktrack --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# OpenMP threads that spin while waiting make PyTorch several times slower on a CPU shared with
# other processes (measured 4-10x on 2 busy cores); passive waiting costs little when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from masktrack import __version__
from masktrack.errors import InputError

SUBCOMMANDS = ("synth", "deform", "train", "mask", "segment", "eval", "report", "demo", "app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="masktrack",
        description="MaskTrack video object segmentation: train, fine-tune, segment, evaluate.",
        epilog="Run `masktrack <command> --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"masktrack {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"masktrack.cli.{name}")
        sub = commands.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            epilog=module.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


class ConsoleWarnings(logging.Handler):
    """The package's warnings, one line each, printed above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = ConsoleWarnings()
    handler.setFormatter(logging.Formatter(f"masktrack {args.command}: warning: %(message)s"))
    package_log = logging.getLogger("masktrack")
    package_log.addHandler(handler)  # Python's last-resort handler then stays silent: one line per warning
    try:
        return run_command(args)
    finally:
        package_log.removeHandler(handler)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: one-line errors, exit 2 for bad input (full tracebacks with ``--debug``)."""
    try:
        return args.run(args)
    except InputError as error:
        if args.debug:
            raise
        print(f"masktrack {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"masktrack {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one line for users; --debug shows the traceback
        if args.debug:
            raise
        print(f"masktrack {args.command}: error: {type(error).__name__}: {one_line(error)} (rerun with --debug for details)",
              file=sys.stderr)
        return 1


def one_line(error: BaseException) -> str:
    """The error's message on one line (a message from a library may span several)."""
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())

"""Command-line interface: thin subcommands that parse arguments and call one library function each.

Every subcommand registers itself through `_add_<name>` and runs through `_run_<name>`, in the
module of its layer (`data`, `training`, `inference`, `analysis`), each listing its own in
`COMMANDS`; heavy libraries (torch, polars) are imported inside the run functions so
`isoformer --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys

from isoformer import __version__
from isoformer.cli import analysis, data, inference, training
from isoformer.errors import IsoformerError

log = logging.getLogger("isoformer")

# Every subcommand, in the order `isoformer --help` lists them.
COMMANDS = {**data.COMMANDS, **training.COMMANDS, **inference.COMMANDS, **analysis.COMMANDS}


# Commands that run Lightning: importing it attaches its own console handler to the "lightning"
# logger, whose records also reach ours on the root, so every Lightning line would print twice.
LIGHTNING_COMMANDS = frozenset({"embed", "train", "demo", "ablate", "attention"})


def _configure_logging(command: str, verbose: bool) -> None:
    """One handler, on the root logger: every line once, in one format."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if command in LIGHTNING_COMMANDS:
        import lightning  # noqa: F401  (attaches the handler removed below)

        for handler in list(logging.getLogger("lightning").handlers):
            logging.getLogger("lightning").removeHandler(handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isoformer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"isoformer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Only these take free-form config overrides; elsewhere they are a usage error.
    if extra and args.command not in ("embed", "train", "baseline", "pretrain", "demo", "ablate"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    _configure_logging(args.command, args.verbose)
    try:
        return COMMANDS[args.command][1](args)
    except IsoformerError as err:
        print(f"isoformer {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unreadable / unwritable files: name the file, no traceback
        print(
            f"isoformer {args.command}: error: {err.filename or ''}: {err.strerror or err}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"isoformer {args.command}: interrupted", file=sys.stderr)
        return 130

"""The `artmem` command line: a dispatch table over library functions, nothing else.

Each capability folder has a `commands.py` with `register(subparsers)` that adds its subcommands
and sets `func` to a function taking the parsed args. Heavy imports happen inside those functions.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from artmem import __version__
from artmem.cliutils import check_device, discard_failed_output, new_output_folder
from artmem.errors import ArtmemError

# Order here is the order of `artmem --help`.
COMMAND_MODULES = [
    "artmem.data.commands",
    "artmem.models.commands",
    "artmem.batch.commands",
    "artmem.memorability.commands",
    "artmem.classify.commands",
    "artmem.retrieval.commands",
    "artmem.analysis.commands",
    "artmem.report.commands",
    "artmem.web.commands",
]

logger = logging.getLogger("artmem")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="artmem",
        description="Image memorability and art classification on your own collections.",
    )
    parser.add_argument("--version", action="version", version=f"artmem {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 user error, 1 unexpected failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if not args.debug:  # object-store clients log each credential and endpoint lookup at INFO
        for name in ("botocore", "aiobotocore", "s3fs", "gcsfs"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from artmem.plotting import use_literal_text

    use_literal_text()  # labels from user data are drawn as text, never as mathtext
    created = new_output_folder(getattr(args, "out", None))
    try:
        if isinstance(getattr(args, "device", None), str):
            check_device(args.device)
        result = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
    except BrokenPipeError:
        return _reader_went_away()
    except ArtmemError as exc:
        _after_failure(created)
        if args.debug:
            raise
        print(f"artmem {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        note = discard_failed_output(created or (Path(out) if out else None), remove=bool(created))
        print(f"artmem: interrupted{f' ({note})' if note else ''}", file=sys.stderr)
        return 130
    except Exception as exc:  # unexpected: one line unless --debug
        _after_failure(created)
        if args.debug:
            raise
        print(
            f"artmem {args.command}: unexpected error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return int(result or 0)


def _after_failure(created) -> str | None:
    """Remove the output folder a failed run made (unless a rerun can resume from it)."""
    note = discard_failed_output(created)
    if note:
        print(f"artmem: {note}", file=sys.stderr)
    return note


def _reader_went_away() -> int:
    """`artmem models | head`: the reader closed the pipe, which is not an error. Point stdout at
    /dev/null so the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

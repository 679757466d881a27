"""Shared argument helpers so every subcommand spells the common options the same way, and the
checks `artmem.cli.main` applies to every command (device names, output folders of failed runs)."""

from __future__ import annotations

import argparse
import logging
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

COLLECTION_HELP = ("images: one or more image files or folders, or a collection file "
                   "(collection.parquet/.csv from `artmem collection import`)")


class _OneOrMany(argparse.Action):
    """Store one value as itself and several as a list, so commands given one collection keep
    seeing a plain path (`open_collection` takes both)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values[0] if len(values) == 1 else list(values))


def add_collection_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("collection", nargs="+", action=_OneOrMany, metavar="COLLECTION", help=COLLECTION_HELP)


def add_out_arg(p: argparse.ArgumentParser, default: str | None = None, *, optional: bool = False,
                help: str | None = None) -> None:
    """-o/--out; required unless it has a default or `optional` (then the command writes nothing
    without it)."""
    p.add_argument(
        "-o", "--out", required=default is None and not optional, default=default,
        help=help or "output folder (created; nothing is written elsewhere)",
    )


def add_csv_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", action="store_true", help="also write CSV copies of the tables")


DEVICE_HELP = "auto (CUDA when present, with mixed precision), cpu, cuda, cuda:N or mps"
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def check_device(device: str) -> None:
    """Raise a one-line ArtmemError for a device name torch does not know (`gpu`) or a device this
    machine does not have; torch is imported only when a GPU is asked for."""
    if not _DEVICE_RE.match(device):
        raise ArtmemError(f"--device {device}: not a device name; use {DEVICE_HELP}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ArtmemError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ArtmemError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ArtmemError("--device mps: Apple MPS is not available on this machine (use --device cpu)")


RATIOS_HELP = "train/val/test fractions, e.g. 70/10/20 or 0.7/0.1/0.2 (normalised to sum to 1)"


def parse_ratios(text: str | Iterable, option: str = "--ratios") -> tuple[float, float, float]:
    """'70/10/20', '0.7,0.1,0.2' or three numbers -> three fractions summing to 1."""
    if isinstance(text, str):
        parts = text.replace(",", "/").split("/")
    else:
        parts = [str(v) for v in text]
        if len(parts) == 1:
            return parse_ratios(parts[0], option)
    try:
        vals = [float(v) for v in parts]
    except ValueError:
        raise ArtmemError(f"{option} {' '.join(parts)}: expected three numbers, e.g. 70/10/20") from None
    if len(vals) != 3:
        raise ArtmemError(f"{option} {'/'.join(parts)}: expected three numbers train/val/test, e.g. 70/10/20")
    if min(vals) < 0 or sum(vals) <= 0:
        raise ArtmemError(f"{option} {'/'.join(parts)}: fractions must be >= 0 and not all 0")
    total = sum(vals)
    return tuple(round(v / total, 10) for v in vals)  # rounded: re-parsing a saved config is stable


class _DeprecatedAlias(argparse.Action):
    """An old option spelling that still works but warns (stores into the new option's dest)."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        logger.warning("%s is deprecated; use %s (same values)", option_string, self.new)
        setattr(namespace, self.dest, values)


def add_ratios_arg(p, default: str | None, deprecated: str | None = None, help: str | None = None) -> None:
    """--ratios TRAIN/VAL/TEST (also three separate numbers); `deprecated` names an old spelling
    kept as an alias that warns. Parse the value with `parse_ratios`."""
    p.add_argument("--ratios", nargs="+", default=default, metavar="TRAIN/VAL/TEST",
                   help=help or RATIOS_HELP)
    if deprecated:
        p.add_argument(deprecated, dest="ratios", action=_DeprecatedAlias, new="--ratios",
                       default=argparse.SUPPRESS, metavar="TRAIN/VAL/TEST",
                       help="deprecated spelling of --ratios")


def add_precision_arg(p: argparse.ArgumentParser, default: str = "fp32") -> None:
    p.add_argument(
        "--precision", choices=("fp32", "int8", "auto"), default=default,
        help="fp32 (default: equals the reference models); int8: ~2-3x faster on CPU (ONNX Runtime, "
        "calibrated once on a sample of your images; check it with `artmem models check-precision`); "
        "auto: int8 on a machine without a GPU when its measured rank fidelity >= 0.99, else fp32",
    )


def print_written(paths: Iterable[str | Path]) -> None:
    """Print each written path on stdout, one per line (the CLI contract)."""
    for path in paths:
        print(path)


# ----------------------------------------------------------------------------- failed runs

# What a rerun resumes from: finished batch-job shards, training checkpoints, finished maps.
RESUMABLE = ("shards/*.parquet", "last.pt", "maps.parquet")


def new_output_folder(out) -> Path | None:
    """The outermost folder of OUT that does not exist yet: what this run creates, so what a
    failed run may remove. None when OUT already exists (a rerun into it or a user's folder)."""
    if not out or not isinstance(out, (str, Path)) or "://" in str(out):  # URLs: nothing created here
        return None
    path = Path(out).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def discard_failed_output(folder: Path | None, remove: bool = True) -> str | None:
    """After a failed or interrupted run: remove the output folder it created (`remove`), unless
    it holds state a rerun resumes from. Returns a message for the user, or None."""
    if folder is None or not folder.is_dir():
        return None
    if any(any(folder.rglob(pattern)) for pattern in RESUMABLE):
        return f"partial results kept in {folder}; rerun the same command to resume"
    if not remove:
        return None
    shutil.rmtree(folder, ignore_errors=True)
    logger.debug("removed %s: the failed run had made nothing a rerun could reuse", folder)
    return None

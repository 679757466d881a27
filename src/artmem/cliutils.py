"""Shared argument helpers so every subcommand spells the common options the same way."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path


def add_collection_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "collection",
        help="collection file (collection.parquet/.csv from `artmem collection import`) "
        "or a folder of images",
    )


def add_out_arg(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument(
        "-o", "--out", required=default is None, default=default,
        help="output folder (created; nothing is written elsewhere)",
    )


def add_csv_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", action="store_true", help="also write CSV copies of the tables")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto",
        help="auto (CUDA when present, with mixed precision), cpu, cuda, cuda:N",
    )


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

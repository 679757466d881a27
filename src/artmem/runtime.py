"""Device selection, mixed precision, seeding and thread counts shared by every model-running command."""

from __future__ import annotations

import contextlib
import logging
import os
import random

import numpy as np

logger = logging.getLogger(__name__)


def resolve_device(device: str = "auto"):
    """Return a torch.device: `auto` picks CUDA when present, else CPU.

    Args:
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
    """
    import torch

    from artmem.errors import ArtmemError

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArtmemError(f"--device {device}: CUDA is not available on this machine")
    return dev


def autocast(device):
    """Mixed precision on GPU (bf16 where supported, else fp16); a no-op context on CPU.

    CPU stays in fp32 so that scores match the reference implementations to 1e-5.
    """
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # torch is a hard dependency, but keep seeding usable without it
        pass


def default_num_workers() -> int:
    """DataLoader worker processes: leave one core for the compute threads."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def set_torch_threads(n: int | None = None) -> int:
    """Use all physical cores for intra-op parallelism unless told otherwise."""
    import torch

    n = n or max(1, os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n

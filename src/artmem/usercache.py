"""artmem's cache folder ($ARTMEM_CACHE, else ~/.cache/artmem): where it is, what it holds and
freeing it (`artmem cache info|clear`).

It holds files artmem can always remake, chiefly the ONNX exports of models for fast CPU runs
(`onnx/<model>-<outputs>-<key>.onnx`, about 0.5 GB for ResMem, and int8 versions beside them as
`...<key>.int8-<calibration>.onnx/.json`). Deleting any of it only costs the time to remake it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

# onnx/<model>-<outputs>-<12 hex key>[.<variant>].onnx|.json (see batch/processors.py onnx_path_for)
_EXPORT = re.compile(
    r"^(?P<model>.+?)-(?P<outputs>[^-.]+)-(?P<key>[0-9a-f]{12})(?:\.(?P<variant>[^.]+))?\.(?:onnx|json)$")


def cache_dir(create: bool = False) -> Path:
    """artmem's cache folder: $ARTMEM_CACHE, else ~/.cache/artmem."""
    path = Path(os.environ.get("ARTMEM_CACHE") or Path.home() / ".cache" / "artmem")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class CacheEntry:
    """Files of the cache that belong together: one model's export of some outputs, or one other
    file or folder."""

    model: str  # the model name, or "-" for anything that is not a model export
    outputs: str  # the exported outputs ("out" = the score, else layer names), or the file name
    kinds: list[str]  # fp32, int8-..., unfinished, ...
    files: list[Path]
    size: int


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """Everything under the cache folder, model exports grouped by (model, outputs)."""
    root = root or cache_dir()
    if not root.is_dir():
        return []
    groups: dict[tuple[str, str], CacheEntry] = {}
    others: list[CacheEntry] = []
    for top in sorted(root.iterdir()):
        if top.name != "onnx" or not top.is_dir():
            others.append(CacheEntry("-", top.name + ("/" if top.is_dir() else ""), ["other"], [top], _size(top)))
            continue
        for f in sorted(top.iterdir()):
            m = _EXPORT.match(f.name)
            if m is None or not f.is_file():
                kind = "unfinished" if f.name.endswith(".tmp") else "other"
                others.append(CacheEntry("-", f"onnx/{f.name}", [kind], [f], _size(f)))
                continue
            outputs = "+".join("score" if o == "out" else o for o in m["outputs"].split("+"))
            entry = groups.setdefault((m["model"], outputs), CacheEntry(m["model"], outputs, [], [], 0))
            kind = "fp32" if m["variant"] is None else m["variant"].split("-")[0]
            if f.suffix == ".onnx" and kind not in entry.kinds:
                entry.kinds.append(kind)
            entry.files.append(f)
            entry.size += f.stat().st_size
    return sorted(groups.values(), key=lambda e: (e.model, e.outputs)) + others


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def format_cache_info(entries: list[CacheEntry], root: Path) -> str:
    """The `artmem cache info` text: one line per model export group and per other item."""
    lines = [f"cache folder: {root} (set ARTMEM_CACHE to use another)"]
    if not entries:
        lines.append("empty")
        return "\n".join(lines)
    rows = [("MODEL", "OUTPUTS", "KINDS", "FILES", "SIZE")]
    rows += [(e.model, e.outputs, ",".join(e.kinds), str(len(e.files)), human_size(e.size)) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    total = sum(e.size for e in entries)
    n_files = sum(len(e.files) for e in entries)
    lines.append(f"total {human_size(total)} in {n_files} item(s); `artmem cache clear` frees it "
                 "(exports are remade, once, by the next run that needs them)")
    return "\n".join(lines)


def clear_cache(model: str | None = None, dry_run: bool = False, root: Path | None = None) -> tuple[list[Path], int]:
    """Delete the cache's contents (only `model`'s exports when given). Returns (removed paths, bytes)."""
    from artmem.errors import ArtmemError

    root = root or cache_dir()
    entries = cache_entries(root)
    if model is not None:
        entries = [e for e in entries if e.model == model]
        if not entries:
            known = sorted({e.model for e in cache_entries(root)} - {"-"})
            raise ArtmemError(f"the cache holds no export of {model!r} (it holds: {', '.join(known) or 'none'})")
    removed, freed = [], 0
    for e in entries:
        for f in e.files:
            if not dry_run:
                if f.is_dir():
                    shutil.rmtree(f)
                else:
                    f.unlink(missing_ok=True)
            removed.append(f)
        freed += e.size
    return removed, freed

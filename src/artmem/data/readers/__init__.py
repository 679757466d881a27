"""Readers for the dataset formats users already have on disk, quirks included.

Every reader returns a `ReadResult`: the `Collection` (only images whose file exists) and an
`errors` table (`path`, `reason`) of rows that referenced a missing or unusable file.
`import_collection(fmt, source, **options)` dispatches on the format name.
"""

from __future__ import annotations

import importlib

from artmem.data.readers.common import ReadResult
from artmem.errors import ArtmemError

# format -> (module, function)
READERS = {
    "folder": ("artmem.data.readers.tabular", "read_folder_tree"),
    "csv": ("artmem.data.readers.tabular", "read_csv_collection"),
    "wikiart": ("artmem.data.readers.wikiart", "read_wikiart"),
    "wga": ("artmem.data.readers.wga", "read_wga"),
    "pandora": ("artmem.data.readers.pandora", "read_pandora"),
    "lamem": ("artmem.data.readers.lamem", "read_lamem"),
    "memcat": ("artmem.data.readers.memcat", "read_memcat"),
}


def import_collection(fmt: str, source, **options) -> ReadResult:
    """Read `source` in format `fmt` (one of READERS); options go to the reader."""
    if fmt not in READERS:
        raise ArtmemError(f"unknown format {fmt!r} (choose from {', '.join(READERS)})")
    module, func = READERS[fmt]
    reader = getattr(importlib.import_module(module), func)
    options = {k: v for k, v in options.items() if v is not None}
    return reader(source, **options)


__all__ = ["READERS", "ReadResult", "import_collection"]

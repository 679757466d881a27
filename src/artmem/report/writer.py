"""Where the report's files go: figures and tables on disk, registered with their HTML section."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd


def slug(x: str) -> str:
    """`x` as a safe file-name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(x)).strip("_") or "x"


def short(text: str, n: int = 24) -> str:
    """`text` cut to `n` characters with an ellipsis."""
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "\u2026"


class ReportWriter:
    """Collects figure and table files and the HTML sections."""

    def __init__(self, out: Path, title: str, formats: tuple[str, ...] = ("png",), dpi: int = 200):
        from artmem.report.html import HtmlReport

        self.out = out
        self.formats = formats if "png" in formats else ("png", *formats)  # the HTML embeds the PNG
        self.dpi = dpi
        # parameters as actually used (e.g. the t-SNE perplexity after lowering), for the provenance
        self.used: dict[str, object] = {}
        self.fig_dir = out / "figures"
        self.tab_dir = out / "tables"
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.tab_dir.mkdir(parents=True, exist_ok=True)
        self.html = HtmlReport(title)
        self.written: list[Path] = []

    def figure(self, sec, fig, name: str, caption: str) -> Path:
        from artmem.report.figures import save_figure

        paths = save_figure(fig, self.fig_dir / f"{name}.png", self.formats, self.dpi)
        self.written.extend(paths)
        path = paths[self.formats.index("png")]
        if sec is not None:
            self.html.figure(sec, path, caption, dpi=self.dpi)
        return path

    def table(self, sec, df: pd.DataFrame, name: str, caption: str | None = None,
              shown: pd.DataFrame | None = None, max_rows: int = 200) -> Path:
        path = self.tab_dir / f"{name}.csv"
        df.to_csv(path, index=False)
        self.written.append(path)
        if sec is not None and caption is not None:
            self.html.table(sec, df if shown is None else shown, caption, f"tables/{path.name}", max_rows)
        return path


class Thumbnails:
    """Thumbnails of collection images, loaded once (None for an unreadable image)."""

    def __init__(self, collection, size: int):
        self.collection = collection
        self.size = size
        self._cache: dict[str, object] = {}

    def __call__(self, rel: str):
        from artmem.data.images import try_load_image

        if rel not in self._cache:
            img, _ = try_load_image(self.collection.abs_path(rel))
            if img is not None:
                img = img.copy()
                img.thumbnail((self.size, self.size))
            self._cache[rel] = img
        return self._cache[rel]


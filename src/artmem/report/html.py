"""Assembling the self-contained HTML report: sections, embedded PNG figures, tables, provenance."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import importlib.metadata
import platform
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

VERSION_PACKAGES = ("artmem", "torch", "torchvision", "resmem", "numpy", "pandas", "scipy",
                    "scikit-learn", "matplotlib", "pillow", "pyarrow")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return "&ndash;"
        a = abs(float(v))
        if a != 0 and (a < 1e-3 or a >= 1e5):
            return f"{float(v):.2e}"
        return f"{float(v):.3f}"
    return esc(v)


def table_html(df: pd.DataFrame, max_rows: int = 200, classes: str = "data") -> str:
    """An HTML table with numbers formatted to 3 decimals (p-values in scientific notation when tiny)."""
    shown = df.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = "".join(
            f'<td class="num">{_fmt(v)}</td>' if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
            else f"<td>{_fmt(v)}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    more = (f'<p class="note">{len(df) - max_rows} more row(s) in the CSV file.</p>'
            if len(df) > max_rows else "")
    return f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{more}'


def png_data_uri(path: str | Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


@dataclass
class Section:
    title: str
    anchor: str
    parts: list[str] = field(default_factory=list)


class HtmlReport:
    """Collects sections of figures (embedded as base64 PNG), tables and text; renders one file."""

    def __init__(self, title: str):
        self.title = title
        self.sections: list[Section] = []

    def section(self, title: str, intro: str | None = None) -> Section:
        anchor = "s" + str(len(self.sections) + 1)
        sec = Section(title, anchor)
        if intro:
            sec.parts.append(f"<p>{intro}</p>")
        self.sections.append(sec)
        return sec

    @staticmethod
    def figure(sec: Section, png: str | Path, caption: str, alt: str | None = None, dpi: int = 96) -> None:
        """Embed `png` at its physical size (pixels * 96 / dpi CSS pixels), whatever its resolution."""
        from PIL import Image

        with Image.open(png) as im:
            width = round(im.width * 96 / dpi)
        sec.parts.append(
            f'<figure><img src="{png_data_uri(png)}" style="width: {width}px" alt="{esc(alt or caption)}">'
            f"<figcaption>{caption} <span class=\"file\">({esc(Path(png).name)})</span></figcaption></figure>"
        )

    @staticmethod
    def table(sec: Section, df: pd.DataFrame, caption: str, csv_name: str | None = None,
              max_rows: int = 200) -> None:
        src = f' <span class="file">({esc(csv_name)})</span>' if csv_name else ""
        sec.parts.append(f'<div class="table"><p class="caption">{caption}{src}</p>{table_html(df, max_rows)}</div>')

    @staticmethod
    def text(sec: Section, text_html: str) -> None:
        sec.parts.append(text_html)

    def render(self, summary_html: str, provenance: dict, model_line: str = "") -> str:
        toc = "".join(f'<li><a href="#{s.anchor}">{esc(s.title)}</a></li>' for s in self.sections)
        body = "".join(
            f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{"".join(s.parts)}</section>' for s in self.sections
        )
        prov_rows = "".join(
            f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>" for k, v in provenance.items()
        )
        tpl = Template(resources.files("artmem.report").joinpath("templates/report.html").read_text("utf-8"))
        return tpl.substitute(
            title=esc(self.title),
            model_line=f"<p>{model_line}</p>" if model_line else "",
            summary=summary_html,
            toc=toc,
            body=body,
            provenance=f'<table class="prov">{prov_rows}</table>',
            generated=esc(_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        )


def command_line(argv: list[str] | None = None) -> str:
    import shlex

    argv = sys.argv if argv is None else argv
    prog = Path(argv[0]).name if argv else "artmem"
    if prog in ("__main__.py", "cli.py") or prog.startswith("python"):
        prog = "artmem"
    return " ".join([prog, *(shlex.quote(a) for a in argv[1:])])

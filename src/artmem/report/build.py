"""`build_report`: the statistics and figures of a memorability study, as PNG, CSV and one HTML file.

Output folder:

    OUT/report.html        self-contained (figures embedded as base64 PNG)
    OUT/figures/*.png      every figure
    OUT/tables/*.csv       every table
    OUT/report.json        inputs, options, versions, the command line, and the written files

The pieces live beside this module: `data` (options, loading, the table of scored images),
`writer` (figure and table files), `sections` (each part of the report) and `html`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from artmem.errors import ArtmemError
from artmem.report.data import ReportData, ReportOptions, assemble_table, default_categories


class Report(list):
    """The written files of a report (report.html first), shown inline by Jupyter.

    A list of paths, so code that iterates over what `build_report` wrote keeps working; in a
    notebook the report itself renders in the output cell (an isolated iframe).
    """

    @property
    def html_path(self) -> Path:
        return Path(self[0])

    @property
    def folder(self) -> Path:
        return self.html_path.parent

    @property
    def figures(self) -> list[Path]:
        return [Path(p) for p in self if Path(p).parent.name == "figures"]

    def _repr_html_(self) -> str:
        import html

        doc = self.html_path.read_text(encoding="utf-8")
        return (f'<iframe srcdoc="{html.escape(doc, quote=True)}" title="{html.escape(str(self.html_path))}" '
                'style="width:100%;height:760px;border:1px solid #ccc"></iframe>')

    def __repr__(self) -> str:
        return f"Report({str(self.html_path)!r}, {len(self)} files)"


def build_report(data: ReportData, out: str | Path, options: ReportOptions | None = None,
                 command: str | None = None) -> Report:
    """Write the report of `data` into `out`; returns the written paths (report.html first) as
    a `Report`, which renders inline in Jupyter."""
    from artmem.report import sections
    from artmem.report.html import command_line, package_versions
    from artmem.report.writer import ReportWriter, Thumbnails

    opt = options or ReportOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coll = data.collection
    df, measure_cols = assemble_table(data)
    title = opt.title or f"Memorability of {coll.name}"
    w = ReportWriter(out, title, tuple(opt.figure_formats), opt.dpi)
    thumbs = Thumbnails(coll, 256)
    n_total = len(coll)
    categories = opt.categories if opt.categories is not None else default_categories(coll.table)
    for c in categories:
        if c not in df.columns:
            raise ArtmemError(f"--categories: the collection has no column {c!r} (columns: {list(coll.table.columns)})")
    w.table(None, df, "images")

    # sections in report order; each writes its figures and tables through `w`
    sections.distribution_section(w, df, data, n_total, opt)
    sections.category_sections(w, df, categories, opt)
    sections.top_bottom_section(w, df, data, categories, opt, thumbs)
    if data.features is not None:
        sections.tsne_section(w, data, df, opt, thumbs)
    groups = data.measure_groups or {}
    spearman = sections.correlation_section(w, df, measure_cols, groups, opt,
                                            str((data.inputs or {}).get("hue_mode", "unrecorded")))
    sections.quartile_section(w, df, measure_cols, groups, opt)
    sections.left_out_section(w, coll, df, data)

    # provenance
    versions = package_versions()
    provenance = {"command": command or command_line(), "collection": f"{coll.name} ({coll.root})"}
    provenance.update({k: str(v) for k, v in (data.inputs or {}).items()})
    provenance["options"] = json.dumps({k: v for k, v in asdict(opt).items() if v is not None}, default=str)
    provenance.update({f"used: {k}": str(v) for k, v in w.used.items()})
    provenance["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    summary = sections.summary_html(df, n_total, categories, measure_cols, spearman, data)
    html_path = out / "report.html"
    model_line = model_licence_line(data.inputs.get("model"), data.score_column)
    html_path.write_text(w.html.render(summary, provenance, model_line), encoding="utf-8")
    info = {
        "title": title, "n_images": len(df), "n_collection": n_total, "categories": categories,
        "measures": measure_cols, "inputs": {k: str(v) for k, v in (data.inputs or {}).items()},
        "options": asdict(opt), "used": {k: str(v) for k, v in w.used.items()}, "versions": versions, "command": provenance["command"],
        "files": [str(p.relative_to(out)) for p in w.written],
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return Report([html_path, json_path, *w.written])


def model_licence_line(model: str | None, score_column: str | None = None) -> str:
    """The report header's line on where the scores come from: the model and, when its weights
    may not be used commercially, its licence (from the model registry)."""
    from artmem.report.html import esc

    if score_column:
        return f"Memorability: the collection's column <code>{esc(score_column)}</code>."
    if not model:
        return "Memorability: a scores table (model not recorded)."
    from artmem.models.registry import get_pretrained_cfg

    try:
        licence = get_pretrained_cfg(str(model)).licence
    except Exception:  # a checkpoint or an unregistered name: no licence on record
        return f"Memorability model: <b>{esc(model)}</b>."
    line = f"Memorability model: <b>{esc(model)}</b>"
    if is_non_commercial(licence):
        name = licence.split(":")[0]  # the licence's name; the full text is in the title
        line += f' &middot; <span class="licence" title="{esc(licence)}">{esc(name)}: non-commercial use only</span>'
    return line + "."


def is_non_commercial(licence: str) -> bool:
    text = licence.lower().replace("-", "").replace(" ", "")
    return "noncommercial" in text

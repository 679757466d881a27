"""`build_report`: the statistics and figures of a memorability study, as PNG, CSV and one HTML file.

Output folder:

    OUT/report.html        self-contained (figures embedded as base64 PNG)
    OUT/figures/*.png      every figure
    OUT/tables/*.csv       every table
    OUT/report.json        inputs, options, versions, the command line, and the written files

The pieces live beside this module: `data` (options, loading, the table of scored images),
`writer` (figure and table files), `sections` (each part of the report) and `html`; their public
names are re-exported here.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from artmem.errors import ArtmemError
from artmem.report.data import (
    FIG5_DEFAULT,
    QUARTILE_FALLBACK,
    VALUE,
    ReportData,
    ReportOptions,
    assemble_table,
    default_categories,
    load_report_data,
)

__all__ = [
    "FIG5_DEFAULT", "QUARTILE_FALLBACK", "VALUE", "ReportData", "ReportOptions", "assemble_table",
    "build_report", "default_categories", "load_report_data",
]


def build_report(data: ReportData, out: str | Path, options: ReportOptions | None = None,
                 command: str | None = None) -> list[Path]:
    """Write the report of `data` into `out`; returns the written paths (report.html first)."""
    from artmem.report import sections
    from artmem.report.html import command_line, package_versions
    from artmem.report.writer import ReportWriter, Thumbnails

    opt = options or ReportOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coll = data.collection
    df, measure_cols = assemble_table(data)
    title = opt.title or f"Memorability of {coll.name}"
    w = ReportWriter(out, title)
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
    provenance["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    summary = sections.summary_html(df, n_total, categories, measure_cols, spearman, data)
    html_path = out / "report.html"
    html_path.write_text(w.html.render(summary, provenance), encoding="utf-8")
    info = {
        "title": title, "n_images": len(df), "n_collection": n_total, "categories": categories,
        "measures": measure_cols, "inputs": {k: str(v) for k, v in (data.inputs or {}).items()},
        "options": asdict(opt), "versions": versions, "command": provenance["command"],
        "files": [str(p.relative_to(out)) for p in w.written],
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return [html_path, json_path, *w.written]

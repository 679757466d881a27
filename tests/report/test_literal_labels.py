"""Category values are text: `$\\frac{a$` (unbalanced mathtext) is drawn literally, not parsed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MATH = r"$\frac{a$"
SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_report_with_mathtext_label(tmp_path):
    """In a fresh process (matplotlib's defaults, as a user's `artmem report` run gets them)."""
    script = f"""
import sys
import numpy as np
from artmem.data.synthetic import make_synthetic_collection
from artmem.report.build import build_report
from artmem.report.data import ReportOptions, load_report_data
coll = make_synthetic_collection({str(tmp_path / 'c')!r}, n_styles=2, n_genres=1, per_class=4, size=32, seed=0)
coll.table["style"] = np.where(coll.table["style"] == "style_0", {MATH!r}, "plain")
data = load_report_data(coll, score_column="true_memorability")
paths = build_report(data, {str(tmp_path / 'r')!r}, ReportOptions(categories=["style"]))
print(paths[0])
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "r" / "figures" / "box_style.png").exists()

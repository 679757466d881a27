"""`artmem.plots`: the report's figures for notebooks, and the report object's inline HTML."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

import artmem.plots as ap
from artmem.errors import ArtmemError


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(3)
    style = np.repeat(["a", "b", "c"], 10)
    score = np.concatenate([rng.normal(m, 0.02, 10) for m in (0.6, 0.8, 0.7)])
    df = pd.DataFrame({"path": [f"{i}.jpg" for i in range(30)], "style": style, "score": score,
                       "edges": score * 2 + rng.normal(0, 0.05, 30)})
    for i, c in enumerate(__import__("artmem.analysis.color", fromlist=["x"]).HUE_COLUMNS):
        df[c] = rng.random(30) + (score if i == 0 else 0)
    return df


def test_box_orders_categories_by_mean_and_scatter_reports_spearman(table):
    fig = ap.box(table, "style")
    assert isinstance(fig, Figure)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    by_mean = table.groupby("style")["score"].mean().sort_values().index.tolist()  # bottom to top
    assert [lab.split(" ")[0] for lab in labels] == by_mean
    assert "median" in ap.BOX_CAPTION and "mean" in ap.BOX_CAPTION
    fig = ap.scatter(table, "edges")
    rho = stats.spearmanr(table["edges"], table["score"]).statistic
    assert f"rho = {rho:+.2f}" in fig.axes[0].get_title()
    assert isinstance(ap.hue_wheel(table), Figure)
    assert isinstance(ap.significance(table, "style"), Figure)
    assert isinstance(ap.histogram(table), Figure)
    with pytest.raises(ArtmemError, match="no column"):
        ap.box(table, "genre")


def test_tsne_titles_the_perplexity_it_used(table):
    vecs = np.random.default_rng(0).normal(size=(10, 8))
    fig = ap.tsne(vecs, scores=table["score"].to_numpy()[:10], perplexity=30)
    assert "perplexity 3" in fig.axes[0].get_title()  # (10 - 1) / 3
    assert any(getattr(ax, "_colorbar", None) is not None for ax in fig.axes)  # colour = memorability


def test_report_object_renders_inline(tmp_path):
    from artmem.report.build import Report

    (tmp_path / "report.html").write_text('<html><body><h1>T "q"</h1></body></html>')
    rep = Report([tmp_path / "report.html"])
    html = rep._repr_html_()
    assert html.startswith("<iframe srcdoc=") and "&lt;h1&gt;T &quot;q&quot;" in html
    assert rep.folder == tmp_path and rep[0].name == "report.html"

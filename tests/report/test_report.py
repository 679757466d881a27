"""The HTML report, its figures and tables, `artmem report` and `artmem analyze` (tiny model)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from artmem.analysis.color import HUE_COLUMNS
from artmem.batch.results import write_features, write_scores
from artmem.cli import main


@pytest.fixture(scope="module")
def artefacts(synthetic_collection, tmp_path_factory):
    """Scores, features and measures for the synthetic collection, written as the jobs write them."""
    root = tmp_path_factory.mktemp("artefacts")
    coll = synthetic_collection
    rng = np.random.default_rng(0)
    t = coll.table
    score = t["true_memorability"].to_numpy() * 0.5 + 0.4 + rng.normal(0, 0.01, len(t))
    write_scores(root / "scores", pd.DataFrame({"path": t["path"], "score": score}))
    styles = t["style"].astype("category").cat.codes.to_numpy()
    vec = rng.normal(0, 0.2, (len(t), 32)) + np.eye(32)[styles] * 3
    write_features(root / "features", t["path"].tolist(), vec, {"model": "tiny_test", "layer": "fc"})
    m = pd.DataFrame({"path": t["path"]})
    m["vertical_edge_ratio"] = score * 0.1 + rng.normal(0, 0.002, len(t))  # correlated
    m["horizontal_edge_ratio"] = rng.random(len(t))
    m["symmetry_conv5"] = rng.random(len(t))
    hue = rng.dirichlet(np.ones(12), len(t))
    hue[:, 1] = score  # orange goes with memorability (not normalised; fine for a test)
    for i, c in enumerate(HUE_COLUMNS):
        m[c] = hue[:, i]
    m["p_positive"] = score + rng.normal(0, 0.05, len(t))
    m.to_parquet(root / "measures.parquet")
    (root / "measures.json").write_text(json.dumps({"config": {"hue_mode": "paper"}}))
    return root, m, score


def test_report_cli_writes_a_self_contained_report(synthetic_collection, artefacts, tmp_path, capsys):
    root, m, score = artefacts
    coll_file = f"{synthetic_collection.root}/collection.parquet"
    out = tmp_path / "rep"
    rc = main(["report", coll_file, "--scores", str(root / "scores"), "--features", str(root / "features"),
               "--measures", str(root / "measures.parquet"), "--categories", "style,genre",
               "--tsne-subset", "genre=portrait|landscape", "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == str(out / "report.html")
    html = (out / "report.html").read_text()
    # self-contained: every image is embedded, nothing is loaded from elsewhere
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html
    assert "artmem report" in html and "numpy" in html and "scipy" in html  # command + versions
    figs = {p.name for p in (out / "figures").glob("*.png")}
    for name in ("score_histogram", "box_style", "box_genre", "ttest_matrix_style", "top_bottom", "tsne",
                 "scatter_panel", "hue_wheel", "quartiles_p_positive", "scatter_vertical_edge_ratio"):
        assert f"{name}.png" in figs, name
        with Image.open(out / "figures" / f"{name}.png") as im:
            assert im.width > 300 and im.height > 200
    assert len(srcs) == len(figs) - sum(1 for f in figs if f.startswith("scatter_") and f != "scatter_panel.png")

    # tables: the numbers are the statistics
    cs = pd.read_csv(out / "tables" / "category_stats_style.csv")
    ref = pd.DataFrame({"style": synthetic_collection.table["style"], "score": score}).groupby("style")["score"]
    for r in cs.itertuples():
        assert r.mean == pytest.approx(ref.mean()[r.category]) and r.n == ref.size()[r.category]
    sp = pd.read_csv(out / "tables" / "spearman.csv").set_index("measure")
    rr = stats.spearmanr(m["vertical_edge_ratio"], score)
    assert sp.loc["vertical_edge_ratio", "rho"] == pytest.approx(rr.statistic)
    assert sp.loc["vertical_edge_ratio", "p"] == pytest.approx(rr.pvalue)
    assert sp.loc["vertical_edge_ratio", "group"] == "composition"
    assert sp.loc["p_positive", "group"] == "attributes"
    assert sp.loc["year", "group"] == "metadata"  # numeric metadata column of the collection
    tt = pd.read_csv(out / "tables" / "ttests_style.csv")
    k = synthetic_collection.table["style"].nunique()
    assert len(tt) == k * (k - 1)
    ts = pd.read_csv(out / "tables" / "tsne.csv")
    assert set(synthetic_collection.table.set_index("path").loc[ts["path"], "genre"]) <= {"portrait", "landscape"}
    info = json.loads((out / "report.json").read_text())
    assert info["n_images"] == len(synthetic_collection.table) and info["categories"] == ["style", "genre"]
    assert info["inputs"]["hue_mode"] == "paper" and "Hue histogram: paper mode" in html


def test_report_from_a_collection_column_and_tiny_sets(synthetic_collection, tmp_path):
    from artmem.report.build import build_report
    from artmem.report.data import ReportOptions, load_report_data

    coll = synthetic_collection.subset(synthetic_collection.table.index[:3])
    data = load_report_data(coll, score_column="true_memorability")
    paths = build_report(data, tmp_path / "r", ReportOptions(categories=["style"]))
    assert paths[0].name == "report.html"
    assert (tmp_path / "r" / "figures" / "box_style.png").exists()
    with pytest.raises(Exception, match="--categories"):
        build_report(data, tmp_path / "r2", ReportOptions(categories=["nope"]))


def test_report_user_errors(synthetic_collection, tmp_path, capsys):
    coll_file = f"{synthetic_collection.root}/collection.parquet"
    assert main(["report", coll_file, "-o", str(tmp_path / "x")]) == 2
    assert "--scores" in capsys.readouterr().err
    assert main(["report", coll_file, "--scores", str(tmp_path / "missing"), "-o", str(tmp_path / "x")]) == 2
    assert main(["report", coll_file, "--scores", str(tmp_path / "missing"), "--figure-format", "png,tiff",
                 "-o", str(tmp_path / "y")]) == 2
    assert "--figure-format" in capsys.readouterr().err and not (tmp_path / "y").exists()  # before any work


@pytest.mark.slow
def test_analyze_end_to_end_with_tiny_model_and_resume(synthetic_collection, tmp_path, capsys):
    coll_file = f"{synthetic_collection.root}/collection.parquet"
    out = tmp_path / "a"
    args = ["analyze", coll_file, "-o", str(out), "--model", "tiny_test", "--no-maps",
            "--categories", "style", "--device", "cpu"]
    assert main(args) == 0
    for f in ("scores/scores.parquet", "features/features.parquet", "measures/measures.parquet",
              "report/report.html", "report/figures/tsne.png", "report/figures/hue_wheel.png"):
        assert (out / f).exists(), f
    assert json.loads((out / "features" / "features.json").read_text())["model"] == "tiny_test"
    before = (out / "measures" / "measures.parquet").stat().st_mtime
    assert main(args) == 0  # everything reused
    assert (out / "measures" / "measures.parquet").stat().st_mtime == before
    assert "reusing" in capsys.readouterr().err


def test_report_vector_figures_map_colour_bar_licence_and_used_perplexity(
        synthetic_collection, artefacts, tmp_path, monkeypatch):
    from artmem.memorability.maps import MapConfig, map_images
    from artmem.report.writer import ReportWriter

    root, _, score = artefacts
    coll = synthetic_collection
    # a maps folder holding the map of one image only: the grid's other maps must be computed
    best = coll.table["path"].iloc[int(np.argmax(score))]
    map_images([(best, coll.abs_path(best))], tmp_path / "maps", model="tiny_test", device="cpu",
               config=MapConfig(grids=(1, 2), map_size=32), renderings=False)
    axes_of = {}
    real_figure = ReportWriter.figure

    def spy(self, sec, fig, name, caption):  # the figure's axes, looked at before it is saved
        axes_of[name] = list(fig.axes)
        return real_figure(self, sec, fig, name, caption)

    monkeypatch.setattr(ReportWriter, "figure", spy)
    out = tmp_path / "rep"
    rc = main(["report", f"{coll.root}/collection.parquet", "--scores", str(root / "scores"),
               "--features", str(root / "features"), "--maps", str(tmp_path / "maps"), "--top", "2",
               "--categories", "style", "--tsne-subset", "genre=portrait", "--perplexity", "30",
               "--figure-format", "svg,pdf", "--dpi", "60", "--device", "cpu", "-o", str(out)])
    assert rc == 0
    for name in ("score_histogram", "box_style", "top_bottom", "tsne"):
        assert (out / "figures" / f"{name}.png").exists()
        assert (out / "figures" / f"{name}.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    with Image.open(out / "figures" / "box_style.png") as im:
        assert im.info["dpi"][0] == pytest.approx(60, abs=1)

    # the top/bottom grid: 2 image rows + 2 map rows under every image, and one inferno colour bar
    grid_axes = axes_of["top_bottom"]
    bars = [ax for ax in grid_axes if getattr(ax, "_colorbar", None) is not None]
    assert len(bars) == 1 and bars[0]._colorbar.cmap.name == "inferno"
    image_axes = [ax for ax in grid_axes if ax.images and ax not in bars]
    assert len(image_axes) == 8  # 4 images + 4 maps
    # the histogram counts images: integer ticks only
    hist = axes_of["score_histogram"][0]
    assert all(float(t).is_integer() for t in hist.get_yticks())

    # provenance: the perplexity used (lowered to (n - 1) / 3 for the n portraits), the computed maps
    n = int((coll.table["genre"] == "portrait").sum())
    info = json.loads((out / "report.json").read_text())
    assert info["used"]["t-SNE"].startswith(f"perplexity {(n - 1) / 3:g} (asked 30")
    assert "3 missing map(s) computed" in info["used"]["memorability maps"]
    html = (out / "report.html").read_text()
    assert f"perplexity {(n - 1) / 3:g}" in html
    assert "Box: middle 50 %" in html  # the box-plot caption says what the line and the dot are


def test_report_header_names_the_model_and_a_non_commercial_licence():
    from artmem.models.registry import get_pretrained_cfg
    from artmem.report.build import model_licence_line

    line = model_licence_line("resmem")
    assert "resmem" in line and "non-commercial use only" in line
    assert "Non-commercial" in get_pretrained_cfg("resmem").licence  # what the line was made from
    assert "non-commercial" not in model_licence_line("tiny_test")  # MIT
    assert "column" in model_licence_line(None, score_column="true_memorability")

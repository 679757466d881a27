"""`--filter` parsing: the documented grammar gives the same rows as pandas boolean indexing, and
anything else is a one-line error, never evaluated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from artmem.errors import ArtmemError
from artmem.retrieval.filters import filter_mask, to_sql_where


@pytest.fixture
def df():
    rng = np.random.default_rng(0)
    n = 200
    year = rng.integers(1300, 1800, n).astype(float)
    year[rng.random(n) < 0.1] = np.nan
    genre = rng.choice(["portrait", "landscape", "still life"], n).astype(object)
    genre[rng.random(n) < 0.1] = None
    style = rng.choice(["Baroque", "Rococo", "Gothic"], n).astype(object)
    style[rng.random(n) < 0.1] = None
    title = rng.choice(["O'Keeffe's", "Untitled", "Self-portrait"], n)
    return pd.DataFrame({"genre": genre, "year": year, "style": style, "title": title,
                         "date added": rng.integers(0, 10, n), "framed": rng.random(n) < 0.5})


def cases(d):
    """filter text -> the same condition in pandas (a missing value matches no comparison, as in SQL)."""
    return {
        "genre == 'portrait'": d["genre"] == "portrait",
        "genre = 'landscape' AND year < 1500": (d["genre"] == "landscape") & (d["year"] < 1500),
        "year >= 1500 AND style IN ('Baroque', 'Rococo')": (d["year"] >= 1500) & d["style"].isin(["Baroque", "Rococo"]),
        "style in ['Gothic']": d["style"] == "Gothic",
        "style NOT IN ('Baroque', 'Gothic')": d["style"].notna() & ~d["style"].isin(["Baroque", "Gothic"]),
        "style IS NOT NULL": d["style"].notna(),
        "genre is null or year > 1700": d["genre"].isna() | (d["year"] > 1700),
        "NOT genre = 'portrait'": d["genre"].notna() & (d["genre"] != "portrait"),
        "genre <> 'portrait'": d["genre"].notna() & (d["genre"] != "portrait"),
        "genre != 'portrait' OR genre IS NULL": (d["genre"] != "portrait") | d["genre"].isna(),
        "(genre = 'portrait' OR genre = 'still life') AND NOT (year > 1600)":
            ((d["genre"] == "portrait") | (d["genre"] == "still life")) & (d["year"] <= 1600),
        "NOT (style = 'Baroque' AND year < 1500)":
            (d["style"].notna() & (d["style"] != "Baroque")) | (d["year"] >= 1500),
        "title = 'O''Keeffe''s'": d["title"] == "O'Keeffe's",
        'title = "Untitled"': d["title"] == "Untitled",
        "`date added` > 3 and `date added` <= 7": (d["date added"] > 3) & (d["date added"] <= 7),
        "year = 1.5e3 OR year < -1": d["year"] == 1500,
        "framed = TRUE AND genre = 'portrait'": d["framed"] & (d["genre"] == "portrait"),
        "genre > 'm'": d["genre"].notna() & (d["genre"].fillna("") > "m"),
    }


def test_filters_select_what_pandas_boolean_indexing_selects(df):
    for expr, expected in cases(df).items():
        pd.testing.assert_frame_equal(df[filter_mask(df, expr)], df[expected.fillna(False).astype(bool)],
                                      obj=expr)
    assert filter_mask(df, "").all() and filter_mask(df, None).all()


@pytest.mark.parametrize("expr, reason", [
    ("__import__('os').system('touch MARKER')", "unexpected '.'"),
    ("@pd.io.common.os.system('touch MARKER')", "unexpected '@'"),
    ("genre.__class__.__mro__", "unexpected '.'"),
    ("genre.str.len() > 3", "unexpected '.'"),
    ("nosuchcolumn == 1", "no column 'nosuchcolumn'"),
    ("year == 'x'", "holds numbers"),
    ("genre == 1500", "holds text"),
    ("genre == ", "found the end"),
    ("(genre == 'a'", "expected ')'"),
    ("genre = 'a' genre = 'b'", "unexpected 'genre'"),
    ("genre IN 'a'", "'(' after IN"),
    ("genre IS 'a'", "expected NULL"),
    ("lambda: 1", "unexpected ':'"),
])
def test_anything_else_is_a_one_line_error(df, expr, reason, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArtmemError, match="bad filter") as err:
        filter_mask(df, expr)
    assert reason in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "MARKER").exists()


def test_sql_for_lancedb_quotes_names_and_text():
    assert to_sql_where("genre = 'a=b' AND year <> 3") == "(`genre` = 'a=b') AND (`year` <> 3)"
    assert to_sql_where("genre == 'x' and style in ['a', 'b']") == \
        "(`genre` = 'x') AND (`style` IN ('a', 'b'))"
    assert to_sql_where("not `date added` is null or title = 'O''K'") == \
        "(NOT (`date added` IS NULL)) OR (`title` = 'O''K')"
    with pytest.raises(ArtmemError, match="no column 'x'"):
        to_sql_where("x = 1", ["genre", "year"])

"""Synthetic generator: deterministic by seed, documented columns, and learnable styles/genres."""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import cross_val_score

from artmem.data.synthetic import make_synthetic_collection


def test_columns_and_layout(synthetic_collection):
    t = synthetic_collection.table
    assert list(t.columns) == ["path", "style", "genre", "artist", "year", "true_memorability"]
    assert t.groupby(["style", "genre"]).size().eq(8).all()
    assert t["true_memorability"].between(0, 1).all() and t["true_memorability"].std() > 0.01
    img = Image.open(synthetic_collection.abs_path(t["path"][0]))
    assert img.size == (64, 64) and img.mode == "RGB"


def test_deterministic_by_seed(tmp_path):
    a = make_synthetic_collection(tmp_path / "a", n_styles=2, n_genres=2, per_class=2, size=32, seed=5)
    b = make_synthetic_collection(tmp_path / "b", n_styles=2, n_genres=2, per_class=2, size=32, seed=5)
    make_synthetic_collection(tmp_path / "c", n_styles=2, n_genres=2, per_class=2, size=32, seed=6)
    assert a.table.equals(b.table)
    for p in a.paths:
        assert (tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes()
    assert any((tmp_path / "a" / p).read_bytes() != (tmp_path / "c" / p).read_bytes() for p in a.paths)


def test_styles_and_genres_are_learnable(tmp_path):
    coll = make_synthetic_collection(tmp_path, n_styles=6, n_genres=4, per_class=6, size=48, seed=0)
    x = np.stack([np.asarray(Image.open(p).resize((8, 8))).ravel() / 255.0 for p in coll.abs_paths()])
    for label, n_classes in (("style", 6), ("genre", 4)):
        y = coll.table[label].to_numpy()
        acc = cross_val_score(RidgeClassifier(alpha=1.0), x, y, cv=3).mean()
        assert acc > 2.5 / n_classes, (label, acc)  # far above chance with a linear model on 8x8 pixels

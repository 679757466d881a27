"""Helpers shared by the classification tests (a uniquely named module: several test folders
have a conftest.py, so `from conftest import ...` picks whichever was imported first)."""

from __future__ import annotations


def tiny_config(**kw):
    """Fast settings for tiny_test on 32 px crops of a 36 px cache."""
    from artmem.classify.config import resolve_config

    base = dict(model="tiny_test", label="style", optimizer="adam", lr=0.01, weight_decay=0.0,
                schedule="constant", epochs=3, batch_size=16, cache_size=36, device="cpu", num_workers=0)
    base.update(kw)
    return resolve_config(overrides=base)

"""Real features on real images: the Raphael copies find each other among unrelated photos."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from artmem.data.collection import Collection
from artmem.data.samples import raphael_paintings, skimage_photos, sklearn_photos
from artmem.models.registry import list_models
from artmem.retrieval.index import build_index
from artmem.retrieval.query import search
from artmem.retrieval.store import load_store

MODEL = next((m for m in ("efficientnet_lite0", "resmem") if m in list_models()), None)


@pytest.fixture(scope="module")
def mixed_collection(tmp_path_factory):
    paintings = raphael_paintings()
    photos = list({**skimage_photos(), **sklearn_photos()})[:9]
    if len(paintings) < 5 or len(photos) < 5:
        pytest.skip("bundled Raphael paintings / sample photos are not installed")
    root = tmp_path_factory.mktemp("mixed")
    rows = []
    for kind, files in (("painting", paintings), ("photo", photos)):
        for f in files:
            rel = f"{kind}/{f.name}"
            (root / kind).mkdir(exist_ok=True)
            shutil.copyfile(f, root / rel)
            rows.append({"path": rel, "kind": kind, "subject": "madonna" if kind == "painting" else f.stem})
    return Collection(pd.DataFrame(rows), str(root), "mixed")


@pytest.mark.skipif(MODEL is None, reason="neither efficientnet_lite0 nor resmem is registered yet")
def test_raphael_copies_are_each_others_nearest_neighbours(mixed_collection, tmp_path):
    from artmem.batch.api import extract

    layer = "pool" if MODEL == "efficientnet_lite0" else "fc7"
    extract(mixed_collection, MODEL, layer, out=tmp_path / "feat", device="cpu", backend="torch",
            progress=False)
    index = build_index(load_store(tmp_path / "feat", mixed_collection), tmp_path / "idx")
    paintings = mixed_collection.table.query("kind == 'painting'")["path"].tolist()
    k = 5
    shares = {}
    for p in paintings:
        res = search(index, p, k=k)
        assert p not in res["path"].tolist()
        shares[p] = (res["kind"] == "painting").mean()
    # every painting: most of its 5 nearest neighbours are other Raphael copies; overall nearly all
    assert min(shares.values()) >= 0.6, shares
    assert sum(shares.values()) / len(shares) >= 0.9, shares

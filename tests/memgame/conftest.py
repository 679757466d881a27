"""Memory-game fixtures: tiny image collections (with and without rendering conditions) and
small studies designed over them."""

from __future__ import annotations

import pandas as pd
import pytest
from memgame_helpers import write_images


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """40 tiny images in a folder (a collection `open_collection` reads as is)."""
    root = tmp_path_factory.mktemp("mg_images")
    write_images(root, [f"img_{i:03d}.png" for i in range(40)])
    return root


@pytest.fixture(scope="session")
def rendering_collection(tmp_path_factory):
    """30 images x 3 renderings (`name.high.png` ...), as `artmem memorability map` names them,
    with a `rendering` column."""
    from artmem.data.collection import Collection

    root = tmp_path_factory.mktemp("mg_renderings")
    rows = []
    for i in range(30):
        for r in ("high", "medium", "low"):
            rows.append({"path": f"art_{i:02d}.{r}.png", "rendering": r})
    write_images(root, [r["path"] for r in rows], seed=1)
    coll = Collection(pd.DataFrame(rows), root, "renderings")
    coll.save(root)
    return root / "collection.parquet"

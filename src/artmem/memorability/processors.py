"""Batch-job processor of memorability training: a network being trained (in memory), over images.

`ScorerOutputs` runs a `MemorabilityScorer` (or its frozen prototype) on every image of a job:
its `features` (the head's input, for the frozen-feature methods) or its score (the test images
of a fine-tuned fold). It goes through `artmem.batch.api.run_job`, so unreadable images land in
the job's errors table whatever the number of decoding workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from artmem.batch.processors import BaseProcessor
from artmem.errors import ArtmemError


class ScorerOutputs(BaseProcessor):
    """`scorer.features(x)` (kind "features") or `scorer(x)` (kind "scores") per image.

    Args:
        scorer: the in-memory network (stays in this process: the local engine only).
        kind: "features" or "scores".
        identity: what the outputs are of (model, layer, model2, layer2, ...): recorded in
            job.json and features.json, so a features folder is never reused for another network.
    """

    def __init__(self, scorer, kind: str, identity: dict):
        from artmem.models.preprocess import preprocess_for

        if kind not in ("features", "scores"):
            raise ValueError(f"kind must be 'features' or 'scores', not {kind!r}")
        self.scorer = scorer
        self.kind = kind
        self.identity = dict(identity)
        self.preprocess = preprocess_for(scorer)
        self.device = None

    def __getstate__(self):  # DataLoader workers only decode; the network stays in this process
        state = self.__dict__.copy()
        state["scorer"] = None
        return state

    def setup(self, device: str = "cpu") -> None:
        from artmem.runtime import resolve_device

        if self.scorer is None:
            raise ArtmemError("memorability training jobs run in the training process (engine local)")
        self.device = resolve_device(device)
        self.scorer.eval().to(self.device)

    def load(self, abs_path: str):
        return self.preprocess.load(abs_path)

    def process(self, batch) -> pd.DataFrame:
        import torch

        from artmem.runtime import autocast

        if self.device is None:
            self.setup("cpu")
        fn = self.scorer.features if self.kind == "features" else self.scorer
        with torch.inference_mode(), autocast(self.device):
            y = fn(batch.to(self.device)).float().cpu().numpy()
        if self.kind == "scores":
            return pd.DataFrame({"score": y.reshape(len(y), -1)[:, 0].astype("float64")})
        return pd.DataFrame({"embedding": list(y.reshape(len(y), -1).astype(np.float32))})

    def spec(self) -> dict:
        return {"processor": "memorability_scorer", "kind": self.kind, **self.identity}

    def write_final(self, out: Path, table: pd.DataFrame, csv: bool = False) -> list[Path]:
        from artmem.batch.results import stack_vectors, write_features, write_scores

        if self.kind == "scores":
            return write_scores(out, table[["path", "score"]], csv=csv)
        vectors = stack_vectors(table["embedding"]) if len(table) else np.zeros((0, 0), np.float32)
        return write_features(out, table["path"].tolist(), vectors, self.identity, csv=csv)


def items_collection(items: list[tuple[str, str]], name: str = "images"):
    """A job collection of (name, source) pairs: the names are the job's paths (the rows of its
    tables), the sources are read wherever they are (files in several folders, URLs)."""
    from artmem.data.collection import Collection

    sources = dict(items)

    class _Items(Collection):
        def abs_path(self, rel: str) -> str:
            return sources[rel]

    return _Items(pd.DataFrame({"path": [n for n, _ in items]}), "", name)


class MemorabilityMaps(BaseProcessor):
    """Khosla's multi-scale memorability map of each image (`artmem.memorability.maps`).

    Per image it writes `<name>.map.npy`, `<name>.overlay.png` and, with `renderings`, the three
    emphasis renderings under `out`, and returns their file names and the scores as the row.
    `write_final` writes OUT/maps.parquet and OUT/maps.json.
    """

    kind = "maps"

    def __init__(self, model, out: Path, config, renderings: bool, seed: int, order: dict[str, int],
                 settings: dict):
        self.model = model
        self.out = Path(out)
        self.config = config
        self.renderings = renderings
        self.seed = seed
        self.order = order  # name -> index among the inputs (the seed of its renderings)
        self.settings = dict(settings)
        self.mm = None
        self.names: dict[str, str] = {}

    def __getstate__(self):  # decoding workers need no network
        state = self.__dict__.copy()
        state["mm"] = None
        return state

    def setup(self, device: str = "cpu") -> None:
        from artmem.memorability.maps import MapModel
        from artmem.models.factory import create_model
        from artmem.runtime import resolve_device

        if self.mm is not None:
            return
        dev = resolve_device(device)
        net = create_model(self.model) if isinstance(self.model, (str, Path)) else self.model
        self.mm = MapModel(net.to(dev), dev, self.config.method, self.config.stride)

    def load(self, abs_path: str):
        from artmem.data.images import load_image
        from artmem.memorability.maps import bounded_map_input

        img = load_image(abs_path)
        bounded_map_input(img)  # an image too elongated to map is this image's error row, not the job's
        return abs_path, img

    def process(self, batch) -> pd.DataFrame:
        from artmem.memorability.maps import (
            _display_image,
            _rel_stem,
            emphasis_renderings,
            memorability_map,
            overlay,
        )

        rows = []
        for source, img in batch:
            name = self.names[source]
            stem = _rel_stem(name)
            m = memorability_map(self.mm, img, self.config)
            files = {"map_npy": f"{stem}.map.npy", "overlay_png": f"{stem}.overlay.png"}
            (self.out / files["map_npy"]).parent.mkdir(parents=True, exist_ok=True)
            np.save(self.out / files["map_npy"], m)
            shown = _display_image(img)
            overlay(shown, m).save(self.out / files["overlay_png"])
            row = {**files, "score": float(self.mm.score([img])[0]), "map_min": float(m.min()),
                   "map_max": float(m.max()), "method": self.mm.method}
            if self.renderings:
                rend = emphasis_renderings(shown, m, seed=self.seed + self.order[name])
                for (kind, im), sc in zip(rend.items(), self.mm.score(list(rend.values())), strict=True):
                    row[f"{kind}_png"] = f"{stem}.{kind}.png"
                    im.save(self.out / row[f"{kind}_png"])
                    row[f"score_{kind}"] = float(sc)
                row["ordered"] = bool(row["score_high"] > row["score_medium"] > row["score_low"])
            rows.append(row)
        return pd.DataFrame(rows)

    def spec(self) -> dict:
        return {"processor": "memorability_maps", "kind": self.kind, **self.settings}

    def write_final(self, out: Path, table: pd.DataFrame, csv: bool = False) -> list[Path]:
        from artmem.batch.results import write_json
        from artmem.io import write_table

        return [*write_table(table, out, "maps", csv=csv), write_json(self.settings, Path(out) / "maps.json")]

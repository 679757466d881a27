"""Batch-job processors of classification, all run through `artmem.batch.api.run_job` (shards,
resume, workers, error tables): a trained classifier's class probabilities on image files
(`ClassProbabilities`, also on Ray), and, on crops read from the training cache, the frozen
backbone's embeddings (`CachedEmbeddings`) and a run's test-set probabilities
(`CachedProbabilities`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.batch.processors import BaseProcessor
from artmem.errors import ArtmemError


def safe_column(name: str) -> str:
    return "p_" + re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_")


def probability_columns(names: list[str]) -> list[str]:
    """One `p_<class>` column per class name (numbered when two names clean to the same column)."""
    cols = [safe_column(n) for n in names]
    if len(set(cols)) != len(cols):
        cols = [f"p_{i}_{c[2:]}" for i, c in enumerate(cols)]
    return cols


class _LoadedNetwork(BaseProcessor):
    """A network loaded once per process (`setup`), dropped when the processor is pickled."""

    _model = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        state["_ready"] = None
        return state

    def _build(self):
        raise NotImplementedError

    def setup(self, device: str = "cpu") -> None:
        from artmem.runtime import resolve_device

        dev = resolve_device(device)
        if getattr(self, "_ready", None) == str(dev):
            return
        if self._model is None:
            self._model = self._build()
        self.device = dev
        self._model.to(dev).eval()
        self._ready = str(dev)

    def _forward(self, fn, batch) -> np.ndarray:
        import torch

        from artmem.runtime import autocast

        if getattr(self, "_ready", None) is None:
            self.setup("cpu")
        with torch.inference_mode(), autocast(self.device):
            return fn(batch.to(self.device)).float().cpu().numpy()


class ClassProbabilities(_LoadedNetwork):
    """Softmax probabilities of a trained classifier run: one `p_<class>` column per class.

    Images get the run's own evaluation preprocessing (`preprocess_for`), the one it was trained
    with. `write_final` writes OUT/probabilities.parquet (+ .csv) and OUT/classes.txt.
    """

    kind = "probabilities"

    def __init__(self, run: str | Path):
        self.run = str(run)
        self._ready = None
        self.device = None
        model = self._build()  # checks the run and resolves names/preprocessing up front
        self._model = model

    def _build(self):
        from artmem.models.factory import create_model
        from artmem.models.preprocess import preprocess_for

        model = create_model(self.run).eval()
        cfg = model.pretrained_cfg
        names = list(cfg.class_names or [])
        if not names or cfg.output != "logits":
            raise ArtmemError(f"{self.run}: not a trained classifier (no class names)")
        self.class_names = names
        self.columns = probability_columns(names)
        self.label = (getattr(model, "trained_config", None) or {}).get("label")
        self.preprocess = preprocess_for(model)
        return model

    def load(self, abs_path: str):
        return self.preprocess.load(abs_path)

    def process(self, batch) -> pd.DataFrame:
        import torch

        probs = self._forward(lambda x: torch.softmax(self._model(x).float(), dim=1), batch)
        return pd.DataFrame(probs.astype(np.float32), columns=self.columns)

    def spec(self) -> dict:
        return {"processor": "class_probabilities", "kind": self.kind, "model": self.run}

    def write_final(self, out: Path, table: pd.DataFrame, csv: bool = False) -> list[Path]:
        written = super().write_final(out, table[["path", *self.columns]] if len(table) else table, csv=csv)
        classes = Path(out) / "classes.txt"
        classes.write_text("\n".join(f"{c}\t{n}" for c, n in zip(self.columns, self.class_names, strict=True)) + "\n")
        return [*written, classes]


class CachedEmbeddings(_LoadedNetwork):
    """`forward_features` of a (frozen) network on centre crops read from the resized-image cache.

    The job's collection is the one the cache was built from; `load` reads an image's cached
    uint8 crop (no decoding), `process` normalises the batch and runs the backbone. Results are a
    features job (`embedding` column; OUT/features.parquet + features.json).
    """

    kind = "features"

    def __init__(self, model, cache, crop: int, identity: dict):
        """`identity`: what makes the embeddings (model name, init, seed, cache size, crop), recorded
        in job.json so a changed setting never resumes into old shards."""
        self._model = model
        self.cache = cache
        self.crop = int(crop)
        self.identity = dict(identity)
        self.mean, self.std = tuple(model.pretrained_cfg.mean), tuple(model.pretrained_cfg.std)
        self._ready = None
        self.device = None

    def _build(self):
        raise ArtmemError("cached embeddings run in the training process (engine local), where the "
                          "network lives")

    def load(self, abs_path: str):
        """The evaluation centre crop of the cached image, uint8 (3, crop, crop), as
        `CachedImageDataset` gives it (ImageReadError for an image the cache could not read)."""
        import torch

        arr = self.cache.images[self.cache.row_of(abs_path)]  # the cache knows its images' sources
        top = (self.cache.size - self.crop) // 2
        arr = np.array(arr[top:top + self.crop, top:top + self.crop], dtype=np.uint8, order="C")
        return torch.from_numpy(arr).permute(2, 0, 1)

    def process(self, batch) -> pd.DataFrame:
        from artmem.data.cache import batch_to_float

        vecs = self._forward(lambda x: self._model.forward_features(batch_to_float(x, self.mean, self.std)), batch)
        return pd.DataFrame({"embedding": list(vecs.astype(np.float32))})

    def spec(self) -> dict:
        return {"processor": "cached_embeddings", "kind": self.kind, **self.identity}

    def write_final(self, out: Path, table: pd.DataFrame, csv: bool = False) -> list[Path]:
        from artmem.batch.results import stack_vectors, write_features

        vectors = stack_vectors(table["embedding"]) if len(table) else np.zeros((0, 0), np.float32)
        return write_features(out, table["path"].tolist(), vectors, {**self.identity, "layer": "forward_features"},
                              csv=csv)


class CachedProbabilities(CachedEmbeddings):
    """Softmax class probabilities of a classifier on the cache's centre crops (the test-set
    evaluation of a training run): one `p_<class>` column per class, OUT/probabilities.parquet."""

    kind = "probabilities"

    def __init__(self, model, cache, crop: int, identity: dict, columns: list[str]):
        super().__init__(model, cache, crop, identity)
        self.columns = list(columns)

    def process(self, batch) -> pd.DataFrame:
        import torch

        from artmem.data.cache import batch_to_float

        probs = self._forward(
            lambda x: torch.softmax(self._model(batch_to_float(x, self.mean, self.std)).float(), dim=1), batch)
        return pd.DataFrame(probs.astype(np.float32), columns=self.columns)

    def spec(self) -> dict:
        return {"processor": "cached_probabilities", "kind": self.kind, **self.identity}

    def write_final(self, out: Path, table: pd.DataFrame, csv: bool = False) -> list[Path]:
        return BaseProcessor.write_final(self, out, table, csv=csv)

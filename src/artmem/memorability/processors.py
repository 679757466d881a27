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

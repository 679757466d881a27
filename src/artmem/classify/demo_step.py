"""Demo step: a quick painting-vs-photo classifier on the demo collection's `kind` column.

A frozen EfficientNet-Lite0 (ImageNet) embeds each image once; a linear head is trained on the
cached embeddings (Yu/Jin/Hsu frozen-feature transfer), evaluated on the held-out test images and
then applied to the whole collection. Writes `out/classify/run/` and `out/classify/predictions/`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from artmem.data.collection import Collection

logger = logging.getLogger(__name__)


def demo_step(collection: Collection, out: Path, device: str = "auto") -> list[Path]:
    from artmem.classify.config import resolve_config
    from artmem.classify.predict import predict
    from artmem.classify.train import train_classifier
    from artmem.models.registry import list_models

    if "kind" not in collection.table.columns:
        logger.info("demo classify: the collection has no `kind` column; skipped")
        return []
    base = Path(out) / "classify"
    run = base / "run"
    model = "efficientnet_lite0" if "efficientnet_lite0" in list_models() else "tiny_test"
    cfg = resolve_config(overrides={
        "label": "kind", "model": model, "scenario": "only_last", "frozen_features": "on",
        "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "constant",
        "epochs": 30, "batch_size": 16, "device": device, "min_count": 3,
    })
    resume = (run / "config.yaml").exists()
    result = train_classifier(collection, run, cfg, resume=resume)
    logger.info("demo classify: kind test accuracy %.2f (%d test images)",
                result.metrics["test_accuracy"], result.metrics["n_test"])
    _, _, written = predict(collection, run, base / "predictions", topk=2, device=device)
    return result.written + written

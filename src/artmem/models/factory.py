"""`create_model(name_or_path)`: the one door to every model, a registry name or a trained run.

Registry names are built by `artmem.models.registry`; run folders and checkpoints are rebuilt by
`artmem.models.checkpoint.load_run` from their safetensors weights and JSON description. Neither
module imports this one, so the door sits above both.
"""

from __future__ import annotations

from pathlib import Path

from artmem.errors import ArtmemError, ModelNotFoundError
from artmem.models.checkpoint import is_run_path, load_run, load_weights
from artmem.models.registry import build_model, is_registered, list_models


def create_model(
    name: str | Path,
    pretrained: bool = True,
    num_classes: int | None = None,
    checkpoint: str | Path | None = None,
    **kwargs,
):
    """Build a model by registry name, or rebuild a trained one from its run folder / checkpoint.

    Args:
        name: a registry name (`artmem models` lists them), or a run folder or checkpoint
            (`.safetensors` / `.json`) written by artmem training.
        pretrained: load the bundled weights (never downloads); a trained run always loads its
            own weights.
        num_classes: replace the head for this many outputs.
        checkpoint: a checkpoint whose weights are loaded over the built registry model.
        **kwargs: options of the registry entry's builder (e.g. `seed`); unknown ones raise.

    Returns:
        an `nn.Module` in eval mode with `.pretrained_cfg`, `forward_features`, `forward_head`,
        `extract(x, layers)`, `layer_groups()` and, for classifiers, `reset_classifier(n)`.
    """
    if not is_registered(name):
        if not is_run_path(name):
            raise ModelNotFoundError(
                f"unknown model {str(name)!r} (not a registry name nor an existing checkpoint); "
                f"known: {', '.join(list_models())}")
        if kwargs or checkpoint is not None:
            extra = sorted(kwargs) + (["checkpoint"] if checkpoint is not None else [])
            raise ArtmemError(f"{name}: a trained run takes no {', '.join(extra)} "
                              "(those options apply to registry names)")
        return load_run(name, num_classes=num_classes)
    model = build_model(str(name), pretrained=pretrained, num_classes=num_classes, **kwargs)
    if checkpoint is not None:
        try:
            model.load_state_dict(load_weights(checkpoint))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ArtmemError(f"{checkpoint}: the weights do not fit {name} ({first})") from exc
    return model.eval()

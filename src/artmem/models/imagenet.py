"""ImageNet-1k class names, read offline from torchvision's weight metadata (no download).

torchvision ships the names as `_IMAGENET_CATEGORIES` in `torchvision/models/_meta.py` (what
`ResNet50_Weights.IMAGENET1K_V1.meta["categories"]` returns). The list is read from that file with
`ast` so that listing the model zoo does not pay for importing torchvision.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k category names in the standard class-index order."""
    names: tuple[str, ...] | None = None
    spec = importlib.util.find_spec("torchvision")
    if spec is not None and spec.submodule_search_locations:
        meta = Path(next(iter(spec.submodule_search_locations))) / "models" / "_meta.py"
        if meta.exists():
            for node in ast.parse(meta.read_text()).body:
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "_IMAGENET_CATEGORIES" for t in node.targets
                ):
                    names = tuple(ast.literal_eval(node.value))
    if names is None:  # layout changed: ask torchvision itself
        from torchvision.models import ResNet50_Weights

        names = tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != 1000:  # pragma: no cover - torchvision changed its metadata
        raise RuntimeError(f"expected 1000 ImageNet classes, found {len(names)}")
    return names

"""Words the explorer shows people: human names of measures and sort keys, percentiles as
ordinals, classifier panel titles, and the stable key of an artwork's URL."""

from __future__ import annotations

import hashlib
import math

from artmem.analysis.color import HUE_NAMES

MEASURE_NAMES = {
    "edge_density": "edge density",
    "vertical_edge_ratio": "vertical edges (share)",
    "horizontal_edge_ratio": "horizontal edges (share)",
    "symmetry_conv1": "left-right symmetry (low-level, conv1)",
    "symmetry_conv5": "left-right symmetry (high-level, conv5)",
    "chromatic_fraction": "coloured (non-grey) share",
    "saturation_mean": "mean saturation",
    "brightness_mean": "mean brightness",
    "colorfulness": "colourfulness (Hasler-Süsstrunk)",
    **{f"hue_{n}": f"{n.replace('_', ' ')} hue (share)" for n in HUE_NAMES},
}


def measure_label(name: str) -> str:
    """A measure's human name; p_<class> columns read as 'probability of <class>'."""
    if name in MEASURE_NAMES:
        return MEASURE_NAMES[name]
    if name.startswith("p_"):
        return f"probability of {name[2:].replace('_', ' ')}"
    return name.replace("_", " ")


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def percentile_text(pct: float | None, rank: int | None = None) -> str:
    """'82nd percentile'; the top image reads 'highest in the collection' (never '100.0th').

    `pct` is the percent of collection images scoring at or below; it is floored to a whole
    percentile (99.9 % is the 99th) so that only the very top can reach the end of the scale.
    """
    if pct is None or not math.isfinite(pct):
        return ""
    if rank == 1:
        return "highest in the collection"
    return f"{ordinal(min(99, max(0, math.floor(pct))))} percentile"


def classifier_title(name: str, model) -> str:
    """'style · efficientnet_lite0' from a trained classifier's saved config (its label column
    and base model), else the run's name."""
    cfg = getattr(model, "trained_config", None) or {}
    run_cfg = cfg.get("run_config") or {}
    label = cfg.get("label") or run_cfg.get("label")
    base = cfg.get("base_model") or run_cfg.get("model")
    if label and base:
        return f"{label} · {base}"
    if label or base:
        return f"{label or name} · {base or name}"
    return name


def path_key(root_kind: int, path: str) -> str:
    """The stable URL key of an artwork: a hash of where it comes from and its relative path
    (12 hex digits; row numbers change when the collection or its uploads change, this does not)."""
    return hashlib.sha1(f"{root_kind}:{path}".encode()).hexdigest()[:12]

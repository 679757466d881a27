"""Helpers shared by the memory-game tests (a module, not conftest: see tests/classify)."""

from __future__ import annotations

import numpy as np
from PIL import Image

# a level of 13 trials (3 targets, 3 fillers, 2 vigilance repeats) after a 5-trial practice
TINY = {"targets_per_level": 3, "fillers": 3, "vigilance": 2, "min_delay": 2, "max_delay": 5,
        "vigilance_within": 3, "responses_per_image": 2, "practice_trials": 5, "practice_repeats": 1}


def write_images(folder, names, size=16, seed=0):
    """Plain-colour PNGs (tiny: the browser test only needs something to draw)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        Image.new("RGB", (size, size), colour).save(folder / name)


def trial_payload(study_id: str, level: int, position: int, pressed: bool, t0: float = 1000.0) -> dict:
    """A well-formed /api/trial body (a press 450 ms after onset when `pressed`)."""
    body = {"study": study_id, "level": level, "position": position, "pressed": pressed,
            "rt_ms": 450.0 if pressed else None, "onset_ms": t0, "offset_ms": t0 + 600.0,
            "end_ms": t0 + 1400.0, "input": "key" if pressed else "none"}
    return body

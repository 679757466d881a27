"""Demo step of the data layer: profile the demo collection (sizes, aspect ratios, label counts)."""

from __future__ import annotations

from pathlib import Path

from artmem.data.collection import Collection


def demo_step(collection: Collection, out: Path, device: str = "auto") -> list[Path]:
    """Run `collection profile` into out/profile; returns the written paths."""
    from artmem.data.profile import profile_collection

    return profile_collection(collection, Path(out) / "profile", progress=False)

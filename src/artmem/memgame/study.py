"""Reading a study folder written by `artmem memgame design`."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.memgame.design import FORMAT_VERSION, DesignConfig

DB_NAME = "memgame.sqlite"


@dataclass
class Study:
    """A designed study: its options, stimuli and the trial sequence of every session.

    Attributes:
        root: the study folder.
        study_id: random id written by `design` (keeps browsers of two studies apart).
        config: the design options.
        stimuli: stim, file, path, source, item, condition (+ role columns of the design).
        sequence: session, level, position, stim, kind, repeat, first_position, delay; sorted.
    """

    root: Path
    study_id: str
    config: DesignConfig
    stimuli: pd.DataFrame
    sequence: pd.DataFrame

    @classmethod
    def open(cls, root: str | Path) -> Study:
        root = Path(root)
        meta_path = root / "study.json"
        if not meta_path.is_file():
            raise ArtmemError(f"{root}: not a memory-game study (no study.json; make one with "
                              "`artmem memgame design`)")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ArtmemError(f"{meta_path}: unreadable study description ({exc})") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ArtmemError(f"{meta_path}: study format {meta.get('format_version')!r}, this artmem "
                              f"reads {FORMAT_VERSION}")
        known = {f.name for f in fields(DesignConfig)}
        config = DesignConfig(**{k: v for k, v in meta["config"].items() if k in known})
        for name in ("stimuli.parquet", "sequence.parquet"):
            if not (root / name).is_file():
                raise ArtmemError(f"{root / name}: missing; the study folder is incomplete")
        stimuli = pd.read_parquet(root / "stimuli.parquet")
        sequence = pd.read_parquet(root / "sequence.parquet").sort_values(
            ["session", "level", "position"], kind="stable").reset_index(drop=True)
        return cls(root, str(meta["study_id"]), config, stimuli, sequence)

    def __post_init__(self) -> None:
        session = self.sequence["session"].to_numpy()
        level = self.sequence["level"].to_numpy()
        change = (session[1:] != session[:-1]) | (level[1:] != level[:-1])
        starts = np.flatnonzero(np.r_[True, change])
        ends = np.r_[starts[1:], len(session)]
        self._slices = {(int(session[s]), int(level[s])): (int(s), int(e))
                        for s, e in zip(starts, ends, strict=True)}
        self.n_sessions = int(self.sequence["session"].max()) + 1
        self.levels = sorted({lv for _, lv in self._slices})
        self._stims = self.sequence["stim"].to_numpy()
        self.files = dict(zip(self.stimuli["stim"].to_numpy().tolist(), self.stimuli["file"], strict=True))
        self.served = frozenset(self.stimuli["file"])

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def has_practice(self) -> bool:
        return 0 in self.levels

    def level(self, session: int, level: int) -> pd.DataFrame:
        """The trials of one level of one session, in position order."""
        s, e = self._slices[(session, level)]
        return self.sequence.iloc[s:e]

    def level_stims(self, session: int, level: int) -> np.ndarray:
        """The stimulus ids of one level in position order (a view: cheap per stored trial)."""
        s, e = self._slices[(session, level)]
        return self._stims[s:e]

    def level_length(self, level: int) -> int:
        s, e = self._slices[(0, level)]
        return e - s

    def next_level(self, level: int) -> int | None:
        later = [lv for lv in self.levels if lv > level]
        return later[0] if later else None

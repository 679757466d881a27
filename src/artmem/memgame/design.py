"""`artmem memgame design`: the level sequences of a memory-game study (Khosla et al. 2015, sec. 2.3).

A level is a sequence of images: targets shown twice (the repeat `min_delay`..`max_delay`
intervening images after the first showing), fillers shown once and vigilance images repeated
within `vigilance_within` positions (LaMem: 66 targets + 30 fillers + 12 vigilance repeats = 186
images, delays 35-150, within 7). A participant plays one *session*: a short practice level with
feedback, then `levels_per_participant` levels. Sessions are drawn so that every target gets
`responses_per_image` scored repeats over all participants, each with its own delay drawn over the
whole range (so the decay alpha of eq. 2 can be fitted), and, with `conditions`, so that a
participant sees at most one version of an image (Khosla sec. 5: one rendering per worker).

Everything is reproducible from `seed`: the same collection, options and seed give the same tables.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
PRACTICE_DELAYS = (1, 5)  # practice repeats come soon: the practice teaches the task, it is not scored

# role codes of a planned position
TARGET, FILLER, VIGILANCE = "target", "filler", "vigilance"


@dataclass(frozen=True)
class DesignConfig:
    """Options of a study design (defaults: LaMem's, Khosla 2015 sec. 2.3)."""

    targets_per_level: int = 66
    fillers: int = 30
    vigilance: int = 12
    min_delay: int = 35
    max_delay: int = 150
    vigilance_within: int = 7
    responses_per_image: int = 80
    levels_per_participant: int = 1
    practice_trials: int = 12
    practice_repeats: int = 3
    delay_distribution: str = "log-uniform"
    conditions: str | None = None
    item_column: str | None = None
    image_ms: int = 600
    fixation_ms: int = 800
    max_vigilance_miss: float = 0.25
    practice_min_hits: float = 0.5
    seed: int = 0

    @property
    def level_length(self) -> int:
        return 2 * self.targets_per_level + self.fillers + 2 * self.vigilance

    def check(self) -> None:
        """Raise ArtmemError for options no level can satisfy."""
        if self.targets_per_level < 1 or self.fillers < 0 or self.vigilance < 0:
            raise ArtmemError("--targets-per-level must be >= 1, --fillers and --vigilance >= 0")
        if not 1 <= self.min_delay <= self.max_delay:
            raise ArtmemError(f"delays must satisfy 1 <= --min-delay <= --max-delay "
                              f"(got {self.min_delay}, {self.max_delay})")
        if self.max_delay + 1 >= self.level_length:
            raise ArtmemError(f"--max-delay {self.max_delay} does not fit in a level of "
                              f"{self.level_length} images (2 x targets + fillers + 2 x vigilance)")
        if self.vigilance and self.vigilance_within < 1:
            raise ArtmemError("--vigilance-within must be >= 1")
        if self.responses_per_image < 1 or self.levels_per_participant < 1:
            raise ArtmemError("--responses-per-image and --levels-per-participant must be >= 1")
        if self.practice_trials and not 1 <= self.practice_repeats <= self.practice_trials // 3:
            raise ArtmemError("--practice-repeats must be between 1 and a third of --practice-trials")
        if self.delay_distribution not in ("log-uniform", "uniform"):
            raise ArtmemError(f"unknown --delay-distribution {self.delay_distribution!r}")
        if self.image_ms < 50 or self.fixation_ms < 50:
            raise ArtmemError("--image-ms and --fixation-ms must be >= 50")


# ----------------------------------------------------------------------------- one level


def draw_delays(n: int, lo: int, hi: int, rng: np.random.Generator, distribution: str) -> np.ndarray:
    """`n` integer delays in [lo, hi], stratified over the range (one per n-quantile, shuffled) so
    every level spans short and long delays; log-uniform spreads log(delay) evenly (eq. 2's axis)."""
    u = (rng.permutation(n) + rng.random(n)) / n
    a, b = lo - 0.5, hi + 0.5
    x = np.exp(np.log(a) + u * (np.log(b) - np.log(a))) if distribution == "log-uniform" else a + u * (b - a)
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


ROLES = np.array([TARGET, FILLER, VIGILANCE])  # role codes 0, 1, 2 of a planned position


def plan_level(n_targets: int, n_fillers: int, n_vigilance: int, min_delay: int, max_delay: int,
               vigilance_within: int, rng: np.random.Generator, distribution: str = "log-uniform",
               tries: int = 500) -> pd.DataFrame:
    """Positions of one level.

    Returns:
        one row per position: position, role (target/filler/vigilance), index (which target,
        filler or vigilance image of the level), repeat (0 first showing, 1 repeat),
        first_position (of a repeat, else -1), delay (intervening images of a repeat, else 0).
    """
    role, index, first = _plan(n_targets, n_fillers, n_vigilance, min_delay, max_delay,
                               vigilance_within, rng, distribution, tries)
    pos = np.arange(len(role))
    return pd.DataFrame({"position": pos, "role": ROLES[role], "index": index,
                         "repeat": (first >= 0).astype(np.int8), "first_position": first,
                         "delay": np.where(first >= 0, pos - first - 1, 0)})


def _plan(n_targets, n_fillers, n_vigilance, min_delay, max_delay, vigilance_within, rng,
          distribution, tries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(role code, index, first position) per position; random placement, retried on a dead end."""
    length = 2 * n_targets + n_fillers + 2 * n_vigilance
    if n_targets and max_delay + 1 >= length:
        raise ArtmemError(f"a delay of {max_delay} does not fit in a level of {length} images")
    for _ in range(tries):
        role = np.full(length, 1, dtype=np.int8)
        index = np.full(length, -1, dtype=np.int64)
        first = np.full(length, -1, dtype=np.int64)
        free = np.ones(length, dtype=bool)
        delays = draw_delays(n_targets, min_delay, max_delay, rng, distribution)
        ok = True
        # longest delays first: they have the fewest places left
        for t in np.argsort(-delays, kind="stable"):
            lag = int(delays[t]) + 1
            cand = np.flatnonzero(free[: length - lag] & free[lag:])
            if cand.size == 0:
                ok = False
                break
            _put(role, index, first, free, int(cand[rng.integers(cand.size)]), lag, 0, int(t))
        for v in range(n_vigilance if ok else 0):
            # every (first position, lag) pair still open, lag 1..vigilance_within, equally likely
            cands = [np.flatnonzero(free[: length - lag] & free[lag:]) for lag in range(1, vigilance_within + 1)]
            sizes = np.cumsum([c.size for c in cands])
            if sizes[-1] == 0:
                ok = False
                break
            r = int(rng.integers(sizes[-1]))
            k = int(np.searchsorted(sizes, r, side="right"))
            i = int(cands[k][r - (sizes[k - 1] if k else 0)])
            _put(role, index, first, free, i, k + 1, 2, v)
        if not ok:
            continue
        rest = np.flatnonzero(free)
        index[rest] = rng.permutation(n_fillers)
        return role, index, first
    raise ArtmemError(f"could not place {n_targets} targets with delays {min_delay}-{max_delay} and "
                      f"{n_vigilance} vigilance repeats in a level of {length} images in {tries} "
                      "tries: lower --max-delay or add fillers")


def _put(role, index, first, free, i, lag, what, k):
    j = i + lag
    role[i] = role[j] = what
    index[i] = index[j] = k
    first[j] = i
    free[i] = free[j] = False


# ----------------------------------------------------------------------------- stimuli


def stimulus_table(collection, conditions: str | None, item_column: str | None,
                   source: str) -> pd.DataFrame:
    """One row per image: path, abs_path, item (what counterbalancing groups), condition.

    With `conditions`, `item_column` names the image a version belongs to; without it the item is
    the path with the condition value removed from the file name (`cat.high.png` -> `cat.png`,
    the naming of `artmem memorability map`).
    """
    table = collection.table
    out = pd.DataFrame({"path": table["path"].astype(str),
                        "abs_path": [collection.abs_path(p) for p in table["path"]]})
    if "://" in collection.root:
        raise ArtmemError(f"{collection.root}: the memory game serves local files; download the images first")
    out["source"] = source
    if conditions is None:
        out["item"] = source + ":" + out["path"]
        out["condition"] = ""
        return out
    if conditions not in table.columns:
        raise ArtmemError(f"--conditions {conditions!r}: no such column in the collection "
                          f"(columns: {list(table.columns)})")
    cond = table[conditions].astype(str)
    out["condition"] = cond.to_numpy()
    if item_column is not None:
        if item_column not in table.columns:
            raise ArtmemError(f"--item-column {item_column!r}: no such column in the collection")
        out["item"] = source + ":" + table[item_column].astype(str).to_numpy()
    else:
        out["item"] = [source + ":" + _strip_condition(p, c) for p, c in zip(out["path"], cond, strict=True)]
    counts = out.groupby("item")["condition"].agg(["size", "nunique"])
    n_cond = cond.nunique()
    bad = counts[(counts["size"] != n_cond) | (counts["nunique"] != n_cond)]
    if len(bad):
        raise ArtmemError(f"--conditions {conditions!r}: every image needs exactly one version per "
                          f"condition ({n_cond}); {len(bad)} do not, e.g. {bad.index[0]!r} "
                          "(name the image a row belongs to with --item-column)")
    return out


def _strip_condition(path: str, condition: str) -> str:
    p = Path(path)
    for sep in (".", "_", "-"):
        token = f"{sep}{condition}"
        if p.stem.endswith(token):
            return str(p.with_name(p.stem[: -len(token)] + p.suffix))
    return path


# ----------------------------------------------------------------------------- sessions


def allocate_targets(stims: pd.DataFrame, cfg: DesignConfig, rng: np.random.Generator) -> list[list[int]]:
    """Target stimulus ids of each session, `targets_per_level * levels_per_participant` each.

    Every stimulus appears in `responses_per_image` sessions (a few more at the very end so the
    last session is full); no session holds two versions of one item. Versions rotate over passes
    (a Latin square per item with a random start), so each version is seen equally often.
    """
    per_session = cfg.targets_per_level * cfg.levels_per_participant
    items, item_codes = np.unique(stims["item"].to_numpy(), return_inverse=True)
    if len(items) < per_session:
        raise ArtmemError(f"a session needs {per_session} different target images "
                          f"(--targets-per-level x --levels-per-participant) but the collection has "
                          f"{len(items)}")
    conds = sorted(stims["condition"].unique())
    n_cond = len(conds)
    version = np.full((len(items), n_cond), -1, dtype=np.int64)
    version[item_codes, np.searchsorted(conds, stims["condition"].to_numpy())] = stims["stim"].to_numpy()
    offset = rng.integers(n_cond, size=len(items))
    stream: deque = deque()
    passes = iter(range(cfg.responses_per_image * n_cond))

    def refill() -> None:  # passes are drawn as needed: the stream stays ~2 passes long
        while len(stream) < 2 * per_session and (p := next(passes, None)) is not None:
            order = rng.permutation(len(items))
            stream.extend(zip(order.tolist(), version[order, (offset[order] + p) % n_cond].tolist(),
                              strict=True))

    refill()
    stim_ids = stims["stim"].to_numpy()
    shown = np.zeros(int(stim_ids.max()) + 1, dtype=np.int64)
    stim_item = np.full(len(shown), -1)
    stim_item[stim_ids] = item_codes
    sessions = []
    while stream:
        taken: set[int] = set()
        session: list[int] = []
        skipped = []
        while stream and len(session) < per_session:
            refill()
            item, stim = stream.popleft()
            if item in taken:  # only at a pass boundary: keep it for the next session
                skipped.append((item, stim))
                continue
            taken.add(item)
            session.append(stim)
        stream.extendleft(reversed(skipped))
        refill()
        if len(session) < per_session:  # the last session: top up with the least-shown versions
            for sid in stim_ids[np.argsort(shown[stim_ids], kind="stable")]:
                if len(session) == per_session:
                    break
                if int(stim_item[sid]) not in taken:
                    session.append(int(sid))
                    taken.add(int(stim_item[sid]))
        shown[session] += 1
        sessions.append(session)
    return sessions


class _OtherImages:
    """Draws fillers, vigilance and practice images for a session: different items, none of them
    one of the session's targets (grouped once; a session draws in O(its size))."""

    def __init__(self, pool: pd.DataFrame):
        groups = pool.groupby("item", sort=True)["stim"]
        self.items = np.asarray(list(groups.groups.keys()), dtype=object)
        self.versions = [g.to_numpy() for _, g in groups]

    def draw(self, exclude_items: set, n: int, rng: np.random.Generator) -> np.ndarray:
        k = min(len(self.items), n + len(exclude_items))
        picked = [i for i in rng.choice(len(self.items), size=k, replace=False)
                  if self.items[i] not in exclude_items][:n]
        if len(picked) < n:
            raise ArtmemError(f"not enough filler images: a session needs {n} images besides its "
                              f"targets but only {len(picked)} are left; add images or give --fillers-from")
        return np.array([rng.choice(self.versions[i]) for i in picked], dtype=np.int64)


KINDS = np.array([TARGET, FILLER, VIGILANCE, "practice"])


def build_sessions(stims: pd.DataFrame, fillers: pd.DataFrame, cfg: DesignConfig,
                   rng: np.random.Generator) -> pd.DataFrame:
    """The full trial sequence of every session (level 0 = practice)."""
    target_sessions = allocate_targets(stims, cfg, rng)
    both = pd.concat([stims, fillers]).drop_duplicates("stim")
    item_of = np.empty(int(both["stim"].max()) + 1, dtype=object)
    item_of[both["stim"].to_numpy()] = both["item"].to_numpy()
    k_levels = cfg.levels_per_participant
    n_practice_unique = cfg.practice_trials - cfg.practice_repeats if cfg.practice_trials else 0
    n_others = (cfg.fillers + cfg.vigilance) * k_levels + n_practice_unique
    other_images = _OtherImages(fillers)
    cols: dict[str, list] = {k: [] for k in ("session", "level", "stim", "kind", "first")}

    def add(session, level, plan, pools, practice=False):
        role, index, first = plan
        stim = np.empty(len(role), dtype=np.int64)
        for code, ids in enumerate(pools):
            mask = role == code
            stim[mask] = np.asarray(ids, dtype=np.int64)[index[mask]]
        cols["session"].append(np.full(len(role), session, dtype=np.int64))
        cols["level"].append(np.full(len(role), level, dtype=np.int64))
        cols["stim"].append(stim)
        cols["kind"].append(np.full(len(role), 3, dtype=np.int8) if practice else role)
        cols["first"].append(first)

    for s, targets in enumerate(target_sessions):
        others = other_images.draw(set(item_of[targets]), n_others, rng)
        cursor = 0
        if cfg.practice_trials:
            plan = _plan(cfg.practice_repeats, cfg.practice_trials - 2 * cfg.practice_repeats, 0,
                         PRACTICE_DELAYS[0], min(PRACTICE_DELAYS[1], cfg.practice_trials - 2), 1,
                         rng, "uniform", 500)
            ids = others[:n_practice_unique]
            cursor = n_practice_unique
            # practice repeats are "targets" of the plan but drawn from the non-target pool
            add(s, 0, plan, (ids[: cfg.practice_repeats], ids[cfg.practice_repeats:]), practice=True)
        for lv in range(k_levels):
            plan = _plan(cfg.targets_per_level, cfg.fillers, cfg.vigilance, cfg.min_delay,
                         cfg.max_delay, cfg.vigilance_within, rng, cfg.delay_distribution, 500)
            fill = others[cursor: cursor + cfg.fillers]
            vig = others[cursor + cfg.fillers: cursor + cfg.fillers + cfg.vigilance]
            cursor += cfg.fillers + cfg.vigilance
            tgt = targets[lv * cfg.targets_per_level: (lv + 1) * cfg.targets_per_level]
            add(s, lv + 1, plan, (tgt, fill, vig))
    session, level, first = (np.concatenate(cols[k]) for k in ("session", "level", "first"))
    lengths = np.array([len(a) for a in cols["stim"]])
    position = np.arange(len(session)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return pd.DataFrame({"session": session, "level": level, "position": position,
                         "stim": np.concatenate(cols["stim"]), "kind": KINDS[np.concatenate(cols["kind"])],
                         "repeat": (first >= 0).astype(np.int8), "first_position": first,
                         "delay": np.where(first >= 0, position - first - 1, 0)})


# ----------------------------------------------------------------------------- the study folder


def design_study(collection, out: str | Path, cfg: DesignConfig, fillers_from=None,
                 copy_images: bool = True) -> list[Path]:
    """Write a study folder: study.json, stimuli.parquet, sequence.parquet, stimuli/ (copies).

    Args:
        collection: the target images (anything `open_collection` accepts).
        out: the study folder (created; must not already hold a study).
        cfg: the design options.
        fillers_from: a second collection to draw fillers, vigilance and practice images from
            (default: the targets' own collection, never an image the session has as a target).
        copy_images: copy the images into OUT/stimuli under opaque names (what the server
            serves; names do not reveal the image or its condition). Tests may skip it.

    Returns:
        the written paths.
    """
    from artmem.data.collection import open_collection

    cfg.check()
    out = Path(out)
    if (out / "study.json").exists():
        raise ArtmemError(f"{out}: already holds a study (study.json); design into a new folder")
    rng = np.random.default_rng(cfg.seed)
    targets = stimulus_table(open_collection(collection), cfg.conditions, cfg.item_column, "collection")
    targets.insert(0, "stim", np.arange(len(targets), dtype=np.int64))
    if fillers_from is not None:
        extra = stimulus_table(open_collection(fillers_from), None, None, "fillers")
        extra.insert(0, "stim", np.arange(len(targets), len(targets) + len(extra), dtype=np.int64))
        filler_pool = extra
    else:
        extra = targets.iloc[:0]
        filler_pool = targets
    sequence = build_sessions(targets, filler_pool, cfg, rng)
    stims = pd.concat([targets, extra], ignore_index=True)
    stims = stims[stims["stim"].isin(sequence["stim"].unique())].reset_index(drop=True)
    stims["file"] = [f"{s:06d}{Path(p).suffix.lower()}" for s, p in zip(stims["stim"], stims["path"], strict=True)]
    out.mkdir(parents=True, exist_ok=True)
    if copy_images:
        _copy_stimuli(stims, out / "stimuli")
    meta = {"format_version": FORMAT_VERSION, "study_id": uuid.uuid4().hex, "config": asdict(cfg),
            "sessions": int(sequence["session"].nunique()), "level_length": cfg.level_length,
            "targets": int(len(targets)), "collection": str(collection),
            "fillers_from": None if fillers_from is None else str(fillers_from)}
    written = [out / "stimuli.parquet", out / "sequence.parquet", out / "study.json"]
    stims.drop(columns="abs_path").to_parquet(written[0], index=False)
    sequence.to_parquet(written[1], index=False)
    written[2].write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("study %s: %d sessions of %d level(s) x %d images, %d stimuli", out, meta["sessions"],
                cfg.levels_per_participant, cfg.level_length, len(stims))
    return written


def _copy_stimuli(stims: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for src, name in zip(stims["abs_path"], stims["file"], strict=True):
        if not Path(src).is_file():
            raise ArtmemError(f"{src}: image file not found")
        shutil.copyfile(src, folder / name)

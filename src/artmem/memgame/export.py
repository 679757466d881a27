"""`artmem memgame export`: the study database -> the response table `artmem memgame scores` reads.

One row per scored target repeat of an included participant: participant, image, delay (intervening
images), hit, false_alarm (a press on that image's first showing), with the onset times and RTs of
both showings. Participants who missed more than `max_vigilance_miss` of their vigilance repeats
are excluded and listed (Khosla 2015 sec. 2.3: more than 25 % failed -> all their results
discarded). Every stored trial is also written, with its measured image and fixation durations.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.memgame.db import read_tables
from artmem.memgame.study import Study

logger = logging.getLogger(__name__)


def label_participants(parts: pd.DataFrame) -> pd.Series:
    """The participant column: the platform code when given, else an anonymous `anon-<n>`."""
    return parts["code"].where(parts["code"].notna(), "anon-" + parts["participant_id"].astype(str))


def trial_table(study: Study, parts: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Stored trials joined with the design (kind, repeat, delay) and the stimuli (image, condition)."""
    parts = parts.assign(participant=label_participants(parts))
    t = trials.merge(parts[["participant_id", "participant", "session"]], on="participant_id", how="left")
    design = study.sequence.rename(columns={"stim": "design_stim"})
    t = t.merge(design, on=["session", "level", "position"], how="left")
    if t["design_stim"].isna().any() or (t["design_stim"] != t["stim"]).any():
        raise ArtmemError(f"{study.db_path}: stored trials do not match the study design "
                          "(was the study folder redesigned after data collection?)")
    stims = study.stimuli[["stim", "path", "item", "condition"]].rename(columns={"path": "image"})
    t = t.drop(columns="design_stim").merge(stims, on="stim", how="left")
    t["image_ms"] = t["offset_ms"] - t["onset_ms"]
    t["fixation_ms"] = t["end_ms"] - t["offset_ms"]
    return t.sort_values(["participant_id", "level", "position"]).reset_index(drop=True)


def vigilance_table(study: Study, t: pd.DataFrame, parts: pd.DataFrame) -> pd.DataFrame:
    """Per participant: vigilance repeats seen and detected, the miss rate, included or not."""
    cfg = study.config
    vig = t[(t["kind"] == "vigilance") & (t["repeat"] == 1)]
    per = vig.groupby("participant_id")["pressed"].agg(vigilance_n="size", vigilance_hits="sum")
    out = parts[["participant_id", "status"]].assign(participant=label_participants(parts))
    out = out.merge(per, left_on="participant_id", right_index=True, how="left").fillna(
        {"vigilance_n": 0, "vigilance_hits": 0})
    out[["vigilance_n", "vigilance_hits"]] = out[["vigilance_n", "vigilance_hits"]].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["vigilance_miss_rate"] = 1 - out["vigilance_hits"] / out["vigilance_n"]
    played = t.loc[t["level"] > 0].groupby("participant_id").size()
    out["main_trials"] = out["participant_id"].map(played).fillna(0).astype(np.int64)
    reason = pd.Series("", index=out.index)
    if cfg.vigilance > 0:
        reason[out["vigilance_miss_rate"] > cfg.max_vigilance_miss] = (
            f"missed more than {cfg.max_vigilance_miss:.0%} of the vigilance repeats")
        reason[(out["vigilance_n"] == 0) & (out["main_trials"] > 0)] = "reached no vigilance repeat"
    reason[out["status"] == "disqualified"] = "failed the practice level"
    out["excluded"] = reason != ""
    out["reason"] = reason
    return out


def response_table(t: pd.DataFrame, included: set) -> pd.DataFrame:
    """One row per target repeat: the scoring columns first, then timings and provenance."""
    key = ["participant_id", "level", "position"]
    rep = t[(t["kind"] == "target") & (t["repeat"] == 1) & t["participant_id"].isin(included)]
    first = t[key + ["pressed", "rt_ms", "onset_ms"]].rename(columns={
        "position": "first_position", "pressed": "false_alarm", "rt_ms": "first_rt_ms",
        "onset_ms": "first_onset_ms"})
    r = rep.merge(first, on=["participant_id", "level", "first_position"], how="left")
    if r["false_alarm"].isna().any():  # the design puts first showings before repeats; never absent
        raise ArtmemError("a target repeat has no stored first showing")
    return pd.DataFrame({
        "participant": r["participant"], "image": r["image"], "delay": r["delay"].astype(np.int64),
        "hit": r["pressed"].astype(np.int8), "false_alarm": r["false_alarm"].astype(np.int8),
        "rt_ms": r["rt_ms"], "onset_ms": r["onset_ms"], "first_rt_ms": r["first_rt_ms"],
        "first_onset_ms": r["first_onset_ms"], "item": r["item"], "condition": r["condition"],
        "session": r["session"], "level": r["level"], "position": r["position"],
        "first_position": r["first_position"], "participant_id": r["participant_id"],
    })


def _timing(x: pd.Series, target: float) -> dict:
    err = (x - target).dropna().to_numpy()
    if err.size == 0:
        return {"n": 0}
    return {"target_ms": target, "n": int(err.size), "median_ms": float(np.median(x.dropna())),
            "median_error_ms": float(np.median(err)), "mean_abs_error_ms": float(np.mean(np.abs(err))),
            "p95_abs_error_ms": float(np.percentile(np.abs(err), 95)),
            "max_abs_error_ms": float(np.max(np.abs(err)))}


def summarise(study: Study, t: pd.DataFrame, vig: pd.DataFrame, responses: pd.DataFrame) -> dict:
    cfg = study.config
    main = t[t["level"] > 0]
    per_image = responses.groupby("image").size()
    n_targets = int((study.stimuli["source"] == "collection").sum())
    firsts = main[main["repeat"] == 0]
    return {
        "study": str(study.root), "study_id": study.study_id,
        "participants": {
            "total": int(len(vig)), "finished": int((vig["status"] == "finished").sum()),
            "playing": int(vig["status"].isin(["practice", "playing"]).sum()),
            "failed_practice": int((vig["status"] == "disqualified").sum()),
            "excluded_vigilance": int((vig["excluded"] & (vig["status"] != "disqualified")).sum()),
            "included": int((~vig["excluded"] & (vig["main_trials"] > 0)).sum()),
        },
        "responses": {
            "total": int(len(responses)), "goal_per_image": cfg.responses_per_image,
            "images_with_responses": int(len(per_image)), "target_images": n_targets,
            "per_image_min": int(per_image.min()) if len(per_image) else 0,
            "per_image_median": float(per_image.median()) if len(per_image) else 0.0,
            "per_image_max": int(per_image.max()) if len(per_image) else 0,
            "hit_rate": float(responses["hit"].mean()) if len(responses) else None,
            "false_alarm_rate_first_showings": float(firsts["pressed"].mean()) if len(firsts) else None,
        },
        "vigilance": {
            "repeats_seen": int(vig["vigilance_n"].sum()),
            "hit_rate": (float(vig["vigilance_hits"].sum() / vig["vigilance_n"].sum())
                         if vig["vigilance_n"].sum() else None),
            "max_miss_rate": cfg.max_vigilance_miss,
        },
        "timing": {"image": _timing(main["image_ms"], cfg.image_ms),
                   "fixation": _timing(main["fixation_ms"], cfg.fixation_ms),
                   "resumed_trials": int(main["resumed"].sum())},
    }


def export_study(study_dir: str | Path, out: str | Path, csv: bool = False) -> list[Path]:
    """Write responses, trials, participants (with vigilance and exclusions), excluded and
    summary.json into OUT. Returns the written paths."""
    from artmem.io import write_table
    from artmem.memorability.memgame import validate_responses

    study = Study.open(study_dir)
    parts, trials = read_tables(study)
    t = trial_table(study, parts, trials)
    vig = vigilance_table(study, t, parts)
    included = set(vig.loc[~vig["excluded"], "participant_id"])
    responses = response_table(t, included)
    if len(responses):  # the table must be one `artmem memgame scores` accepts
        validate_responses(responses, source="exported responses")
    else:
        logger.warning("%s: no scored target repeat yet", study.root)
    summary = summarise(study, t, vig, responses)
    written = write_table(responses, out, "responses", csv=csv)
    written += write_table(t, out, "trials", csv=csv)
    written += write_table(vig, out, "participants", csv=csv)
    written += write_table(vig[vig["excluded"]][["participant", "reason", "vigilance_n", "vigilance_hits",
                                                 "vigilance_miss_rate"]], out, "excluded", csv=csv)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    written.append(Path(out) / "summary.json")
    return written

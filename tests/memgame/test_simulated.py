"""A simulated population following Khosla's log-linear model (eq. 2), played trial by trial
through a designed study and the database, then exported and scored with the existing scoring
functions: alpha is recovered, m_T ranks images better than the hit rate, vigilance-failing
participants are excluded and listed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from artmem.memgame.db import Store
from artmem.memgame.design import DesignConfig, design_study
from artmem.memgame.export import export_study
from artmem.memgame.study import Study
from artmem.memorability.memgame import read_responses, score_images

ALPHA, T = -0.3, 80.0


def play_population(study: Study, rng: np.random.Generator, true_m: dict, inattentive: float = 0.1):
    """Every session played by one simulated participant, in order, through Store.record_trial.

    Attentive: P(hit) = clip(m_T(i) + alpha log(t/T) + u_p, 0, 1) on target repeats; vigilance
    repeats found with p = 0.98; false alarms on first showings with p = 0.04. Inattentive: a
    press with p = 0.3 on any image. Returns the labels of the inattentive participants.
    """
    store = Store(study, durable=False)
    item_of = study.stimuli.set_index("stim")["path"]
    bad = set()
    for s in range(study.n_sessions):
        code = f"w{s:04d}"
        _, p = store.create_participant(code)
        assert p.session == s  # new participants fill the least-assigned session
        careless = rng.random() < inattentive
        if careless:
            bad.add(code)
        u_p = rng.normal(0, 0.05)
        t0 = 0.0
        for level in study.levels:
            seq = study.level(s, level)
            for row in seq.itertuples():
                if level == 0:
                    pressed = bool(row.repeat)  # everyone passes the practice
                elif careless:
                    pressed = rng.random() < 0.3
                elif row.repeat and row.kind == "target":
                    m = true_m[item_of[row.stim]] + ALPHA * np.log(row.delay / T) + u_p
                    pressed = rng.random() < np.clip(m, 0, 1)
                elif row.repeat:
                    pressed = rng.random() < 0.98
                else:
                    pressed = rng.random() < 0.04
                rt = float(rng.uniform(350, 1100)) if pressed else None
                store.record_trial(p.id, level, row.position, bool(pressed), rt, t0, t0 + 600.0,
                                   t0 + 1400.0, "key" if pressed else "none", False)
                t0 += 1400.0
    store.close()
    return bad


@pytest.fixture(scope="module")
def played(image_folder_big, tmp_path_factory):
    folder, true_m = image_folder_big
    out = tmp_path_factory.mktemp("sim")
    cfg = DesignConfig(responses_per_image=14, practice_trials=6, practice_repeats=2, seed=2)
    design_study(folder, out / "study", cfg, copy_images=False)
    study = Study.open(out / "study")
    bad = play_population(study, np.random.default_rng(5), true_m)
    export_study(out / "study", out / "export")
    return study, out / "export", bad, true_m


@pytest.fixture(scope="module")
def image_folder_big(tmp_path_factory):
    """A 600-image 'collection' (the files are never opened: copy_images=False) with true m_T
    ~ Beta(mean 0.6, sd 0.124): LaMem's spread, a lower mean so that m_T + alpha log(t/T) rarely
    clips at 1 (clipping bends the log-linear model the estimator assumes)."""
    root = tmp_path_factory.mktemp("big")
    names = [f"im_{i:04d}.jpg" for i in range(600)]
    for n in names:
        (root / n).write_bytes(b"")
    mu, sd = 0.6, 0.124
    k = mu * (1 - mu) / sd**2 - 1
    m = np.random.default_rng(9).beta(mu * k, (1 - mu) * k, len(names))
    return root, dict(zip(names, m, strict=True))


def test_recovers_alpha_and_ranks_better_than_hit_rate(played):
    study, export, bad, true_m = played
    responses = read_responses(export / "responses.parquet")  # what `memgame scores` reads
    table, fit = score_images(responses, T=T)
    assert fit.converged
    assert fit.alpha == pytest.approx(ALPHA, abs=0.03)
    truth = table["image"].map(true_m)
    rho_m = spearmanr(table["m_T"], truth)[0]
    rho_h = spearmanr(table["hit_rate"], truth)[0]
    assert rho_m > rho_h
    assert rho_m > 0.6
    # delays come from the design: every response's delay is its repeat's intervening images
    assert responses["delay"].between(35, 150).all()


def test_vigilance_exclusions(played):
    study, export, bad, _ = played
    responses = pd.read_parquet(export / "responses.parquet")
    excluded = pd.read_parquet(export / "excluded.parquet")
    assert bad and set(excluded["participant"]) == bad
    assert (excluded["vigilance_miss_rate"] > 0.25).all()
    assert not set(responses["participant"]) & bad
    summary = json.loads((export / "summary.json").read_text())
    n = study.n_sessions
    assert summary["participants"] == {"total": n, "finished": n, "playing": 0, "failed_practice": 0,
                                       "excluded_vigilance": len(bad), "included": n - len(bad)}
    assert summary["responses"]["total"] == len(responses) == (n - len(bad)) * 66
    per_image = responses.groupby("image").size()
    assert summary["responses"]["per_image_min"] == per_image.min()


def test_export_columns_and_false_alarms(played):
    study, export, _, _ = played
    responses = pd.read_parquet(export / "responses.parquet")
    trials = pd.read_parquet(export / "trials.parquet")
    assert list(responses.columns[:5]) == ["participant", "image", "delay", "hit", "false_alarm"]
    # false_alarm is the press on that image's first showing, read independently from the trials
    first = trials.set_index(["participant", "level", "position"])["pressed"]
    keys = list(zip(responses["participant"], responses["level"], responses["first_position"], strict=True))
    assert (first.loc[keys].to_numpy() == responses["false_alarm"].to_numpy()).all()
    hits = trials.set_index(["participant", "level", "position"])["pressed"]
    keys = list(zip(responses["participant"], responses["level"], responses["position"], strict=True))
    assert (hits.loc[keys].to_numpy() == responses["hit"].to_numpy()).all()
    assert ((responses["rt_ms"].notna()) == (responses["hit"] == 1)).all()


def test_conditions_through_export(rendering_collection, tmp_path):
    """Renderings (Khosla sec. 5): the export names each response's version; no participant's
    responses cover two versions of one image, and the scores can be grouped by condition."""
    cfg = DesignConfig(targets_per_level=8, fillers=4, vigilance=2, min_delay=3, max_delay=10,
                       vigilance_within=3, responses_per_image=2, practice_trials=6,
                       practice_repeats=2, conditions="rendering", seed=1)
    design_study(rendering_collection, tmp_path / "study", cfg, copy_images=False)
    study = Study.open(tmp_path / "study")
    true_m = {p: 0.7 for p in study.stimuli["path"]}
    play_population(study, np.random.default_rng(0), true_m, inattentive=0.0)
    export_study(study.root, tmp_path / "export")
    responses = pd.read_parquet(tmp_path / "export" / "responses.parquet")
    assert set(responses["condition"]) == {"high", "medium", "low"}
    assert (responses["image"].str.split(".").str[1] == responses["condition"]).all()
    assert not responses.duplicated(["participant", "item"]).any()
    table, _ = score_images(read_responses(tmp_path / "export" / "responses.parquet"))
    by_condition = table.merge(responses[["image", "condition"]].drop_duplicates(), on="image")
    assert by_condition.groupby("condition")["n"].sum().to_dict() == responses.groupby("condition").size().to_dict()

"""Sequence design: every constraint of Khosla et al.'s protocol holds on generated levels."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from artmem.errors import ArtmemError
from artmem.memgame.design import DesignConfig, design_study, draw_delays, plan_level


def test_lamem_level_plan():
    """The LaMem level: 66 targets + 30 fillers + 12 vigilance = 186 images, delays 35-150,
    vigilance repeats within 7 images."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        plan = plan_level(66, 30, 12, 35, 150, 7, rng)
        assert len(plan) == 186 and (plan["position"].to_numpy() == np.arange(186)).all()
        counts = plan.groupby(["role", "repeat"]).size().to_dict()
        assert counts == {("target", 0): 66, ("target", 1): 66, ("filler", 0): 30,
                          ("vigilance", 0): 12, ("vigilance", 1): 12}
        rep = plan[plan["repeat"] == 1]
        first = plan.set_index("position").loc[rep["first_position"]]
        # a repeat shows the same image as its first showing, which comes earlier
        assert (first["role"].to_numpy() == rep["role"].to_numpy()).all()
        assert (first["index"].to_numpy() == rep["index"].to_numpy()).all()
        assert (first["repeat"] == 0).all()
        assert (rep["delay"] == rep["position"] - rep["first_position"] - 1).all()
        t = rep[rep["role"] == "target"]["delay"]
        assert t.between(35, 150).all()
        v = rep[rep["role"] == "vigilance"]
        assert ((v["position"] - v["first_position"]) <= 7).all()
        # every target and vigilance image exactly twice, every filler once
        assert (plan[plan["role"] == "target"].groupby("index").size() == 2).all()
        assert sorted(plan[plan["role"] == "filler"]["index"]) == list(range(30))


def test_delays_span_the_range():
    """Stratified draws: each level's delays cover the range, log-uniformly over many levels."""
    rng = np.random.default_rng(1)
    d = np.concatenate([draw_delays(66, 35, 150, rng, "log-uniform") for _ in range(200)])
    assert d.min() == 35 and d.max() == 150
    # log-uniform: the median delay is the geometric mean of the range, sqrt(35 * 150) = 72.5
    assert np.median(d) == pytest.approx(np.sqrt(35 * 150), rel=0.04)
    one = draw_delays(66, 35, 150, rng, "log-uniform")
    assert one.min() < 40 and one.max() > 135  # one level alone spans the range
    u = np.concatenate([draw_delays(50, 35, 150, rng, "uniform") for _ in range(200)])
    assert np.median(u) == pytest.approx(92.5, rel=0.04)


def _study_checks(seq: pd.DataFrame, stims: pd.DataFrame, cfg: DesignConfig) -> None:
    item = stims.set_index("stim")["item"]
    main = seq[seq["level"] > 0]
    per_level = main.groupby(["session", "level", "kind", "repeat"]).size().unstack(["kind", "repeat"])
    assert (per_level[("target", 0)] == cfg.targets_per_level).all()
    assert (per_level[("target", 1)] == cfg.targets_per_level).all()
    assert (per_level[("filler", 0)] == cfg.fillers).all()
    assert (per_level[("vigilance", 1)] == cfg.vigilance).all()
    rep = main[main["repeat"] == 1]
    assert rep[rep["kind"] == "target"]["delay"].between(cfg.min_delay, cfg.max_delay).all()
    vig = rep[rep["kind"] == "vigilance"]
    assert ((vig["position"] - vig["first_position"]) <= cfg.vigilance_within).all()
    practice = seq[seq["level"] == 0]
    assert (practice.groupby("session").size() == cfg.practice_trials).all()
    # within a session (one participant) an item appears only as its designed repeat: never as
    # two versions, never again in another role or level
    firsts = seq[seq["repeat"] == 0].assign(item=lambda f: item.loc[f["stim"]].to_numpy())
    assert not firsts.duplicated(["session", "item"]).any()
    repeats = seq[seq["repeat"] == 1].merge(
        seq[["session", "level", "position", "stim"]].rename(columns={"position": "first_position", "stim": "first_stim"}),
        on=["session", "level", "first_position"])
    assert (repeats["stim"] == repeats["first_stim"]).all()


def test_design_study_constraints_and_coverage(image_folder, tmp_path):
    cfg = DesignConfig(targets_per_level=6, fillers=4, vigilance=2, min_delay=3, max_delay=9,
                       vigilance_within=3, responses_per_image=5, levels_per_participant=2,
                       practice_trials=6, practice_repeats=2, seed=7)
    written = design_study(image_folder, tmp_path / "study", cfg)
    assert {p.name for p in written} == {"stimuli.parquet", "sequence.parquet", "study.json"}
    seq = pd.read_parquet(tmp_path / "study" / "sequence.parquet")
    stims = pd.read_parquet(tmp_path / "study" / "stimuli.parquet")
    _study_checks(seq, stims, cfg)
    # every target image gets its responses: 40 images x 5 = 200 repeats in sessions of 12 ->
    # 17 sessions, the last topped up with 4 extra repeats of the least-shown images
    reps = seq[(seq["kind"] == "target") & (seq["repeat"] == 1)].groupby("stim").size()
    assert len(reps) == 40 and reps.min() == 5 and reps.max() <= 6
    assert reps.sum() == seq["session"].nunique() * 12 == 17 * 12
    # each image is repeated at different delays over participants (alpha can be fitted)
    spread = seq[(seq["kind"] == "target") & (seq["repeat"] == 1)].groupby("stim")["delay"].nunique()
    assert (spread >= 2).mean() > 0.9
    # stimuli copied under opaque names, the files byte-identical to the originals
    row = stims.iloc[0]
    assert row["file"] == f"{row['stim']:06d}.png"
    assert (tmp_path / "study" / "stimuli" / row["file"]).read_bytes() == (image_folder / row["path"]).read_bytes()
    meta = json.loads((tmp_path / "study" / "study.json").read_text())
    assert meta["config"]["seed"] == 7 and meta["sessions"] == 17
    with pytest.raises(ArtmemError, match="already holds a study"):
        design_study(image_folder, tmp_path / "study", cfg)


def test_counterbalanced_conditions(rendering_collection, tmp_path):
    """Khosla sec. 5: one participant sees exactly one rendering of each image, fillers included;
    every rendering gets its responses."""
    cfg = DesignConfig(targets_per_level=8, fillers=4, vigilance=2, min_delay=3, max_delay=10,
                       vigilance_within=3, responses_per_image=4, practice_trials=6,
                       practice_repeats=2, conditions="rendering", seed=3)
    design_study(rendering_collection, tmp_path / "study", cfg, copy_images=False)
    seq = pd.read_parquet(tmp_path / "study" / "sequence.parquet")
    stims = pd.read_parquet(tmp_path / "study" / "stimuli.parquet")
    _study_checks(seq, stims, cfg)
    assert set(stims["condition"]) == {"high", "medium", "low"}
    assert stims.groupby("item")["condition"].nunique().max() == 3
    seen = seq.merge(stims[["stim", "item"]], on="stim").groupby(["session", "item"])["stim"].nunique()
    assert seen.max() == 1  # never two versions of an image in one session
    reps = seq[(seq["kind"] == "target") & (seq["repeat"] == 1)].groupby("stim").size()
    assert len(reps) == 90 and reps.min() == 4 and reps.max() <= 5


def test_reproducible_from_seed(image_folder, tmp_path):
    cfg = DesignConfig(targets_per_level=5, fillers=3, vigilance=2, min_delay=2, max_delay=8,
                       vigilance_within=3, responses_per_image=3, practice_trials=6,
                       practice_repeats=2, seed=11)
    tables = []
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        design_study(image_folder, tmp_path / name, replace(cfg, seed=seed), copy_images=False)
        tables.append((pd.read_parquet(tmp_path / name / "sequence.parquet"),
                       pd.read_parquet(tmp_path / name / "stimuli.parquet")))
    pd.testing.assert_frame_equal(tables[0][0], tables[1][0])
    pd.testing.assert_frame_equal(tables[0][1], tables[1][1])
    assert not tables[0][0].equals(tables[2][0])


def test_fillers_from_a_second_collection(image_folder, tmp_path):
    from memgame_helpers import write_images

    extra = tmp_path / "fillers"
    write_images(extra, [f"f_{i}.png" for i in range(30)], seed=5)
    cfg = DesignConfig(targets_per_level=5, fillers=4, vigilance=2, min_delay=2, max_delay=8,
                       vigilance_within=3, responses_per_image=2, practice_trials=6,
                       practice_repeats=2, seed=0)
    design_study(image_folder, tmp_path / "study", cfg, fillers_from=extra, copy_images=False)
    seq = pd.read_parquet(tmp_path / "study" / "sequence.parquet")
    stims = pd.read_parquet(tmp_path / "study" / "stimuli.parquet").set_index("stim")
    src = stims.loc[seq["stim"], "source"].to_numpy()
    assert (src[seq["kind"].eq("target").to_numpy()] == "collection").all()
    assert (src[~seq["kind"].eq("target").to_numpy()] == "fillers").all()


@pytest.mark.parametrize("change, message", [
    ({"max_delay": 200}, "does not fit in a level"),
    ({"min_delay": 0}, "min-delay"),
    ({"targets_per_level": 50}, "different target images"),
    ({"conditions": "nope"}, "no such column"),
])
def test_impossible_designs_are_refused(image_folder, tmp_path, change, message):
    with pytest.raises(ArtmemError, match=message):
        design_study(image_folder, tmp_path / "s", replace(DesignConfig(), **change), copy_images=False)


def test_inconsistent_versions_are_refused(tmp_path):
    from memgame_helpers import write_images

    from artmem.data.collection import Collection

    names = ["a.high.png", "a.low.png", "b.high.png"]  # b lacks its low version
    write_images(tmp_path, names)
    coll = Collection(pd.DataFrame({"path": names, "rendering": ["high", "low", "high"]}), tmp_path)
    with pytest.raises(ArtmemError, match="one version per condition"):
        design_study(coll, tmp_path / "s", DesignConfig(conditions="rendering"), copy_images=False)


def test_cli_design(image_folder, tmp_path, capsys):
    from artmem.cli import main

    out = tmp_path / "study"
    assert main(["memgame", "design", str(image_folder), "-o", str(out), "--targets-per-level", "4",
                 "--fillers", "3", "--vigilance", "2", "--min-delay", "2", "--max-delay", "6",
                 "--vigilance-within", "3", "--responses-per-image", "2", "--practice-trials", "6",
                 "--practice-repeats", "2", "--seed", "4"]) == 0
    assert str(out / "study.json") in capsys.readouterr().out
    assert len(list((out / "stimuli").iterdir())) == len(pd.read_parquet(out / "stimuli.parquet"))
    assert main(["memgame", "design", str(image_folder), "-o", str(tmp_path / "x"),
                 "--max-delay", "500"]) == 2
    # export before anyone played, of a folder that is no study: one-line errors, exit 2
    assert main(["memgame", "export", str(out), "-o", str(tmp_path / "e")]) == 2
    assert main(["memgame", "export", str(image_folder), "-o", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "no responses yet" in err and "not a memory-game study" in err


def test_demo_study(tmp_path):
    """The demo's tiny study fits the 22-image demo collection and satisfies the protocol."""
    from memgame_helpers import write_images

    from artmem.data.collection import open_collection
    from artmem.memgame.study import Study
    from artmem.memorability.demo_step import design_demo_study

    write_images(tmp_path / "demo", [f"d{i}.png" for i in range(22)])
    written = design_demo_study(open_collection(tmp_path / "demo"), tmp_path / "study")
    study = Study.open(tmp_path / "study")
    _study_checks(study.sequence, study.stimuli, study.config)
    assert written[-1].name == "study.json"
    assert design_demo_study(open_collection(tmp_path / "demo"), tmp_path / "study") == [written[-1]]

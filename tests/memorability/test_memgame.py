"""Memory-game scoring: validation, eq. 5/6 estimator vs truth and vs a naive loop, consistency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from artmem.cli import main
from artmem.errors import ArtmemError
from artmem.memorability.memgame import (
    _encode,
    _image_stats,
    closed_form_alpha,
    human_consistency,
    read_responses,
    score_images,
    score_images_loop,
    simulate_memory_game,
    validate_responses,
)


@pytest.fixture(scope="module")
def game():
    return simulate_memory_game(n_images=1500, responses_per_image=60, alpha=-0.1, T=80, seed=3)


def test_estimator_recovers_alpha_and_ranks(game):
    responses, truth = game
    table, fit = score_images(responses, T=80)
    assert fit.converged and 2 <= fit.iterations < 100
    assert fit.alpha == pytest.approx(-0.1, abs=0.01)
    # the iterations reach the closed-form fixed point of eq. 5/6
    codes, index = _encode(responses)
    stats = _image_stats(codes, len(index), responses["hit"].to_numpy(float),
                         np.log(responses["delay"].to_numpy(float) / 80))
    assert fit.alpha == pytest.approx(closed_form_alpha(stats), abs=1e-7)
    merged = table.merge(truth, on="image")
    rho = spearmanr(merged["m_T"], merged["true_m_T"])[0]
    assert rho > 0.9
    # m_T is on the scale of the truth at delay T (unbiased mean)
    assert merged["m_T"].mean() == pytest.approx(merged["true_m_T"].mean(), abs=0.02)
    # the error never increases along the path and alpha moves monotonically to its fixed point
    assert np.all(np.diff(np.abs(np.asarray(fit.alpha_path) - fit.alpha)) <= 1e-12)


def test_delay_correction_beats_hit_rate_when_delays_depend_on_image():
    responses, truth = simulate_memory_game(n_images=800, responses_per_image=40, alpha=-0.15,
                                            image_delay_spread=0.3, seed=5)
    table, fit = score_images(responses, T=80)
    merged = table.merge(truth, on="image")
    rho_m = spearmanr(merged["m_T"], merged["true_m_T"])[0]
    rho_h = spearmanr(merged["hit_rate"], merged["true_m_T"])[0]
    assert rho_m > rho_h + 0.03
    assert fit.alpha == pytest.approx(-0.15, abs=0.02)


def test_vectorised_matches_naive_loop():
    responses, _ = simulate_memory_game(n_images=60, responses_per_image=12, seed=1)
    table, fit = score_images(responses, T=50)
    ref, alpha, _ = score_images_loop(responses, T=50, tol=1e-8)
    assert fit.alpha == pytest.approx(alpha, abs=1e-9)
    t = table.set_index("image")
    for img, (n, hr, fa, m) in ref.items():
        assert t.loc[img, "n"] == n
        assert t.loc[img, "hit_rate"] == pytest.approx(hr)
        assert t.loc[img, "fa_corrected"] == pytest.approx(fa)
        assert t.loc[img, "m_T"] == pytest.approx(m, abs=1e-7)


def test_fa_corrected_formula():
    df = pd.DataFrame({"participant": [1, 2, 3, 1, 2], "image": ["a", "a", "a", "b", "b"],
                       "delay": [40, 60, 80, 50, 70], "hit": [1, 1, 0, 1, 0],
                       "false_alarm": [0, 1, 0, 0, 0]})
    table, _ = score_images(validate_responses(df), T=60)
    a = table.set_index("image").loc["a"]
    assert a["hit_rate"] == pytest.approx(2 / 3) and a["fa_corrected"] == pytest.approx((2 - 1) / 3)


def test_fa_and_delay_corrected_score_matches_direct_computation():
    """m_T_fa (Khosla Table 1 "with FA" + delay correction) against a pandas/numpy computation:
    alpha by ordinary least squares of hit on log(t/T) with one intercept per image (the fixed
    point of eq. 5/6), then mean(hit - alpha log(t/T)) - mean(false_alarm) per image."""
    responses, truth = simulate_memory_game(n_images=200, responses_per_image=20, fa_rate=0.1, seed=2)
    table, fit = score_images(responses, T=70)
    df = responses.assign(L=np.log(responses["delay"] / 70.0))
    g = df.groupby("image")
    # within-image demeaning removes the per-image intercepts; weights 1/n_i as in E (eq. 4)
    w = 1.0 / g["hit"].transform("size")
    Lc = df["L"] - g["L"].transform("mean")
    hc = df["hit"] - g["hit"].transform("mean")
    alpha = float((w * Lc * hc).sum() / (w * Lc * Lc).sum())
    assert fit.alpha == pytest.approx(alpha, abs=1e-7)
    direct = (df["hit"] - alpha * df["L"] - df["false_alarm"]).groupby(df["image"]).mean()
    got = table.set_index("image")["m_T_fa"]
    np.testing.assert_allclose(got.loc[direct.index].to_numpy(), direct.to_numpy(), atol=1e-7)
    # both corrections rank the true (delay-free, false-alarm-free) memorability at least as well
    merged = table.merge(truth, on="image")
    truth_fa = merged["true_m_T"] - merged["true_fa"]
    assert spearmanr(merged["m_T_fa"], truth_fa)[0] > spearmanr(merged["hit_rate"], truth_fa)[0]
    per, summary = human_consistency(responses, splits=3, seed=0)
    assert "delay_fa_corrected" in set(summary["method"])


def test_adversarial_split_corrected_beats_uncorrected(game):
    responses, _ = game
    _, summ = human_consistency(responses, splits=4, adversarial=True, T=80)
    s = summ.set_index("method")["mean"]
    assert s["delay_corrected"] > s["hit_rate"] + 0.03
    _, rnd = human_consistency(responses, splits=4, adversarial=False, T=80)
    r = rnd.set_index("method")
    # random halves: correction changes little; adversarial halves: correction restores it
    assert abs(r.loc["delay_corrected", "mean"] - r.loc["hit_rate", "mean"]) < 0.03
    assert s["hit_rate"] < r.loc["hit_rate", "mean"] - 0.02
    assert r["alpha_sd"].iloc[0] < 0.1 * abs(r["alpha_mean"].iloc[0])
    assert (rnd["splits"] == 4).all()


@pytest.mark.parametrize(
    "frame, message",
    [
        ({"participant": [1], "image": ["a"], "hit": [1]}, "missing column"),
        ({"participant": [1], "image": ["a"], "delay": [3], "hit": [2]}, "must be 0 or 1"),
        ({"participant": [1], "image": ["a"], "delay": [-3], "hit": [1]}, "negative delay"),
        ({"participant": [1], "image": ["a"], "delay": [0], "hit": [1]}, "positive"),
        ({"participant": [1], "image": ["a"], "delay": ["x"], "hit": [1]}, "numeric"),
        ({"participant": [1], "image": ["a"], "delay": [3], "hit": [1], "false_alarm": [5]}, "false_alarm"),
    ],
)
def test_validation_errors_name_the_file(tmp_path, frame, message):
    path = tmp_path / "resp.csv"
    pd.DataFrame(frame).to_csv(path, index=False)
    with pytest.raises(ArtmemError, match=message) as err:
        read_responses(path)
    assert "resp.csv" in str(err.value)


def test_cli_simulate_scores_consistency(tmp_path, capsys):
    assert main(["memgame", "simulate", "-o", str(tmp_path / "sim"), "--images", "200",
                 "--responses-per-image", "30"]) == 0
    assert main(["memgame", "scores", str(tmp_path / "sim" / "responses.parquet"),
                 "-o", str(tmp_path / "s"), "--T", "80", "--csv"]) == 0
    scores = pd.read_parquet(tmp_path / "s" / "scores.parquet")
    assert {"image", "n", "hit_rate", "fa_corrected", "m_T"} <= set(scores.columns)
    assert len(scores) == 200 and (tmp_path / "s" / "scores.csv").exists()
    assert main(["memgame", "consistency", str(tmp_path / "sim" / "responses.parquet"),
                 "-o", str(tmp_path / "c"), "--splits", "3", "--adversarial", "both"]) == 0
    c = pd.read_parquet(tmp_path / "c" / "consistency.parquet")
    assert set(c["kind"]) == {"random", "adversarial"} and (c["splits"] == 3).all()
    out = capsys.readouterr().out
    assert "consistency.parquet" in out and "scores.parquet" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("participant,image,hit\n1,a,1\n")
    assert main(["memgame", "scores", str(bad), "-o", str(tmp_path / "x")]) == 2

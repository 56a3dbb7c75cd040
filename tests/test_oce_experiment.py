"""The OCE chapter's runner: exact checks, the plan, resumable results, one tiny real cell, verdicts."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from flatcast.experiments import oce


def test_table1_reproduces_the_printed_columns_in_their_bases():
    t = oce.table1()
    assert np.allclose(t["CE (log10)"], t["CE printed"], atol=6e-4)
    assert np.allclose(t["OCE (nats)"], t["OCE printed"], atol=6e-4)
    # hand check of case 1, prediction A: -(0.8 ln 0.3 + 0.1 ln 0.5 + 0.1 ln 0.2)
    row = t[(t.case == "Case 1") & (t.prediction == "Pred A")].iloc[0]
    assert row["CE (nats)"] == pytest.approx(-(0.8 * math.log(0.3) + 0.1 * math.log(0.5) + 0.1 * math.log(0.2)))


def test_lemma1_bound_holds_but_the_proofs_extremal_case_is_not_the_maximum():
    lem = oce.lemma1_check(n=5000, K_values=(3, 10))
    assert lem["bound holds"].all()
    assert (lem["proof's 'worst case' √(1+1/(K−1))"] < math.sqrt(2) - 1e-3).all()
    assert np.allclose(lem["one-hot on a wrong class"], math.sqrt(2))


def test_bin_masses_sum_to_one():
    bm = oce.bin_mass_check(n=500)
    assert bm["max |Σp − 1|"].max() < 1e-12 and bm["min p"].min() >= 0


def test_outlier_refit_sweep_mse_linear_huber_and_ce_bounded():
    sweep = oce.outlier_refit_sweep(shifts=(0.0, 3.0, 6.0))
    move = sweep.pivot(index="shift", columns="loss", values="mean |Δ prediction|")
    assert move.loc[6.0, "MSE"] == pytest.approx(2 * move.loc[3.0, "MSE"], rel=1e-6)  # linear in the shift
    assert move.loc[6.0, "Huber"] == pytest.approx(move.loc[3.0, "Huber"], rel=0.05)  # saturated
    assert move.loc[6.0, "CE"] < 0.6 * move.loc[6.0, "MSE"] and move.loc[6.0, "OCE"] < 0.6 * move.loc[6.0, "MSE"]
    assert set(sweep.attrs["curves"]) and len(sweep.attrs["grid"]) == 81


def test_plans_have_unique_valid_cells_and_paper_starts_with_h720_forecasts():
    for profile in ("quick", "paper"):
        cells = oce.plan(oce.oce_config(profile))
        keys = [c.key for c in cells]
        assert len(keys) == len(set(keys))
    paper = oce.plan(oce.oce_config("paper"))
    assert (paper[0].dataset, paper[0].horizon, paper[0].study) == ("ETTm2", 720, "forecast")
    with pytest.raises(ValueError):
        oce.Cell("snr", "ETTh1", 96, "transformer")


def test_budget_tag_names_reduced_budgets():
    assert oce.budget_tag(oce.oce_config("paper")) == ""
    tag = oce.budget_tag(oce.oce_config("paper", epochs=3, max_train_batches=50))
    assert tag.startswith("cap50x3")
    assert oce.results_path("paper", tag).name == f"oce_paper_{tag}.json"


def test_run_cells_is_resumable_and_records_metrics(benchmark_data_dir, tmp_path, monkeypatch):
    config = oce.oce_config("quick", epochs=1, max_train_batches=2, val_stride=64, test_stride=64, train_stride=16)
    cells = [oce.Cell("calibration", "ETTh1", 24, "oce", 48), oce.Cell("forecast", "ETTh1", 24, "oce_target", 48)]
    path = tmp_path / "oce_test.json"
    records = oce.run_cells(cells, config, path=path, data_dir=benchmark_data_dir)
    first = records[cells[0].key]
    assert 0 < first["test_mse"] < 10 and first["n_steps"] == 2
    cal = first["calibration"]
    assert sum(cal["pit"]) == pytest.approx(1.0) and 0 <= cal["coverage_50"] <= cal["coverage_80"] <= cal["coverage_95"] <= 1
    assert cal["crps"] > 0
    assert "oracle_mse" in records[cells[1].key] and "snapshot" in records[cells[1].key]
    saved = json.loads(path.read_text())
    assert set(saved["cells"]) == {c.key for c in cells} and saved["provenance"][0]["commit"]

    def boom(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(oce, "train_cell", boom)
    again = oce.run_cells(cells, config, path=path, data_dir=benchmark_data_dir)
    assert set(again) == set(saved["cells"])


def test_verdicts_from_exact_checks_only():
    exact = {"table1": oce.table1(), "lemma1": oce.lemma1_check(n=2000, K_values=(3,)),
             "bin_mass": oce.bin_mass_check(n=200), "theorem1": oce.theorem1_study(n=40, n_loo=3)}
    v = oce.oce_verdicts(exact, pd.DataFrame())
    assert v["O1"]["verdict"] == "supported" and v["O3"]["verdict"] == "supported"
    assert v["O4"]["verdict"] == "supported" and v["O2"]["verdict"] == "partly supported"
    assert v["O12"]["verdict"] == "inconclusive" and v["O7"]["verdict"] == "not yet tested"
    owned = {"O1", "O2", "O3", "O4", "O6", "O7", "O8", "O9", "O10", "O11", "O12", "O14"}
    assert set(v) == owned


def test_cli_refuses_an_unavailable_device_before_any_cell(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")

    def boom(*args, **kwargs):
        raise AssertionError("a cell ran although the device does not exist")

    monkeypatch.setattr(oce, "run_cells", boom)
    with pytest.raises((RuntimeError, ValueError), match="(?i)cuda"):
        oce.main(["--profile", "quick", "--device", "cuda", "--max-cells", "1"])


@pytest.fixture(scope="module")
def small_exact_checks():
    return {"table1": oce.table1(), "lemma1": oce.lemma1_check(n=2000, K_values=(3,)),
            "bin_mass": oce.bin_mass_check(n=200), "theorem1": oce.theorem1_study(n=40, n_loo=3)}


def _ce_oce_frame(pairs):
    """A paper frame of CE/OCE twins: ``pairs`` = [(dataset, horizon, study, oce_mse, ce_mse), ...] plus noise."""
    rows = []
    for dataset, horizon, study, oce_mse, ce_mse in pairs:
        for model, mse in (("oce", oce_mse), ("ce", ce_mse)):
            cell = oce.Cell(study, dataset, horizon, model)
            rows.append({**vars(cell), "test_mse": mse, "file": "oce_paper_capX.json"})
    # distractors: a noisy OCE cell and a CE cell without an OCE twin must not pair
    rows.append({**vars(oce.Cell("forecast", "ETTm2", 720, "oce", snr_db=0.0)), "test_mse": 9.0,
                 "file": "oce_paper_capX.json"})
    rows.append({**vars(oce.Cell("forecast", "ETTh2", 720, "ce")), "test_mse": 9.0, "file": "oce_paper_capX.json"})
    return pd.DataFrame(rows)


def test_ce_vs_oce_pairs_only_clean_twins():
    frame = _ce_oce_frame([("ETTm2", 720, "forecast", 0.30, 0.40), ("ETTh1", 96, "calibration", 0.40, 0.39)])
    pairs = oce.ce_vs_oce(frame)
    assert len(pairs) == 2
    got = pairs.set_index("dataset")
    assert got.loc["ETTm2", "OCE"] == 0.30 and got.loc["ETTm2", "CE"] == 0.40 and got.loc["ETTm2", "OCE better"]
    assert not got.loc["ETTh1", "OCE better"]
    assert oce.ce_vs_oce(pd.DataFrame()).empty


@pytest.mark.parametrize("pairs, verdict", [
    # every pair a clear OCE win (> 2 %) on three datasets
    ([("ETTm2", 720, "forecast", 0.30, 0.40), ("weather", 720, "forecast", 0.20, 0.25),
      ("ETTh1", 96, "calibration", 0.38, 0.40)], "supported"),
    # clear wins, but on fewer datasets than the claim
    ([("ETTm2", 720, "forecast", 0.30, 0.40)], "partly supported"),
    # 1.5 % apart with one seed: within the margin either way
    ([("ETTh1", 96, "calibration", 0.387, 0.393)], "inconclusive"),
    # one clear loss, one clear win
    ([("ETTm2", 720, "forecast", 0.30, 0.40), ("weather", 720, "forecast", 0.30, 0.25)], "partly supported"),
    # only clear losses
    ([("weather", 720, "forecast", 0.30, 0.25)], "not supported"),
])
def test_o11_verdict_counts_only_differences_beyond_the_margin(pairs, verdict, small_exact_checks):
    v = oce.oce_verdicts(small_exact_checks, _ce_oce_frame(pairs))
    assert v["O11"]["verdict"] == verdict
    assert f"in {sum((c - o) / c > oce.ONE_SEED_MARGIN for *_, o, c in pairs)} of {len(pairs)}" in v["O11"]["evidence"]


def _seeded_pairs(dataset, horizon, oce_ce_by_seed, study="ce_compare", mae=None):
    """CE/OCE twins of one (dataset, horizon) over seeds: ``oce_ce_by_seed`` = [(oce_mse, ce_mse), ...]; ``mae`` the
    same for test MAE (absent from the records if None)."""
    rows = []
    for seed, (oce_mse, ce_mse) in enumerate(oce_ce_by_seed):
        for i, (model, mse) in enumerate((("oce", oce_mse), ("ce", ce_mse))):
            rows.append({**vars(oce.Cell(study, dataset, horizon, model, seed=seed)), "test_mse": mse,
                         **({"test_mae": mae[seed][i]} if mae is not None else {}), "file": "oce_paper_capX_ce.json"})
    return rows


def test_ce_compare_summary_pairs_seeds_and_matches_a_hand_computed_t_test():
    # CE − OCE differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01, t = 2√3; with 2 degrees of freedom the t CDF is
    # 1/2 + t/(2√(2 + t²)), so the two-sided p = 1 − t/√(2 + t²) = 1 − 2√3/√14 ≈ 0.0742 (not below 0.05).
    # Differences 0.010, 0.011, 0.012: t = 0.011/(0.001/√3) = 11√3, p = 1 − 11√3/√365 ≈ 0.00272 (below).
    rows = (_seeded_pairs("ETTh1", 96, [(0.40, 0.41), (0.40, 0.42), (0.40, 0.43)])
            + _seeded_pairs("ETTm1", 96, [(0.30, 0.310), (0.30, 0.311), (0.30, 0.312)])
            + _seeded_pairs("exchange_rate", 96, [(0.10, 0.09)])          # one seed, CE 10 % lower
            + _seeded_pairs("weather", 96, [(0.200, 0.203)]))             # one seed, 1.5 %: within the margin
    summary = oce.ce_compare_summary(oce.ce_vs_oce(pd.DataFrame(rows))).set_index("dataset")
    t = 2 * math.sqrt(3)
    assert summary.loc["ETTh1", "paired_p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    assert summary.loc["ETTh1", "verdict"] == "no clear difference" and summary.loc["ETTh1", "n_seeds"] == 3
    assert summary.loc["ETTh1", "CE"] == pytest.approx(0.42)
    assert summary.loc["ETTh1", "gain"] == pytest.approx(((0.41 - 0.4) / 0.41 + (0.42 - 0.4) / 0.42 + 0.03 / 0.43) / 3)
    t = 11 * math.sqrt(3)
    assert summary.loc["ETTm1", "paired_p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-6)
    assert summary.loc["ETTm1", "verdict"] == "OCE lower"
    assert summary.loc["exchange_rate", "verdict"] == "CE lower" and math.isnan(summary.loc["exchange_rate", "paired_p"])
    assert summary.loc["weather", "verdict"] == "no clear difference"
    assert oce.ce_compare_summary(oce.ce_vs_oce(pd.DataFrame())).empty


def test_o11_judges_seeded_groups_by_the_paired_test(small_exact_checks):
    clear = [(0.30, 0.310), (0.30, 0.311), (0.30, 0.312)]
    rows = sum((_seeded_pairs(d, 96, clear) for d in ("ETTh1", "ETTh2", "ETTm1")), [])
    assert oce.oce_verdicts(small_exact_checks, pd.DataFrame(rows))["O11"]["verdict"] == "supported"
    # the same mean gain (3.5 %), but seeds that disagree: no longer a clear win on ETTm1
    noisy = _seeded_pairs("ETTm1", 96, [(0.30, 0.29), (0.30, 0.31), (0.30, 0.333)])
    rows = sum((_seeded_pairs(d, 96, clear) for d in ("ETTh1", "ETTh2")), []) + noisy
    v = oce.oce_verdicts(small_exact_checks, pd.DataFrame(rows))["O11"]
    assert v["verdict"] == "partly supported" and "in 2 of 3 group(s)" in v["evidence"]
    # a one-seed twin of the same (dataset, horizon) from another study is not counted a second time
    repeat = _seeded_pairs("ETTm1", 96, [(0.30, 0.40)], study="calibration")
    v = oce.oce_verdicts(small_exact_checks, pd.DataFrame(rows + repeat))["O11"]
    assert v["verdict"] == "partly supported" and "in 2 of 3 group(s)" in v["evidence"]


def test_o11_judges_mse_and_mae_apart(small_exact_checks):
    same = [(0.30, 0.30), (0.31, 0.31), (0.32, 0.32)]             # MSE: no difference at all
    lower = [(0.40, 0.410), (0.40, 0.411), (0.40, 0.412)]          # MAE: OCE lower on every seed, p ≈ 0.003
    rows = sum((_seeded_pairs(d, 96, same, mae=lower) for d in ("ETTh1", "ETTh2", "ETTm1")), [])
    summary = oce.ce_compare_summary(oce.ce_vs_oce(pd.DataFrame(rows)), "MAE")
    assert (summary["verdict"] == "OCE lower").all() and (summary["metric"] == "MAE").all()
    assert summary["CE"].tolist() == pytest.approx([0.411] * 3)
    v = oce.oce_verdicts(small_exact_checks, pd.DataFrame(rows))["O11"]
    assert v["verdict"] == "partly supported"
    assert "MSE: OCE clearly lower in 0 of 3 group(s)" in v["evidence"]
    assert "MAE: OCE clearly lower in 3 of 3 group(s)" in v["evidence"]
    # better on both metrics everywhere: supported
    rows = sum((_seeded_pairs(d, 96, lower, mae=lower) for d in ("ETTh1", "ETTh2", "ETTm1")), [])
    assert oce.oce_verdicts(small_exact_checks, pd.DataFrame(rows))["O11"]["verdict"] == "supported"
    with pytest.raises(ValueError, match="metric"):
        oce.ce_compare_summary(oce.ce_vs_oce(pd.DataFrame(rows)), "RMSE")


def test_paper_plan_has_the_ce_comparison_on_fig9_datasets_and_weather():
    cells = [c for c in oce.plan(oce.oce_config("paper")) if c.study == "ce_compare"]
    assert len(cells) == len(oce.CE_COMPARE_DATASETS) * 2 * len(oce.CE_COMPARE_SEEDS)
    assert {c.dataset for c in cells} == {"ETTh1", "ETTh2", "ETTm1", "ETTm2", "national_illness", "exchange_rate",
                                          "weather"}
    ili = {(c.horizon, c.lookback) for c in cells if c.dataset == "national_illness"}
    assert ili == {(24, 104)} and {(c.horizon, c.lookback) for c in cells if c.dataset != "national_illness"} == {(96, 336)}
    assert [c.seed for c in cells] == sorted(c.seed for c in cells)  # every dataset's seed 0 first
    assert all({"ce", "oce"} == {c.model for c in cells if (c.dataset, c.seed) == (d, s)}
               for d in oce.CE_COMPARE_DATASETS for s in oce.CE_COMPARE_SEEDS)


def _snr_frame(curves):
    """``curves`` = {dataset: (dlinear MSEs, oce MSEs)} over oce.SNR_LEVELS, at H = 720."""
    rows = []
    for dataset, (dlinear, oce_mse) in curves.items():
        for model, values in (("dlinear", dlinear), ("oce", oce_mse)):
            for snr, mse in zip(oce.SNR_LEVELS, values):
                rows.append({**vars(oce.Cell("snr", dataset, 720, model, snr_db=snr)), "test_mse": mse})
    return pd.DataFrame(rows)


FLAT_OCE = (0.30, 0.30, 0.30, 0.29, 0.29)
STEEP_DLINEAR = (0.50, 0.48, 0.45, 0.42, 0.41)


@pytest.mark.parametrize("curves, verdict", [
    ({"ETTm2": (STEEP_DLINEAR, FLAT_OCE), "weather": (STEEP_DLINEAR, FLAT_OCE)}, "supported"),
    ({"ETTm2": (STEEP_DLINEAR, FLAT_OCE)}, "partly supported"),  # one dataset only
    # OCE lower everywhere, but only by 1 % at 20 dB: not a clear win at every SNR; still flatter
    ({"ETTm2": (STEEP_DLINEAR, FLAT_OCE), "weather": ((0.50, 0.48, 0.45, 0.42, 0.30), (0.31, 0.31, 0.30, 0.30, 0.297))},
     "partly supported"),
    # OCE worse and steeper everywhere
    ({"ETTm2": (FLAT_OCE, STEEP_DLINEAR), "weather": (FLAT_OCE, STEEP_DLINEAR)}, "not supported"),
])
def test_o12_needs_clear_wins_at_every_snr_and_a_flatter_curve_on_both_datasets(curves, verdict, small_exact_checks):
    v = oce.oce_verdicts(small_exact_checks, _snr_frame(curves))
    assert v["O12"]["verdict"] == verdict, v["O12"]["evidence"]
    assert ("Only one of the two datasets" in v["O12"]["evidence"]) == (len(curves) == 1)


def test_snr_summary_lists_only_complete_sweeps_with_hand_computed_spreads():
    frame = _snr_frame({"ETTm2": (STEEP_DLINEAR, FLAT_OCE)})
    partial = _snr_frame({"weather": (STEEP_DLINEAR, FLAT_OCE)})
    partial = partial[~((partial.model == "oce") & (partial.snr_db == 10.0))]  # one level missing
    summary = oce.snr_summary(pd.concat([frame, partial], ignore_index=True))
    assert summary["dataset"].tolist() == ["ETTm2"] and summary["H"].tolist() == [720]
    row = summary.iloc[0]
    assert row["DLinear"] == "0.410–0.500" and row["OCE-TS"] == "0.290–0.300"
    assert row["spread DLinear"] == pytest.approx((0.50 - 0.41) / 0.41)
    assert row["spread OCE-TS"] == pytest.approx((0.30 - 0.29) / 0.29)
    assert bool(row["OCE-TS clearly lower at every SNR"])
    assert oce.snr_summary(pd.DataFrame()).empty


@pytest.mark.parametrize("weather_oce, verdict", [(0.337, "supported"), (0.342, "partly supported")])
def test_o6_counts_a_win_only_beyond_the_one_seed_margin(weather_oce, verdict, small_exact_checks):
    rows = []
    for dataset, dlinear, oce_mse in (("ETTm2", 0.415, 0.384), ("weather", 0.346, weather_oce)):
        for model, mse in (("dlinear", dlinear), ("oce", oce_mse)):
            rows.append({**vars(oce.Cell("forecast", dataset, 720, model)), "test_mse": mse})
    v = oce.oce_verdicts(small_exact_checks, pd.DataFrame(rows))
    assert v["O6"]["verdict"] == verdict  # 0.342 is 1.2 % below 0.346: within the margin


def _knob_rows(dataset, horizon, study, column, values_mse, file="oce_paper_capX.json", **fixed):
    """Rows of OCE cells of one knob study: ``values_mse`` = {knob value: test MSE}."""
    return [{**vars(oce.Cell(study, dataset, horizon, "oce", **{**fixed, column: value})), "test_mse": mse, "file": file}
            for value, mse in values_mse.items()]


def _knob_frame(bins=None, sigma=None, dist=None, look=None):
    """A paper frame with the knob grids: ``bins``/``sigma`` = {dataset: {value: MSE}} at H = 96 (σ without 0.01:
    the K = 100 bins cell is its default), ``dist`` = {dataset: {distribution: MSE}} at H = 96, ``look`` = {dataset:
    {L: MSE}} at H = 720."""
    rows = []
    for dataset, grid in (bins or {}).items():
        rows += _knob_rows(dataset, 96, "bins", "n_bins", grid)
    for dataset, grid in (sigma or {}).items():
        rows += _knob_rows(dataset, 96, "sigma", "sigma", grid)
    for dataset, grid in (dist or {}).items():
        rows += _knob_rows(dataset, 96, "distribution", "distribution", grid)
    for dataset, grid in (look or {}).items():
        rows += _knob_rows(dataset, 720, "lookback", "lookback", grid)
    return pd.DataFrame(rows)


FLAT_BINS = {30: 0.400, 45: 0.402, 75: 0.399, 100: 0.401}  # spread 0.75 %: within the margin
SIGMA_UP = {0.001: 0.405, 0.1: 0.410, 1.0: 0.480}  # σ = 1 is 19.7 % above the K = 100 cell (0.401)


def test_knob_summary_adds_each_knobs_default_cell_and_its_relative_difference():
    frame = _knob_frame(bins={"ETTm1": FLAT_BINS}, sigma={"ETTm1": SIGMA_UP})
    # a noisy OCE cell and a DLinear cell of the same dataset must not be taken as the default
    frame = pd.concat([frame, pd.DataFrame([
        {**vars(oce.Cell("snr", "ETTm1", 96, "oce", snr_db=0.0)), "test_mse": 9.0, "file": "oce_paper_capX.json"},
        {**vars(oce.Cell("forecast", "ETTm1", 96, "dlinear")), "test_mse": 9.0, "file": "oce_paper_capX.json"}])],
        ignore_index=True)
    summary = oce.knob_summary(frame)
    sigma = summary[summary.knob == "sigma"]
    assert sigma["value"].tolist() == [0.001, 0.01, 0.1, 1.0]  # σ = 0.01 is the bins grid's K = 100 cell
    assert sigma.set_index("value").loc[0.01, "test MSE"] == 0.401
    assert sigma.set_index("value").loc[1.0, "vs default"] == pytest.approx((0.480 - 0.401) / 0.401)
    bins = summary[summary.knob == "bins"].set_index("value")
    assert bins.index.tolist() == [30, 45, 75, 100] and bins.loc[100, "vs default"] == 0.0
    table = oce.knob_table(summary, "sigma")
    assert table.columns.tolist() == [0.001, 0.01, 0.1, 1.0] and table.loc[("ETTm1", 96), 1.0] == 0.480
    assert oce.knob_summary(pd.DataFrame()).empty and oce.knob_table(summary, "lookback").empty


def test_knob_summary_takes_the_default_only_from_the_same_budget_file():
    frame = pd.DataFrame(_knob_rows("ETTm1", 96, "sigma", "sigma", {1.0: 0.48})
                         + _knob_rows("ETTm1", 96, "bins", "n_bins", {100: 0.40}, file="other_budget.json"))
    sigma = oce.knob_summary(frame).query("knob == 'sigma'")
    assert sigma["value"].tolist() == [1.0] and math.isnan(sigma["vs default"].iloc[0])


def test_quick_knob_cells_are_shown_against_the_calibration_default():
    cells = [oce.Cell("calibration", "ETTh1", 96, "oce", 96), oce.Cell("lookback", "ETTh1", 96, "oce", 48),
             oce.Cell("bins", "ETTh1", 96, "oce", 96, n_bins=30)]
    frame = pd.DataFrame([{**vars(c), "test_mse": mse} for c, mse in zip(cells, (0.40, 0.44, 0.42))])
    summary = oce.knob_summary(frame)
    look = summary[summary.knob == "lookback"]
    assert look["value"].tolist() == [48, 96] and look["vs default"].tolist() == pytest.approx([0.1, 0.0])
    assert summary[summary.knob == "bins"]["value"].tolist() == [30, 100]


@pytest.mark.parametrize("bins, sigma, verdict", [
    ({"ETTm1": FLAT_BINS, "ETTh2": FLAT_BINS}, {"ETTm1": SIGMA_UP, "ETTh2": SIGMA_UP}, "supported"),
    # bins matter on ETTh2 (spread 10 %), σ = 1 hurts both: one part of three fails
    ({"ETTm1": FLAT_BINS, "ETTh2": {30: 0.44, 45: 0.42, 75: 0.41, 100: 0.40}},
     {"ETTm1": SIGMA_UP, "ETTh2": SIGMA_UP}, "partly supported"),
    # σ = 1 is better on both, bins matter on both: nothing of the claim holds
    ({"ETTm1": {30: 0.44, 45: 0.42, 75: 0.41, 100: 0.40}, "ETTh2": {30: 0.44, 45: 0.42, 75: 0.41, 100: 0.40}},
     {"ETTm1": {0.001: 0.40, 0.1: 0.40, 1.0: 0.35}, "ETTh2": {0.001: 0.40, 0.1: 0.40, 1.0: 0.35}}, "not supported"),
    # one dataset only: the rule says supported, but half the grid has not run
    ({"ETTm1": FLAT_BINS}, {"ETTm1": SIGMA_UP}, "inconclusive"),
])
def test_o10_bins_limited_and_sigma_one_worse_beyond_the_margin(bins, sigma, verdict, small_exact_checks):
    v = oce.oce_verdicts(small_exact_checks, _knob_frame(bins=bins, sigma=sigma))
    assert v["O10"]["verdict"] == verdict, v["O10"]["evidence"]
    assert "ETTm1 σ=1 vs σ=0.01 +19.7%" in v["O10"]["evidence"] or verdict in ("partly supported", "not supported")
    assert ("(missing: bins ETTh2, sigma ETTh2)" in v["O10"]["evidence"]) == (len(bins) == 1)


def test_o10_incomplete_grid_is_not_judged_and_says_so(small_exact_checks):
    partial = {"ETTm1": {30: 0.40, 45: 0.41}}  # K = 75 and 100 missing
    v = oce.oce_verdicts(small_exact_checks, _knob_frame(bins=partial))
    assert v["O10"]["verdict"] == "inconclusive" and "No complete paper-size grid" in v["O10"]["evidence"]


@pytest.mark.parametrize("dist, verdict", [
    # Gaussian best on ETTh1 by > 2 %, Student-t better on ETTm2 by > 2 %: holds, at one horizon of four
    ({"ETTh1": {"gaussian": 0.38, "student_t": 0.40, "laplace": 0.41},
      "ETTm2": {"gaussian": 0.20, "student_t": 0.19, "laplace": 0.21}}, "partly supported"),
    # both within the margin but beyond a tenth of it: nothing resolved
    ({"ETTh1": {"gaussian": 0.390, "student_t": 0.394, "laplace": 0.395},
      "ETTm2": {"gaussian": 0.200, "student_t": 0.198, "laplace": 0.201}}, "inconclusive"),
    # no effect at all (< 0.2 %): the claimed differences are not there
    ({"ETTh1": {"gaussian": 0.3868, "student_t": 0.3868, "laplace": 0.3869},
      "ETTm2": {"gaussian": 0.1726, "student_t": 0.1726, "laplace": 0.1727}}, "not supported"),
    # Laplace clearly best on ETTh1, Gaussian clearly best on ETTm2
    ({"ETTh1": {"gaussian": 0.40, "student_t": 0.41, "laplace": 0.38},
      "ETTm2": {"gaussian": 0.19, "student_t": 0.21, "laplace": 0.20}}, "not supported"),
])
def test_o8_distribution_claims_per_dataset(dist, verdict, small_exact_checks):
    v = oce.oce_verdicts(small_exact_checks, _knob_frame(dist=dist))
    assert v["O8"]["verdict"] == verdict, v["O8"]["evidence"]
    assert "Horizons run: ETTh1 96, ETTm2 96 (the paper's Fig. 3 has 96/192/336/720)" in v["O8"]["evidence"]


NO_EFFECT = {"gaussian": 0.3868, "student_t": 0.3868, "laplace": 0.3869}
GAUSSIAN_BEST = {"gaussian": 0.38, "student_t": 0.40, "laplace": 0.41}
STUDENT_BEST = {"gaussian": 0.20, "student_t": 0.19, "laplace": 0.21}


@pytest.mark.parametrize("grids, verdict", [
    # Gaussian clearly best on ETTh1 at H = 720 only, no effect at 96: partly
    ({("ETTh1", 96): NO_EFFECT, ("ETTh1", 720): GAUSSIAN_BEST, ("ETTm2", 96): NO_EFFECT}, "partly supported"),
    # every part holds at every horizon of Fig. 3: supported
    ({**{("ETTh1", h): GAUSSIAN_BEST for h in (96, 192, 336, 720)},
      **{("ETTm2", h): STUDENT_BEST for h in (96, 192, 336, 720)}}, "supported"),
    # every part holds but ETTm2 has two horizons: one dataset's claim is not yet measured everywhere
    ({**{("ETTh1", h): GAUSSIAN_BEST for h in (96, 192, 336, 720)},
      **{("ETTm2", h): STUDENT_BEST for h in (96, 720)}}, "partly supported"),
    # H = 720 complete on both, but H = 96 of ETTm2 (needed) missing: not judged
    ({("ETTh1", 96): NO_EFFECT, ("ETTh1", 720): NO_EFFECT, ("ETTm2", 720): NO_EFFECT}, "inconclusive"),
])
def test_o8_one_part_per_dataset_and_horizon(grids, verdict, small_exact_checks):
    rows = [r for (dataset, horizon), grid in grids.items()
            for r in _knob_rows(dataset, horizon, "distribution", "distribution", grid)]
    v = oce.oce_verdicts(small_exact_checks, pd.DataFrame(rows))
    assert v["O8"]["verdict"] == verdict, v["O8"]["evidence"]
    assert "ETTh1 H=720: the better of Student-t/Laplace vs Gaussian" in v["O8"]["evidence"] or (
        ("ETTh1", 720) not in grids)


def test_paper_plan_runs_fig3_distributions_at_every_horizon_720_first():
    cells = [c for c in oce.plan(oce.oce_config("paper")) if c.study == "distribution"]
    assert [c.horizon for c in cells] == [h for h in (96, 720, 192, 336) for _ in range(6)]
    assert {(c.dataset, c.distribution) for c in cells} == {(d, s) for d in ("ETTh1", "ETTm2")
                                                           for s in ("gaussian", "student_t", "laplace")}


LOOK = (48, 96, 192, 336, 504, 720)


@pytest.mark.parametrize("ettm1, etth2, verdict", [
    ((0.50, 0.46, 0.43, 0.41, 0.40, 0.405), (0.46, 0.44, 0.40, 0.42, 0.43, 0.45), "supported"),
    # ETTh2 best at 336, 192 within 1 %: not resolved; ETTm1 holds
    ((0.50, 0.46, 0.43, 0.41, 0.40, 0.405), (0.46, 0.44, 0.404, 0.40, 0.43, 0.45), "partly supported"),
    # ETTm1 best at 96 by far, ETTh2 best at 720 by far
    ((0.45, 0.40, 0.43, 0.45, 0.46, 0.47), (0.46, 0.44, 0.45, 0.44, 0.43, 0.40), "not supported"),
])
def test_o9_best_lookback_per_dataset(ettm1, etth2, verdict, small_exact_checks):
    look = {"ETTm1": dict(zip(LOOK, ettm1)), "ETTh2": dict(zip(LOOK, etth2))}
    v = oce.oce_verdicts(small_exact_checks, _knob_frame(look=look))
    assert v["O9"]["verdict"] == verdict, v["O9"]["evidence"]


def test_plot_knobs_one_labelled_panel_per_knob():
    from flatcast.experiments import oce_figures as figs
    summary = oce.knob_summary(_knob_frame(bins={"ETTm1": FLAT_BINS, "ETTh2": FLAT_BINS}, sigma={"ETTm1": SIGMA_UP}))
    fig = figs.plot_knobs(summary, "test")
    assert [ax.get_title() for ax in fig.axes] == [figs.KNOB_TITLES["bins"], figs.KNOB_TITLES["sigma"]]
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["0.001", "0.01", "0.1", "1"]
    assert len(fig.axes[0].get_lines()) == 2 and fig.axes[0].get_ylabel()
    with pytest.raises(ValueError, match="empty"):
        figs.plot_knobs(oce.knob_summary(pd.DataFrame()), "x")


def test_cli_filters_cells_by_study_dataset_and_model(monkeypatch):
    seen = []

    class Stop(Exception):
        pass

    def capture(cells, *args, **kwargs):
        seen.extend(cells)
        raise Stop

    monkeypatch.setattr(oce, "run_cells", capture)
    with pytest.raises(Stop):
        oce.main(["--profile", "paper", "--studies", "forecast", "--datasets", "weather", "--models", "ce,huber"])
    assert [(c.study, c.dataset, c.model) for c in seen] == [("forecast", "weather", "ce"), ("forecast", "weather", "huber")]
    with pytest.raises(SystemExit):
        oce.main(["--profile", "paper", "--models", "mse"])


def test_o7_states_the_load_the_timing_ran_under(small_exact_checks):
    runtime = pd.DataFrame([{"H": 96, "DLinear ms/iter": 2.0, "OCE-TS ms/iter": 5.0, "ratio OCE/DLinear": 2.5,
                             "load": 0.4, "cores": 2},
                            {"H": 720, "DLinear ms/iter": 4.0, "OCE-TS ms/iter": 40.0, "ratio OCE/DLinear": 10.0,
                             "load": 1.7, "cores": 2}])
    v = oce.oce_verdicts(small_exact_checks, pd.DataFrame(), runtime=runtime)
    assert v["O7"]["verdict"] == "inconclusive"  # 10× at H = 720 is not "moderate"
    assert "load average 1.7 on 2 cores" in v["O7"]["evidence"] and "H=720: DLinear 4.0, OCE-TS 40.0 (10.0×)" in v["O7"]["evidence"]
    assert "(not moderate) at H=720 (10.0×) on this CPU" in v["O7"]["evidence"]
    fast = oce.oce_verdicts(small_exact_checks, pd.DataFrame(), runtime=runtime.iloc[:1])["O7"]
    assert fast["verdict"] == "supported" and "At most 2.5× here, a moderate cost" in fast["evidence"]


def test_runtime_benchmark_records_its_device_and_o7_names_a_gpu(small_exact_checks):
    table = oce.runtime_benchmark(lookback=48, horizons=(24,), steps=2, device="cpu")
    assert table["device"].tolist() == ["cpu"] and (table["OCE-TS ms/iter"] > 0).all()
    assert table["ratio OCE/DLinear"].iloc[0] == pytest.approx(table["OCE-TS ms/iter"].iloc[0]
                                                               / table["DLinear ms/iter"].iloc[0])
    gpu = pd.DataFrame([{"H": 96, "DLinear ms/iter": 1.0, "OCE-TS ms/iter": 1.5, "ratio OCE/DLinear": 1.5,
                         "load": 0.1, "cores": 16, "device": "cuda: NVIDIA H200"}])
    evidence = oce.oce_verdicts(small_exact_checks, pd.DataFrame(), runtime=gpu)["O7"]["evidence"]
    assert "on cuda: NVIDIA H200" in evidence and "no GPU" not in evidence and "CPU thread" not in evidence
    cpu = gpu.assign(device="cpu")
    assert "no GPU" in oce.oce_verdicts(small_exact_checks, pd.DataFrame(), runtime=cpu)["O7"]["evidence"]


def _runtime_rows(device, ratios, cores=2):
    return pd.DataFrame([{"H": h, "DLinear ms/iter": 1.0, "OCE-TS ms/iter": r, "ratio OCE/DLinear": r, "load": 0.5,
                          "cores": cores, "device": device} for h, r in zip((96, 720), ratios)])


def test_o7_a_gpus_rows_decide_and_the_cpus_are_reported_beside_them(small_exact_checks):
    cpu = _runtime_rows("cpu", (30.0, 80.0))
    moderate_gpu = pd.concat([cpu, _runtime_rows("cuda: NVIDIA H200", (1.5, 2.5), cores=16)], ignore_index=True)
    o7 = oce.oce_verdicts(small_exact_checks, pd.DataFrame(), runtime=moderate_gpu)["O7"]
    assert o7["verdict"] == "supported" and "At most 2.5× here" in o7["evidence"]  # the CPU's 80× does not decide
    assert o7["evidence"].startswith("ms/iteration on cuda: NVIDIA H200")
    assert "For comparison, ms/iteration on one CPU thread" in o7["evidence"] and "(80.0×)" in o7["evidence"]
    assert "no GPU" not in o7["evidence"]
    slow_gpu = pd.concat([cpu, _runtime_rows("cuda: NVIDIA H200", (12.0, 56.0), cores=16)], ignore_index=True)
    o7 = oce.oce_verdicts(small_exact_checks, pd.DataFrame(), runtime=slow_gpu)["O7"]
    assert o7["verdict"] == "not supported"  # a GPU decides: slow at every horizon
    assert "(not moderate) at H=96 (12.0×), H=720 (56.0×) on this device" in o7["evidence"]
    mixed_gpu = pd.concat([cpu, _runtime_rows("cuda: NVIDIA H200", (2.2, 6.3), cores=16)], ignore_index=True)
    o7 = oce.oce_verdicts(small_exact_checks, pd.DataFrame(), runtime=mixed_gpu)["O7"]
    assert o7["verdict"] == "partly supported"
    assert "at H=720 (6.3×) on this device" in o7["evidence"] and "moderate at H=96 (2.2×)" in o7["evidence"]
    slow_cpu_only = oce.oce_verdicts(small_exact_checks, pd.DataFrame(), runtime=cpu)["O7"]
    assert slow_cpu_only["verdict"] == "inconclusive" and "no GPU" in slow_cpu_only["evidence"]


def test_a_gpu_runtime_is_kept_and_joins_a_later_cpu_timing(tmp_path, monkeypatch):
    monkeypatch.setattr(oce, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(oce, "provenance", lambda device, command=None: {"device": str(device), "command": command})
    cpu = _runtime_rows("cpu", (30.0, 80.0))
    assert oce.with_committed_runtime(cpu).equals(cpu)  # nothing committed: the live rows alone
    gpu = _runtime_rows("cuda: NVIDIA H200", (12.0, 56.0), cores=16)
    path = oce.save_runtime(gpu, "cuda", ["python", "-m", "flatcast.experiments.oce", "--runtime-only"])
    assert path == tmp_path / "data" / "results" / "oce_runtime_cuda.json"
    saved = json.loads(path.read_text())
    assert saved["provenance"]["device"] == "cuda" and len(saved["rows"]) == 2
    both = oce.with_committed_runtime(cpu)
    assert both["device"].tolist() == ["cpu", "cpu", "cuda: NVIDIA H200", "cuda: NVIDIA H200"]
    assert both["ratio OCE/DLinear"].tolist() == [30.0, 80.0, 12.0, 56.0]
    assert len(oce.with_committed_runtime(gpu)) == 2  # a table that times the GPU itself is not doubled


def test_target_mean_shift_matches_the_truncated_gaussian_mean_and_half_a_bin():
    # many bins: the binned mean is the continuous mean of a Gaussian truncated to [0, 1] (closed form)
    sigma, n = 1.0, 11
    table = oce.target_mean_shift(n_bins=4000, sigmas=(sigma,), n=n).set_index("distribution")
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    Phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
    shifts = []
    for y in np.linspace(0, 1, n):
        a, b = (0 - y) / sigma, (1 - y) / sigma
        shifts.append(abs(sigma * (phi(a) - phi(b)) / (Phi(b) - Phi(a))))
    assert table.loc["gaussian", "mean |Σvp − y|"] == pytest.approx(np.mean(shifts), rel=1e-5)
    assert table.loc["gaussian", "max |Σvp − y|"] == pytest.approx(max(shifts), rel=1e-5)
    # a very narrow target is a one-hot label: the mean is the bin centre, at most half a bin (0.005) from y
    narrow = oce.target_mean_shift(n_bins=100, sigmas=(1e-4,), n=2001)
    assert narrow["max |Σvp − y|"].max() == pytest.approx(0.005, abs=1e-9)
    # grid step 0.0005, 20 points per bin: distances to the centre 0.0045, 0.004, …, 0, …, 0.0045 (sum 0.045), and 0
    # at the bin edge, where the label splits evenly between two bins: 0.045 / 20 = 0.00225
    assert narrow["mean |Σvp − y|"].tolist() == pytest.approx([0.00225] * 3, rel=0.01)


def _record(study, dataset, horizon, model, test_mse, **extra):
    cell = oce.Cell(study, dataset, horizon, model, **{k: extra.pop(k) for k in ("outlier_fraction", "outlier_size",
                                                                                  "snr_db") if k in extra})
    return {"cell": vars(cell), "test_mse": test_mse, **extra}


def _records(*records):
    return {str(i): r for i, r in enumerate(records)}


def test_forecast_table_one_row_per_dataset_and_horizon_forecast_cells_only():
    records = _records(_record("forecast", "ETTm2", 720, "dlinear", 0.41),
                       _record("forecast", "ETTm2", 720, "oce", 0.38),
                       _record("forecast", "ETTm2", 720, "oce_target", 0.52, oracle_mse=0.30),
                       _record("snr", "ETTm2", 720, "oce", 9.0, snr_db=0.0),       # not a forecast cell
                       _record("forecast", "weather", 720, "dlinear", 0.35))
    table = oce.forecast_table(oce.results_frame(records)).set_index(["dataset", "H"])
    assert table.loc[("ETTm2", 720), "DLinear (MSE)"] == 0.41 and table.loc[("ETTm2", 720), "OCE-TS"] == 0.38
    assert table.loc[("ETTm2", 720), "same, denormalised with the target's own range (authors' code)"] == 0.30
    assert table.loc[("weather", 720), "DLinear (MSE)"] == 0.35 and np.isnan(table.loc[("weather", 720), "OCE-TS"])
    twice = oce.results_frame(_records(_record("forecast", "ETTm2", 720, "oce", 0.38),
                                       _record("forecast", "ETTm2", 720, "oce", 0.39)))
    with pytest.raises(ValueError, match="2 forecast cells for oce on ETTm2 H=720"):
        oce.forecast_table(twice)


def test_robustness_table_clean_column_and_one_column_per_outlier_setting():
    records = _records(_record("calibration", "ETTh1", 96, "dlinear", 0.39),
                       _record("robustness", "ETTh1", 96, "dlinear", 0.51, outlier_fraction=0.05, outlier_size=20.0),
                       _record("robustness", "ETTh1", 96, "oce", 0.388, outlier_fraction=0.05, outlier_size=20.0),
                       _record("robustness", "ETTh1", 96, "oce", 0.40, outlier_fraction=0.01, outlier_size=10.0),
                       _record("robustness", "ETTm2", 96, "oce", 9.0, outlier_fraction=0.01, outlier_size=10.0))
    table = oce.robustness_table(oce.results_frame(records))
    assert list(table.index) == ["DLinear (MSE)", "DLinear (Huber)", "OCE-TS"]
    assert table.loc["DLinear (MSE)", "clean"] == 0.39 and table.loc["DLinear (MSE)", "5% of targets ± 20σ"] == 0.51
    assert table.loc["OCE-TS", "1% of targets ± 10σ"] == 0.40  # the ETTm2 cell is another dataset's
    assert np.isnan(table.loc["DLinear (Huber)", "clean"])


def test_calibration_table_labels_each_predictive_distribution_and_keeps_its_pit():
    metrics = {"coverage_50": 0.5, "coverage_80": 0.79, "coverage_95": 0.96, "crps": 0.3, "pinball": 0.12,
               "pit": [0.1] * 10}
    records = _records(_record("calibration", "ETTh1", 96, "quantile", 0.38, calibration=metrics),
                       _record("calibration", "ETTh1", 96, "oce", 0.39, calibration={**metrics, "coverage_50": 0.05}),
                       _record("calibration", "ETTh1", 96, "ce", 0.40),            # no calibration metrics stored
                       _record("forecast", "ETTm2", 720, "oce", 0.38, calibration=metrics))
    table, pits = oce.calibration_table(records)
    assert list(table.index) == ["quantile regression", "OCE-TS"]
    assert table.loc["OCE-TS", "cover 50 %"] == 0.05 and table.loc["quantile regression", "test MSE"] == 0.38
    assert pits["OCE-TS"]["pit"] == [0.1] * 10
    assert oce.calibration_table({})[0].empty


def test_forecast_snapshots_of_one_dataset_and_horizon():
    records = _records(_record("forecast", "ETTm2", 720, "oce", 0.38, snapshot={"x": 1}),
                       _record("forecast", "ETTm2", 720, "dlinear", 0.41),               # no snapshot stored
                       _record("forecast", "ETTm2", 96, "ce", 0.3, snapshot={"x": 2}),
                       _record("snr", "ETTm2", 720, "dlinear", 0.5, snr_db=0.0, snapshot={"x": 3}))
    assert oce.forecast_snapshots(records, "ETTm2", 720) == {"oce": {"x": 1}}


def test_paper_file_notes_name_cells_budget_and_provenance(tmp_path, monkeypatch):
    monkeypatch.setattr(oce, "REPO_ROOT", tmp_path)
    config = oce.oce_config("paper", epochs=3, max_train_batches=50)
    data = {"profile": "paper", "config": vars(config), "cells": {"a": {}, "b": {}},
            "provenance": [{"device": "cpu", "commit": "0123456789abcdef", "date": "2026-12-03"}]}
    oce._write_results(tmp_path / "data" / "results" / "oce_paper_capX.json", data)
    assert oce.paper_file_notes() == ["oce_paper_capX.json: 2 cells; budget ≤3 epochs × ≤50 batches; cpu, commit "
                                      "01234567, 2026-12-03"]


def test_plot_ce_vs_oce_one_dot_per_seed_and_a_mean_bar():
    from flatcast.experiments import oce_figures as figs

    rows = (_seeded_pairs("ETTh1", 96, [(0.40, 0.41), (0.40, 0.42)]) + _seeded_pairs("weather", 96, [(0.21, 0.20)])
            + _seeded_pairs("ETTh1", 96, [(0.40, 0.41)], study="calibration"))  # seed 0 again: drawn once
    fig = figs.plot_ce_vs_oce(oce.ce_vs_oce(pd.DataFrame(rows)), "test")
    assert len(fig.axes) == 1  # no MAE in these records: the MSE panel only
    ax = fig.axes[0]
    heights = [b.get_height() for b in ax.patches]
    assert heights == pytest.approx([100 * ((0.01 / 0.41) + (0.02 / 0.42)) / 2, 100 * (0.20 - 0.21) / 0.20])
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert [len(d.get_xdata()) for d in dots] == [2, 1]
    assert ax.get_ylabel() and fig._suptitle.get_text() == "test" and ax.get_legend() is not None
    with_mae = _seeded_pairs("ETTh1", 96, [(0.40, 0.41)], mae=[(0.30, 0.33)])
    fig = figs.plot_ce_vs_oce(oce.ce_vs_oce(pd.DataFrame(with_mae)), "test")
    assert [a.get_title() for a in fig.axes] == ["test MSE", "test MAE"]
    assert fig.axes[1].patches[0].get_height() == pytest.approx(100 * 0.03 / 0.33)
    with pytest.raises(ValueError):
        figs.plot_ce_vs_oce(oce.ce_vs_oce(pd.DataFrame()), "x")


def test_distinct_pairs_keeps_a_shared_seed_once_as_the_comparison_study():
    rows = (_seeded_pairs("ETTh1", 96, [(0.40, 0.41), (0.40, 0.42)])
            + _seeded_pairs("ETTh1", 96, [(0.39, 0.41)], study="calibration")   # seed 0 again
            + _seeded_pairs("weather", 720, [(0.30, 0.31)], study="forecast"))
    kept = oce.distinct_pairs(oce.ce_vs_oce(pd.DataFrame(rows)))
    assert sorted(zip(kept["dataset"], kept["seed"], kept["study"])) == [
        ("ETTh1", 0, "ce_compare"), ("ETTh1", 1, "ce_compare"), ("weather", 0, "forecast")]
    assert kept.loc[(kept["dataset"] == "ETTh1") & (kept["seed"] == 0), "OCE"].item() == 0.40

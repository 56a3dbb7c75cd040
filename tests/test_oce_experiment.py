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

"""Tests of the EEO chapter's library code: 2-D test functions and trajectories, EEO's probe log, the lemma
checks (flatcast.eeo_lemmas) and the runner's bookkeeping (flatcast.experiments.eeo)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from flatcast import eeo_lemmas as lemmas
from flatcast import testfunctions as tf
from flatcast.experiments import eeo as runner
from flatcast.optim import EEO


# ---------------------------------------------------------------- EEO's probe log (instrumentation only)
def _saddle_run(record: bool, start=(0.3, 0.0), steps=30, **options):
    w = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = EEO([w], torch.optim.Adam, rho=0.05, lr=0.01, seed=1, record_probes=record, **options)
    saddle = tf.test_function("saddle")

    def closure():
        optimizer.zero_grad()
        value = saddle(w)
        value.backward()
        return value

    for _ in range(steps):
        closure()
        optimizer.step(closure)
    return w.detach().clone(), optimizer


def test_recording_probes_does_not_change_the_update():
    w_plain, plain = _saddle_run(False)
    w_recorded, recorded = _saddle_run(True)
    assert torch.equal(w_plain, w_recorded)
    assert len(plain.probe_log) == len(recorded.probe_log) == 3  # probes at steps 0, 10, 20
    assert "weights" not in plain.probe_log[0] and "weights" in recorded.probe_log[0]


def test_escape_fires_at_a_strict_saddle_with_a_kick_of_negcur_kick_rho_and_not_at_a_minimum():
    _, at_saddle = _saddle_run(True, sgld=False, ema=False, steps=1)
    probe = at_saddle.probe_log[0]
    assert probe["kicked"]
    assert probe["curvature"] == pytest.approx(-2.0, abs=1e-3)  # Hessian diag(2, −2) at (0.3, 0) along y
    kick = probe["kick"][0]
    assert kick.norm().item() == pytest.approx(2.0 * 0.05, rel=1e-12)
    assert abs(kick[1].item()) == pytest.approx(0.1, rel=1e-3)  # along the negative-curvature axis y

    _, at_minimum = _saddle_run(True, start=(0.0, math.sqrt(2)), sgld=False, ema=False, steps=21)
    assert len(at_minimum.probe_log) == 3
    assert not any(p["kicked"] for p in at_minimum.probe_log)
    assert all(p["curvature"] > 0 for p in at_minimum.probe_log)



def test_kick_threshold_kicks_only_along_curvature_negative_on_the_spectrum_scale():
    # at (0.3, 0) the Hessian is diag(2, −2): σ (largest ‖Hv‖ of phase 1) = 2, the most negative curvature −2
    for threshold, kicks in ((0.0, True), (0.9, True), (1.1, False)):
        _, optimizer = _saddle_run(True, sgld=False, ema=False, steps=1, kick_threshold=threshold)
        probe = optimizer.probe_log[0]
        assert probe["spectral_radius"] == pytest.approx(2.0, rel=1e-3)
        assert probe["curvature"] == pytest.approx(-2.0, abs=1e-3)
        assert probe["kicked"] is kicks, threshold
    with pytest.raises(ValueError, match="kick_threshold"):
        _saddle_run(False, steps=1, kick_threshold=-0.1)

# ---------------------------------------------------------------- 2-D functions and trajectories
def test_test_functions_have_the_stated_critical_points():
    saddle = tf.test_function("saddle")
    assert np.allclose(tf.exact_hessian(saddle, (0.0, 0.0)), np.diag([2.0, -2.0]))
    for minimum in saddle.minima:
        assert np.allclose(tf.exact_hessian(saddle, minimum), np.diag([2.0, 4.0]))
    flat_sharp = tf.test_function("flat_sharp")
    sharp, flat = (np.linalg.eigvalsh(tf.exact_hessian(flat_sharp, m)) for m in flat_sharp.minima)
    assert sharp.min() > 20 * flat.max() > 0  # the sharp well is over 20× sharper than the flat one
    with pytest.raises(KeyError, match="saddle"):
        tf.test_function("nope")
    with pytest.raises(KeyError, match="bogus"):
        tf.variant_options({"bogus": True})


def test_on_the_stable_manifold_adam_and_sam_stay_while_the_escape_leaves():
    adam = tf.run_trajectory("saddle", "Adam", steps=120)
    sam = tf.run_trajectory("saddle", "SAM", steps=120)
    escape = tf.run_trajectory("saddle", "SAM + escape", steps=120)
    assert adam.path[:, 1].max() == 0 and sam.path[:, 1].max() == 0  # the y-gradient is exactly zero
    assert adam.loss[-1] > -1e-3
    assert escape.kicks and escape.kicks[0]["step"] == 0
    assert escape.loss[-1] < -0.9  # near a minimum, f = −1
    for probe in escape.probes:  # the FD reading agrees with the exact vᵀHv (float64, α = 5e-3)
        assert probe["fd_curvature"] == pytest.approx(probe["exact_curvature"], abs=1e-4)


def test_trajectory_with_everything_off_is_plain_adam():
    trajectory = tf.run_trajectory("flat_sharp", "Adam", steps=25)
    w = torch.nn.Parameter(torch.tensor(tf.test_function("flat_sharp").start, dtype=torch.float64))
    adam = torch.optim.Adam([w], lr=tf.test_function("flat_sharp").lr)
    for _ in range(25):
        adam.zero_grad()
        tf.test_function("flat_sharp")(w).backward()
        adam.step()
    assert np.array_equal(trajectory.path[-1], w.detach().numpy())
    assert trajectory.ema_path is None and trajectory.probes == []


# ---------------------------------------------------------------- Lemma 3.3: FD-HVP error, by hand
def test_fd_error_is_alpha_squared_over_six_for_the_quartic_and_alpha_over_two_at_the_cubic_kink():
    for alpha in (0.1, 0.01):
        quartic = lemmas.fd_case("quartic")
        assert lemmas.fd_hvp_error(quartic.fn, quartic.w, quartic.v, alpha) == pytest.approx(alpha**2 / 6, rel=1e-6)
        cubic = lemmas.fd_case("abs_cubic")
        assert lemmas.fd_hvp_error(cubic.fn, cubic.w, cubic.v, alpha) == pytest.approx(alpha / 2, rel=1e-9)
    # a³ sin(x/a) at x = aπ/2: error = a(1 − a sin(α/a)/α), far above the printed (ρ_H/6)α² with ρ_H = 1
    sine = lemmas.fd_case("fast_sine")
    alpha, a = 0.003, 0.01
    error = lemmas.fd_hvp_error(sine.fn, sine.w, sine.v, alpha)
    assert error == pytest.approx(a * (1 - a * math.sin(alpha / a) / alpha), rel=1e-6)
    bounds = lemmas.fd_error_bounds(alpha, sine.rho_h, sine.m4)
    assert error > 50 * bounds["printed"]
    assert error <= bounds["fourth_derivative"] and error <= bounds["hessian_lipschitz"]


def test_fitted_slope_recovers_a_power_law():
    x = np.logspace(-3, -1, 7)
    assert lemmas.fitted_slope(x, 3 * x**2) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        lemmas.fitted_slope([1.0], [1.0])


def test_negative_curvature_step_rises_uphill_under_the_lemmas_step_condition():
    step = lemmas.negative_curvature_step(tf.test_function("saddle"), (0.0, 0.05), (0.01, 0.02))
    assert step["meets_eta_le_eps_over_gamma"].all()
    assert (step["change_uphill"] > 0).all()
    assert (step["change_downhill"] <= step["claimed"]).all()
    with pytest.raises(ValueError, match="no negative eigenvalue"):
        lemmas.negative_curvature_step(tf.test_function("saddle"), (0.0, 1.5), (0.01,))


# ---------------------------------------------------------------- Lemma 3.2: the robust objective, exactly
def test_robust_objective_of_linear_and_quadratic_functions():
    linear = lambda w: 3 * w[..., 0] - 4 * w[..., 1]  # noqa: E731
    value, delta = lemmas.robust_objective(linear, (0.2, 0.1), 0.1)
    assert value == pytest.approx(0.6 - 0.4 + 0.1 * 5, abs=1e-10)
    assert np.allclose(delta, [0.06, -0.08], atol=1e-6)
    bowl = lambda w: 0.5 * (w**2).sum(-1)  # noqa: E731
    value, _ = lemmas.robust_objective(bowl, (0.3, 0.4), 0.2)
    assert value == pytest.approx(0.5 * (0.5 + 0.2) ** 2, abs=1e-10)
    with pytest.raises(ValueError, match="rho"):
        lemmas.robust_objective(bowl, (0.0, 0.0), 0.0)


# ---------------------------------------------------------------- Lemma 3.4: SGLD on a quadratic
def test_sgld_expected_change_is_exact_and_exceeds_the_printed_bound_at_a_minimum():
    out = lemmas.sgld_expected_change([4.0, 4.0], [0.0, 0.0], eta=0.1, temperature=0.01)
    assert out["exact"] == pytest.approx(0.1 * 0.01 * 8)  # ηT tr(A)
    assert out["monte_carlo"] == pytest.approx(out["exact"], rel=0.02)
    assert out["exact"] > out["printed_bound"]
    assert out["exact"] == pytest.approx(out["corrected_bound"])


# ---------------------------------------------------------------- runner bookkeeping
def test_optimizer_state_bytes_counts_adam_moments_and_the_ema():
    model = torch.nn.Linear(5, 3)
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 5)).sum().backward()
    adam.step()
    assert runner.optimizer_state_bytes(adam) == 2 * n_bytes
    eeo = EEO(model.parameters(), sam=False, escape=False, sgld=False, ema=True, lr=1e-3)
    eeo.step()
    assert runner.optimizer_state_bytes(eeo) == 3 * n_bytes


def test_paired_tests_and_ablation_table_by_hand():
    rows = []
    for seed, (full, minus) in enumerate([(0.40, 0.42), (0.41, 0.42), (0.39, 0.43)]):
        for variant, value in (("EEO full", full), ("EEO − SGLD", minus)):
            rows.append({"dataset": "ETTh1", "horizon": 96, "arch": "toy", "variant": variant, "seed": seed,
                         "test_mse": value, "overrides": {}})
    runs = pd.DataFrame(rows)
    tests = runner.paired_tests(runs, others=("EEO − SGLD",))
    assert tests["mean_diff"].iloc[0] == pytest.approx((0.02 + 0.01 + 0.04) / 3)
    assert tests["wins_of_reference"].iloc[0] == 3
    assert tests["reference_mse"].iloc[0] == pytest.approx(0.40)
    assert tests["wilcoxon_p"].iloc[0] == pytest.approx(0.25)  # exact, n = 3: the smallest two-sided p
    table = runner.ablation_table(runs, ("EEO full", "EEO − SGLD"))
    assert table.set_index("variant").loc["EEO full", "mean"] == pytest.approx(0.40)



def _loo_tests(relative: dict[str, list[float]], reference_mse: float = 0.5) -> pd.DataFrame:
    """A frame shaped like paired_tests: per part, one cell per relative difference (5 seeds each)."""
    return pd.DataFrame([{"dataset": "ETTh1", "horizon": 96 * (i + 1), "variant": part, "n_seeds": 5,
                          "reference_mse": reference_mse, "mean_diff": r * reference_mse, "std_diff": 0.01,
                          "wins_of_reference": 5 if r > 0 else 1}
                         for part, values in relative.items() for i, r in enumerate(values)])


def test_loo_summary_pools_cells_by_hand():
    tests = _loo_tests({"EEO − escape": [-0.1, -0.2, -0.05], "EEO − EMA": [0.1, 0.3, -0.2], "EEO − SGLD": [0, 0, 0]})
    summary = runner.loo_summary(tests)
    assert list(summary.index) == ["escape", "EMA", "SGLD"]
    escape, ema, sgld = (summary.loc[part] for part in ("escape", "EMA", "SGLD"))
    assert (escape["cells"], escape["cells where removing hurts"], escape["cells where removing helps"]) == (3, 0, 3)
    assert escape["median Δ (% of full EEO)"] == pytest.approx(-10.0)
    assert escape["seed pairs full EEO better"] == "3 of 15"
    # exact signed-rank test, n = 3: all one sign gives the smallest two-sided p, 2/8; for EMA |r| ranks 1, 3 are
    # positive and 2 negative: min(W+, W−) = 2, P(W ≤ 2) = 3/8, two-sided 0.75
    assert escape["Wilcoxon p over cells"] == pytest.approx(0.25)
    assert ema["Wilcoxon p over cells"] == pytest.approx(0.75)
    assert sgld["Wilcoxon p over cells"] == 1.0 and sgld["cells where removing hurts"] == 0
    # Holm over the three parts: 0.25·3, max(0.75, 0.75·2) → 1.5 capped at 1, then 1
    assert escape["Holm-adjusted p"] == pytest.approx(0.75)
    assert ema["Holm-adjusted p"] == pytest.approx(1.0) and sgld["Holm-adjusted p"] == pytest.approx(1.0)
    assert runner.loo_summary(pd.DataFrame()).empty


def test_loo_figure_draws_relative_differences_per_part():
    import matplotlib

    matplotlib.use("Agg")
    from flatcast.experiments import eeo_figures

    tests = _loo_tests({"EEO − escape": [-0.1, -0.2], "EEO − EMA": [0.1, 3.0]}, reference_mse=0.4)
    fig = eeo_figures.loo_figure(tests)
    assert [ax.get_title() for ax in fig.axes] == ["EEO − escape", "EEO − EMA"]
    drawn = [line for line in fig.axes[1].lines if line.get_marker() == "D"]
    assert np.concatenate([line.get_ydata() for line in drawn]) == pytest.approx([10.0, 300.0])  # % of 0.4
    assert fig.axes[1].get_yscale() == "symlog"



def _curve_runs() -> pd.DataFrame:
    base = {"horizon": 96, "arch": "toy", "overrides": {}}
    return pd.DataFrame([
        {**base, "dataset": "ETTh1", "variant": "EEO full", "seed": 0, "val_curve": [1.0, 0.5, 2.5, 0.6],
         "best_epoch": 1, "epochs_run": 3},                                                  # blow-up after a good epoch
        {**base, "dataset": "ETTh1", "variant": "EEO full", "seed": 1, "val_curve": [1.0, 0.5, 1.9, 0.4],
         "best_epoch": 3, "epochs_run": 3},                                                  # 1.9 < 2: none
        {**base, "dataset": "ETTm2", "variant": "EEO full", "seed": 0, "val_curve": [1.0, 3.0, 1.2],
         "best_epoch": 2, "epochs_run": 2},                                                  # never below epoch 0
        {**base, "dataset": "ETTh1", "variant": "AdamW", "seed": 0, "val_curve": [1.0, 0.9, 0.8],
         "best_epoch": 2, "epochs_run": 2},
        {**base, "dataset": "ETTh1", "variant": "AdamW", "seed": 1, "val_curve": [1.0, 9.0], "best_epoch": 1,
         "epochs_run": 1, "overrides": {"rho": 1.0}},                                        # not a plain run
    ])


def test_validation_blowups_by_hand():
    table = runner.validation_blowups(_curve_runs())
    assert list(table.index) == ["AdamW", "EEO full"]  # the order of VARIANTS
    full, adamw = table.loc["EEO full"], table.loc["AdamW"]
    assert (full["ETTh1: blow-ups"], full["ETTm2: blow-ups"], full["runs"]) == (1, 1, 3)
    assert (full["with a blow-up"], full["never below epoch 0"], full["epochs run (median)"]) == (2, 1, 3)
    assert (adamw["runs"], adamw["with a blow-up"], adamw["ETTm2: blow-ups"]) == (1, 0, 0)
    assert runner.validation_blowups(_curve_runs(), factor=1.5).loc["EEO full", "with a blow-up"] == 3
    assert runner.validation_blowups(pd.DataFrame()).empty


def test_validation_curves_figure_draws_ratios_to_epoch_0():
    import matplotlib

    matplotlib.use("Agg")
    from flatcast.experiments import eeo_figures

    runs = _curve_runs().iloc[:2].assign(val_curve=[[2.0, 1.0, 5.0, 1.2], [2.0, 1.0, 3.8, 0.8]])
    fig = eeo_figures.validation_curves_figure(runs, ["EEO full"])
    ax = fig.axes[0]
    curves = [line for line in ax.lines if line.get_linestyle() == "-" and len(line.get_ydata()) == 4]
    assert np.asarray(curves[0].get_ydata()) == pytest.approx([1.0, 0.5, 2.5, 0.6])
    restored = [line for line in ax.lines if line.get_marker() == "o"]
    assert [float(line.get_ydata()[0]) for line in restored] == pytest.approx([0.5, 0.4])  # epochs 1 and 3
    assert ax.get_yscale() == "log" and ax.get_xlabel().startswith("epoch (0 = untrained)")



def test_run_cells_with_overrides_and_seeds_and_the_cli_that_sets_them(tmp_path, monkeypatch):
    calls = []

    def fake_train(key, splits, config, device="cpu", sharpness=True):
        calls.append(key)
        return {"id": key.as_id(), "test_mse": 0.5, "epochs_run": 1}

    monkeypatch.setattr(runner, "train_run", fake_train)
    monkeypatch.setattr(runner, "make_splits", lambda *a, **k: object())
    config = runner.eeo_config("paper")
    out = tmp_path / "kick.jsonl"
    runner.run_cells([("ETTm2", 720, "toy", ("EEO full",))], config, out=out, overrides={"kick_threshold": 0.01},
                     seeds=(3, 4))
    assert [k.seed for k in calls] == [3, 4] and calls[0].overrides == (("kick_threshold", 0.01),)
    assert calls[0].as_id().endswith("|s3|kick_threshold=0.01")  # never the id of a plain run
    calls.clear()
    runner.main(["--cells", "ETTm2:720:toy", "--variants", "EEO full", "--override", "kick_threshold=0.01",
                 "--seeds", "3,4,1", "--out", str(out)])
    assert [k.seed for k in calls] == [1]  # 3 and 4 are stored
    for argv, message in ((["--override", "kick_threshold=0.01"], "need --out"),
                          (["--override", "kick_thresh=0.01", "--out", str(out)], "unknown EEO setting"),
                          (["--override", "kick_threshold", "--out", str(out)], "NAME=NUMBER"),
                          (["--override", "sgld=0", "--out", str(out)], "unknown EEO setting")):
        with pytest.raises(SystemExit, match=message):
            runner.main(["--cells", "ETTm2:720:toy", *argv])
    assert [k.seed for k in calls] == [1]  # bad input stops before any training


def test_override_comparison_pairs_seeds_by_hand(tmp_path, monkeypatch):
    def run(seed, mse, kicks, curve, overrides=None, variant="EEO full", epochs=5):
        return {"id": f"{variant}|s{seed}|{overrides}", "dataset": "ETTm2", "horizon": 720, "arch": "toy",
                "variant": variant, "seed": seed,
                "overrides": overrides or {}, "test_mse": mse, "n_kicks": kicks, "n_probes": 10, "val_curve": curve,
                "epochs_run": epochs}

    plain = pd.DataFrame([run(0, 0.40, 5, [1.0, 0.5, 3.0]), run(1, 0.44, 3, [1.0, 0.5, 0.6]),
                          run(2, 0.50, 9, [1.0, 0.5, 0.4]),                       # no overridden run of seed 2
                          run(0, 9.0, 0, [1.0, 0.5], variant="SAM alone")])        # another variant
    moved = pd.DataFrame([run(s, m, k, [1.0, 0.5, 0.45], {"kick_threshold": 0.01}, epochs=9)
                          for s, m, k in ((0, 0.38, 1), (1, 0.43, 0))])
    table = runner.override_comparison(plain, moved)
    row = table.loc[("ETTm2", 720, "kick_threshold=0.01")]
    assert row["seeds"] == 2
    assert row["test MSE (as printed)"] == pytest.approx(0.42) and row["test MSE (setting)"] == pytest.approx(0.405)
    assert row["Δ paired (mean)"] == pytest.approx(-0.015) and row["Δ paired (seed std)"] == pytest.approx(
        np.std([-0.02, -0.01], ddof=1))
    assert row["kicks/probe (as printed)"] == pytest.approx(8 / 20) and row["kicks/probe (setting)"] == 1 / 20
    assert (row["blow-ups (as printed)"], row["blow-ups (setting)"]) == (1, 0)
    assert (row["epochs (as printed)"], row["epochs (setting)"]) == (5, 9)
    assert runner.override_comparison(plain, pd.DataFrame()).empty
    # the stored runs of one override: every file of the runners that wrote it, nothing else
    monkeypatch.setattr(runner, "REPO_ROOT", tmp_path)
    (tmp_path / "data" / "results").mkdir(parents=True)
    for suffix, frame in (("_h720", moved.iloc[:1]), ("_h96", moved.iloc[1:])):
        path = tmp_path / "data" / "results" / f"eeo_paper_kick_threshold{suffix}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    (tmp_path / "data" / "results" / "eeo_paper_runs.jsonl").write_text(json.dumps(run(3, 1.0, 0, [1.0])) + "\n")
    assert sorted(runner.load_override_runs("kick_threshold")["seed"]) == [0, 1]

def test_run_cells_appends_records_and_skips_finished_runs(tmp_path, monkeypatch):
    calls = []

    def fake_train(key, splits, config, device="cpu", sharpness=True):
        calls.append(key.as_id())
        return {"id": key.as_id(), "test_mse": 0.5, "epochs_run": 1}

    monkeypatch.setattr(runner, "train_run", fake_train)
    monkeypatch.setattr(runner, "make_splits", lambda *a, **k: object())
    commits = iter(f"commit{i}" for i in range(100))  # a new commit lands at every call: one per finished run
    monkeypatch.setattr(runner, "provenance", lambda device: {"device": device, "commit": next(commits),
                                                              "dirty": False, "date": "d"})
    monkeypatch.setattr(runner, "runner_start", lambda device: {"commit": next(commits)})
    config = runner.eeo_config("quick", seeds=(0, 1))
    out = tmp_path / "eeo_paper_runs.jsonl"
    cells = [("ETTh1", 96, "toy", ("AdamW", "EEO full"))]
    runner.run_cells(cells, config, out=out, max_runs=3)
    assert len(calls) == 3
    first = [json.loads(line)["provenance"] for line in out.read_text().splitlines()]
    # each record names the commit the call started from (the code it runs) beside the one when its run ended
    assert [p["runner_start"]["commit"] for p in first] == ["commit0"] * 3
    assert [p["commit"] for p in first] == ["commit1", "commit2", "commit3"]
    runner.run_cells(cells, config, out=out)
    assert len(calls) == 4 and len(set(calls)) == 4  # only the missing run was trained
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == calls and all("provenance" in line for line in lines)
    # a run stored by a parallel process in a sibling file of the same family is done too
    sibling_cell = [("ETTh2", 96, "toy", ("AdamW",))]
    sibling_id = runner.RunKey("ETTh2", 96, "toy", "AdamW", 0, config.lookback).as_id()
    (tmp_path / "eeo_paper_runs_loo.jsonl").write_text(json.dumps({"id": sibling_id, "test_mse": 0.4}) + "\n")
    runner.run_cells(sibling_cell, config, out=out)
    assert sibling_id not in calls and len(calls) == 5  # only seed 1 ran


def test_architecture_table_puts_the_original_transformer_beside_the_channel_one():
    def run(arch, variant, seed, mse, horizon=96, overrides=()):
        return {"dataset": "ETTh1", "horizon": horizon, "arch": arch, "variant": variant, "seed": seed,
                "test_mse": mse, "overrides": dict(overrides)}

    runs = pd.DataFrame([run("original", "AdamW", 0, 0.50), run("original", "AdamW", 1, 0.56),
                         run("toy", "AdamW", 0, 0.40), run("toy", "EEO full", 0, 0.38), run("toy", "EEO full", 1, 0.36),
                         run("toy", "AdamW", 0, 9.0, overrides={"rho": 1.0}),  # a sensitivity run: not counted
                         run("toy", "AdamW", 0, 0.45, horizon=192)])  # no 'Original' run at H = 192: no row
    table = runner.architecture_table(runs)
    assert list(table.index) == [("ETTh1", 96)]
    row = table.loc[("ETTh1", 96)]
    assert row["Original AdamW MSE"] == pytest.approx(0.53) and row["Original AdamW seeds"] == 2
    assert np.isnan(row["Original EEO full MSE"]) and row["Original EEO full seeds"] == 0
    assert row["channel AdamW MSE"] == pytest.approx(0.40) and row["channel AdamW seeds"] == 1
    assert row["channel EEO full MSE"] == pytest.approx(0.37) and row["channel EEO full seeds"] == 2
    assert runner.architecture_table(pd.DataFrame()).empty


def test_main_trains_only_the_variants_asked_for_and_rejects_an_unknown_one(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(runner, "run_cells", lambda cells, config, **kw: seen.setdefault("cells", list(cells)))
    out = str(tmp_path / "runs.jsonl")
    runner.main(["--cells", "ETTh1:96:original,ETTh1:96:toy", "--variants", "AdamW", "--out", out])
    assert seen["cells"] == [("ETTh1", 96, "toy", ("AdamW",)), ("ETTh1", 96, "original", ("AdamW",))]
    seen.clear()
    runner.main(["--cells", "ETTh1:96:toy", "--variants", "EEO − SAM", "--out", out])  # only the leave-one-out cell has it
    assert seen["cells"] == [("ETTh1", 96, "toy", ("EEO − SAM",))]
    with pytest.raises(SystemExit, match="unknown variant.*Adam"):
        runner.main(["--cells", "ETTh1:96:original", "--variants", "Adam", "--out", out])


def test_unknown_profile_variant_and_architecture_raise():
    with pytest.raises(ValueError, match="bogus"):
        runner.eeo_config("bogus")
    key = runner.RunKey("ETTh1", 96, "toy", "nope", 0, 96)
    with pytest.raises(KeyError, match="nope"):
        runner.train_run(key, None, runner.eeo_config("quick"))


def _tiny_splits():
    from flatcast.data import make_toy

    return make_toy(n_train=64, n_val=32, lookback=32, horizon=8, n_channels=3, seed=0)


def test_real_fd_curvature_agrees_with_double_backward_at_eeos_alpha():
    frame = runner.real_fd_curvature(_tiny_splits(), alphas=(5e-3, 1e-1), n_windows=32)
    exact = frame["exact_curvature"].iloc[0]
    at_default = frame.set_index("alpha").loc[5e-3, "abs_error"]
    assert at_default < 1e-2 * max(abs(exact), 1e-3)


def test_dropout_makes_the_fd_probe_noisy_unless_both_gradients_share_the_mask():
    frame = runner.dropout_probe_check(_tiny_splits(), runner.eeo_config("quick"), repeats=3, n_windows=32)
    assert list(frame["mode"].unique()) == [mode for mode, _, _ in runner.DROPOUT_PROBE_MODES]
    reads = {mode: group["fd_curvature"] for mode, group in frame.groupby("mode", sort=False)}
    per_gradient, per_product, off = (reads[mode] for mode, _, _ in runner.DROPOUT_PROBE_MODES)
    reference = frame["exact_curvature_no_dropout"].iloc[0]
    assert off.nunique() == 1 and off.iloc[0] == pytest.approx(reference, rel=1e-2, abs=1e-6)
    assert per_gradient.nunique() == 3 and per_product.nunique() == 3  # each read draws new dropout masks
    # at one mask per product the reading is that mask's curvature: far less scattered than with a mask per gradient
    assert (per_product - reference).abs().max() < (per_gradient - reference).abs().max() / 5


# ---------------------------------------------------------------- verdicts computed from their evidence
def test_place_of_names_minima_saddles_and_elsewhere():
    assert runner.place_of("flat_sharp", (0.98, 0.01)) == "flat well"
    assert runner.place_of("flat_sharp", (-0.6, 0.0)) == "sharp well"
    assert runner.place_of("saddle", (0.0, 0.0)) == "the saddle"
    assert runner.place_of("saddle", (0.0, -1.41)) == "minimum (0, −√2)"
    assert runner.place_of("flat_sharp", (-0.26, 0.0)) == "neither a minimum nor a saddle (-0.26, 0.00)"


def test_mechanism_outcomes_and_the_e19_sentence_built_from_them():
    outcomes = runner.mechanism_outcomes()
    at = outcomes.set_index(["function", "variant", "rho"])["place"]
    # on the stable manifold the y-gradient is exactly 0: no gradient method leaves the saddle, the escape does
    assert at[("saddle", "Adam", 0.05)] == at[("saddle", "SAM", 0.05)] == "the saddle"
    assert at[("saddle", "SAM + escape", 0.05)].startswith("minimum")
    assert at[("flat_sharp", "Adam", 0.3)] == "sharp well"
    text = runner._mechanism_text(outcomes)
    landing = {rho: at[("flat_sharp", "SAM + escape", rho)] for rho in (0.3, 0.15)}
    assert (", so escaping does not by itself select flatness" in text) == (landing[0.3] != landing[0.15])
    # the conclusion follows the outcomes: same landing at both ρ, no such sentence
    same = outcomes.copy()
    same.loc[(same.function == "flat_sharp") & (same.variant == "SAM + escape"), "place"] = "flat well"
    assert "does not by itself select flatness" not in runner._mechanism_text(same)


def _table4_runs(means, original=None, seeds=(0, 1), horizon=96):
    """Runs of one ETTh1 cell: ``means`` = {variant: test MSE} on the channel transformer (every seed the same);
    ``original`` = {variant: test MSE} of the 'Original' transformer, or one number: its EEO full, AdamW 0.1 above."""
    rows = [{"dataset": "ETTh1", "horizon": horizon, "arch": "toy", "variant": v, "seed": s, "overrides": {},
             "test_mse": m} for v, m in means.items() for s in seeds]
    if original is not None:
        if not isinstance(original, dict):
            original = {"EEO full": original, "AdamW": original + 0.1}
        rows += [{"dataset": "ETTh1", "horizon": horizon, "arch": "original", "variant": v, "seed": 0,
                  "overrides": {}, "test_mse": m} for v, m in original.items()]
    return pd.DataFrame(rows)


MONOTONE = {"AdamW": 0.45, "SAM alone": 0.42, "SAM+SGLD": 0.41, "SAM+SGLD+EMA": 0.40, "EEO full": 0.39}


@pytest.mark.parametrize("means, original, verdict", [
    # Table 4's pattern: toy + EEO full ("Current") below every row, toy below 'Original', the ladder decreasing
    (MONOTONE, 0.42, "supported"),
    # the 'Original' transformer better than the toy one: §4.4 says the toy model with EEO "performs best"
    (MONOTONE, 0.35, "partly supported"),
    ({**MONOTONE, "EEO full": 0.405}, 0.42, "partly supported"),  # EEO full above +SGLD+EMA: not decreasing
    ({"AdamW": 0.40, "SAM alone": 0.42, "SAM+SGLD": 0.43, "SAM+SGLD+EMA": 0.44, "EEO full": 0.50},
     {"EEO full": 0.45, "AdamW": 0.30}, "not supported"),  # every part fails
])
def test_table4_verdict_on_a_complete_grid(means, original, verdict):
    config = runner.eeo_config("paper", datasets=("ETTh1",), horizons=(96,), seeds=(0, 1), original_seeds=(0,))
    got, measured = runner.table4_verdict(_table4_runs(means, original), config)
    assert got == verdict, measured


def test_table4_verdict_compares_rows_on_the_horizons_they_share():
    # H = 96: the full ladder; H = 720 (harder, MSE + 0.3): every variant but EEO full. Averaging each row over the
    # horizons it has would put EEO full (H = 96 only) far below the rest; on H = 96 alone it is 0.39 vs 0.40.
    runs = pd.concat([_table4_runs(MONOTONE, {"AdamW": 0.50}),
                      _table4_runs({v: m + 0.3 for v, m in MONOTONE.items() if v != "EEO full"},
                                   {"AdamW": 0.80}, horizon=720)])
    config = runner.eeo_config("paper", datasets=("ETTh1",), horizons=(96, 720), seeds=(0, 1), original_seeds=(0,))
    got, measured = runner.table4_verdict(runs, config)
    assert got == "inconclusive" and "rule outcome supported" in measured, measured
    assert "toy EEO full < AdamW (0.390 vs 0.450, H = 96)" in measured
    assert "0.420 → 0.410 → 0.400 → 0.390" in measured
    # the AdamW rows share both horizons: (0.45 + 0.75) / 2 = 0.600 against (0.50 + 0.80) / 2 = 0.650
    assert "AdamW: toy < 'Original' (0.600 vs 0.650)" in measured  # all the profile's horizons: not named
    assert "toy EEO full lowest of the 6 rows (next: toy SAM+SGLD+EMA 0.400, H = 96)" in measured


def test_table4_verdict_is_capped_until_every_cell_seed_and_architecture_ran():
    config = runner.eeo_config("paper", datasets=("ETTh1",), horizons=(96,), seeds=(0, 1), original_seeds=(0,))
    got, measured = runner.table4_verdict(_table4_runs(MONOTONE, original=None), config)
    assert got == "inconclusive" and "rule outcome supported" in measured and "0 'Original'" in measured
    got, measured = runner.table4_verdict(_table4_runs(MONOTONE, 0.42, seeds=(0,)), config)  # seed 1 missing
    assert got == "inconclusive" and "2 of 7 items" in measured
    assert "2 'Original' transformer run(s), trained on cpu)" in measured  # no provenance: the CPU


def test_the_evidence_says_which_device_trained_the_runs():
    runs = _table4_runs(MONOTONE, 0.42)
    runs["provenance"] = [{"device": "cuda: NVIDIA H200"} if arch == "original" else {"device": "cpu: x86_64"}
                          for arch in runs["arch"]]
    assert runner.trained_on(runs) == "cpu and cuda"
    assert runner.trained_on(runs[runs["arch"] == "toy"]) == "cpu"
    assert runner.trained_on(runs.drop(columns="provenance")) == "cpu"
    config = runner.eeo_config("paper", datasets=("ETTh1",), horizons=(96,), seeds=(0, 1), original_seeds=(0,))
    assert "2 'Original' transformer run(s), trained on cuda)" in runner.table4_verdict(runs, config)[1]


@pytest.fixture(scope="module")
def lemma_numbers():
    return runner.lemma_checks()


def test_lemma_verdicts_follow_their_numbers(lemma_numbers):
    runs = _table4_runs(MONOTONE).assign(n_probes=0, n_kicks=0, lambda_max=1.0)
    mechanism = runner.mechanism_outcomes()
    v = runner.eeo_verdicts(runs, lemma_numbers, mechanism)
    assert v["E18"]["verdict"] == "not supported" and "holds with equality" in v["E18"]["evidence"]
    assert f"over {lemma_numbers['robust_descent']['cases']} (point, ρ, η) cases" in v["E16"]["evidence"]
    changed = json.loads(json.dumps(lemma_numbers, default=float))
    changed["sgld"]["printed_bound"] = changed["sgld"]["exact"]  # the bound met: the lemma would hold
    changed["attention"]["c1_late_min"] = changed["attention"]["c1_first"]  # c₁ stays: Eq. 16 would hold
    changed["fd_fast_sine"]["slope"] = 1.0  # not second order on a smooth loss
    v = runner.eeo_verdicts(runs, changed, mechanism)
    assert v["E18"]["verdict"] == "supported" and v["E15"]["verdict"] == "inconclusive"
    assert v["E17"]["verdict"] == "not supported"


def _e19_runs(lam, std_scale, seeds=(0, 1), blown=()):
    """One ETTh1 H=96 cell: λmax per variant ``lam``, test MSE 0.4 ± ``std_scale[variant]`` over the seeds; the
    variants in ``blown`` have a validation blow-up in seed 0 (an epoch at 3× the untrained model's MSE)."""
    return pd.DataFrame([{"dataset": "ETTh1", "horizon": 96, "arch": "toy", "variant": v, "seed": s, "overrides": {},
                          "lambda_max": lam[v], "test_mse": 0.4 + (s - 0.5) * std_scale[v],
                          "val_curve": [1.0, 0.5, 3.0 if (v in blown and s == 0) else 0.45]}
                         for v in ("EEO full", "SAM alone", "AdamW") for s in seeds])


@pytest.mark.parametrize("lam, spread, blown, verdict", [
    ({"EEO full": 0.5, "SAM alone": 0.6, "AdamW": 2.0}, {"EEO full": 0.001, "SAM alone": 0.003, "AdamW": 0.006},
     (), "supported"),
    ({"EEO full": 0.7, "SAM alone": 0.6, "AdamW": 2.0}, {"EEO full": 0.001, "SAM alone": 0.003, "AdamW": 0.006},
     (), "partly supported"),  # not the flattest
    ({"EEO full": 0.5, "SAM alone": 0.6, "AdamW": 2.0}, {"EEO full": 0.001, "SAM alone": 0.003, "AdamW": 0.006},
     ("EEO full",), "partly supported"),  # flattest and steadiest, but blows up where the others do not
    ({"EEO full": 0.5, "SAM alone": 0.6, "AdamW": 2.0}, {"EEO full": 0.001, "SAM alone": 0.003, "AdamW": 0.006},
     ("EEO full", "SAM alone"), "partly supported"),  # more blow-ups than AdamW, though no more than SAM alone
    ({"EEO full": 0.5, "SAM alone": 0.6, "AdamW": 2.0}, {"EEO full": 0.001, "SAM alone": 0.003, "AdamW": 0.006},
     ("EEO full", "SAM alone", "AdamW"), "supported"),  # as many as each
])
def test_e19_parts_saddle_flatness_seed_spread_and_blowups(lam, spread, blown, verdict):
    config = runner.eeo_config("paper", datasets=("ETTh1",), horizons=(96,), seeds=(0, 1))
    mechanism = pd.DataFrame([{"function": "saddle", "variant": "SAM", "place": "the saddle"},
                              {"function": "saddle", "variant": "SAM + escape", "place": "minimum (0, √2)"}])
    got, measured = runner.e19_verdict(_e19_runs(lam, spread, blown=blown), mechanism, config)
    assert got == verdict, measured
    counts = {v: int(v in blown) for v in ("EEO full", "SAM alone", "AdamW")}
    assert (", ".join(f"{v} {k} of 2" for v, k in counts.items()) + "; EEO full no less stable: "
            + ("yes" if counts["EEO full"] <= min(counts["SAM alone"], counts["AdamW"]) else "no") + ".") in measured
    # the paper profile's seeds are 0–4: these two-seed runs complete no cell of it, so only the saddle part counts
    assert runner.e19_verdict(_e19_runs(lam, spread), mechanism)[0] == "partly supported"
    assert runner.e19_verdict(_e19_runs(lam, spread, seeds=(0,)), mechanism, config)[1].endswith(
        "No paper-profile cell has every seed of EEO full, SAM alone and AdamW yet.")


def test_e19_evidence_counts_the_cells_and_names_those_that_fail():
    config = runner.eeo_config("paper", datasets=("ETTh1",), horizons=(96, 192), seeds=(0, 1))
    mechanism = pd.DataFrame([{"function": "saddle", "variant": "SAM", "place": "the saddle"},
                              {"function": "saddle", "variant": "SAM + escape", "place": "minimum (0, √2)"}])
    spread = {"EEO full": 0.001, "SAM alone": 0.003, "AdamW": 0.006}
    runs = pd.concat([_e19_runs({"EEO full": 0.5, "SAM alone": 0.6, "AdamW": 2.0}, spread),
                      _e19_runs({"EEO full": 0.7, "SAM alone": 0.6, "AdamW": 2.0}, spread).assign(horizon=192)])
    got, measured = runner.e19_verdict(runs, mechanism, config)
    assert got == "partly supported"
    assert "2 of 2. EEO full's mean λmax of the training loss is below SAM alone's on 1 of 2 and below AdamW's on 2" \
        in measured
    assert "(medians over the cells: EEO full 0.6, SAM alone 0.6, AdamW 2)" in measured
    assert "EEO full flattest on every cell: no (not on ETTh1 H=192)" in measured
    assert "smallest seed spread on every cell: yes. Runs with a validation blow-up" in measured


def test_ablation_summary_formats_mean_std_and_orders_variants_as_the_paper():
    runs = _table4_runs({"EEO full": 0.39, "AdamW": 0.45}, seeds=(0, 1))
    runs.loc[(runs.variant == "AdamW") & (runs.seed == 1), "test_mse"] = 0.47      # std of (0.45, 0.47) = 0.0141
    runs = pd.concat([runs, _table4_runs({"SAM alone": 0.42}, seeds=(0,))], ignore_index=True)
    table = runner.ablation_summary(runs)
    assert [v for _, _, v in table.index] == ["AdamW", "SAM alone", "EEO full"]  # VARIANTS order, not alphabetical
    column = "test MSE (mean ± std over seeds)"
    assert table.loc[("ETTh1", 96, "AdamW"), column] == "0.4600 ± 0.0141"
    assert table.loc[("ETTh1", 96, "SAM alone"), column] == "0.4200 ± n/a (1 seed)"
    assert table.loc[("ETTh1", 96, "EEO full"), "seeds"] == 2
    assert runner.ablation_summary(pd.DataFrame()).empty


def test_cost_table_ratios_per_variant():
    rows = [{"arch": "toy", "variant": v, "grad_evals_per_step": g, "s_per_epoch": 1.0, "state_bytes": sb,
             "param_bytes": 100, "n_probes": p, "n_kicks": k, "probe_negative_fraction": 0.0,
             "probe_curvature_median": 0.0, "lambda_max": 1.0}
            for v, g, sb, p, k in (("EEO full", 4.2, 300, 10, 2), ("EEO full", 4.2, 300, 10, 4), ("AdamW", 1, 200, 0, 0))]
    rows.append({**rows[0], "arch": "original", "n_kicks": 99})  # another architecture: left out
    rows = [{**row, "provenance": {"compiled": False}} for row in rows]
    rows.append({**rows[0], "s_per_epoch": 0.5, "n_kicks": 3, "provenance": {"compiled": True}})  # no wall time
    rows.append({**rows[0], "s_per_epoch": 0.1, "n_kicks": 3,  # on a GPU: no wall time either
                 "provenance": {"compiled": False, "device": "cuda: NVIDIA H200"}})
    table = runner.cost_table(pd.DataFrame(rows))
    assert table.loc["EEO full", "s_per_epoch"] == 1.0 and table.loc["EEO full", "grad_evals_per_step"] == 4.2
    assert list(table.index) == ["AdamW", "EEO full"]
    assert table.loc["EEO full", "state_over_params"] == 3.0 and table.loc["AdamW", "state_over_params"] == 2.0
    assert table.loc["EEO full", "kicks per probe"] == pytest.approx(0.3)  # mean of 2/10, 4/10, 3/10, 3/10
    assert np.isnan(table.loc["AdamW", "kicks per probe"])                 # no probe: not a rate of zero
    assert list(table.columns) == list(runner.COST_COLUMNS)


def test_sensitivity_defaults_are_eeos_own_and_the_grid_moves_each_around_them():
    defaults = runner.sensitivity_defaults(0.5)
    assert defaults == {"rho": 0.5, "temperature": 1e-5, "ema_decay": 0.99, "fd_alpha": 5e-3, "probe_every": 10}
    for setting, values in runner.sensitivity_grid(0.5).items():
        assert values[1] == defaults[setting] and values[0] < values[1] < values[2]


def test_run_sensitivity_trains_each_seeds_default_once_even_when_resumed(tmp_path, monkeypatch):
    calls = []

    def fake_train(key, splits, config, device="cpu", sharpness=True):
        calls.append(dict(key.overrides))
        return {"id": key.as_id(), "seed": key.seed, "test_mse": 0.5, "n_kicks": 0, "dataset": key.dataset,
                "horizon": key.horizon}

    monkeypatch.setattr(runner, "train_run", fake_train)
    monkeypatch.setattr(runner, "make_splits", lambda *a, **k: object())
    monkeypatch.setattr(runner, "provenance", lambda device: {"device": device})
    config = runner.eeo_config("quick", sensitivity_seeds=(0, 1))
    out = tmp_path / "eeo_paper_sensitivity.jsonl"
    runner.run_sensitivity(config, out=out)
    grid = runner.sensitivity_grid(runner.paper_rho("ETTh1", 96, fallback=True))
    n_values = sum(len(v) for v in grid.values())
    assert len(calls) == 2 * (n_values - (len(grid) - 1))  # the defaults' run: once per seed, not once per setting
    lines = out.read_text().splitlines()
    assert len(lines) == 2 * n_values
    # resumed after losing the last half: the stored defaults' runs are reused, only moved settings retrain
    out.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    calls.clear()
    frame = runner.run_sensitivity(config, out=out)
    moved_left = sum(1 for line in lines[len(lines) // 2:] if json.loads(line)["value"] != runner.sensitivity_defaults(
        runner.paper_rho("ETTh1", 96, fallback=True))[json.loads(line)["setting"]])
    assert len(calls) == moved_left and len(frame) == 2 * n_values


def _sensitivity_rows():
    defaults = {"rho": 0.5, "ema_decay": 0.99}
    rows = []
    for setting, value, seed, mse, kicks in [
            ("rho", 0.125, 0, 0.40, 2), ("rho", 0.125, 1, 0.42, 4), ("rho", 0.5, 0, 0.38, 1), ("rho", 0.5, 1, 0.39, 1),
            ("rho", 2.0, 0, 0.37, 0), ("rho", 2.0, 1, 0.40, 0),
            ("ema_decay", 0.9, 0, 0.381, 1), ("ema_decay", 0.9, 1, 0.389, 1), ("ema_decay", 0.99, 0, 0.38, 1),
            ("ema_decay", 0.99, 1, 0.39, 1)]:
        rows.append({"dataset": "ETTh1", "horizon": 96, "setting": setting, "value": value, "seed": seed,
                     "test_mse": mse, "n_kicks": kicks, "n_probes": 10, "epochs_run": 5 + seed})
    return pd.DataFrame(rows), defaults


def test_sensitivity_table_pairs_by_seed_against_the_default():
    frame, defaults = _sensitivity_rows()
    table = runner.sensitivity_table(frame, defaults)
    low = table.loc[("rho", 0.125)]
    assert low["test_mse_mean"] == pytest.approx(0.41) and low["test_mse_std"] == pytest.approx(0.02 / math.sqrt(2))
    assert low["delta_vs_default"] == pytest.approx(((0.40 - 0.38) + (0.42 - 0.39)) / 2)  # 0.025
    assert low["kicks_per_run"] == 3.0 and low["kicks_per_probe"] == pytest.approx(6 / 20) and low["epochs_run"] == 5.5
    assert not low["default"] and table.loc[("rho", 0.5), "default"]
    assert table.loc[("rho", 0.5), "delta_vs_default"] == 0.0
    assert list(table.index.get_level_values(0).unique()) == ["rho", "ema_decay"]  # the grid's order


def test_sensitivity_reading_compares_the_range_of_means_with_the_seed_spread():
    frame, defaults = _sensitivity_rows()
    reading = runner.sensitivity_reading(runner.sensitivity_table(frame, defaults))
    # ρ: means 0.41 / 0.385 / 0.385, range 0.025; largest std 0.03/√2 ≈ 0.0212 (ρ = 2), 2 × 0.0212 > 0.025
    assert reading.loc["rho", "range of means"] == pytest.approx(0.025)
    assert reading.loc["rho", "seed std (largest)"] == pytest.approx(0.03 / math.sqrt(2))
    assert not reading.loc["rho", "matters"] and reading.loc["rho", "worst value"] == "0.125"
    assert not reading.loc["ema_decay", "matters"]
    assert runner.sensitivity_reading(runner.sensitivity_table(frame, defaults), factor=1.0).loc["rho", "matters"]


def test_sensitivity_references_and_default_check_use_the_grids_cell_and_seeds_only():
    frame, _ = _sensitivity_rows()
    frame["lookback"] = 512
    base = {"dataset": "ETTh1", "horizon": 96, "arch": "toy", "lookback": 512, "overrides": {}}
    runs = pd.DataFrame([{**base, "variant": v, "seed": s, "test_mse": m} for v, s, m in [
        ("AdamW", 0, 0.40), ("AdamW", 1, 0.42), ("AdamW", 2, 9.0),        # seed 2 is not in the grid: left out
        ("SAM alone", 0, 0.37),                                            # seed 1 missing: variant left out
        ("SAM+SGLD+EMA", 0, 0.36), ("SAM+SGLD+EMA", 1, 0.38),
        ("EEO full", 0, 0.38), ("EEO full", 1, 0.391)]]
        + [{**base, "horizon": 192, "variant": "AdamW", "seed": 0, "test_mse": 5.0},     # another cell
           {**base, "variant": "EEO full", "seed": 0, "test_mse": 7.0, "overrides": {"rho": 1.0}}])  # not plain
    refs = runner.sensitivity_references(runs, frame)
    assert refs == {"AdamW (same seeds)": pytest.approx(0.41), "EEO − escape (same seeds)": pytest.approx(0.37)}
    for table, extra in ((frame, 0.0), (runs, 1e-9)):  # validation MSEs differing at rounding level
        table["best_epoch"] = 3
        table["val_curve"] = [[0.7 + extra, 0.6 + 3 * extra]] * len(table)  # epoch 0 (untrained), epoch 1
        table["provenance"] = [{"commit": "a" * 40 if table is frame else "b" * 40}] * len(table)
    check = runner.sensitivity_default_check(runs, frame, {"rho": 0.5, "ema_decay": 0.99})
    assert check["seed"].tolist() == [0, 1]
    assert check["test MSE (sensitivity)"].tolist() == [0.38, 0.39]
    assert check["test MSE (ablation)"].tolist() == [0.38, 0.391]
    assert check["|Δ| val MSE, epoch 0"].tolist() == pytest.approx([1e-9, 1e-9], rel=1e-3)
    assert check["|Δ| val MSE, epoch 1"].tolist() == pytest.approx([3e-9, 3e-9], rel=1e-3)
    assert check["commits"].iloc[0] == "aaaaaaaa / bbbbbbbb" and check["best epoch"].iloc[0] == "3 / 3"


def test_table4_comparison_averages_as_table4_does_by_hand():
    from flatcast.reference import load_reference

    reference = load_reference("eeo_table4_ablation")
    reference = reference[reference["dataset"] == "ETTh1"]
    runs = pd.DataFrame([{"dataset": "ETTh1", "horizon": h, "arch": "toy", "variant": "AdamW", "seed": s,
                          "overrides": {}, "test_mse": m}
                         for s, h, m in ((0, 96, 0.4), (0, 192, 0.6), (1, 96, 0.5), (1, 192, 0.7), (2, 96, 0.3))])
    table = runner.table4_comparison(runs, reference, horizons=(96, 192))
    row = table.loc[("ETTh1", "Toy+AdamW")]
    # H = 96: (0.4 + 0.5 + 0.3) / 3 = 0.4; H = 192: (0.6 + 0.7) / 2 = 0.65; Table 4's average 0.525
    assert row["ours"] == pytest.approx(0.525)
    # seeds with both horizons: 0 → 0.5, 1 → 0.6; std (ddof 1) = 0.1 / √2
    assert row["seed std"] == pytest.approx(0.1 / math.sqrt(2))
    assert row["paper"] == pytest.approx(0.452) and row["ours − paper"] == pytest.approx(0.525 - 0.452)
    assert (row["horizons run"], row["fewest seeds"]) == (2, 2)
    missing = table.loc[("ETTh1", "Original+EEO")]
    assert np.isnan(missing["ours"]) and missing["horizons run"] == 0 and missing["paper"] == pytest.approx(0.413)
    assert list(table.index.get_level_values("Table 4 row")) == [label for _, _, label in runner.TABLE4_ROWS]
    assert row["rank (ours)"] == 1 and row["rank (paper)"] == 1  # the only row run at both horizons
    assert np.isnan(missing["rank (ours)"]) and np.isnan(missing["rank (paper)"])
    # a run with overrides (the sensitivity grid) is not a Table 4 run
    moved = pd.concat([runs, runs.assign(overrides=[{"rho": 1.0}] * len(runs), test_mse=9.0)])
    assert runner.table4_comparison(moved, reference, horizons=(96, 192)).loc[("ETTh1", "Toy+AdamW"), "ours"] \
        == pytest.approx(0.525)


def test_table4_figure_draws_complete_rows_and_labels_the_others():
    import matplotlib

    matplotlib.use("Agg")
    from flatcast.experiments import eeo_figures
    from flatcast.reference import load_reference

    reference = load_reference("eeo_table4_ablation")
    runs = _table4_runs(MONOTONE, 0.42)
    fig = eeo_figures.table4_figure(runner.table4_comparison(runs, reference, horizons=(96,)), n_horizons=1)
    ranks = runner.table4_comparison(runs, reference, horizons=(96,)).loc["ETTh1"]
    # ours: 0.45, 0.42, 0.41, 0.40, 0.39 (toy), 0.52, 0.42 ('Original'); Table 4: .452 .436 .426 .413 .404 .461 .413
    assert list(ranks["rank (ours)"]) == [6, 4, 3, 2, 1, 7, 4]
    assert list(ranks["rank (paper)"]) == [6, 5, 4, 2, 1, 7, 2]
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[0] == "Toy+AdamW" and ticks[-1] == "Original+EEO"
    assert [t.get_text() for t in fig.axes[2].get_xticklabels()][0] == "Toy+AdamW (0/1 H)"  # ETTm1: no run
    assert len(fig.axes[0].lines) > len(fig.axes[2].lines)  # our markers on ETTh1 only
    assert fig.axes[0].get_ylabel().startswith("test MSE")


def test_original_work_left_by_hand():
    config = runner.eeo_config("paper", datasets=("ETTh1",), horizons=(96,), seeds=(0, 1, 2), original_seeds=None)
    runs = pd.DataFrame(
        [{"dataset": "ETTh1", "horizon": 96, "arch": "original", "variant": "AdamW", "seed": s, "overrides": {},
          "epochs_run": 6, "grad_evals_per_step": 1.0} for s in (0, 1)]
        + [{"dataset": "ETTh1", "horizon": 192, "arch": "toy", "variant": "EEO full", "seed": s, "overrides": {},
            "epochs_run": e, "grad_evals_per_step": 3.0} for s, e in ((0, 9), (1, 11))]
        + [{"dataset": "ETTh1", "horizon": 96, "arch": "toy", "variant": "EEO full", "seed": 0,
            "overrides": {"rho": 1.0}, "epochs_run": 99, "grad_evals_per_step": 9.0}])  # a sensitivity run: ignored
    left = runner.original_work_left(runs, config).set_index("variant")
    # ETTh1's training rows are [0, 8640): 8640 − 512 − 96 + 1 = 8033 windows, ⌈8033 / 32⌉ = 252 steps per epoch
    assert list(left["steps per epoch"]) == [252, 252]
    assert left.loc["AdamW", "seeds missing"] == 1 and left.loc["AdamW", "grad evals left"] == 252 * 6
    # no 'Original' EEO run yet: epochs and gradients per step from the channel transformer's EEO runs (10, 3)
    assert left.loc["EEO full", "seeds missing"] == 3
    assert left.loc["EEO full", "grad evals left"] == pytest.approx(3 * 252 * 10 * 3.0)
    complete = pd.concat([runs, runs.iloc[:1].assign(seed=2)])
    complete = pd.concat([complete] + [runs.iloc[:1].assign(variant="EEO full", seed=s) for s in (0, 1, 2)])
    assert runner.original_work_left(complete, config).empty


def test_plan_part_prints_what_is_left(capsys, monkeypatch):
    monkeypatch.setattr(runner, "load_runs", lambda path=None: pd.DataFrame())
    assert runner.main(["--part", "plan"]) == 0
    out = capsys.readouterr().out
    assert "'Original' runs missing: 160" in out  # 4 datasets × 4 horizons × 2 variants × 5 seeds


def test_a_run_record_says_how_the_escape_probed():
    splits, config = _tiny_splits(), runner.eeo_config("quick", epochs=1)
    probed = runner.train_run(runner.RunKey("toy", 8, "original", "EEO full", 0, 32), splits, config, sharpness=False)
    assert probed["n_probes"] > 0 and probed["probe_same_noise"] is True
    plain = runner.train_run(runner.RunKey("toy", 8, "original", "AdamW", 0, 32), splits, config, sharpness=False)
    assert plain["n_probes"] == 0 and plain["probe_same_noise"] is None


def test_table4_orders_list_the_rows_lowest_first_with_ties():
    from flatcast.reference import load_reference

    reference = load_reference("eeo_table4_ablation")
    runs = _table4_runs(MONOTONE, 0.42)  # toy 0.45 … 0.39; 'Original' EEO 0.42 (= toy SAM alone), AdamW 0.52
    orders = runner.table4_orders(runner.table4_comparison(runs, reference, horizons=(96,)))
    assert orders.loc["ETTh1", "ours, lowest first"] == (
        "EEO full < SAM+SGLD+EMA < SAM+SGLD < SAM alone = Original+EEO < Toy+AdamW < Original+AdamW")
    # Table 4 (ETTh1): .404 < .413 (SAM+SGLD+EMA and Original+EEO) < .426 < .436 < .452 < .461
    assert orders.loc["ETTh1", "paper, lowest first"] == (
        "EEO full < SAM+SGLD+EMA = Original+EEO < SAM+SGLD < SAM alone < Toy+AdamW < Original+AdamW")
    assert orders.loc["ETTm1", "ours, lowest first"] == ""  # no run there

"""The sharpness runner on a tiny configuration: it runs end to end, resumes without retraining, refuses a file
of another configuration, drops an interrupted last line, and its verdicts follow their rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from flatcast.experiments import sharpness as sh


@pytest.fixture
def data_env(benchmark_data_dir, monkeypatch):
    """Point the registry at the real benchmark files (the tests that train skip without them)."""
    monkeypatch.setenv("FLATCAST_DATA", str(benchmark_data_dir))


def tiny(**overrides):
    options = dict(datasets=("ETTh1",), lookback=24, horizon=8, recipes=("transformer", "samformer"),
                   seeds=(0, 1), rho_grid=(0.0,), rho_seeds=(0,), epochs=1, max_train_batches=2,
                   sharpness_samples=16, sharpness_iters=5, trace_samples=2, landscape_datasets=("ETTh1",),
                   landscape_seeds=(0,), landscape_samples=16, slice_points=5, slice_points_2d=3, slq_steps=4,
                   top_k=2, cost_steps=2, optimizer_recipes=())
    options.update(overrides)
    return sh.sharpness_config("quick", **options)


@pytest.fixture
def counted(monkeypatch):
    """Count the seeds that fit_recipe_seeds is asked to train."""
    calls = []
    real = sh.fit_recipe_seeds

    def spy(name, splits, seeds, **options):
        calls.append((name, tuple(seeds), options.get("rho")))
        return real(name, splits, seeds, **options)

    monkeypatch.setattr(sh, "fit_recipe_seeds", spy)
    return calls


def test_runner_resumes_from_its_results_file_without_retraining(tmp_path, counted, data_env):
    config = tiny()
    path = tmp_path / "sharpness_tiny.jsonl"
    planned = sh.planned_runs(config)
    assert len(planned) == 5  # 2 recipes × 2 seeds + the ρ = 0 grid point on seed 0

    first = sh.run_study(config, path, max_runs=1)
    assert not first.complete and len(first.runs) == 1
    assert sum(len(seeds) for _, seeds, _ in counted) == 1

    counted.clear()
    second = sh.run_study(config, path)
    assert second.complete and len(second.runs) == 5
    assert sum(len(seeds) for _, seeds, _ in counted) == 4  # only the missing four
    assert {r for r in second.runs["key"]} == planned

    counted.clear()
    third = sh.run_study(config, path)
    assert counted == []  # nothing left to train, landscapes and costs already stored
    assert len(third.runs) == 5 and set(third.landscapes) == {("ETTh1", 0)}

    # the same numbers as an uninterrupted run (same seed, same numbers on the CPU)
    fresh = sh.run_study(config, None)
    a = second.runs.set_index("key").sort_index()
    b = fresh.runs.set_index("key").sort_index()
    np.testing.assert_allclose(a["test_mse"], b["test_mse"], rtol=1e-6)
    np.testing.assert_allclose(a["lambda_max"], b["lambda_max"], rtol=1e-5)

    # every line is valid JSON with a unique key, the header first
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["type"] == "header"
    keys = [r["key"] for r in lines[1:]]
    assert len(keys) == len(set(keys))
    loaded = sh.load_study(path)
    assert loaded is not None and loaded.config == config and len(loaded.runs) == 5


def test_a_stopped_study_has_the_main_recipes_of_every_dataset_before_any_rho_grid(tmp_path, counted, data_env):
    """Order of work: the main comparison on every dataset first, its step costs, then the ρ grids, landscapes last."""
    config = tiny(datasets=("ETTh1", "exchange_rate"), seeds=(0,))
    study = sh.run_study(config, tmp_path / "order.jsonl", max_runs=2)
    assert not study.complete
    assert sorted(zip(study.runs["dataset"], study.runs["recipe"])) == [("ETTh1", "samformer"),
                                                                       ("ETTh1", "transformer")]
    counted.clear()
    study = sh.run_study(config, tmp_path / "order.jsonl", max_runs=2)
    assert {(d, r, m) for d, r, m in zip(study.runs["dataset"], study.runs["recipe"], study.runs["main"])
            if d == "exchange_rate"} == {("exchange_rate", "samformer", True), ("exchange_rate", "transformer", True)}
    # the step costs (cheap, they settle S30) come right after the main runs, before any ρ-grid run
    assert sorted(zip(study.costs["dataset"], study.costs["recipe"])) == [
        ("ETTh1", "samformer"), ("ETTh1", "transformer"), ("exchange_rate", "samformer"),
        ("exchange_rate", "transformer")]
    assert not (study.runs["rho"] == 0.0).any()
    assert study.landscapes == {}  # no landscape before every dataset's main runs and ρ grids


def test_optimizer_recipes_train_without_curvature_and_stay_out_of_the_flatness_correlations(tmp_path, data_env):
    config = tiny(optimizer_recipes=("transformer_sgd", "transformer_adamw_1e-3"), rho_grid=())
    study = sh.run_study(config, tmp_path / "opt.jsonl")
    assert study.complete and len(study.runs) == 4 + 4
    sgd = study.runs_of("transformer_sgd", "ETTh1")
    assert len(sgd) == 2 and sgd["lambda_max"].isna().all() and np.isfinite(sgd["test_mse"]).all()
    assert float(sgd["lr"].iloc[0]) == sh.SGD_LR
    table = sh.optimizer_table(study)
    assert list(table["recipe"]) == ["transformer", "transformer_sgd", "transformer_adamw_1e-3"]
    adam = study.runs_of("transformer", "ETTh1")["test_mse"].mean()
    np.testing.assert_allclose(table["× Adam"], table["test MSE mean"] / adam)
    correlations = sh.flatness_correlations(study, n_permutations=10)
    assert set(correlations["n"]) == {4}  # the four runs with a measured curvature


def _optimizer_study(ratios, datasets=("ETTh1", "exchange_rate")):
    """A paper-profile study with the Transformer (Adam, test MSE 0.4) and each App. C.3 optimizer at ratio × 0.4."""
    config = sh.sharpness_config("paper", datasets=datasets, seeds=(0, 1))
    rows = []
    for dataset in datasets:
        for name in ("transformer", *sh.OPTIMIZER_RECIPES):
            for seed in config.seeds:
                rows.append({"key": sh.run_key(name, dataset, seed, None), "recipe": name, "dataset": dataset,
                             "seed": seed, "rho": None, "main": True, "lr": 1e-3,
                             "test_mse": 0.4 * ratios.get(name, 1.0), "epochs_run": 10, "best_epoch": 5,
                             "lambda_max": 1.0, "trace": 1.0, "authors_sharpness": 1.0, "wall_time_s": 1.0})
    return sh.SharpnessStudy(config=config, runs=pd.DataFrame(rows), landscapes={}, costs=pd.DataFrame())


def test_optimizer_figure_draws_seeds_per_optimizer():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flatcast.experiments import sharpness_figures as figs

    from matplotlib.collections import LineCollection, PathCollection

    for sgd, scale in ((4.0, "linear"), (40.0, "log")):  # log only when the values span more than 10×
        fig = figs.plot_optimizers(_optimizer_study({"transformer_sgd": sgd}))
        fig.canvas.draw()
        assert len(fig.axes) == 2
        for ax in fig.axes:
            assert ax.get_yscale() == scale
            points = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if isinstance(c, PathCollection)])
            np.testing.assert_allclose(sorted(points), sorted([0.4] * 8 + [0.4 * sgd] * 2))
            means = [seg[0][1] for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
            np.testing.assert_allclose(sorted(means), sorted([0.4] * 4 + [0.4 * sgd]))  # Adam + four optimizers
        plt.close(fig)


def test_rho_figure_counts_only_grid_values_run_on_every_seed():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flatcast.experiments import sharpness_figures as figs

    study = _fake_study("paper", 2.0, 1.0, {n: 0.4 for n in sh.MAIN_RECIPES})
    fig = figs.plot_rho_sensitivity(study)
    assert not [t for ax in fig.axes for t in ax.texts]  # the whole (two-value) grid has run
    plt.close(fig)
    missing = sh.run_key("samformer", "ETTh1", 3, 1.0)
    study.runs = study.runs[study.runs["key"] != missing].reset_index(drop=True)
    fig = figs.plot_rho_sensitivity(study)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == ["1 of 2 ρ values run on every seed so far"]
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["0"]
    plt.close(fig)


def test_s27_rule_on_real_data():
    paper_says = {"transformer_sgd": 4.0, "transformer_adamw_1e-5": 1.05, "transformer_adamw_1e-4": 0.97,
                  "transformer_adamw_1e-3": 3.5}
    assert sh.optimizer_verdict(_optimizer_study(paper_says))["verdict"] == "supported"
    sgd_trains = {**paper_says, "transformer_sgd": 1.1}
    verdict = sh.optimizer_verdict(_optimizer_study(sgd_trains))
    assert verdict["verdict"] == "partly supported" and "SGD at lr 0.03 (the paper gives none) trains" in \
        verdict["measured"]
    nothing = {**sgd_trains, "transformer_adamw_1e-3": 1.0}
    assert sh.optimizer_verdict(_optimizer_study(nothing))["verdict"] == "not supported"
    nan_sgd = {**paper_says, "transformer_sgd": float("nan")}
    assert sh.optimizer_verdict(_optimizer_study(nan_sgd))["verdict"] == "supported"  # NaN = did not converge
    # the verdict stays capped until every run S27 needs is stored
    study = _optimizer_study(paper_says)
    assert sh.sharpness_verdicts(study).set_index("id").loc["S27", "verdict"] == "supported"
    study.runs = study.runs.iloc[1:].reset_index(drop=True)
    assert sh.sharpness_verdicts(study).set_index("id").loc["S27", "verdict"] == "inconclusive"


def test_a_results_file_from_before_the_optimizer_recipes_is_extended_not_refused(tmp_path):
    """A file whose header predates ``optimizer_recipes`` (the paper study's, started before S27 was run) is read
    with the new configuration; its header is rewritten when the next record is stored. Any other difference
    still refuses the file."""
    config = tiny(optimizer_recipes=("transformer_sgd",))
    path = tmp_path / "old.jsonl"
    old_header = {"type": "header", "config": {k: v for k, v in config.fingerprint().items()
                                               if k != "optimizer_recipes"}, "provenance": {"commit": "old"}}
    path.write_text(json.dumps(old_header) + "\n" + json.dumps({"type": "run", "key": "run|x|ETTh1|0|None"}) + "\n")
    store = sh.ResultsStore(path, config)
    assert store.has("run|x|ETTh1|0|None")
    assert "optimizer_recipes" not in json.loads(path.read_text().split("\n")[0])["config"]  # reading writes nothing
    store.append({"type": "run", "key": "run|y|ETTh1|0|None"})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["config"] == json.loads(json.dumps(config.fingerprint()))
    assert lines[0]["provenance"] == {"commit": "old"} and [r["key"] for r in lines[1:]] == [
        "run|x|ETTh1|0|None", "run|y|ETTh1|0|None"]
    assert sh.load_study(path).config == config
    other = tiny(optimizer_recipes=("transformer_sgd",), epochs=2)
    path.write_text(json.dumps(old_header) + "\n")
    with pytest.raises(ValueError, match="another configuration"):
        sh.ResultsStore(path, other)


def test_landscape_record_is_consistent(tmp_path, data_env):
    config = tiny(seeds=(0,), recipes=("transformer", "samformer"), rho_grid=())
    study = sh.run_study(config, tmp_path / "r.jsonl")
    land = study.landscapes[("ETTh1", 0)]
    for name in sh.LANDSCAPE_RECIPES:
        m = land["models"][name]
        mid = len(m["random_1d"]["alphas"]) // 2
        # α = 0 of every slice is the solution itself: the same training loss on the same windows
        assert m["random_1d"]["alphas"][mid] == 0.0
        assert m["random_1d"]["train"][mid] == pytest.approx(m["eigen_1d"]["train"][mid], rel=1e-6)
        centre = len(m["random_2d"]["alphas"]) // 2
        assert m["random_2d"]["train"][centre][centre] == pytest.approx(m["random_1d"]["train"][mid], rel=1e-6)
        assert len(m["top_k"]) == 2 and m["top_k"][0] >= m["top_k"][1]
        assert m["top_k"][0] == m["eigen_1d"]["lambda_max"]  # one Lanczos run gives both
    path = land["interpolation"]["transformer → samformer"]
    alphas = np.array(path["alphas"])
    i0, i1 = int(np.argmin(abs(alphas))), int(np.argmin(abs(alphas - 1)))
    assert path["train"][i0] == pytest.approx(land["models"]["transformer"]["random_1d"]["train"][mid], rel=1e-6)
    assert path["train"][i1] == pytest.approx(land["models"]["samformer"]["random_1d"]["train"][mid], rel=1e-6)
    # both solutions start from the same initialisation (same seed, same architecture)
    init_t = land["interpolation"]["init → transformer"]["train"][i0]
    init_s = land["interpolation"]["init → samformer"]["train"][i0]
    assert init_t == pytest.approx(init_s, rel=1e-9)


def test_store_refuses_another_configuration_and_drops_a_partial_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    config = tiny()
    store = sh.ResultsStore(path, config)
    store.append({"type": "run", "key": "run|x|ETTh1|0|None", "test_mse": 1.0})
    with pytest.raises(ValueError, match="another configuration"):
        sh.ResultsStore(path, tiny(epochs=2))
    with pytest.raises(ValueError, match="already stored"):
        store.append({"type": "run", "key": "run|x|ETTh1|0|None"})
    with open(path, "a") as handle:
        handle.write('{"type": "run", "key": "run|x|ETTh1|1|No')  # a write cut short (or still under way)
    before = path.read_text()
    # a reader (the chapter, --verdicts-only) beside a running writer skips the line and writes nothing
    reader = sh.ResultsStore(path, config, read_only=True)
    assert set(reader.records) == {"run|x|ETTh1|0|None"} and path.read_text() == before
    assert set(sh.load_study(path).runs["key"]) == {"run|x|ETTh1|0|None"} and path.read_text() == before
    with pytest.raises(ValueError, match="read-only"):
        reader.append({"type": "run", "key": "run|y|ETTh1|0|None"})
    assert not sh.ResultsStore(tmp_path / "none.jsonl", config, read_only=True).records
    assert not (tmp_path / "none.jsonl").exists()
    with pytest.warns(UserWarning, match="unfinished last line"):
        again = sh.ResultsStore(path, config)
    assert set(again.records) == {"run|x|ETTh1|0|None"}
    assert path.read_text().endswith("\n")
    # a corrupt line in the middle is an error, not silently skipped
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\nnot json\n" + lines[1] + "\n")
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        sh.ResultsStore(path, config)


def test_bad_configuration_is_refused_before_any_work():
    with pytest.raises(ValueError, match="unknown profile"):
        sh.sharpness_config("huge")
    with pytest.raises(KeyError, match="unknown recipe"):
        sh.sharpness_config("quick", recipes=("nope",))
    with pytest.raises(ValueError, match="unknown SharpnessConfig"):
        sh.sharpness_config("quick", epoch=3)
    with pytest.raises(ValueError, match="landscape_datasets"):
        sh.sharpness_config("quick", datasets=("ETTh1",), landscape_datasets=("weather",))


def _fake_study(profile, lam_t, lam_s, mse):
    """A study made of hand-written runs, to check the verdict rules."""
    config = sh.sharpness_config(profile, datasets=("ETTh1", "exchange_rate"), seeds=(0, 1, 2), rho_grid=(0.0, 1.0))
    rows = []
    for dataset in config.datasets:
        for name in sh.MAIN_RECIPES:
            rho = sh._main_rho(name, dataset, config.horizon)
            for seed in config.seeds:
                rows.append({"key": sh.run_key(name, dataset, seed, rho), "recipe": name, "dataset": dataset,
                             "seed": seed, "rho": sh._rho_key(rho), "main": True,
                             "test_mse": mse[name] + 0.01 * seed * (3 if name == "transformer" else 1),
                             "lambda_max": lam_t if name == "transformer" else lam_s, "trace": 1.0,
                             "authors_sharpness": 1.0, "wall_time_s": 1.0})
        for rho in (0.0, 1.0):
            for seed in config.rho_seeds:
                rows.append({"key": sh.run_key("samformer", dataset, seed, rho), "recipe": "samformer",
                             "dataset": dataset, "seed": seed, "rho": rho, "main": False,
                             "test_mse": 0.5 if rho == 0 else 0.4, "lambda_max": 1.0, "trace": 1.0,
                             "authors_sharpness": 1.0, "wall_time_s": 1.0})
    costs = pd.DataFrame([{"key": sh._cost_key(r, d), "recipe": r, "dataset": d,
                           "seconds_per_step": 2.0 if "sigma" in r else 1.0,
                           "peak_memory_mib": 2.0 if "sigma" in r else 1.0}
                          for d in config.datasets for r in sh.COST_RECIPES])
    return sh.SharpnessStudy(config=config, runs=pd.DataFrame(rows), landscapes={}, costs=costs)


def test_verdict_rules():
    mse = {"transformer": 0.45, "samformer": 0.40, "sigma_reparam": 0.50, "samformer_sigma_reparam": 0.41,
           "transformer_eeo": 0.42}
    paper = sh.sharpness_verdicts(_fake_study("paper", 20.0, 1.0, mse)).set_index("id")["verdict"]
    assert paper["S19"] == "supported"
    assert paper["S20"] == "partly supported"
    assert paper["S27"] == "not yet tested"
    assert paper["S28"] == "partly supported"
    assert paper["S29"] == "supported"
    assert paper["S30"] == "supported"
    weaker = sh.sharpness_verdicts(_fake_study("paper", 3.0, 1.0, mse)).set_index("id")["verdict"]
    assert weaker["S19"] == "partly supported"
    flatter = sh.sharpness_verdicts(_fake_study("paper", 0.5, 1.0, mse)).set_index("id")["verdict"]
    assert flatter["S19"] == "not supported"
    # reduced sizes never settle a claim
    quick = sh.sharpness_verdicts(_fake_study("quick", 20.0, 1.0, mse))
    assert set(quick["verdict"]) <= {"inconclusive", "not yet tested"}
    assert quick.set_index("id").loc["S19", "measured"].endswith(quick.set_index("id").loc["S19", "measured"]
                                                                  .split("; ")[-1])
    assert "quick profile only" in quick.set_index("id").loc["S19", "measured"]


def test_a_partial_paper_study_settles_the_claims_whose_runs_are_complete():
    """Per-claim completeness: with every main run stored and the ρ grid and costs on ETTh1 only, S19 and S29 get
    their verdicts while S28 and S30 stay capped, saying how much of what they need is stored."""
    mse = {"transformer": 0.45, "samformer": 0.40, "sigma_reparam": 0.50, "samformer_sigma_reparam": 0.41,
           "transformer_eeo": 0.42}
    full = _fake_study("paper", 20.0, 1.0, mse)
    keep = full.runs["main"] | (full.runs["dataset"] == "ETTh1")
    main = full.runs[keep].reset_index(drop=True)
    etth1_costs = full.costs[full.costs["dataset"] == "ETTh1"].reset_index(drop=True)
    partial = sh.SharpnessStudy(config=full.config, runs=main, landscapes={}, costs=etth1_costs)
    verdicts = sh.sharpness_verdicts(partial).set_index("id")
    assert verdicts.loc["S19", "verdict"] == "supported" and verdicts.loc["S29", "verdict"] == "supported"
    needed = len(sh.claim_keys(full.config)["S28"])
    assert needed == 2 * 2 * len(full.config.rho_seeds)
    assert verdicts.loc["S28", "verdict"] == "inconclusive"
    assert f"{needed // 2} of {needed} items" in verdicts.loc["S28", "measured"]
    assert verdicts.loc["S30", "verdict"] == "inconclusive"
    # one missing Transformer seed caps S19 again
    fewer = main[main["key"] != sh.run_key("transformer", "exchange_rate", 2, None)].reset_index(drop=True)
    capped = sh.sharpness_verdicts(sh.SharpnessStudy(config=full.config, runs=fewer, landscapes={},
                                                     costs=pd.DataFrame())).set_index("id")
    assert capped.loc["S19", "verdict"] == "inconclusive"
    assert "11 of 12 items" in capped.loc["S19", "measured"]


def test_s30_needs_both_time_and_memory_for_support():
    mse = {n: 0.4 for n in sh.MAIN_RECIPES}

    def verdict(time_ratio, memory_ratio):
        study = _fake_study("paper", 20.0, 1.0, mse)
        study.costs["seconds_per_step"] = [time_ratio if "sigma" in r else 1.0 for r in study.costs["recipe"]]
        study.costs["peak_memory_mib"] = [memory_ratio if "sigma" in r else 1.0 for r in study.costs["recipe"]]
        return sh.sharpness_verdicts(study).set_index("id").loc["S30", "verdict"]

    assert verdict(2.0, 2.0) == "supported"
    assert verdict(2.0, 1.1) == "partly supported"   # much slower, a little more memory
    assert verdict(1.1, 1.6) == "partly supported"   # much more memory only
    assert verdict(1.2, 1.2) == "partly supported"   # both merely larger
    assert verdict(1.2, float("nan")) == "partly supported"  # slower, memory unmeasured: the time half only
    assert verdict(0.9, float("nan")) == "not supported"
    assert verdict(0.9, 2.0) == "partly supported"
    assert verdict(0.9, 0.9) == "not supported"


def test_step_cost_measures_fits_own_step_with_its_memory(data_env):
    from flatcast.data import make_splits

    splits = make_splits("ETTh1", 24, 8)
    config = tiny(cost_steps=3)
    sam = sh.step_cost("samformer", splits, config)
    adam = sh.step_cost("transformer", splits, config)
    sigma = sh.step_cost("samformer_sigma_reparam", splits, config)
    assert sam["grad_evals_per_step"] == 2.0 and adam["grad_evals_per_step"] == 1.0
    assert sigma["grad_evals_per_step"] == 2.0
    for cost in (sam, adam, sigma):
        assert cost["seconds_per_step"] > 0 and 0 < cost["peak_memory_mib"] < 64
    # a batch of 32 windows, 7 channels, L = 24: the inputs alone are 32·7·24·4 bytes; any step holds more than that
    assert sam["peak_memory_mib"] * 2**20 > 32 * 7 * 24 * 4


def test_findings_are_computed_from_the_runs():
    mse = {"transformer": 0.45, "samformer": 0.40, "sigma_reparam": 0.50, "samformer_sigma_reparam": 0.41,
           "transformer_eeo": 0.42}
    study = _fake_study("paper", 20.0, 1.0, mse)
    text = sh.findings(study, n_permutations=20)
    assert "the Transformer's is 20.0× SAMformer's" in text
    samformer = study.runs_of("samformer", "ETTh1")["test_mse"]
    assert f"SAMformer {samformer.mean():.4f} ± {samformer.std(ddof=1):.4f}" in text
    n = int(study.runs[study.runs["dataset"] == "ETTh1"]["lambda_max"].notna().sum())
    assert f"over {n} runs with a measured λmax" in text
    assert text.startswith(f"From the {len(study.runs)} of {len(sh.planned_runs(study.config))} planned runs")
    empty = sh.SharpnessStudy(config=study.config, runs=pd.DataFrame(), landscapes={}, costs=pd.DataFrame())
    assert sh.findings(empty) == "No runs stored yet."


def test_flatness_correlations_per_dataset():
    mse = {"transformer": 0.45, "samformer": 0.40, "sigma_reparam": 0.50, "samformer_sigma_reparam": 0.41,
           "transformer_eeo": 0.42}
    study = _fake_study("paper", 20.0, 1.0, mse)
    table = sh.flatness_correlations(study, n_permutations=50)
    assert set(table["dataset"]) == {"ETTh1", "exchange_rate"}
    row = table[(table["dataset"] == "ETTh1") & (table["measure"] == "λmax")].iloc[0]
    runs = study.runs[study.runs["dataset"] == "ETTh1"]
    assert row["n"] == len(runs)
    assert -1 <= row["spearman"] <= 1 and not math.isnan(row["spearman"])


def test_every_figure_draws_from_a_tiny_study(tmp_path, data_env):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flatcast.experiments import sharpness_figures as figs

    config = tiny(seeds=(0, 1), rho_grid=(0.0, 1.0), recipes=("transformer", "samformer", "sigma_reparam",
                                                               "samformer_sigma_reparam"))
    study = sh.run_study(config, None)
    landscape = study.landscapes[("ETTh1", 0)]
    figures = [figs.plot_lambda_max(study), figs.plot_seed_spread(study), figs.plot_rho_sensitivity(study),
               figs.plot_sigma_reparam(study), figs.plot_flatness_vs_mse(study), figs.plot_interpolation(landscape),
               figs.plot_slice_1d(landscape, "eigen_1d"), figs.plot_contours(landscape, split="val"),
               figs.plot_spectrum(landscape)]
    landscape_set = figs.plot_landscape_set(landscape, title="ETTh1, seed 0")
    assert len(landscape_set) == 5 and all(f._suptitle.get_text() == "ETTh1, seed 0" for f in landscape_set)
    figures += landscape_set

    def check(fig):  # every panel says what it shows; closed at once (no more than ~20 figures open at a time)
        assert fig.axes and all(ax.get_title() or ax.get_ylabel() or ax.get_label() == "<colorbar>"
                                for ax in fig.axes)
        plt.close(fig)

    for fig in figures:
        check(fig)
    for slice_type in figs.SLICE_TYPES:
        for zoom in ("full", "half"):
            check(figs.render_landscape(study, "ETTh1", "samformer", 0, slice_type, zoom))
    with pytest.raises(ValueError, match="unknown slice type"):
        figs.render_landscape(study, "ETTh1", "samformer", 0, "3d", "full")
    ratios = sh.sharpness_ratios(study)
    assert set(ratios["model"]) == {"Transformer", "Transformer + σReparam", "SAMformer + σReparam"}
    assert not sh.summary_table(study).empty
    box = sh.claims_box(quick=study, paper=None)
    assert list(box["id"]) == ["S19", "S20", "S27", "S28", "S29", "S30"]


def test_cli_threads_do_not_change_the_configuration(tmp_path, capsys):
    """--threads only sets torch's threads: the results file of a 1-thread run is continued by a 2-thread run."""
    assert sh.sharpness_config("paper", threads=2).fingerprint() == sh.sharpness_config("paper").fingerprint()
    assert sh.main(["--profile", "paper", "--threads", "2", "--plan", "--out", str(tmp_path / "none.jsonl")]) == 0
    with pytest.raises(SystemExit):
        sh.main(["--profile", "paper", "--threads", "-1", "--plan"])
    assert "--threads must be >= 0" in capsys.readouterr().err


def test_cli_plan_counts_the_paper_grid(tmp_path, capsys):
    assert sh.main(["--profile", "paper", "--plan", "--out", str(tmp_path / "none.jsonl")]) == 0
    # per dataset: 5 recipes × 5 seeds + 8 ρ values × 5 seeds, less the ρ* grid point shared with SAMformer's runs,
    # + 4 App. C.3 optimizers × 5 seeds
    assert "160 runs planned, 0 stored" in capsys.readouterr().out
    assert len(sh.planned_runs(sh.sharpness_config("quick"))) == 2 * (5 * 3 + 3 * 2 + 4 * 3)


# ------------------------------------------------------------------ S20 at the paper's size, from the benchmark grid
def _cell(dataset, horizon, recipe, values, current=True):
    return {"identity": {"config": {"recipe": recipe, "dataset": dataset, "horizon": horizon, "profile": "paper"}},
            "key": f"{dataset}-{horizon}-{recipe}", "current": current,
            "per_seed": [{"seed": i, "test_mse": v, "test_mae": v} for i, v in enumerate(values)]}


def test_benchmark_seed_spread_hand_computed():
    from flatcast.experiments import sharpness as sh

    results = [_cell("ETTh1", 96, "transformer", [1.0, 2.0, 3.0]), _cell("ETTh1", 96, "samformer", [1.0, 1.5, 2.0]),
               _cell("ETTh1", 192, "transformer", [1.0, 1.0]),  # no SAMformer cell: left out
               _cell("weather", 96, "samformer", [0.2, 0.4]), _cell("weather", 96, "transformer", [0.3, 0.3],
                                                                    current=False),
               _cell("ETTh1", 96, "tsmixer", [5.0, 9.0])]
    spread = sh.benchmark_seed_spread(results)
    assert list(zip(spread["dataset"], spread["horizon"])) == [("ETTh1", 96), ("Weather", 96)]
    first = spread.iloc[0]
    assert first["transformer_std"] == pytest.approx(1.0) and first["samformer_std"] == pytest.approx(0.5)
    assert first["std_ratio"] == pytest.approx(2.0) and first["transformer_mean"] == pytest.approx(2.0)
    assert first["transformer_n"] == 3 and bool(first["current_code"])
    second = spread.iloc[1]
    assert second["std_ratio"] == pytest.approx(0.0) and not bool(second["current_code"])

    verdict = sh.seed_spread_verdict(spread)
    assert verdict["verdict"] == "inconclusive"  # 2 of 24 pairs
    assert "in 1 of 2" in verdict["measured"] and "not supported" in verdict["measured"]
    assert "older code" in verdict["measured"]
    assert sh.seed_spread_verdict(spread.iloc[:0])["verdict"] == "not yet tested"


def test_seed_spread_verdict_rule_on_a_complete_grid():
    from flatcast.experiments import sharpness as sh

    rows = [{"dataset": d, "horizon": h, "std_ratio": 3.0, "current_code": True}
            for d in sh.SPREAD_DATASETS for h in sh.SPREAD_HORIZONS]
    frame = pd.DataFrame(rows)
    assert sh.seed_spread_verdict(frame)["verdict"] == "supported"
    frame.loc[0, "std_ratio"] = 1.5  # still larger everywhere, not 2× everywhere
    assert sh.seed_spread_verdict(frame)["verdict"] == "partly supported"
    frame.loc[: len(frame) // 2, "std_ratio"] = 0.5  # smaller in more than half
    assert sh.seed_spread_verdict(frame)["verdict"] == "not supported"


def test_seed_spread_verdict_is_settled_when_no_missing_pair_can_change_it():
    from flatcast.experiments import sharpness as sh

    rows = [{"dataset": d, "horizon": h, "std_ratio": 3.0, "current_code": True}
            for d in sh.SPREAD_DATASETS for h in sh.SPREAD_HORIZONS]
    frame = pd.DataFrame(rows)
    # 19 of 24 pairs, two of them with a narrower Transformer spread: "supported" is out of reach and 17 wider
    # pairs already exceed half of 24, so the missing 5 cannot change "partly supported"
    part = frame.iloc[:19].copy()
    part.loc[[0, 1], "std_ratio"] = 0.8
    verdict = sh.seed_spread_verdict(part)
    assert verdict["verdict"] == "partly supported" and "whatever the 5 missing pairs show" in verdict["measured"]
    # all 19 at 3×: the missing pairs decide between supported and partly supported
    assert sh.seed_spread_verdict(frame.iloc[:19])["verdict"] == "inconclusive"
    # 12 wider of 13 run: 12 is not more than half of 24, so 11 missing pairs could still make it "not supported"
    few = frame.iloc[:13].copy()
    few.loc[0, "std_ratio"] = 0.5
    assert sh.seed_spread_verdict(few)["verdict"] == "inconclusive"
    # 13 narrower of 13 run: at most 11 of 24 can be wider, "not supported" whatever comes
    few["std_ratio"] = 0.5
    assert sh.seed_spread_verdict(few)["verdict"] == "not supported"


def test_sharpness_verdicts_take_s20_from_the_benchmark_spread():
    from flatcast.experiments import sharpness as sh

    study = sh.load_study(profile="quick")
    if study is None:
        pytest.skip("no committed quick study")
    rows = [{"dataset": d, "horizon": h, "std_ratio": 3.0, "current_code": True}
            for d in sh.SPREAD_DATASETS for h in sh.SPREAD_HORIZONS]
    verdicts = sh.sharpness_verdicts(study, pd.DataFrame(rows)).set_index("id")
    assert verdicts.loc["S20", "verdict"] == "supported" and "benchmark grid" in verdicts.loc["S20", "measured"]
    assert verdicts.loc["S19", "verdict"] == "inconclusive"  # the quick study's own claims stay capped
    box = sh.claims_box(pd.DataFrame(rows), quick=study).set_index("id")
    assert box.loc["S20", "verdict (quick)"] == "supported"


def test_figures_draw_from_an_incomplete_paper_study():
    """A resumable study that has run only part of its grid (one dataset, some recipes, no costs) still draws every
    summary figure: the missing panels say "no runs yet" instead of failing (the chapter shows committed partial
    paper-profile results)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flatcast.experiments import sharpness_figures as figs

    full = _fake_study("paper", lam_t=2.0, lam_s=0.2, mse={n: 0.4 for n in sh.MAIN_RECIPES})
    runs = full.runs[(full.runs["dataset"] == "ETTh1") & full.runs["recipe"].isin(["transformer", "samformer"])]
    partial = sh.SharpnessStudy(config=full.config, runs=runs.reset_index(drop=True), landscapes={},
                                costs=pd.DataFrame())
    for draw in (figs.plot_lambda_max, figs.plot_seed_spread, figs.plot_rho_sensitivity, figs.plot_sigma_reparam,
                 figs.plot_flatness_vs_mse, figs.plot_optimizers):
        fig = draw(partial)
        fig.canvas.draw()
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        if draw in (figs.plot_sigma_reparam, figs.plot_flatness_vs_mse, figs.plot_optimizers):
            assert "no runs yet" in texts, draw.__name__
        plt.close(fig)


def test_two_processes_share_a_results_file_by_part(tmp_path, counted, data_env):
    """``parts=("landscapes",)`` trains only the landscape solutions (no run record), ``parts=("runs",)`` every run
    and no landscape; run one after the other on one file (as two processes would, each knowing only what it
    loaded) they store each item once and together make the whole study."""
    config = tiny()
    path = tmp_path / "shared.jsonl"
    with pytest.raises(ValueError, match="parts"):
        sh.run_study(config, path, parts=("everything",))
    landscapes_first = sh.run_study(config, path, parts=("landscapes",))
    assert set(landscapes_first.landscapes) == {("ETTh1", 0)} and landscapes_first.runs.empty
    assert sorted(name for name, _, _ in counted) == ["samformer", "transformer"]  # the two solutions, retrained
    runs = sh.run_study(config, path, parts=("runs",))
    assert len(runs.runs) == 5 and set(runs.landscapes) == {("ETTh1", 0)}
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    keys = [r["key"] for r in lines[1:]]
    assert len(keys) == len(set(keys)) and sum(r["type"] == "landscape" for r in lines) == 1
    assert sh.load_study(path).complete


def test_landscape_summary_reads_hand_made_landscapes():
    """Every number of the summary from a landscape whose values are written by hand."""
    def model(centre, ends, eigen_ends, plane, top):
        return {"random_1d": {"alphas": [-1.0, 0.0, 1.0], "train": [ends[0], centre, ends[1]],
                              "val": [2 * ends[0], 2 * centre, 2 * ends[1]]},
                "eigen_1d": {"alphas": [-2.0, 0.0, 2.0], "train": [eigen_ends[0], centre, eigen_ends[1]],
                             "val": [0.0, 0.0, 0.0], "lambda_max": top[0]},
                "random_2d": {"alphas": [-1.0, 0.0, 1.0], "train": plane, "val": plane},
                "density": {"grid": [0.0], "density": [1.0]}, "top_k": top}

    flat_plane = [[0.3, 0.15, 0.3], [0.15, 0.1, 0.15], [0.3, 0.15, 0.3]]  # 5 of 9 points ≤ 2 × 0.1
    sharp_plane = [[9.0, 9.0, 9.0], [9.0, 0.2, 0.3], [9.0, 9.0, 9.0]]  # 2 of 9 points ≤ 2 × 0.2
    landscape = {"models": {"transformer": model(0.2, (1.0, 3.0), (8.0, 12.0), sharp_plane, [50.0, 5.0]),
                            "samformer": model(0.1, (0.2, 0.4), (0.3, 0.5), flat_plane, [4.0, 1.0])},
                 "interpolation": {"init → transformer": {"train_barrier": 9.0},
                                   "transformer → samformer": {"train_barrier": 0.05}}}
    config = sh.sharpness_config("paper")
    study = sh.SharpnessStudy(config=config, runs=pd.DataFrame(), landscapes={("ETTh1", 0): landscape},
                              costs=pd.DataFrame())
    table = sh.landscape_summary(study).set_index("recipe")
    assert list(table.index) == ["transformer", "samformer"]
    t, s = table.loc["transformer"], table.loc["samformer"]
    assert (t["lambda_max"], s["lambda_max"]) == (50.0, 4.0)
    assert (t["train_mse"], t["val_mse"]) == (0.2, 0.4)
    assert t["random_rise"] == pytest.approx(2.0 / 0.2) and s["random_rise"] == pytest.approx(0.3 / 0.1)
    assert t["random_rise_val"] == pytest.approx(4.0 / 0.4)
    assert t["eigen_rise"] == pytest.approx(10.0 / 0.2) and s["eigen_rise"] == pytest.approx(0.4 / 0.1)
    assert t["basin_share"] == pytest.approx(2 / 9) and s["basin_share"] == pytest.approx(5 / 9)
    assert t["barrier"] == s["barrier"] == 0.05  # the Transformer → SAMformer path, not init → model
    empty = sh.SharpnessStudy(config=config, runs=pd.DataFrame(), landscapes={}, costs=pd.DataFrame())
    assert sh.landscape_summary(empty).empty
    numbers = set(table.columns) - {"dataset", "seed", "model"}
    assert numbers == set(sh.LANDSCAPE_COLUMNS)  # every number has a readable header in the chapter


def test_findings_report_the_landscapes(tmp_path, data_env):
    study = sh.run_study(tiny(), None)
    summary = sh.landscape_summary(study)
    assert len(summary) == 2 and set(summary["recipe"]) == {"transformer", "samformer"}
    text = sh.findings(study, n_permutations=10)
    rise = float(summary.loc[summary["recipe"] == "samformer", "random_rise"].iloc[0])
    assert "**ETTh1, landscapes** (1 seed, medians)" in text and f"{rise:.3g}× for SAMformer" in text


def test_landscape_explorer_offers_only_seeds_every_dataset_has():
    from flatcast.experiments import sharpness_figures as figs

    config = sh.sharpness_config("paper")
    land = {"models": {}, "interpolation": {}}
    study = sh.SharpnessStudy(config=config, runs=pd.DataFrame(), costs=pd.DataFrame(),
                              landscapes={("ETTh1", 0): land, ("ETTh1", 1): land, ("ETTh1", 2): land,
                                          ("exchange_rate", 0): land, ("exchange_rate", 2): land})
    choices = figs.landscape_choices(study)
    assert choices["dataset"] == ["ETTh1", "exchange_rate"] and choices["seed"] == [0, 2]
    assert set(choices) == {"dataset", "seed", "slice"} and choices["slice"] == list(figs.SLICE_TYPES)
    study.landscapes = {}
    assert figs.landscape_choices(study)["seed"] == [] and figs.landscape_choices(study)["dataset"] == []


def test_rho_grid_summary_names_every_rho_that_does_not_beat_adam():
    config = sh.sharpness_config("paper")
    rows = [{"recipe": "samformer", "dataset": "ETTh1", "rho": rho, "seed": seed, "test_mse": mse + 0.01 * seed}
            for rho, mse in ((0.0, 0.40), (0.5, 0.37), (2.0, 0.41), (5.0, 0.40)) for seed in (0, 1)]
    study = sh.SharpnessStudy(config=config, runs=pd.DataFrame(rows), landscapes={}, costs=pd.DataFrame())
    line = sh.rho_grid_summary(study, "ETTh1")
    assert line == "ρ=0 0.4050, best ρ=0.5 0.3750, not better than ρ=0 at ρ = 2 (0.4150), 5 (0.4050)"
    assert sh.rho_grid_summary(study, "exchange_rate") is None  # no run
    only_adam = sh.SharpnessStudy(config=config, runs=pd.DataFrame(rows[:2]), landscapes={}, costs=pd.DataFrame())
    assert sh.rho_grid_summary(only_adam, "ETTh1") is None  # nothing to compare ρ = 0 with
    better = pd.DataFrame([r for r in rows if r["rho"] in (0.0, 0.5)])
    assert sh.rho_grid_summary(sh.SharpnessStudy(config=config, runs=better, landscapes={}, costs=pd.DataFrame()),
                               "ETTh1").endswith("every ρ>0 better")

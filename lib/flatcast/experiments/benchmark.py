"""The benchmark chapter's runner: our grid results beside the papers' tables, their summary claims recomputed,
the audit of the papers' own tables, the exact parameter counts, and the chapter's claim verdicts.

Training happens in the grid runner (``python -m flatcast.benchmark run --grid …``), which stores one file per
finished cell under ``data/results/benchmark/``. This module only reads those files (and, in the quick profile,
runs the tiny ``quick`` grid through the same Ray engine into a scratch store):

    python -m flatcast.experiments.benchmark --profile paper   # summary + verdicts from the committed cells

writes ``data/results/benchmark_paper.json`` and ``data/results/benchmark_claims.json``.

"Within our seed spread" means min(seeds) ≤ paper ≤ max(seeds) (our 5 seeds' range).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from flatcast.audit import audit, nemenyi_cd, oce_rank_table, average_ranks, pooled_improvement
from flatcast.benchmark import RECIPE_LABELS, ResultStore, expand, run_cells
from flatcast.benchmark.executor import cell_status
from flatcast.claims import RESULTS_DIR, write_verdicts
from flatcast.diagnostics.seed_tests import cell_t_tests
from flatcast.provenance import device_type, provenance
from flatcast.reference import load_reference

__all__ = ["TABLE_NAMES", "seed_frame", "comparison_table", "parameter_counts", "grid_progress",
           "our_summary", "verdicts", "run_quick", "main", "paper_frame", "grid_table", "paper_results",
           "EXPLORER_TABLES"]

#: registry name → the name the papers' tables use
TABLE_NAMES = {"ETTh1": "ETTh1", "ETTh2": "ETTh2", "ETTm1": "ETTm1", "ETTm2": "ETTm2", "exchange_rate": "Exchange",
               "weather": "Weather", "national_illness": "ILI"}
PAPER_GRIDS = ("samformer-table1", "oce-table2", "eeo-table1", "samformer-table9")


def seed_frame(results: list[dict]) -> pd.DataFrame:
    """One row per (cell, seed): recipe, model label, dataset (table name), horizon, seed, metrics, cell key."""
    rows = []
    for res in results:
        cfg = res["identity"]["config"]
        for s in res["per_seed"]:
            rows.append({"recipe": cfg["recipe"], "model": RECIPE_LABELS.get(cfg["recipe"], cfg["recipe"]),
                         "dataset": TABLE_NAMES.get(cfg["dataset"], cfg["dataset"]), "horizon": cfg["horizon"],
                         "profile": cfg.get("profile", "paper"), "key": res["key"],
                         "current_code": res.get("current", True), **s,
                         "device": res.get("device", ""), "cell_wall_s": res.get("wall_time_s", np.nan)})
    return pd.DataFrame(rows)


def _paper_value(table: str, dataset: str, horizon: int, model: str, metric: str) -> tuple[float, float]:
    df = load_reference(table)
    row = df[(df.dataset == dataset) & (df.horizon == horizon) & (df.model == model) & (df.metric == metric)]
    if row.empty:
        return np.nan, np.nan
    std = row["std"].iloc[0] if "std" in row else np.nan
    return float(row["value"].iloc[0]), float(std) if pd.notna(std) else np.nan


def _paper_tables(recipe: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """(MSE table, model), (MAE table, model) where the paper prints this recipe's numbers."""
    if recipe in ("dlinear", "dlinear_oce"):
        m = RECIPE_LABELS[recipe]
        return ("oce_table2_main", m), ("oce_table2_main", m)
    if recipe == "transformer_eeo":
        return ("eeo_table5_long", "EEO-TFV"), ("eeo_table5_long", "EEO-TFV")
    if recipe in ("identity_sam", "temporal"):  # SAMformer App. C.4: MSE and MAE in one table each
        table = "samformer_table10_identity" if recipe == "identity_sam" else "samformer_table9_temporal"
        return (table, RECIPE_LABELS[recipe]), (table, RECIPE_LABELS[recipe])
    m = RECIPE_LABELS[recipe]
    return ("samformer_table1_mse", m), ("samformer_table6_mae", m)


def comparison_table(results: list[dict]) -> pd.DataFrame:
    """Per finished cell: our mean ± std (over seeds) of test MSE and MAE beside the paper's value, and whether
    the paper's value lies within our seed range."""
    sf = seed_frame(results)
    if sf.empty:
        return pd.DataFrame()
    rows = []
    for (recipe, dataset, horizon, profile), g in sf.groupby(["recipe", "dataset", "horizon", "profile"]):
        (t_mse, m_mse), (t_mae, m_mae) = _paper_tables(recipe)
        p_mse, p_mse_std = _paper_value(t_mse, dataset, horizon, m_mse, "MSE")
        p_mae, _ = _paper_value(t_mae, dataset, horizon, m_mae, "MAE")
        row = {"dataset": dataset, "horizon": horizon, "model": RECIPE_LABELS.get(recipe, recipe),
               "profile": profile, "seeds": len(g)}
        for metric, paper in (("mse", p_mse), ("mae", p_mae)):
            v = g[f"test_{metric}"]
            row[f"ours_{metric}"] = v.mean()
            row[f"ours_{metric}_std"] = v.std(ddof=1) if len(v) > 1 else np.nan
            row[f"paper_{metric}"] = paper
            row[f"{metric}_diff"] = v.mean() - paper
            row[f"paper_{metric}_in_seed_range"] = bool(v.min() <= paper <= v.max()) if pd.notna(paper) else None
        row["paper_mse_std"] = p_mse_std
        row["current_code"] = bool(g["current_code"].all())
        row["epochs_run"] = g["epochs_run"].mean()
        row["wall_s"] = g["cell_wall_s"].iloc[0]
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(["dataset", "horizon", "model"]).reset_index(drop=True)


def parameter_counts(lookback: int = 512) -> pd.DataFrame:
    """Exact trainable-parameter counts of our SAMformer and TSMixer (the grid's settings) beside Table 8 (S21)."""
    from flatcast.models import ChannelTransformer
    from flatcast.models.tsmixer import TSMixer, tsmixer_settings

    t8 = load_reference("samformer_table8_params")
    t8 = t8[t8.quantity == "n_params"]
    rows = []
    for name, d in (("ETTh1", 7), ("exchange_rate", 8), ("weather", 21)):
        for h in (96, 192, 336, 720):
            s = ChannelTransformer(lookback, h, d).n_parameters()
            t = TSMixer(lookback, h, d, **tsmixer_settings(name)).n_parameters()
            tn = TABLE_NAMES[name]
            ps = t8[(t8.dataset == tn) & (t8.horizon == h) & (t8.model == "SAMformer")]["value"]
            pt = t8[(t8.dataset == tn) & (t8.horizon == h) & (t8.model == "TSMixer")]["value"]
            rows.append({"dataset": "ETT" if tn.startswith("ETT") else tn, "channels": d, "horizon": h,
                         "ours_samformer": s, "paper_samformer": int(ps.iloc[0]), "ours_tsmixer": t,
                         "paper_tsmixer": int(pt.iloc[0]), "ours_ratio": t / s,
                         "paper_ratio": float(pt.iloc[0]) / float(ps.iloc[0])})
    return pd.DataFrame(rows)


def grid_progress(store: ResultStore | None = None) -> pd.DataFrame:
    """Finished / pending cells per paper grid (paper profile) in ``store``; ``done`` counts every finished cell,
    ``by_older_code`` those of them computed by older code than the checkout's (:meth:`ResultStore.older`),
    ``on_gpu`` those a GPU trained."""
    store = store or ResultStore()
    rows = []
    for g in PAPER_GRIDS:
        st = cell_status(expand(g, "paper"), store)
        done = [r for r in st if r["state"] in ("done", "older")]
        rows.append({"grid": g, "cells": len(st), "done": len(done),
                     "by_older_code": sum(r["state"] == "older" for r in st),
                     "on_gpu": sum(device_type(r["result"]) == "cuda" for r in done),
                     "failed": sum(r["state"] == "failed" for r in st),
                     "pending": sum(r["state"] == "pending" for r in st),
                     "compute_h": sum(r["result"]["wall_time_s"] for r in done) / 3600})
    return pd.DataFrame(rows)


def _t_tests(sf: pd.DataFrame, a: str = "SAMformer", b: str = "TSMixer+SAM") -> pd.DataFrame:
    """Student's t-test per cell (the test SAMformer's bold marks imply), ``a`` against ``b``."""
    tests = cell_t_tests(sf, "model", a, b, welch=False)
    return tests[["dataset", "horizon", "a_mean", "b_mean", "p", "significant_a_better"]]


def our_summary(results: list[dict]) -> dict:
    """The papers' summary statistics recomputed from our finished cells (only where every compared model ran)."""
    sf = seed_frame(results)
    out: dict = {"n_cells": int(sf.groupby(["recipe", "dataset", "horizon"]).ngroups) if not sf.empty else 0}
    if sf.empty:
        return out
    means = sf.groupby(["dataset", "horizon", "model"])[["test_mse", "test_mae"]].mean().reset_index()
    wide_mse = means.pivot_table(index=["dataset", "horizon"], columns="model", values="test_mse")
    wide_mae = means.pivot_table(index=["dataset", "horizon"], columns="model", values="test_mae")
    improvements = {}
    for base in ("TSMixer", "TSMixer+SAM", "Transformer"):
        for metric, wide in (("MSE", wide_mse), ("MAE", wide_mae)):
            if {"SAMformer", base} <= set(wide.columns):
                pair = wide[["SAMformer", base]].dropna()
                if len(pair):
                    improvements[f"SAMformer vs {base} ({metric})"] = {
                        "cells": len(pair), "pooled_pct": pooled_improvement(pair["SAMformer"], pair[base])}
    if {"TSMixer", "TSMixer+SAM"} <= set(wide_mse.columns):
        pair = wide_mse[["TSMixer+SAM", "TSMixer"]].dropna()
        if len(pair):
            improvements["TSMixer+SAM vs TSMixer (MSE)"] = {
                "cells": len(pair), "pooled_pct": pooled_improvement(pair["TSMixer+SAM"], pair["TSMixer"])}
    for pair_names in (("OCE-TS", "DLinear"), ("EEO-TFV", "SAMformer")):
        a, b = pair_names
        for metric, wide in (("MSE", wide_mse), ("MAE", wide_mae)):
            if {a, b} <= set(wide.columns):
                pair = wide[[a, b]].dropna()
                if len(pair):
                    improvements[f"{a} vs {b} ({metric})"] = {
                        "cells": len(pair), "pooled_pct": pooled_improvement(pair[a], pair[b]),
                        "a_better_cells": int((pair[a] < pair[b]).sum())}
    out["improvements"] = improvements
    four = [m for m in ("SAMformer", "TSMixer+SAM", "Transformer", "TSMixer") if m in wide_mse.columns]
    if len(four) == 4:
        full = wide_mse[four].dropna()
        out["samformer_best_cells"] = {"best": int((full.idxmin(axis=1) == "SAMformer").sum()), "of": len(full)}
    tt = _t_tests(sf)
    out["t_tests"] = tt.to_dict("records")
    std = sf.groupby(["dataset", "horizon", "model"])["test_mse"].std(ddof=1).reset_index()
    out["seed_std"] = std.to_dict("records")
    return out


def _fmt_pct(x: float) -> str:
    return f"{x:.2f} %"


def verdicts(audit_df: pd.DataFrame, comp: pd.DataFrame, summary: dict, progress: pd.DataFrame,
             params: pd.DataFrame) -> dict:
    """The chapter's verdicts (S14–S18, S21, S22, S25, E1–E3, O5, O13, O15) from the audit and committed cells."""
    def arow(check_substring: str) -> pd.DataFrame:
        return audit_df[audit_df.check.str.contains(check_substring, regex=False)]

    prog = {r.grid: r for r in progress.itertuples()}
    imp = summary.get("improvements", {})

    def done_text(grid: str) -> str:
        r = prog[grid]
        where = "CPU" if not r.on_gpu else f"{r.on_gpu} on a GPU, the rest on the CPU"
        return f"{r.done} of {r.cells} paper-profile cells of {grid} finished ({where})"

    v = {}
    o = arow("overall MSE improvement of SAMformer")
    o = o[o.table == "Table 1"]
    matched = o[o.match]
    ours = imp.get("SAMformer vs TSMixer (MSE)")
    ours_txt = (f"our runs: SAMformer vs TSMixer {_fmt_pct(ours['pooled_pct'])} on {ours['cells']} cells"
                if ours else "our runs: no cell has both SAMformer and TSMixer yet")
    vs_transformer = imp.get("SAMformer vs Transformer (MSE)")
    if vs_transformer:  # the printed 16.96 % over the Transformer, on the (dataset, horizon) cells run so far
        ours_txt += (f"; SAMformer vs Transformer {_fmt_pct(vs_transformer['pooled_pct'])} (pooled, printed "
                     f"16.96 % over 8 datasets) on the {vs_transformer['cells']} cells where both finished")
    v["S14"] = {"verdict": "inconclusive",
                "evidence": f"Audit: {len(matched)} of {len(o)} printed gains equal the pooled ratio "
                            f"Σ(b−s)/Σb of Table 1 (14.33 % is pooled; the mean of per-cell gains is "
                            f"{o[o.item.str.contains('vs TSMixer ')].recomputed.iloc[0].split('/ mean ')[1]} %); "
                            f"iTrans 3.94 % and PatchTST 11.13 % cannot be recomputed (no Electricity values "
                            f"printed). {ours_txt}; {done_text('samformer-table1')}."}
    r7 = arow("outperforms its competitors on 7 out of 8")
    r12 = arow("ranked either first or second")
    rit = arow("gets beaten by SAMformer")
    v["S15"] = {"verdict": "not supported",
                "evidence": f"Audit of Table 1: best on {r7.recomputed.iloc[0]}; first or second in "
                            f"{r12.recomputed.iloc[0]} non-Exchange cells ({r12.note.iloc[0]}); iTrans: "
                            f"{rit.recomputed.iloc[0]}. The paper's own numbers do not give 7 of 8."}
    r958 = arow("average enhancement of 9.58%")
    ours = imp.get("TSMixer+SAM vs TSMixer (MSE)")
    v["S16"] = {"verdict": "inconclusive",
                "evidence": f"Audit: 9.58 % is the pooled ratio ({r958.recomputed.iloc[0]}). Our runs: "
                            + (f"{_fmt_pct(ours['pooled_pct'])} on {ours['cells']} cells" if ours else
                               "no cell with both TSMixer and TSMixer+SAM finished yet")
                            + f"; {done_text('samformer-table1')}."}
    o6 = arow("overall MAE improvement of SAMformer")
    o6 = o6[o6.table == "Table 6"]
    v["S17"] = {"verdict": "partly supported",
                "evidence": f"Audit of Table 6: {int(o6.match.sum())} of {len(o6)} printed MAE gains recompute "
                            f"(pooled); MAE gains over iTrans/PatchTST are negative on the printed cells "
                            f"({'; '.join(o6[~o6.match].recomputed)}), so 'the same conclusions' hold against "
                            f"the own-run baselines, not against iTrans/PatchTST."}
    r18 = arow("significantly improves upon TSMixer trained with SAM")
    tt = pd.DataFrame(summary.get("t_tests", []))
    ours18 = (f"our t-tests: SAMformer significantly better in {int(tt.significant_a_better.sum())} of {len(tt)} "
              f"finished cells" if not tt.empty else "no cell pair finished for our own t-test")
    v["S18"] = {"verdict": "partly supported",
                "evidence": f"Audit (Student t from Table 7's mean ± std, n = 5): all bold marks reproduce; "
                            f"significant SAMformer wins {r18.recomputed.iloc[0]} — '7 of 8' holds only for "
                            f"'at least one horizon' (Weather 0/4). {ours18}; {done_text('samformer-table1')}."}
    ratio_ours = params.ours_tsmixer.sum() / params.ours_samformer.sum()
    mean_ratio = params.ours_ratio.mean()
    exact = bool((params.ours_samformer == params.paper_samformer).all() and
                 (params.ours_tsmixer == params.paper_tsmixer).all())
    v["S21"] = {"verdict": "partly supported" if mean_ratio > 2 else "not supported",
                "evidence": f"Exact counts, L = 512: our SAMformer {params.ours_samformer.iloc[0]} (H=96) vs "
                            f"Table 8 {params.paper_samformer.iloc[0]}; our TSMixer (official architecture, "
                            f"tuned settings) {params.ours_tsmixer.iloc[0]} (ETT, H=96) vs {params.paper_tsmixer.iloc[0]}"
                            f"; {'identical' if exact else 'counts differ from Table 8'}; our mean ratio "
                            f"{mean_ratio:.2f} (Table 8: 3.73, itself = mean of rounded per-H ratios); Table 8's "
                            f"SAMformer H=720 count breaks the 513-per-H growth of its other entries."}
    v["S22"] = {"verdict": "inconclusive",
                "evidence": f"Audit: SAMformer beats TSMixer+SAM in Table 1 on "
                            f"{r18.note.iloc[0].replace('per dataset: ', 'datasets (significant wins/H): ')}; "
                            f"{done_text('samformer-table1')} — too few for all horizons."}
    r25 = arow("overall MSE improvement over MOIRAI")
    v["S25"] = {"verdict": "partly supported",
                "evidence": "Audit of Table 2: 'superior on 3' recomputes; overall gains "
                            + "; ".join(f"{r.item}: printed {r.printed}, recomputed {r.recomputed}"
                                        for r in r25.itertuples())
                            + ". 'At least 1.1 % and up to 7.6 %' holds for Base (1.13) but Large gives 7.08 "
                              "pooled. MOIRAI is not re-run here (pretrained weights)."}
    e_t1 = arow("across eight long-horizon datasets")
    v["E1"] = {"verdict": "inconclusive",
               "evidence": "Only 5 of the 11 time-series sets are available here (ETT×4, weather); Synapse and "
                           f"PEMS are not. Audit: {'; '.join(e_t1.recomputed)} in EEO Table 1. "
                           f"{done_text('eeo-table1')}."}
    eeo_imp = imp.get("EEO-TFV vs SAMformer (MSE)")
    v["E2"] = {"verdict": "not supported",
               "evidence": f"Audit: Table 1 has 7 datasets, not 8; EEO-TFV is best on "
                           f"{e_t1.recomputed.iloc[0].replace('best on ', '')} (MSE) and "
                           f"{e_t1.recomputed.iloc[1].replace('best on ', '')} (MAE); its SAM* column is "
                           f"SAMformer's published numbers (56/56 identical), not a re-run; Table 1's ETTh1 SAM* "
                           f"differs from the mean of its own Table 5. Our runs: "
                           + (f"EEO vs SAMformer {_fmt_pct(eeo_imp['pooled_pct'])} pooled, better in "
                              f"{eeo_imp['a_better_cells']} of {eeo_imp['cells']} cells" if eeo_imp else
                              "no EEO cell finished yet") + "."}
    e3 = arow("outperforms all models except for ETTm1")
    v["E3"] = {"verdict": "not supported",
               "evidence": "Audit of EEO Table 5: " + "; ".join(f"{r.check.split('(')[-1].rstrip(')')}: "
                                                              f"{r.recomputed}" for r in e3.itertuples())}
    o5 = arow("superior … across most benchmark datasets")
    oce = imp.get("OCE-TS vs DLinear (MSE)")
    covered = oce is not None and oce["cells"] >= prog["oce-table2"].cells // 4  # at least half the grid's pairs
    v["O5"] = {"verdict": "not supported" if covered and oce["pooled_pct"] <= 0 else "partly supported",
               "evidence": "Audit of Table 2: " + "; ".join(o5.recomputed) + " — 'most', not 'consistently'. "
                           + (f"Our runs: OCE-TS vs MSE-DLinear {_fmt_pct(oce['pooled_pct'])} pooled MSE, better "
                              f"in {oce['a_better_cells']} of {oce['cells']} cells" if oce else
                              "Our runs: no OCE-TS cell finished yet")
                           + f"; {done_text('oce-table2')}."}
    o13 = arow("Nemenyi CD")
    v["O13"] = {"verdict": "not supported",
                "evidence": "Eq. (88) with the paper's q_α and N = 7 datasets: " + " | ".join(
                    f"{r.check.split('(')[1].split(',')[0]}: {r.recomputed.split('; ', 1)[1]}"
                    for r in o13.itertuples() if "N = 7" in r.check)
                            + ". OCE-TS is significantly better only than some counterparts."}
    std = pd.DataFrame(summary.get("seed_std", []))
    o_std = std[std.model.isin(["OCE-TS", "DLinear"])] if not std.empty else std
    v["O15"] = {"verdict": "inconclusive",
                "evidence": "OCE-TS reports no std and no seeds. "
                            + ("Our seed std of test MSE (mean over finished cells): " + ", ".join(
                                f"{m} {o_std[o_std.model == m].test_mse.mean():.4f}" for m in ("OCE-TS", "DLinear")
                                if (o_std.model == m).any()) if not o_std.empty else "No OCE-TS cell finished yet")
                            + f"; {done_text('oce-table2')}."}
    return v


EXPLORER_TABLES = {"SAMformer Tables 1/6": ("samformer_table1_mse", "samformer_table6_mae",
                                           ("SAMformer", "TSMixer+SAM", "Transformer", "TSMixer")),
                   "EEO-TFV Table 5": ("eeo_table5_long", "eeo_table5_long", ("EEO-TFV", "SAMformer")),
                   "OCE-TS Table 2": ("oce_table2_main", "oce_table2_main", ("OCE-TS", "DLinear"))}


def paper_frame(table: str, comparison: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's values of the models we run for one of :data:`EXPLORER_TABLES`, with our columns merged in
    where a cell finished (``ours_*`` NaN elsewhere) — the frame the dot plots and the explorer draw."""
    t_mse, t_mae, models = EXPLORER_TABLES[table]
    frames = []
    for name, metric in ((t_mse, "MSE"), (t_mae, "MAE")):
        df = load_reference(name)
        df = df[(df.metric == metric) & df.model.isin(models) & (df.horizon != "avg")]
        frames.append(df[["dataset", "horizon", "model", "value"]].rename(columns={"value": f"paper_{metric.lower()}"}))
    out = frames[0].merge(frames[1], on=["dataset", "horizon", "model"], how="outer")
    out["horizon"] = out["horizon"].astype(int)
    if comparison is not None and not comparison.empty:
        ours = comparison[["dataset", "horizon", "model", "ours_mse", "ours_mse_std", "ours_mae", "ours_mae_std",
                           "mse_diff", "mae_diff"]]
        out = out.merge(ours, on=["dataset", "horizon", "model"], how="left")
    return out


def grid_table() -> pd.DataFrame:
    """The declared paper grids: recipes, datasets, horizons, look-back, protocol, cells."""
    from flatcast.benchmark import GRIDS

    rows = []
    for name in PAPER_GRIDS:
        g = GRIDS[name]
        cells = expand(name, "paper")
        rows.append({"grid": name, "reproduces": g.title, "recipes": ", ".join(g.recipes),
                     "datasets": ", ".join(g.datasets), "look-back": ", ".join(sorted({str(c.lookback) for c in cells})),
                     "epochs / patience / batch": f"{cells[0].epochs} / {cells[0].patience} / {cells[0].batch_size}",
                     "seeds": len(cells[0].seeds), "cells": len(cells), "note": g.notes})
    return pd.DataFrame(rows)


def paper_results(store: ResultStore | None = None) -> list[dict]:
    """The committed paper-profile cells of the store."""
    from flatcast.benchmark import Cell, cell_key

    store = store or ResultStore()
    out = []
    for r in store.all_results():
        cfg = r["identity"]["config"]
        if cfg.get("profile") != "paper":
            continue
        try:  # a cell computed by older code (or data) than the checkout's is kept, and labelled as such
            r["current"] = cell_key(Cell(**{**cfg, "seeds": tuple(cfg["seeds"])})) == r["key"]
        except (KeyError, TypeError, ValueError):
            r["current"] = False
        out.append(r)
    return out


def run_quick(store_dir: str | Path | None = None, progress: bool = False) -> tuple[list[dict], object]:
    """Run the ``quick`` grid (quick profile) through Ray into ``store_dir`` (a scratch folder by default)."""
    store = ResultStore(store_dir or Path(tempfile.mkdtemp(prefix="flatcast-bench-")))
    cells = expand("quick", "quick")
    summary = run_cells(cells, store, backend="ray", workers=1, threads=1, progress=progress)
    return [r["result"] for r in cell_status(cells, store) if r["result"]], summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flatcast.experiments.benchmark")
    p.add_argument("--profile", default="paper", choices=("quick", "paper"))
    p.add_argument("--store", type=Path, default=None)
    args = p.parse_args(argv)
    store = ResultStore(args.store)
    if args.profile == "quick":
        results, _ = run_quick()
    else:
        results = paper_results(store)
    a = audit()
    comp = comparison_table(results)
    summary = our_summary(results)
    prog = grid_progress(store)
    params = parameter_counts()
    prov = provenance("cpu", command=[Path(sys.executable).name, "-m", "flatcast.experiments.benchmark",
                                      *(argv if argv is not None else sys.argv[1:])])
    if args.profile == "paper":
        out = {"provenance": prov, "progress": prog.to_dict("records"),
               "comparison": json.loads(comp.to_json(orient="records")) if not comp.empty else [],
               "summary": summary, "audit_mismatches": int((~a.match).sum()), "audit_checks": len(a)}
        path = RESULTS_DIR / "benchmark_paper.json"
        path.write_text(json.dumps(out, indent=1, default=float) + "\n")
        write_verdicts("benchmark", verdicts(a, comp, summary, prog, params), prov)
        print(f"wrote {path} and {RESULTS_DIR / 'benchmark_claims.json'}")
    print(prog.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Exact checks of the toy chapter's claims that need no training (S2, S4, S11, S13, S31)."""

from __future__ import annotations

import copy

import pytest

from flatcast.experiments import toy_exact


def test_parameter_counts_match_the_hand_formula_and_refute_the_two_percent():
    L, H, D, d = 512, 96, 7, 16
    counts = toy_exact.parameter_counts(L, H, D, d)
    b, nb = counts["with_bias"], counts["without_bias"]
    assert b["random_transformer"] == L * H + H  # only the head W trains (SAMformer §2.2)
    assert b["transformer"] == 3 * (L * d + d) + (d * L + L) + (L * H + H)
    assert b["frozen_qk"] == b["transformer"] - 2 * (L * d + d)
    assert nb["transformer"] == 4 * L * d + L * H and nb["random_transformer"] == L * H
    assert nb["increase_over_random"] == pytest.approx(4 * d / H)  # = 2/3 at the paper's sizes, not 2 %
    assert b["increase_over_random"] == pytest.approx(0.6767, abs=1e-4)
    with_revin = toy_exact.parameter_counts(L, H, D, d, revin=True)["with_bias"]
    assert with_revin["transformer"] - b["transformer"] == 2 * D == with_revin["random_transformer"] - b["random_transformer"]


def test_existence_proposition_holds_without_its_d_below_h_condition():
    check = toy_exact.existence_check(lookback=64, horizon=16, n_channels=5, d_model=8)
    for case in ("paper_horizon", "horizon_below_D"):
        c = check[case]
        assert c["rank_P"] == c["rank_block"] == 5 and c["relative_residual"] < 1e-10 and c["exists"]
    assert check["horizon_below_D"]["horizon"] < 5 < check["paper_horizon"]["horizon"]


def test_proposition5_holds_for_psd_and_general_products_and_is_tight():
    check = toy_exact.proposition5_check(n_trials=50, lookback=32, n_channels=5, d_model=4)
    assert 0 < check["max_ratio_psd"] <= 1 and 0 < check["max_ratio_general"] <= 1
    assert check["ratio_at_equality_case"] == pytest.approx(1.0, abs=1e-9)
    assert check["holds_psd"] and check["holds_general"]


def test_channel_attention_is_permutation_equivariant_and_temporal_attention_is_not():
    check = toy_exact.permutation_check(lookback=48, horizon=8, n_channels=5, d_model=4)
    assert check["max_equivariance_error_channel"] < 1e-12 and check["equivariant_channel"]
    assert check["max_equivariance_error_temporal"] > 1e-3
    assert check["attention_scores_channel"] == 25 and check["attention_scores_temporal"] == 48 ** 2
    assert check["score_flops_channel"] < check["score_flops_temporal"]


def test_revin_closed_form_matches_and_forecasts_are_channel_independent():
    check = toy_exact.closed_form_check(lookback=24, horizon=6, n_channels=4)
    assert check["max_abs_diff"] < 1e-6 * max(1.0, check["output_scale"])
    assert check["max_cross_channel_jacobian"] == 0.0 and check["min_own_channel_jacobian"] > 0


@pytest.fixture(scope="module")
def small_checks():
    return {"S2": toy_exact.existence_check(64, 16, 5, 8), "S4": toy_exact.parameter_counts(512, 96, 7, 16),
            "S11": toy_exact.proposition5_check(20, 32, 5, 4), "S13": toy_exact.permutation_check(48, 8, 5, 4),
            "S31": toy_exact.closed_form_check(24, 6, 4)}


def test_exact_verdicts_follow_the_checks(small_checks):
    v = toy_exact.exact_verdicts(small_checks)
    assert {k: e["verdict"] for k, e in v.items()} == {"S2": "supported", "S4": "not supported",
                                                        "S11": "supported", "S13": "supported", "S31": "supported"}
    assert "+68%" in v["S4"]["evidence"] and "not 2%" in v["S4"]["evidence"]
    assert all(e["evidence"].startswith("exact") for e in v.values())
    broken = copy.deepcopy(small_checks)
    broken["S11"]["holds_psd"] = False
    broken["S13"]["equivariant_channel"] = False
    broken["S31"]["max_cross_channel_jacobian"] = 0.5
    broken["S2"]["paper_horizon"]["exists"] = False
    v = toy_exact.exact_verdicts(broken)
    assert all(v[k]["verdict"] == "not supported" for k in ("S2", "S11", "S13", "S31"))


def test_random_transformer_floor_is_the_best_head_an_optimizer_can_find():
    import torch

    from flatcast.experiments import toy

    config = toy.toy_config("quick", lookback=16, horizon=4, n_channels=3, n_train=64, n_val=32, seeds=(0,))
    floor = toy_exact.random_transformer_floor(config)
    (row,) = floor["per_seed"]
    # independent: fit the head of the very same model by L-BFGS on the training windows
    splits = toy.toy_splits(config)
    model = toy.build_model("random_transformer", config, 0).double()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    x, y = splits.train.x.double(), splits.train.y.double()
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    lbfgs = float(((model(x) - y) ** 2).mean().detach())
    assert row["train_mse"] == pytest.approx(lbfgs, rel=1e-6)
    val = float(((model(splits.val.x.double()) - splits.val.y.double()) ** 2).mean().detach())
    assert row["val_mse"] == pytest.approx(val, rel=1e-5)
    assert row["val_ratio_to_oracle"] == pytest.approx(val / floor["oracle_val_mse"], rel=1e-5)

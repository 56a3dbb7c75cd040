"""Tests for flatcast.losses: CE (OCE-TS Eq. 19), OCE (Eq. 2), their logits versions and the MSE."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from flatcast.losses import ce_loss, ce_loss_from_logits, mse_loss, oce_loss, oce_loss_from_logits

ln = math.log

# The paper's Table 1: true p and two predictions per case (3 ordered bins), with the printed CE and OCE.
TABLE1 = {
    "case1": ([0.8, 0.1, 0.1], {"A": ([0.3, 0.5, 0.2], 0.518, 1.396), "B": ([0.4, 0.1, 0.5], 0.449, 1.528)}),
    "case2": ([0.2, 0.1, 0.7], {"A": ([0.6, 0.2, 0.2], 0.604, 2.029), "B": ([0.3, 0.5, 0.2], 0.624, 1.720)}),
}


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def test_ce_and_oce_hand_computed_three_bins():
    # Case 1, prediction A of Table 1, worked out term by term with natural logs.
    p, q = _t([0.8, 0.1, 0.1]), _t([0.3, 0.5, 0.2])
    ce_by_hand = -(0.8 * ln(0.3) + 0.1 * ln(0.5) + 0.1 * ln(0.2))
    # Cumulative levels k = 1, 2: P = (0.8, 0.9), Q = (0.3, 0.8); the level k = 3 (P = Q = 1) is excluded.
    oce_by_hand = -(0.8 * ln(0.3) + 0.2 * ln(0.7)) - (0.9 * ln(0.8) + 0.1 * ln(0.2))
    assert ce_loss(p, q).item() == pytest.approx(ce_by_hand, rel=1e-12)
    assert oce_loss(p, q).item() == pytest.approx(oce_by_hand, rel=1e-12)
    assert ce_by_hand == pytest.approx(1.193437, abs=1e-6)
    assert oce_by_hand == pytest.approx(1.396286, abs=1e-6)


def test_against_paper_table1_oce_natural_log_ce_base10():
    # Discrepancy documented in flatcast.losses: the paper's OCE column matches Eq. 2 in nats, but its CE column
    # is in base-10 logs. So OCE is compared directly and CE after dividing by ln 10.
    for p, predictions in TABLE1.values():
        for q, printed_ce, printed_oce in predictions.values():
            assert oce_loss(_t(p), _t(q)).item() == pytest.approx(printed_oce, abs=5e-4)
            # abs 1e-3: case 1 B is 0.44846 in base 10, printed 0.449 (the paper rounds it up by one digit).
            assert ce_loss(_t(p), _t(q)).item() / ln(10) == pytest.approx(printed_ce, abs=1e-3)
            assert ce_loss(_t(p), _t(q)).item() != pytest.approx(printed_ce, abs=5e-2)


def test_table1_transcription_agrees_with_constants():
    candidates = [Path(__file__).resolve().parents[1] / "data" / "reference" / "oce_table1_ce_vs_oce.csv",
                  Path("/work/shared/reference/oce_table1_ce_vs_oce.csv")]
    path = next((c for c in candidates if c.exists()), None)
    if path is None:
        pytest.skip("reference table oce_table1_ce_vs_oce.csv not available")
    import pandas as pd

    table = pd.read_csv(path)
    for case_key, (p, predictions) in TABLE1.items():
        rows = table[table["case"] == f"Case {case_key[-1]}"]
        true_row = rows[rows["role"] == "True"].iloc[0]
        assert [true_row.p1, true_row.p2, true_row.p3] == pytest.approx(p)
        for name, (q, ce, oce) in predictions.items():
            row = rows[rows["role"] == f"Pred {name}"].iloc[0]
            assert [row.p1, row.p2, row.p3] == pytest.approx(q)
            assert (row.CE, row.OCE) == pytest.approx((ce, oce))


def test_table1_ranking_oce_prefers_the_ordinally_closer_prediction():
    # Case 1: CE prefers B (its mass on the true bin is larger) while OCE prefers A, whose mass sits next to it.
    p, predictions = TABLE1["case1"]
    a, b = _t(predictions["A"][0]), _t(predictions["B"][0])
    assert ce_loss(_t(p), b) < ce_loss(_t(p), a)
    assert oce_loss(_t(p), a) < oce_loss(_t(p), b)


def test_near_mistake_beats_far_mistake_under_oce_while_ce_ties():
    p = _t([1.0, 0.0, 0.0, 0.0])
    near = _t([0.5, 0.4, 0.05, 0.05])
    far = _t([0.5, 0.05, 0.05, 0.4])
    assert ce_loss(p, near).item() == pytest.approx(ce_loss(p, far).item(), rel=1e-14)
    assert oce_loss(p, near) < oce_loss(p, far)


def test_losses_minimised_at_q_equal_p_and_oce_vanishes_for_matching_one_hot():
    p = _t([0.1, 0.6, 0.3])
    for loss in (ce_loss, oce_loss):
        at_p = loss(p, p)
        for q in ([0.2, 0.5, 0.3], [0.1, 0.5, 0.4], [0.05, 0.65, 0.3]):
            assert loss(p, _t(q)) > at_p
    assert oce_loss(_t([0.0, 1.0, 0.0]), _t([0.0, 1.0, 0.0])).item() == pytest.approx(0.0, abs=1e-12)


def test_mean_over_leading_dimensions():
    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(2, 3, 4, 5, generator=gen), -1)
    q = torch.softmax(torch.randn(2, 3, 4, 5, generator=gen), -1)
    for loss in (ce_loss, oce_loss):
        per_item = torch.stack([loss(p[i, j, k], q[i, j, k]) for i in range(2) for j in range(3) for k in range(4)])
        torch.testing.assert_close(loss(p, q), per_item.mean())


def test_logits_versions_agree_with_probability_versions():
    gen = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(5, 7, 11, generator=gen, dtype=torch.float64)
    p = torch.softmax(torch.randn(5, 7, 11, generator=gen, dtype=torch.float64), -1)
    q = torch.softmax(logits, -1)
    torch.testing.assert_close(ce_loss_from_logits(p, logits), ce_loss(p, q))
    torch.testing.assert_close(oce_loss_from_logits(p, logits), oce_loss(p, q))


def test_gradients_finite_with_zero_probabilities_and_peaked_logits():
    p = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    q = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    for loss in (ce_loss, oce_loss):
        value = loss(p, q)
        (grad,) = torch.autograd.grad(value, q)
        assert torch.isfinite(value) and torch.isfinite(grad).all()
    logits = torch.tensor([[300.0, -300.0, 0.0], [0.0, 0.0, 1e4]], requires_grad=True)
    for loss in (ce_loss_from_logits, oce_loss_from_logits):
        value = loss(p, logits)
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.isfinite(value) and torch.isfinite(grad).all()
    # The logits OCE stays exact where the probability version must clamp: Q_1 = e^-60 / (2 + e^-60) << eps.
    # p = one-hot on bin 1, so P = (1, 1) and OCE = -log Q_1 - log Q_2 = 60 + 2 log(2 + e^-60) - log(1 + e^-60).
    p1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    logits1 = torch.tensor([-60.0, 0.0, 0.0], dtype=torch.float64)
    exact = 60 + 2 * math.log(2 + math.exp(-60)) - math.log1p(math.exp(-60))
    assert oce_loss_from_logits(p1, logits1).item() == pytest.approx(exact, rel=1e-12)
    clamped = oce_loss(p1, torch.softmax(logits1, -1)).item()
    assert clamped == pytest.approx(-math.log(1e-7) + math.log(2), rel=1e-6)  # limited by eps = 1e-7


def test_oce_from_logits_hand_value_for_a_peaked_softmax():
    # q = softmax(0, 50, 0): Q_1 = 1/(2+e^50), 1 - Q_2 = the same. p = one-hot on bin 2: P = (0, 1).
    # OCE = -[log(1 - Q_1) + log Q_2] = -2 log(1 - 1/(2 + e^50)) ≈ 2 e^-50.
    p = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    value = oce_loss_from_logits(p, torch.tensor([0.0, 50.0, 0.0], dtype=torch.float64)).item()
    assert value == pytest.approx(-2 * math.log1p(-1 / (2 + math.exp(50))), rel=1e-9)


def test_shape_and_type_errors():
    with pytest.raises(ValueError, match="same shape"):
        ce_loss(torch.ones(2, 3) / 3, torch.ones(2, 4) / 4)
    with pytest.raises(ValueError, match="same shape"):
        oce_loss_from_logits(torch.ones(3) / 3, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="2 bins"):
        oce_loss(torch.ones(4, 1), torch.ones(4, 1))
    with pytest.raises(TypeError):
        ce_loss([0.5, 0.5], torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="eps"):
        oce_loss(torch.ones(3) / 3, torch.ones(3) / 3, eps=0.0)
    with pytest.raises(ValueError, match="same shape"):
        mse_loss(torch.zeros(2, 3), torch.zeros(3, 2))


def test_mse_by_hand():
    assert mse_loss(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 0.0, 1.0])).item() == pytest.approx(13 / 3)


# ------------------------------------------------------------------------------------------- oce_loss_fused
def _fused_problem(scale: float, distribution: str, seed: int = 0):
    from functools import partial

    from flatcast.targets import Bins, target_to_cumulative, target_to_probs

    g = torch.Generator().manual_seed(seed)
    bins = Bins(-1.0, 1.0, 20)
    y = torch.randn(6, 11, generator=g, dtype=torch.float64) * 0.6
    logits = (torch.randn(6, 11, 20, generator=g, dtype=torch.float64) * scale).requires_grad_()
    cumulative = partial(target_to_cumulative, bins=bins, sigma=0.1, distribution=distribution)
    return logits, y, cumulative, target_to_probs(y, bins, 0.1, distribution)


@pytest.mark.parametrize("distribution", ["gaussian", "student_t", "laplace"])
@pytest.mark.parametrize("scale", [1.0, 30.0, 300.0])
@pytest.mark.parametrize("exact", [True, False])
def test_fused_oce_equals_the_autograd_losses_value_and_gradient(distribution, scale, exact):
    from flatcast.losses import oce_loss_from_logits_clamped, oce_loss_fused

    logits, y, cumulative, p = _fused_problem(scale, distribution)
    reference = oce_loss_from_logits(p, logits) if exact else oce_loss_from_logits_clamped(p, logits)
    (reference_grad,) = torch.autograd.grad(reference, logits)
    fused = oce_loss_fused(logits, y, cumulative, exact=exact, block_rows=5)  # blocks cut across rows of y
    (fused_grad,) = torch.autograd.grad(fused, logits)
    torch.testing.assert_close(fused, reference, rtol=1e-13, atol=0)
    torch.testing.assert_close(fused_grad, reference_grad, rtol=1e-11, atol=1e-14 * reference_grad.abs().max().item())
    if scale == 300.0 and not exact:
        # the clamp is really exercised: some cumulative probabilities underflow to below eps = 1e-30
        q = torch.softmax(logits.detach(), -1)
        assert (torch.cumsum(q, -1)[..., :-1] < 1e-30).any()
        assert fused.item() < oce_loss_from_logits(p, logits).item()  # clamping caps the far-off levels


def test_fused_oce_does_not_depend_on_the_block_size_and_skips_gradient_work_without_grad():
    from flatcast.losses import oce_loss_fused

    logits, y, cumulative, _ = _fused_problem(5.0, "gaussian", seed=3)
    values, grads = [], []
    for block_rows in (1, 7, 66, 10_000):
        value = oce_loss_fused(logits, y, cumulative, block_rows=block_rows)
        values.append(value)
        grads.append(torch.autograd.grad(value, logits)[0])
    for value, grad in zip(values[1:], grads[1:]):
        torch.testing.assert_close(value, values[0], rtol=1e-14, atol=0)
        torch.testing.assert_close(grad, grads[0], rtol=1e-13, atol=0)
    with torch.no_grad():
        evaluation = oce_loss_fused(logits, y, cumulative)
    assert not evaluation.requires_grad
    torch.testing.assert_close(evaluation, values[0], rtol=1e-14, atol=0)
    # the upstream gradient scales the result (the loss is a mean: d(3·loss) = 3·d loss)
    (tripled,) = torch.autograd.grad(3.0 * oce_loss_fused(logits, y, cumulative), logits)
    torch.testing.assert_close(tripled, 3.0 * grads[0], rtol=1e-13, atol=0)


def test_fused_oce_block_default_is_cache_sized_on_a_cpu_and_one_block_on_a_gpu():
    from flatcast.losses import FUSED_BLOCK_ROWS, fused_block_rows

    rows = 32 * 7 * 720  # OCE-TS Table 3's H = 720 step: 79 blocks of 2,048 rows on a CPU
    assert fused_block_rows("cpu", rows) == FUSED_BLOCK_ROWS == 2048
    assert fused_block_rows(torch.device("cuda", 0), rows) == rows  # a device object; no GPU needed to decide
    assert fused_block_rows("mps", 5) == 5 and fused_block_rows("cuda", 0) == 1


def test_fused_oce_passes_gradcheck():
    from flatcast.losses import oce_loss_fused

    logits, y, cumulative, _ = _fused_problem(2.0, "laplace", seed=5)
    small = logits.detach()[:2, :3].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: oce_loss_fused(z, y[:2, :3], cumulative, block_rows=4), (small,))


def test_fused_oce_rejects_bad_input():
    from flatcast.losses import oce_loss_fused

    logits, y, cumulative, _ = _fused_problem(1.0, "gaussian")
    with pytest.raises(ValueError, match=r"\(\*y.shape, K\)"):
        oce_loss_fused(logits, y[:, :-1], cumulative)
    for bad_block in (0, True, 2.0):
        with pytest.raises(ValueError, match="block_rows"):
            oce_loss_fused(logits, y, cumulative, block_rows=bad_block)
    with pytest.raises(ValueError, match="eps"):
        oce_loss_fused(logits, y, cumulative, eps=0.0)
    with pytest.raises(TypeError, match="cumulative_targets"):
        oce_loss_fused(logits, y, None)
    with pytest.raises(ValueError, match="NaN"):
        oce_loss_fused(logits, y.clone().fill_(float("nan")), cumulative)

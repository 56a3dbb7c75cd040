"""Tests of flatcast.optim.SAM: exact reduction to the base optimizer, the ascent of Eq. 2 / ASAM Eq. 11,
the trainer protocol (closure, grad_evals, schedulers, state_dict)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from flatcast.optim import SAM


def _regression(seed: int = 0, dtype: torch.dtype = torch.float32):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=generator, dtype=dtype)
    noise = torch.randn(64, 2, generator=generator, dtype=dtype)
    y = x @ torch.randn(5, 2, generator=generator, dtype=dtype) + 0.1 * noise
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(dtype)
    return model, x, y


def _train(model, optimizer, x, y, steps: int) -> None:
    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(steps):
        closure()
        optimizer.step(closure)


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_rho_zero_reproduces_adam_exactly():
    model_sam, x, y = _regression()
    model_adam, _, _ = _regression()
    sam = SAM(model_sam.parameters(), torch.optim.Adam, rho=0.0, lr=1e-2)
    adam = torch.optim.Adam(model_adam.parameters(), lr=1e-2)
    start = _flat(model_sam)
    _train(model_sam, sam, x, y, steps=5)
    _train(model_adam, adam, x, y, steps=5)
    assert not torch.equal(_flat(model_sam), start)  # it did train
    assert torch.equal(_flat(model_sam), _flat(model_adam))


def test_ascent_moves_weights_by_exactly_rho_along_the_gradient():
    model, x, y = _regression()
    sam = SAM(model.parameters(), rho=0.3, lr=1e-3)
    torch.nn.functional.mse_loss(model(x), y).backward()
    before = _flat(model).clone()
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    sam.first_step()
    moved = _flat(model) - before
    assert torch.linalg.vector_norm(moved).item() == pytest.approx(0.3, rel=1e-5)
    cosine = torch.dot(moved, grad) / (moved.norm() * grad.norm())
    assert cosine.item() == pytest.approx(1.0, abs=1e-5)
    sam.second_step()  # back at w before the base step: exact restoration is checked through Adam's update
    assert sam.grad_evals == 2


def test_sam_update_equals_hand_computed_two_gradient_step_on_a_quadratic():
    # f(w) = ½ wᵀAw − bᵀw, g(w) = Aw − b; SAM with SGD: w⁺ = w − η·g(w + ρ g/‖g‖).
    a = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -1.0], dtype=torch.float64)
    w = torch.nn.Parameter(torch.tensor([0.7, -0.4], dtype=torch.float64))
    rho, lr = 0.2, 0.1
    sam = SAM([w], torch.optim.SGD, rho=rho, lr=lr)

    def closure():
        sam.zero_grad()
        loss = 0.5 * w @ a @ w - b @ w
        loss.backward()
        return loss

    expected = w.detach().clone()
    for _ in range(3):
        g = a @ expected - b
        perturbed = expected + rho * g / g.norm()
        expected = expected - lr * (a @ perturbed - b)
        closure()
        sam.step(closure)
    # first step by hand: g = (0.7·3 − 0.4 − 1, 0.7 − 0.8 + 1) = (0.7, 0.9)
    assert torch.allclose(w.detach(), expected, atol=1e-11, rtol=0)
    assert sam.grad_evals == 6


def test_adaptive_ascent_is_asam_and_has_unit_ellipsoid_radius():
    w = torch.nn.Parameter(torch.tensor([2.0, -0.5, 0.0, 1.0], dtype=torch.float64))
    sam = SAM([w], torch.optim.SGD, rho=0.1, adaptive=True, adaptive_xi=0.01, lr=0.1)
    weights = torch.tensor([1.0, 2.0, 3.0, -1.0], dtype=torch.float64)
    (weights * w**2).sum().backward()  # g = 2·weights·w = (4, −2, 0, −2)
    g = w.grad.detach().clone()
    t = w.detach().abs() + 0.01
    expected = 0.1 * t**2 * g / (t * g).norm()
    before = w.detach().clone()
    sam.first_step()
    e = w.detach() - before
    assert torch.allclose(e, expected, atol=1e-11, rtol=0)
    assert (e / t).norm().item() == pytest.approx(0.1, rel=1e-10)  # ‖T⁻¹e‖ = ρ
    assert e[2].item() == 0.0  # zero gradient there, so no perturbation
    assert not torch.allclose(e / e.norm(), g / g.norm())  # differs from plain SAM


def test_step_without_closure_and_bad_arguments_raise():
    w = torch.nn.Parameter(torch.ones(3))
    sam = SAM([w], rho=0.1, lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        sam.step()
    with pytest.raises(ValueError, match="-0.5"):
        SAM([w], rho=-0.5, lr=0.1)
    with pytest.raises(ValueError, match="nan"):
        SAM([w], rho=math.nan, lr=0.1)
    with pytest.raises(TypeError, match="rho"):
        SAM([w], rho="big", lr=0.1)
    with pytest.raises(TypeError, match="base_optimizer"):
        SAM([w], base_optimizer=torch.optim.SGD([w], lr=0.1), rho=0.1)
    with pytest.raises(TypeError, match="adaptive"):
        SAM([w], rho=0.1, adaptive="yes", lr=0.1)


def test_scheduler_on_sam_changes_the_base_learning_rate():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    sam = SAM([w], torch.optim.SGD, rho=0.05, lr=0.4)
    assert sam.param_groups is sam.base_optimizer.param_groups
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(sam, T_max=4)

    def closure():
        sam.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    for epoch in range(1, 3):
        closure()
        sam.step(closure)
        scheduler.step()
        expected = 0.4 * (1 + math.cos(math.pi * epoch / 4)) / 2
        assert sam.base_optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)
    assert sam.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.2)


def test_grad_evals_counts_the_initial_backward_and_the_closure():
    model, x, y = _regression()
    sam = SAM(model.parameters(), rho=0.05, lr=1e-3)
    calls = []

    def closure():
        calls.append(1)
        sam.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(3):
        closure()
        sam.step(closure)
    assert len(calls) == 6
    assert sam.grad_evals == 6


def test_state_dict_round_trip_continues_identically():
    model_a, x, y = _regression()
    sam_a = SAM(model_a.parameters(), rho=0.1, lr=1e-2)
    _train(model_a, sam_a, x, y, steps=3)
    saved = copy.deepcopy(sam_a.state_dict())  # like torch.save: state_dict holds live references
    assert saved["base_optimizer"]["state"]  # Adam moments are saved

    model_b, _, _ = _regression(seed=1)
    with torch.no_grad():
        for pb, pa in zip(model_b.parameters(), model_a.parameters()):
            pb.copy_(pa)
    sam_b = SAM(model_b.parameters(), rho=0.1, lr=5.0)
    sam_b.load_state_dict(saved)
    assert sam_b.param_groups is sam_b.base_optimizer.param_groups
    assert sam_b.param_groups[0]["lr"] == 1e-2
    assert sam_b.grad_evals == 6
    _train(model_a, sam_a, x, y, steps=2)
    _train(model_b, sam_b, x, y, steps=2)
    assert torch.equal(_flat(model_a), _flat(model_b))
    with pytest.raises(ValueError, match="base_optimizer"):
        sam_b.load_state_dict({"state": {}, "param_groups": [], "counters": {}})


class _ReferenceSAM(SAM):
    """SAM's ascent and restore exactly as before the lean step (per-parameter Python loop, fresh clones)."""

    @torch.no_grad()
    def _ascend(self):
        pairs = self._with_grad()
        if not pairs:
            return
        terms = [self._ascent_terms(p, group) for p, group in pairs]
        shared_device, norm_dtype = pairs[0][0].device, pairs[0][0].dtype
        global_norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(part).to(shared_device, norm_dtype) for _, part in terms])
        )
        self._reference_saved = {}
        for (p, group), (numerator, _) in zip(pairs, terms):
            self._reference_saved[p] = p.detach().clone()
            scale = group["rho"] / (global_norm.to(p.device) + 1e-12)
            p.add_(numerator * scale.to(numerator.dtype))

    @torch.no_grad()
    def _descend(self):
        for p, saved in getattr(self, "_reference_saved", {}).items():
            p.copy_(saved)
        self._reference_saved = {}
        self.base_optimizer.step()


@pytest.mark.parametrize("adaptive", [False, True])
def test_lean_step_equals_the_previous_step_bit_for_bit(adaptive):
    """The foreach ascent/restore gives the same weights, number for number, as the per-parameter loop."""
    from flatcast.models import ChannelTransformer

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 24, generator=generator)
    y = torch.randn(16, 3, 6, generator=generator)
    runs = []
    for cls in (SAM, _ReferenceSAM):
        model = ChannelTransformer(24, 6, 3, seed=0)
        sam = cls(model.parameters(), rho=0.7, adaptive=adaptive, lr=1e-2)

        def closure():
            sam.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        for _ in range(6):
            closure()
            sam.step(closure)
        runs.append(_flat(model))
    assert torch.equal(runs[0], runs[1])


def test_ascent_without_gradients_does_not_restore_stale_weights():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    sam = SAM([w], torch.optim.SGD, rho=0.1, lr=0.5)
    (w**2).sum().backward()
    sam.first_step()
    sam.second_step(zero_grad=True)  # a full step: w moved
    after = w.detach().clone()
    sam.first_step()  # no gradient now: no ascent ...
    sam.second_step()  # ... so nothing to restore: w must stay where the last step left it
    assert torch.equal(w.detach(), after)


def test_per_member_ascent_normalises_each_member_alone():
    """k stacked members: each member's perturbation is ρ·g_i/‖g_i‖, as if it were trained alone."""
    generator = torch.Generator().manual_seed(1)
    a = torch.nn.Parameter(torch.randn(3, 4, 2, generator=generator))
    b = torch.nn.Parameter(torch.randn(3, 5, generator=generator))
    sam = SAM([a, b], torch.optim.SGD, rho=0.4, lr=0.1).per_member(3)
    a.grad = torch.randn(3, 4, 2, generator=generator) * torch.tensor([1.0, 10.0, 0.1])[:, None, None]
    b.grad = torch.randn(3, 5, generator=generator)
    before = [a.detach().clone(), b.detach().clone()]
    sam.first_step()
    for i in range(3):
        g = torch.cat([a.grad[i].reshape(-1), b.grad[i].reshape(-1)])
        moved = torch.cat([(a.detach() - before[0])[i].reshape(-1), (b.detach() - before[1])[i].reshape(-1)])
        torch.testing.assert_close(moved, 0.4 * g / g.norm(), rtol=1e-5, atol=1e-6)
    sam.second_step()
    with pytest.raises(ValueError, match="leading dimension of 4"):
        SAM([a, b], rho=0.1, lr=0.1).per_member(4)

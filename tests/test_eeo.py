"""Tests of flatcast.optim.EEO (EEO-TFV §3.6, Eqs. 9–13) and of the finite-difference HVP (Lemma 3.3)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from flatcast.optim import EEO, SAM, fd_hvp

OFF = {"escape": False, "sgld": False, "ema": False}


def _regression(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=generator)
    y = x @ torch.randn(5, 2, generator=generator) + 0.1 * torch.randn(64, 2, generator=generator)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    return model, x, y


def _run(params, loss_fn, optimizer, steps: int) -> None:
    """The trainer protocol: backward, then step(closure) with a closure that re-evaluates and backprops."""

    def closure():
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    for _ in range(steps):
        closure()
        optimizer.step(closure)


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def _train_regression(make_optimizer, steps: int = 5) -> torch.Tensor:
    model, x, y = _regression()
    optimizer = make_optimizer(model.parameters())
    _run(list(model.parameters()), lambda: torch.nn.functional.mse_loss(model(x), y), optimizer, steps)
    return _flat(model.parameters())


# ---------------------------------------------------------------- reductions to SAM and to the base optimizer
def test_eeo_with_escape_sgld_ema_off_equals_sam():
    sam = _train_regression(lambda p: SAM(p, torch.optim.AdamW, rho=0.2, lr=1e-2))
    eeo = _train_regression(lambda p: EEO(p, torch.optim.AdamW, rho=0.2, **OFF, lr=1e-2))
    start = _train_regression(lambda p: torch.optim.SGD(p, lr=0.0), steps=1)
    assert not torch.equal(sam, start)
    assert torch.equal(eeo, sam)


def test_eeo_with_everything_off_equals_the_base_optimizer_and_needs_no_closure():
    adam = _train_regression(lambda p: torch.optim.Adam(p, lr=1e-2))
    eeo = _train_regression(lambda p: EEO(p, rho=0.2, sam=False, **OFF, lr=1e-2))
    assert torch.equal(eeo, adam)
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    bare = EEO([w], torch.optim.SGD, sam=False, **OFF, lr=0.5)
    (w**2).sum().backward()
    bare.step()  # no closure needed: nothing is re-evaluated
    assert torch.equal(w.detach(), torch.tensor([0.0, 0.0]))
    assert bare.grad_evals == 1


def test_probing_without_negative_curvature_changes_nothing_and_counts_evaluations():
    # Convex quadratic: every probe finds λ > 0, so no kick; the weights and gradients are restored exactly,
    # so EEO equals SAM bit for bit. Count: 4 steps × 2 + 2 probes × (2 phases × 2 products × 2 evaluations).
    a = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 3.0]])

    def run(make):
        w = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))
        optimizer = make([w])
        _run([w], lambda: 0.5 * w @ a @ w, optimizer, steps=4)
        return w.detach(), optimizer

    w_sam, _ = run(lambda p: SAM(p, rho=0.1, lr=0.05))
    w_eeo, eeo = run(lambda p: EEO(p, rho=0.1, sgld=False, ema=False, power_iters=2, probe_every=2, lr=0.05))
    assert torch.equal(w_eeo, w_sam)
    assert eeo.n_kicks == 0
    assert eeo.grad_evals == 4 * 2 + 2 * 8
    assert eeo.last_probe["step"] == 2 and eeo.last_probe["grad_evals"] == 8
    assert 0 < eeo.last_probe["curvature"]


# ---------------------------------------------------------------- finite-difference HVP (Lemma 3.3)
def _nonquadratic_loss(w: torch.Tensor) -> torch.Tensor:
    mixing = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.8, -1.0], [-0.7, 0.1, 0.4], [0.5, 0.5, 0.5]], dtype=w.dtype)
    return torch.logsumexp(mixing @ w, dim=0) + 0.25 * (w**4).sum() + torch.sin(w[0] * w[1])


def test_fd_hvp_matches_autograd_with_error_of_order_alpha_squared():
    w = torch.nn.Parameter(torch.tensor([0.3, -0.8, 1.1], dtype=torch.float64))
    v = torch.tensor([0.6, 0.0, -0.8], dtype=torch.float64)  # unit norm
    exact = torch.autograd.functional.hvp(_nonquadratic_loss, w.detach(), v)[1]
    original = w.detach().clone()

    def closure():
        w.grad = None
        loss = _nonquadratic_loss(w)
        loss.backward()
        return loss

    errors = []
    for alpha in (4e-2, 2e-2, 1e-2):
        (approx,) = fd_hvp(closure, [w], [v], alpha)
        errors.append(torch.linalg.vector_norm(approx - exact).item())
    assert torch.equal(w.detach(), original)  # weights restored exactly
    assert errors[-1] < 1e-3
    for coarse, fine in zip(errors, errors[1:]):
        assert coarse / fine == pytest.approx(4.0, rel=0.05)

    def grad_fn():  # the other accepted form: a function returning the gradients
        return list(torch.autograd.grad(_nonquadratic_loss(w), [w]))

    (from_grad_fn,) = fd_hvp(grad_fn, [w], [v], 1e-2)
    (from_closure,) = fd_hvp(closure, [w], [v], 1e-2)
    assert torch.allclose(from_grad_fn, from_closure, atol=1e-14, rtol=0)


def test_fd_hvp_rejects_bad_input():
    w = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="alpha"):
        fd_hvp(lambda: None, [w], [torch.ones(3)], 0.0)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        fd_hvp(lambda: None, [w], [torch.ones(2)], 1e-3)


def _dropout_quadratic(x: torch.Tensor, p: float = 0.5):
    """Loss ½‖dropout(x)⊙w‖² of a weight vector w: for the mask m (kept entries scaled by 1/(1−p)) its Hessian is
    diag((m⊙x)²), exactly, so a finite difference at one mask is exact too."""
    w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, x.numel(), dtype=torch.float64))

    def grad_fn():
        masked = torch.nn.functional.dropout(x, p, training=True)
        return list(torch.autograd.grad(0.5 * ((masked * w) ** 2).sum(), [w]))

    return w, grad_fn


def test_fd_hvp_with_the_same_noise_differentiates_one_dropout_mask_and_leaves_the_generator_alone():
    x = torch.linspace(0.5, 2.0, 12, dtype=torch.float64)
    v = torch.linspace(1.0, -1.0, 12, dtype=torch.float64)
    w, grad_fn = _dropout_quadratic(x)
    torch.manual_seed(3)
    mask = torch.nn.functional.dropout(torch.ones_like(x), 0.5, training=True)  # the next draw after seeding 3
    torch.manual_seed(3)
    state = torch.get_rng_state()
    (product,) = fd_hvp(grad_fn, [w], [v], 1e-3)
    assert torch.allclose(product, (mask * x) ** 2 * v, rtol=1e-9, atol=1e-12)  # H_m v at the next mask
    assert torch.equal(torch.get_rng_state(), state)  # the probe consumed none of the global stream
    # independent masks: the difference of gradients at two masks over 2α, far from any one mask's H v
    torch.manual_seed(3)
    (noisy,) = fd_hvp(grad_fn, [w], [v], 1e-3, same_noise=False)
    assert not torch.equal(torch.get_rng_state(), state)
    assert torch.linalg.vector_norm(noisy - product) > 10 * torch.linalg.vector_norm(product)
    with pytest.raises(TypeError, match="same_noise"):
        fd_hvp(grad_fn, [w], [v], 1e-3, same_noise=1)


def test_same_noise_changes_nothing_for_a_closure_without_randomness():
    w = torch.nn.Parameter(torch.tensor([0.3, -0.8, 1.1], dtype=torch.float64))
    v = torch.tensor([0.6, 0.0, -0.8], dtype=torch.float64)

    def grad_fn():
        return list(torch.autograd.grad(_nonquadratic_loss(w), [w]))

    (shared,) = fd_hvp(grad_fn, [w], [v], 1e-2)
    (independent,) = fd_hvp(grad_fn, [w], [v], 1e-2, same_noise=False)
    assert torch.equal(shared, independent)


def test_eeo_probes_a_dropout_model_at_one_mask_unless_told_otherwise():
    # ½‖dropout(x)⊙w‖² has a positive semi-definite Hessian at every mask: a probe at one mask never reads
    # negative curvature, so it never kicks; with independent masks the reading is noise of either sign
    x = torch.linspace(0.5, 2.0, 12, dtype=torch.float64)
    kicks = {}
    for same in (True, False):
        w, grad_fn = _dropout_quadratic(x)
        opt = EEO([w], lr=0.01, rho=0.05, probe_every=1, sgld=False, ema=False, seed=0, probe_same_noise=same)
        torch.manual_seed(0)

        def closure():
            (grad,) = grad_fn()
            w.grad = grad
            return grad.sum()

        for _ in range(20):
            closure()
            opt.step(closure)
        kicks[same] = opt.n_kicks
        assert all(r["curvature"] >= 0 for r in opt.probe_log) == same
    assert kicks[True] == 0 and kicks[False] > 5
    with pytest.raises(TypeError, match="probe_same_noise"):
        EEO([torch.nn.Parameter(torch.ones(2))], lr=0.1, probe_same_noise="yes")


def test_escape_finds_the_most_negative_curvature_and_kicks_downhill_by_negcur_kick_rho():
    # Quadratic with Hessian Q diag(4, 1, −1, −3) Qᵀ: the dominant eigenvalue (4) is positive, so phase 2 runs.
    generator = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=generator, dtype=torch.float64))
    hessian = q @ torch.diag(torch.tensor([4.0, 1.0, -1.0, -3.0], dtype=torch.float64)) @ q.T
    b = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=torch.float64)
    w = torch.nn.Parameter(torch.tensor([0.1, 0.2, -0.1, 0.05], dtype=torch.float64))
    eeo = EEO([w], torch.optim.SGD, rho=0.1, sam=False, sgld=False, ema=False, power_iters=40, lr=0.0)
    before = w.detach().clone()
    gradient = hessian @ before - b
    _run([w], lambda: 0.5 * w @ hessian @ w - b @ w, eeo, steps=1)

    probe = eeo.last_probe
    assert probe["kicked"] and eeo.n_kicks == 1
    assert probe["curvature"] == pytest.approx(-3.0, abs=1e-6)
    assert probe["spectral_radius"] == pytest.approx(4.0, abs=1e-6)
    assert probe["grad_evals"] == 2 * 40 + 2 * 40 + 1
    kick = w.detach() - before  # lr = 0: the only move is the kick
    assert kick.norm().item() == pytest.approx(2.0 * 0.1, rel=1e-9)
    assert abs(torch.dot(kick / kick.norm(), q[:, 3]).item()) == pytest.approx(1.0, abs=1e-6)
    assert torch.dot(gradient, kick).item() < 0  # first-order downhill sign


# ---------------------------------------------------------------- leaving a strict saddle
def _saddle(w: torch.Tensor) -> torch.Tensor:
    """f(x, y) = x² − y² + y⁴/4: strict saddle at 0 (Hessian diag(2, −2)), minima at (0, ±√2)."""
    return w[0] ** 2 - w[1] ** 2 + w[1] ** 4 / 4


def _final_y(make, start, steps: int) -> float:
    w = torch.nn.Parameter(torch.tensor(start))
    optimizer = make([w])
    if isinstance(optimizer, SAM):
        _run([w], lambda: _saddle(w), optimizer, steps)
    else:
        for _ in range(steps):
            optimizer.zero_grad()
            _saddle(w).backward()
            optimizer.step()
    return abs(w[1].item())


def test_eeo_escapes_a_strict_saddle_where_gd_and_sam_linger():
    start, steps, lr = (0.5, 1e-6), 40, 0.05
    plain = {"sgld": False, "ema": False}
    y_gd = _final_y(lambda p: torch.optim.SGD(p, lr=lr), start, steps)
    y_sam = _final_y(lambda p: SAM(p, torch.optim.SGD, rho=0.05, lr=lr), start, steps)
    y_eeo = _final_y(lambda p: EEO(p, torch.optim.SGD, rho=0.05, **plain, lr=lr), start, steps)
    assert y_gd < 1e-4  # GD grows y by (1 + 2·lr) per step: 1e-6 · 1.1⁴⁰ ≈ 4.5e-5
    assert y_sam < 1e-6  # SAM's ascent even pulls y back toward the saddle
    assert y_eeo == pytest.approx(math.sqrt(2), abs=0.02)


def test_eeo_with_adam_escapes_the_saddle_that_traps_sam_with_adam():
    # On the saddle's stable manifold (x = 0) SAM's ascent of length ρ flips the sign of the y-gradient while
    # |y| < ρ, so SAM+Adam oscillates around y = 0; EEO's kick of 2ρ lands outside that region.
    start, steps, lr = (0.0, 1e-6), 150, 0.01
    plain = {"sgld": False, "ema": False}
    y_sam = _final_y(lambda p: SAM(p, torch.optim.Adam, rho=0.05, lr=lr), start, steps)
    y_eeo = _final_y(lambda p: EEO(p, torch.optim.Adam, rho=0.05, **plain, lr=lr), start, steps)
    assert y_sam < 0.02
    assert y_eeo == pytest.approx(math.sqrt(2), abs=0.05)


# ---------------------------------------------------------------- SGLD (Eq. 12)
def _sgld_noise(seed: int, lr: float, temperature: float, size: int = 20000) -> torch.Tensor:
    w = torch.nn.Parameter(torch.zeros(size, dtype=torch.float64))
    eeo = EEO([w], torch.optim.SGD, sam=False, escape=False, ema=False, temperature=temperature, seed=seed, lr=lr)
    (w * 0).sum().backward()  # zero gradient: the only move is the Langevin noise
    eeo.step()
    return w.detach().clone()


def test_sgld_noise_has_variance_two_eta_t_and_is_seeded():
    noise = _sgld_noise(seed=7, lr=0.01, temperature=0.5)
    assert noise.var().item() == pytest.approx(2 * 0.01 * 0.5, rel=0.05)
    assert abs(noise.mean().item()) < 5 * math.sqrt(0.01 / 20000)
    assert torch.equal(noise, _sgld_noise(seed=7, lr=0.01, temperature=0.5))
    assert not torch.equal(noise, _sgld_noise(seed=8, lr=0.01, temperature=0.5))
    # the current group lr sets the scale: a quarter of the lr halves the standard deviation
    assert torch.allclose(_sgld_noise(seed=7, lr=0.0025, temperature=0.5), noise / 2, rtol=1e-12, atol=0)


def test_scheduler_on_eeo_changes_the_lr_used_by_the_base_step_and_the_noise():
    w = torch.nn.Parameter(torch.zeros(3))
    eeo = EEO([w], torch.optim.SGD, rho=0.05, escape=False, ema=False, lr=0.8)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(eeo, T_max=2)
    _run([w], lambda: (w**2).sum(), eeo, steps=1)
    scheduler.step()
    assert eeo.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.4)


# ---------------------------------------------------------------- EMA (Eq. 13)
def test_ema_follows_the_recursion_swaps_in_and_out_and_finalizes():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    eeo = EEO([w], torch.optim.SGD, sam=False, escape=False, sgld=False, ema_decay=0.9, lr=0.1)
    expected_ema = w.detach().clone()
    for _ in range(4):
        eeo.zero_grad()
        (w**2).sum().backward()
        eeo.step()
        expected_ema = 0.9 * expected_ema + 0.1 * w.detach()
    # by hand: w_t = 0.8^t w_0, so m_4 = 0.9⁴ w_0 + 0.1 Σ_{t=1..4} 0.9^(4−t) 0.8^t w_0
    by_hand = 0.9**4 + 0.1 * sum(0.9 ** (4 - t) * 0.8**t for t in range(1, 5))
    assert torch.allclose(expected_ema, by_hand * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    raw = w.detach().clone()
    assert torch.allclose(eeo.state[w]["ema"], expected_ema, atol=1e-15, rtol=0)
    with eeo.ema_weights():
        assert torch.equal(w.detach(), eeo.state[w]["ema"])
    assert torch.equal(w.detach(), raw)
    eeo.finalize()
    assert torch.equal(w.detach(), eeo.state[w]["ema"])


def test_ema_off_makes_ema_weights_and_finalize_no_ops():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    eeo = EEO([w], torch.optim.SGD, sam=False, **OFF, lr=0.1)
    (w**2).sum().backward()
    eeo.step()
    after = w.detach().clone()
    with eeo.ema_weights():
        assert torch.equal(w.detach(), after)
    eeo.finalize()
    assert torch.equal(w.detach(), after)
    assert "ema" not in eeo.state[w]


# ---------------------------------------------------------------- geometry of Eq. 9, persistence, validation
def test_adaptive_scaling_follows_eq9_literally():
    w = torch.nn.Parameter(torch.tensor([2.0, -0.5, 0.0, 1.0], dtype=torch.float64))
    eeo = EEO([w], torch.optim.SGD, rho=0.1, scaling="adaptive", adaptive_xi=0.01, **OFF, lr=0.1)
    (torch.tensor([1.0, 2.0, 3.0, -1.0], dtype=torch.float64) * w**2).sum().backward()
    s_times_g = (w.detach().abs() + 0.01) * w.grad
    before = w.detach().clone()
    eeo.first_step()
    e = w.detach() - before
    assert torch.allclose(e, 0.1 * s_times_g / s_times_g.norm(), atol=1e-11, rtol=0)
    assert e.norm().item() == pytest.approx(0.1, rel=1e-10)


def test_state_dict_round_trip_restores_ema_noise_stream_and_counters():
    def make(model):
        return EEO(model.parameters(), rho=0.1, probe_every=2, power_iters=1, lr=1e-2)

    model_a, x, y = _regression()
    eeo_a = make(model_a)
    _run(list(model_a.parameters()), lambda: torch.nn.functional.mse_loss(model_a(x), y), eeo_a, steps=3)
    saved = copy.deepcopy(eeo_a.state_dict())

    model_b = copy.deepcopy(model_a)
    eeo_b = make(model_b)
    eeo_b.load_state_dict(saved)
    assert (eeo_b.grad_evals, eeo_b.steps_taken, eeo_b.n_kicks) == (eeo_a.grad_evals, 3, eeo_a.n_kicks)
    _run(list(model_a.parameters()), lambda: torch.nn.functional.mse_loss(model_a(x), y), eeo_a, steps=3)
    _run(list(model_b.parameters()), lambda: torch.nn.functional.mse_loss(model_b(x), y), eeo_b, steps=3)
    assert torch.equal(_flat(model_a.parameters()), _flat(model_b.parameters()))
    with eeo_a.ema_weights(), eeo_b.ema_weights():
        assert torch.equal(_flat(model_a.parameters()), _flat(model_b.parameters()))


def test_bad_arguments_raise_naming_the_value():
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="closure"):
        EEO([w], lr=0.1).step()
    with pytest.raises(ValueError, match="-1"):
        EEO([w], rho=-1, lr=0.1)
    with pytest.raises(ValueError, match="bogus"):
        EEO([w], scaling="bogus", lr=0.1)
    with pytest.raises(ValueError, match="power_iters"):
        EEO([w], power_iters=0, lr=0.1)
    with pytest.raises(ValueError, match="probe_every"):
        EEO([w], probe_every=0, lr=0.1)
    with pytest.raises(ValueError, match="ema_decay"):
        EEO([w], ema_decay=1.0, lr=0.1)
    with pytest.raises(ValueError, match="fd_alpha"):
        EEO([w], fd_alpha=0.0, lr=0.1)
    with pytest.raises(TypeError, match="sgld"):
        EEO([w], sgld=1, lr=0.1)
    with pytest.raises(TypeError, match="scaling"):
        EEO([w], adaptive=True, lr=0.1)
    with pytest.raises(TypeError, match="seed"):
        EEO([w], seed=1.5, lr=0.1)


def test_parameter_groups_are_validated_too():
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="temperature"):
        EEO([{"params": [w], "temperature": -0.1}], lr=0.1)
    with pytest.raises(ValueError, match="-2"):
        SAM([{"params": [w], "rho": -2.0}], lr=0.1)

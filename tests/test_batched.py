"""Tests of flatcast.batched and flatcast.trainer.fit_many: a batched member equals its single run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from flatcast.batched import BatchedChannelTransformer, batching_unsupported
from flatcast.data import make_toy
from flatcast.models import ChannelTransformer
from flatcast.optim import EEO, SAM
from flatcast.trainer import batched_optimizer_unsupported, evaluate, fit, fit_many
from flatcast.utils import torch_threads

LOOKBACK, HORIZON, CHANNELS = 16, 4, 3


def toy_splits(seed: int = 0, revin_scale: bool = False):
    splits = make_toy(n_train=96, n_val=40, lookback=LOOKBACK, horizon=HORIZON, n_channels=CHANNELS, seed=seed)
    return splits


def models(seeds, **kwargs):
    return [ChannelTransformer(LOOKBACK, HORIZON, CHANNELS, seed=s, **kwargs) for s in seeds]


def _named_params(model):
    """(name, weights) of every parameter except W_K's bias (see :func:`_params`)."""
    return [(name, p.detach()) for name, p in model.named_parameters() if name != "key.bias"]


def _params(model):
    """Every weight except W_K's bias: it adds q·b_K to a whole row of scores, which the softmax ignores, so its
    exact gradient is 0 and Adam turns float noise in it into moves of ~lr per step (no effect on any output)."""
    return torch.cat([p.detach().reshape(-1) for name, p in model.named_parameters() if name != "key.bias"])


KINDS = [
    dict(attention="learned"),
    dict(attention="random"),
    dict(attention="identity"),
    dict(attention="temporal"),
    dict(attention="learned", sigma_reparam=True),
    dict(attention="random", sigma_reparam=True),
    dict(attention="learned", revin=False),
    dict(attention="learned", bias=False),
]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_batched_forward_equals_each_member(kind):
    torch.manual_seed(0)
    members = models([0, 1, 2], **kind)
    net = BatchedChannelTransformer(members)
    x = torch.randn(3, 5, CHANNELS, LOOKBACK) * 2 + 1
    y = torch.randn(3, 5, CHANNELS, HORIZON)
    net.eval()
    out = net(x)
    for i, m in enumerate(members):
        m.eval()
        torch.testing.assert_close(out[i], m(x[i]), rtol=1e-5, atol=1e-5)
    shared = net(x[0])  # the same windows for every member
    for i, m in enumerate(members):
        torch.testing.assert_close(shared[i], m(x[0]), rtol=1e-5, atol=1e-5)
    # gradients: the sum of member losses gives each member the gradient of its own loss
    net.train()
    for m in members:
        m.train()
    net.member_losses(x, y).sum().backward()
    for i, m in enumerate(members):
        torch.nn.functional.mse_loss(m(x[i]), y[i]).backward()
        for name, p in m.named_parameters():
            if p.requires_grad:
                offset, shape = net.layout[name]
                grad = net.flat.grad[i, offset:offset + p.numel()].view(shape)
                torch.testing.assert_close(grad, p.grad, rtol=1e-4, atol=1e-6, msg=f"{name}")


def test_member_state_round_trip_and_select():
    members = models([3, 4, 5], attention="learned", sigma_reparam=True)
    net = BatchedChannelTransformer(members)
    fresh = ChannelTransformer(LOOKBACK, HORIZON, CHANNELS, seed=99, sigma_reparam=True)
    net.write_member(1, fresh)
    for (name, a), b in zip(fresh.state_dict().items(), members[1].state_dict().values()):
        assert torch.equal(a, b), name
    net.select([2, 0])
    assert net.k == 2 and net.flat.shape[0] == 2 and net.flat.is_leaf
    torch.testing.assert_close(net.flat[0], BatchedChannelTransformer(members).flat[2])


def test_unsupported_models_and_optimizers_are_named():
    assert batching_unsupported([nn.Linear(2, 2)]).startswith("model 0 is a Linear")
    assert "differs" in batching_unsupported(models([0]) + models([1], attention="random"))
    assert batching_unsupported(models([0, 1])) is None
    assert batched_optimizer_unsupported(lambda p: SAM(p, rho=0.5, lr=1e-3)) is None
    assert batched_optimizer_unsupported(lambda p: torch.optim.Adam(p, lr=1e-3)) is None
    assert "EEO" in batched_optimizer_unsupported(lambda p: EEO(p, rho=0.5, lr=1e-3))
    assert "LBFGS" in batched_optimizer_unsupported(lambda p: torch.optim.LBFGS(p))
    with pytest.raises(ValueError, match="EEO"):
        fit_many(models([0, 1]), toy_splits(), optimizer=lambda p: EEO(p, rho=0.5, lr=1e-3), epochs=1,
                 device="cpu", batched=True)


def _compare(single, batched, rtol=2e-4):
    assert list(single.history.columns) == list(batched.history.columns)
    assert list(single.history.epoch) == list(batched.history.epoch)
    assert single.best_epoch == batched.best_epoch
    assert single.n_steps == batched.n_steps and single.grad_evals == batched.grad_evals
    np.testing.assert_allclose(single.history.lr.to_numpy(), batched.history.lr.to_numpy(), rtol=0)
    for column in single.history.columns:
        if column not in ("epoch", "lr"):
            np.testing.assert_allclose(single.history[column].to_numpy(), batched.history[column].to_numpy(),
                                       rtol=rtol, err_msg=column)
    assert batched.val_mse == pytest.approx(single.val_mse, rel=rtol)
    assert batched.test_mse == pytest.approx(single.test_mse, rel=rtol)
    # the weights per tensor, normwise: Adam divides each coordinate's gradient by its own running RMS, so a
    # coordinate whose gradient is tiny (σReparam's loss is invariant to each matrix's scale) turns float rounding
    # into a step of ~lr, and one element of head.weight can differ by ~3e-4 while the tensor agrees to ~1e-4
    # relative (measured on a machine where the elementwise check failed); a batching error is O(1)
    named_single = dict(_named_params(single.model))
    for name, value in _named_params(batched.model):
        reference = named_single[name]
        error = float(torch.linalg.vector_norm(value - reference))
        assert error <= 10 * rtol * float(torch.linalg.vector_norm(reference)) + 1e-6, (name, error)


@pytest.mark.parametrize("name, factory, kind", [
    ("sam", lambda p: SAM(p, rho=0.7, lr=1e-2), dict()),
    ("adam", lambda p: torch.optim.Adam(p, lr=1e-2), dict()),
    ("sam-sigma", lambda p: SAM(p, rho=0.3, lr=1e-2), dict(sigma_reparam=True)),
    ("adam-random", lambda p: torch.optim.Adam(p, lr=1e-2), dict(attention="random")),
    ("asam-identity", lambda p: SAM(p, rho=0.2, adaptive=True, lr=1e-2), dict(attention="identity")),
])
def test_each_batched_member_equals_its_single_run(name, factory, kind):
    splits = toy_splits()
    seeds = [0, 1, 2]
    singles = [fit(m, splits, optimizer=factory, epochs=3, batch_size=16, patience=None, seed=s, device="cpu",
                   flat_weights=False)
               for m, s in zip(models(seeds, **kind), seeds)]
    many = fit_many(models(seeds, **kind), splits, optimizer=factory, epochs=3, batch_size=16, patience=None,
                    seeds=seeds, device="cpu", batched=True)
    assert len(many) == 3
    for single, batched in zip(singles, many):
        _compare(single, batched)
    # members really differ (different seeds, different batch orders)
    assert not torch.allclose(_params(many[0].model), _params(many[1].model))


def test_early_stopping_best_checkpoint_and_compaction_per_member():
    """Members stop at different epochs (large lr); each one's history, best epoch and weights match fit."""
    splits = toy_splits(seed=2)
    seeds = [0, 1, 2, 3]
    factory = lambda p: SAM(p, rho=0.5, lr=0.05)  # noqa: E731
    kwargs = dict(optimizer=factory, epochs=8, batch_size=16, patience=2, device="cpu")
    singles = [fit(m, splits, seed=s, flat_weights=False, **kwargs) for m, s in zip(models(seeds), seeds)]
    stops = {len(r.history) for r in singles}
    assert len(stops) > 1, "the test needs members that stop at different epochs"
    many = fit_many(models(seeds), splits, seeds=seeds, batched=True, **kwargs)
    for single, batched in zip(singles, many):
        _compare(single, batched, rtol=1e-3)
        assert evaluate(batched.model, splits.val)["mse"] == batched.val_mse
    # restore_best=False keeps each member's weights from the epoch it stopped at
    last = fit_many(models(seeds), splits, seeds=seeds, batched=True, restore_best=False, **kwargs)
    for single, batched in zip(fit_many(models(seeds), splits, seeds=seeds, batched=False, restore_best=False,
                                        **kwargs), last):
        _compare(single, batched, rtol=1e-3)


def test_callbacks_see_each_member_and_fallback_is_sequential():
    splits = toy_splits()
    seen = []

    def record(model, epoch, _splits):
        seen.append((id(model), epoch))
        return {"w_norm": float(torch.linalg.vector_norm(model.head.weight.detach()))}

    members = models([0, 1])
    results = fit_many(members, splits, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), epochs=2, batch_size=32,
                       seeds=[0, 1], device="cpu", callbacks=[record])
    assert sorted(seen) == sorted((id(m), e) for m in members for e in range(3))
    single = fit(models([1])[0], splits, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), epochs=2,
                 batch_size=32, seed=1, device="cpu", callbacks=[record], flat_weights=False)
    np.testing.assert_allclose(results[1].history.w_norm, single.history.w_norm, rtol=1e-5)
    # EEO is not batched: fit_many falls back to fit, number for number
    factory = lambda p: EEO(p, rho=0.1, lr=1e-2, escape=False, seed=0)  # noqa: E731
    fallback = fit_many(models([0, 1]), splits, optimizer=factory, epochs=2, seeds=[0, 1], device="cpu")
    direct = [fit(m, splits, optimizer=factory, epochs=2, seed=s, device="cpu") for m, s in zip(models([0, 1]),
                                                                                                 [0, 1])]
    for a, b in zip(fallback, direct):
        pd.testing.assert_frame_equal(a.history, b.history)


class _NaNAfter(torch.optim.Adam):
    """Adam that poisons member 1's weights after a given number of steps."""

    def __init__(self, params, after):
        super().__init__(params, lr=1e-3)
        self.after, self.calls = after, 0

    def step(self, closure=None):
        out = super().step(closure)
        self.calls += 1
        if self.calls == self.after:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p[1].fill_(float("nan"))
        return out


def test_non_finite_loss_names_member_seed_epoch_and_step(monkeypatch):
    import flatcast.trainer as trainer

    monkeypatch.setattr(trainer, "_ELEMENTWISE_OPTIMIZERS", trainer._ELEMENTWISE_OPTIMIZERS + (_NaNAfter,))
    splits = toy_splits()
    steps_per_epoch = math.ceil(96 / 32)
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan of member 1 \(seed 7\) at epoch 2, step 2$"):
        fit_many(models([5, 6, 7]), splits, optimizer=lambda p: _NaNAfter(p, steps_per_epoch + 1), epochs=3,
                 batch_size=32, seeds=[3, 7, 9], device="cpu", batched=True)
    monkeypatch.setattr(trainer, "_check_every_step", lambda device: False)  # the deferred (accelerator) check
    with pytest.raises(FloatingPointError, match=r"of member 1 \(seed 7\) at epoch 2, step 2$"):
        fit_many(models([5, 6, 7]), splits, optimizer=lambda p: _NaNAfter(p, steps_per_epoch + 1), epochs=3,
                 batch_size=32, seeds=[3, 7, 9], device="cpu", batched=True)


def test_fit_many_argument_errors():
    splits = toy_splits()
    with pytest.raises(ValueError, match="at least one model"):
        fit_many([], splits)
    with pytest.raises(ValueError, match="one seed per model"):
        fit_many(models([0, 1]), splits, seeds=[0], device="cpu")
    with pytest.raises(ValueError, match="epochs"):
        fit_many(models([0, 1]), splits, epochs=0, device="cpu")
    same = models([0])[0]
    with pytest.raises(ValueError, match="twice"):
        fit_many([same, same], splits, device="cpu")


@pytest.mark.parametrize("name", ["samformer", "random_transformer", "samformer_sigma_reparam"])
def test_fit_recipe_seeds_batched_equals_fit_recipe(name, benchmark_data_dir):
    from flatcast.data import make_splits
    from flatcast.recipes import fit_recipe, fit_recipe_seeds

    splits = make_splits("ETTh1", lookback=48, horizon=24, data_dir=benchmark_data_dir)
    kwargs = dict(epochs=2, patience=None, max_train_batches=4, device="cpu")
    many = fit_recipe_seeds(name, splits, seeds=[0, 1], batched=True, **kwargs)
    for seed, batched in zip([0, 1], many):
        single = fit_recipe(name, splits, seed=seed, **kwargs)
        assert batched.recipe == single.recipe
        _compare(single, batched, rtol=1e-4)
    with pytest.raises(ValueError, match="EEO"):
        fit_recipe_seeds("transformer_eeo", splits, seeds=[0, 1], batched=True, **kwargs)


def test_lean_revin_equals_the_written_formula():
    """RevIN's fused form (sum/norm statistics, one multiply-add) equals γ(x − μ)/sqrt(Var x + ε) + β and its
    inverse, values and gradients, to float rounding."""
    from flatcast.models.revin import RevIN

    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 3, 50, generator=generator) * 3 + 5).requires_grad_(True)
    revin = RevIN(3)
    with torch.no_grad():
        revin.affine_weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        revin.affine_bias.copy_(torch.tensor([0.1, -0.3, 2.0]))
    out = revin.normalize(x)
    mean = x.detach().mean(-1, keepdim=True)
    std = torch.sqrt(x.detach().var(-1, keepdim=True, unbiased=False) + 1e-5)
    expected = (x - mean) / std * revin.affine_weight[:, None] + revin.affine_bias[:, None]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(revin.std, std, rtol=1e-6, atol=0)
    weights = torch.randn(out.shape, generator=generator)
    grads = torch.autograd.grad((out * weights).sum(), [x, revin.affine_weight, revin.affine_bias])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, revin.affine_weight, revin.affine_bias])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(revin.denormalize(out.detach()), x.detach(), rtol=1e-5, atol=1e-4)


def test_members_with_different_rho_and_a_plain_adam_member():
    """A ρ sweep and SAM beside plain Adam in one batch: each member equals its own single run."""
    splits = toy_splits(seed=1)
    factories = [lambda p: SAM(p, rho=0.2, lr=1e-2), lambda p: SAM(p, rho=1.5, lr=1e-2),
                 lambda p: torch.optim.Adam(p, lr=1e-2)]
    kwargs = dict(epochs=2, batch_size=16, patience=None, device="cpu")
    singles = [fit(m, splits, optimizer=f, seed=3, flat_weights=False, **kwargs)
               for m, f in zip(models([0, 0, 0]), factories)]
    many = fit_many(models([0, 0, 0]), splits, optimizer=factories, seeds=[3, 3, 3], batched=True, **kwargs)
    for single, batched in zip(singles, many):
        _compare(single, batched)
    assert [r.grad_evals for r in many] == [2 * many[0].n_steps, 2 * many[0].n_steps, many[0].n_steps]
    assert not torch.allclose(_params(many[0].model), _params(many[1].model))  # ρ matters
    with pytest.raises(ValueError, match="more than SAM's rho"):
        fit_many(models([0, 1]), splits, optimizer=[lambda p: SAM(p, rho=0.2, lr=1e-2),
                                                    lambda p: SAM(p, rho=0.2, lr=1e-3)], batched=True, **kwargs)
    with pytest.raises(ValueError, match="one factory per model"):
        fit_many(models([0, 1]), splits, optimizer=factories, **kwargs)


def test_fit_trains_a_closed_form_model_as_one_flat_member_and_equals_its_own_loop(monkeypatch):
    """fit's default takes the one-member batched path exactly where it applies, with the numbers of its own loop."""
    import flatcast.trainer as trainer

    taken = []
    original = trainer._fit_batched
    monkeypatch.setattr(trainer, "_fit_batched", lambda *a, **k: taken.append(len(a[0])) or original(*a, **k))
    splits = toy_splits(seed=1)
    factory = lambda p: SAM(p, rho=0.3, lr=1e-2)  # noqa: E731
    kwargs = dict(optimizer=factory, epochs=3, batch_size=16, patience=None, seed=4, device="cpu")
    flat = fit(models([4])[0], splits, **kwargs)
    assert taken == [1]
    own = fit(models([4])[0], splits, flat_weights=False, **kwargs)
    assert taken == [1]
    _compare(own, flat)
    # identity attention (A = I) has the hand-derived gradient too: the same path, the same numbers
    flat = fit(models([4], attention="identity")[0], splits, **kwargs)
    assert taken == [1, 1]
    _compare(fit(models([4], attention="identity")[0], splits, flat_weights=False, **kwargs), flat)
    # where the batched trainer does not apply, fit keeps its own loop
    for model, opt in ((models([0], attention="temporal")[0], factory),
                       (models([0], sigma_reparam=True)[0], factory),
                       (models([0])[0], lambda p: EEO(p, rho=0.1, lr=1e-2, escape=False, seed=0))):
        fit(model, splits, optimizer=opt, epochs=1, batch_size=32, device="cpu")
    assert taken == [1, 1]
    with pytest.raises(ValueError, match="flat_weights"):
        fit(models([0])[0], splits, epochs=1, device="cpu", flat_weights=True)


def test_closed_form_weights_are_views_of_flat_with_w_qkv_and_w_side_by_side():
    net = BatchedChannelTransformer(models([0, 1, 2]))
    weights = net._closed_form_weights()
    assert weights.stacked_weight is not None
    torch.testing.assert_close(weights.stacked_weight, torch.cat([weights.qkv_weight, weights.head_weight], 1),
                               rtol=0, atol=0)
    with torch.no_grad():  # views, not copies: an in-place update of flat (SAM's ascent) is seen
        net.flat.add_(1.0)
    torch.testing.assert_close(weights.head_weight, net.param("head.weight"), rtol=0, atol=0)
    net.select([2, 0])  # a new flat: new views
    assert net._closed_form_weights() is not weights
    assert net._closed_form_weights().stacked_weight.shape[0] == 2
    # identity attention: W_V and W side by side, W_V (and b_V) in the place of W_QKV
    net = BatchedChannelTransformer(models([0, 1], attention="identity"))
    weights = net._closed_form_weights()
    assert net.closed_form and weights.qkv_weight.shape == (2, net.d_model, LOOKBACK)
    torch.testing.assert_close(weights.qkv_weight, net.param("value.weight"), rtol=0, atol=0)
    torch.testing.assert_close(weights.qkv_bias, net.param("value.bias"), rtol=0, atol=0)
    torch.testing.assert_close(weights.stacked_weight, torch.cat([weights.qkv_weight, weights.head_weight], 1),
                               rtol=0, atol=0)


@pytest.mark.parametrize("factory", [lambda p: SAM(p, rho=0.3, lr=1e-2, fused=True),
                                     lambda p: torch.optim.Adam(p, lr=1e-2, fused=True),
                                     lambda p: SAM(p, rho=0.3, lr=1e-2)], ids=["sam-fused", "adam-fused", "sam"])
def test_a_members_numbers_do_not_depend_on_the_size_of_its_batch(factory):
    """Bit for bit on the CPU: member 0 trained alone, with one other member, or with three, takes the same steps
    (every product is per member, and each member's row of ``flat`` is padded so that elementwise kernels treat
    its values alike for any k). This is what lets a run be reused whatever batch it was trained in."""
    from flatcast.trainer import BatchedTrainingStep, _member_optimizer

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(12, 4, 8, CHANNELS, LOOKBACK, generator=generator)
    y = torch.randn(12, 4, 8, CHANNELS, HORIZON, generator=generator)
    finals = []
    with torch_threads(1):
        for k in (1, 2, 4):
            net = BatchedChannelTransformer(models(range(k)))
            assert net.flat.shape[1] % 64 == 0
            step = BatchedTrainingStep(net, _member_optimizer(factory, [net.flat], k))
            for i in range(12):
                step(x[i, :k], y[i, :k])
            finals.append(_params(_member_model(net, 0)))
    assert torch.equal(finals[0], finals[1]) and torch.equal(finals[0], finals[2])


def _member_model(net, index):
    model = models([0])[0]
    net.write_member(index, model)
    return model


def test_single_run_step_is_the_step_fit_takes():
    """single_run_step (what make benchmark times) is a one-member batched step where fit batches the model, and
    fit's own TrainingStep elsewhere; one step of it moves the weights as fit's first step does."""
    from flatcast.trainer import TrainingStep, single_run_step

    factory = lambda p: SAM(p, rho=0.3, lr=1e-2)  # noqa: E731
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(8, CHANNELS, LOOKBACK, generator=generator)
    y = torch.randn(8, CHANNELS, HORIZON, generator=generator)
    step, opt = single_run_step(models([0])[0], factory)
    assert not isinstance(step, TrainingStep) and opt.members == 1
    loss = step(x, y)
    reference_model = models([0])[0]
    reference = TrainingStep(reference_model, factory(reference_model.parameters()))
    assert loss.shape == () and torch.allclose(loss, reference(x, y), rtol=1e-6)
    eeo_step, _ = single_run_step(models([0])[0], lambda p: EEO(p, rho=0.1, lr=1e-2, escape=False, seed=0))
    assert isinstance(eeo_step, TrainingStep)

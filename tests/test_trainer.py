"""Tests for flatcast.trainer: reproducibility, early-stopping restore, the optimizer/EMA protocol, metrics."""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from flatcast.data import Splits, WindowSet, make_toy
from flatcast.models import ChannelTransformer
from flatcast.optim import EEO, SAM
from flatcast.trainer import FitResult, evaluate, fit

LOOKBACK, HORIZON, CHANNELS = 16, 4, 2


# ----------------------------------------------------------------------------------------------- fixtures
def make_tiny_splits(n_train=64, n_val=24, n_test=24, noise=0.1, seed=0) -> Splits:
    """Two noisy sinusoids cut into train/val/test series; a linear model over the look-back can learn them.

    Real :class:`flatcast.data.WindowSet` s built with ``from_series``: ``x``/``y`` are strided ``unfold`` views.
    """
    generator = torch.Generator().manual_seed(seed)
    span = LOOKBACK + HORIZON - 1
    total = n_train + n_val + n_test + 3 * span
    t = torch.arange(total, dtype=torch.float32)
    series = torch.stack([torch.sin(2 * math.pi * t / 12), torch.cos(2 * math.pi * t / 7)], dim=1)  # (T, D)
    series = series + noise * torch.randn(series.shape, generator=generator)
    a, b = n_train + span, n_train + n_val + 2 * span
    parts = [WindowSet.from_series(part, LOOKBACK, HORIZON) for part in (series[:a], series[a:b], series[b:])]
    return Splits(*parts, name="sines", lookback=LOOKBACK, horizon=HORIZON, n_channels=CHANNELS,
                  mean=torch.zeros(CHANNELS), std=torch.ones(CHANNELS),
                  borders={"train": (0, a), "val": (a, b), "test": (b, total)})


def linear_model(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(LOOKBACK, HORIZON)


def sgd(lr=0.05):
    return lambda params: torch.optim.SGD(params, lr=lr)


class ClosureSAM(torch.optim.Optimizer):
    """Minimal SAM (SAMformer Eq. 3) without a grad_evals counter: the trainer must count 2 per step."""

    def __init__(self, params, lr=0.05, rho=0.05):
        super().__init__(params, dict(lr=lr, rho=rho))

    @torch.no_grad()
    def step(self, closure):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        saved = []
        for group in self.param_groups:
            for p in group["params"]:
                e_w = group["rho"] * p.grad / (norm + 1e-12)
                p.add_(e_w)
                saved.append(e_w)
        closure()
        saved = iter(saved)
        for group in self.param_groups:
            for p in group["params"]:
                p.sub_(next(saved))
                p.add_(p.grad, alpha=-group["lr"])


# ----------------------------------------------------------------------------------------------- tests
def test_same_seed_same_numbers_different_seed_different():
    splits = make_tiny_splits()
    runs = [fit(linear_model(), splits, optimizer=sgd(), epochs=3, batch_size=8, seed=s, device="cpu")
            for s in (0, 0, 1)]
    assert isinstance(runs[0], FitResult)
    pd.testing.assert_frame_equal(runs[0].history, runs[1].history)
    for (name, a), (_, b) in zip(runs[0].model.state_dict().items(), runs[1].model.state_dict().items()):
        assert torch.equal(a, b), name
    assert runs[0].test_mse == runs[1].test_mse and runs[0].test_mae == runs[1].test_mae
    # another shuffling seed (same initial weights) gives another trajectory
    assert not np.allclose(runs[0].history.train_loss.iloc[1:], runs[2].history.train_loss.iloc[1:])
    assert not torch.equal(runs[0].model.weight, runs[2].model.weight)


class BlowUpAfter(torch.optim.SGD):
    """SGD that learns for ``good_epochs`` epochs, then takes far-too-large steps (validation gets worse)."""

    def __init__(self, params, steps_per_epoch, good_epochs, lr=0.05, bad_lr=2.5):
        super().__init__(params, lr=lr)
        self.switch_at, self.bad_lr, self.n_steps = steps_per_epoch * good_epochs, bad_lr, 0

    def step(self, closure=None):
        if self.n_steps == self.switch_at:
            for group in self.param_groups:
                group["lr"] = self.bad_lr
        self.n_steps += 1
        return super().step(closure)


def test_early_stopping_restores_best_checkpoint():
    splits = make_tiny_splits()
    steps_per_epoch = math.ceil(len(splits.train) / 8)
    last_weights = {}

    def remember_weights(model, epoch, _splits):
        last_weights[epoch] = model.weight.detach().clone()
        return {}

    result = fit(
        linear_model(), splits,
        optimizer=lambda p: BlowUpAfter(p, steps_per_epoch, good_epochs=4),
        epochs=30, batch_size=8, patience=3, cosine=False, seed=0, device="cpu", callbacks=[remember_weights],
    )
    history = result.history.set_index("epoch")
    assert result.best_epoch == 4
    assert history.val_mse.loc[1:4].is_monotonic_decreasing  # it learned...
    assert (history.val_mse.loc[5:] > history.val_mse.loc[4]).all()  # ...then got worse
    assert history.index.max() == result.best_epoch + 3  # stopped after `patience` epochs without improvement
    assert result.val_mse == history.val_mse.loc[4] == history.val_mse.loc[1:].min()
    # the returned weights are the best epoch's, and they give exactly the best validation MSE
    assert torch.equal(result.model.weight, last_weights[4])
    assert not torch.equal(result.model.weight, last_weights[7])
    assert evaluate(result.model, splits.val)["mse"] == result.val_mse
    assert result.test_mse == evaluate(result.model, splits.test)["mse"]


def test_patience_none_runs_every_epoch_and_restore_best_false_keeps_last_weights():
    splits = make_tiny_splits()
    steps_per_epoch = math.ceil(len(splits.train) / 8)
    result = fit(linear_model(), splits, optimizer=lambda p: BlowUpAfter(p, steps_per_epoch, good_epochs=2),
                 epochs=6, batch_size=8, patience=None, cosine=False, device="cpu", restore_best=False)
    assert list(result.history.epoch) == list(range(7))
    assert result.best_epoch == 2
    assert result.val_mse == result.history.val_mse.iloc[-1] > result.history.val_mse.iloc[2]


class NaNAtCall(nn.Module):
    def __init__(self, nan_at_training_call):
        super().__init__()
        self.linear = nn.Linear(LOOKBACK, HORIZON)
        self.nan_at, self.calls = nan_at_training_call, 0

    def forward(self, x):
        out = self.linear(x)
        if self.training:
            self.calls += 1
            if self.calls == self.nan_at:
                out = out * float("nan")
        return out


def test_non_finite_loss_names_epoch_and_step():
    splits = make_tiny_splits()
    steps_per_epoch = math.ceil(len(splits.train) / 16)
    model = NaNAtCall(nan_at_training_call=steps_per_epoch + 3)  # plain SGD: one forward per step
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan at epoch 2, step 3$"):
        fit(model, splits, optimizer=sgd(), epochs=5, batch_size=16, device="cpu")


def test_callbacks_called_at_init_and_after_every_epoch():
    splits = make_tiny_splits()
    seen = []

    def record(model, epoch, callback_splits):
        assert isinstance(model, nn.Module) and hasattr(callback_splits, "val")
        seen.append(epoch)
        return {"weight_norm": torch.linalg.vector_norm(model.weight.detach()), "epoch_squared": epoch**2}

    result = fit(linear_model(), splits, optimizer=sgd(), epochs=4, batch_size=16, patience=None,
                 device="cpu", callbacks=[record])
    assert seen == [0, 1, 2, 3, 4]
    history = result.history
    assert list(history.columns) == ["epoch", "train_loss", "val_mse", "lr", "weight_norm", "epoch_squared"]
    assert list(history.epoch_squared) == [0, 1, 4, 9, 16]
    assert history.weight_norm.dtype == np.float64
    assert math.isnan(history.train_loss.iloc[0]) and math.isnan(history.lr.iloc[0])
    assert history.val_mse.iloc[0] == evaluate(linear_model(), splits.val)["mse"]  # the initialisation

    def broken(model, epoch, _splits):
        if epoch == 2:
            raise RuntimeError("diagnostic failed at epoch 2")
        return {}

    with pytest.raises(RuntimeError, match="diagnostic failed at epoch 2"):
        fit(linear_model(), splits, optimizer=sgd(), epochs=4, batch_size=16, device="cpu", callbacks=[broken])


def test_evaluate_weights_uneven_last_batch_like_the_full_batch():
    torch.manual_seed(3)
    model = nn.Linear(LOOKBACK, HORIZON)
    windows = make_tiny_splits(n_val=10).val  # 10 windows, batches of 3 -> 3, 3, 3, 1
    assert len(windows) == 10
    metrics = evaluate(model, windows, batch_size=3)
    with torch.no_grad():
        error = (model(windows.x) - windows.y).double()
    assert metrics["mse"] == pytest.approx(error.square().mean().item(), rel=1e-6)
    assert metrics["mae"] == pytest.approx(error.abs().mean().item(), rel=1e-6)
    batch_means = [error[i : i + 3].square().mean().item() for i in range(0, 10, 3)]
    assert abs(np.mean(batch_means) - metrics["mse"]) > 1e-4  # the naive mean of batch means would differ
    # hand-computed: a zero forecaster scores mean(y^2) and mean(|y|)
    nn.init.zeros_(model.weight), nn.init.zeros_(model.bias)
    zero = evaluate(model, windows, batch_size=4)
    assert zero["mse"] == pytest.approx(windows.y.double().square().mean().item(), rel=1e-9)
    assert zero["mae"] == pytest.approx(windows.y.double().abs().mean().item(), rel=1e-9)
    assert model.training  # evaluate restores the mode it found


def test_evaluate_uses_predict_when_defined():
    class Offset(nn.Linear):
        def predict(self, x):
            return torch.zeros(x.shape[0], x.shape[1], HORIZON) + 1.0

    windows = make_tiny_splits().val
    expected = (windows.y.double() - 1.0).square().mean().item()
    assert evaluate(Offset(LOOKBACK, HORIZON), windows)["mse"] == pytest.approx(expected, rel=1e-9)


def test_cosine_annealing_per_epoch_to_zero():
    splits = make_tiny_splits()
    created = []

    def factory(params):
        created.append(torch.optim.SGD(params, lr=0.02))
        return created[0]

    epochs = 5
    result = fit(linear_model(), splits, optimizer=factory, epochs=epochs, batch_size=16, patience=None,
                 device="cpu")
    lrs = result.history.lr.iloc[1:].to_numpy()
    expected = [0.02 * (1 + math.cos(math.pi * (e - 1) / epochs)) / 2 for e in range(1, epochs + 1)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)
    assert np.all(np.diff(lrs) < 0)
    assert created[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # after the last epoch
    flat = fit(linear_model(), splits, optimizer=sgd(0.02), epochs=3, batch_size=16, cosine=False, device="cpu")
    assert list(flat.history.lr.iloc[1:]) == [0.02] * 3


def test_training_loss_hook_is_used_once_per_plain_step():
    class HookedLinear(nn.Linear):
        hook_calls = 0

        def training_loss(self, x, y):
            HookedLinear.hook_calls += 1
            return 2.0 * torch.nn.functional.mse_loss(self(x), y)

    splits = make_tiny_splits()
    torch.manual_seed(0)
    model = HookedLinear(LOOKBACK, HORIZON)
    init_train_mse = evaluate(model, splits.train)["mse"]
    # lr = 0: the weights never move, so the epoch's train loss is the hook on the initial weights
    result = fit(model, splits, optimizer=sgd(0.0), epochs=2, batch_size=10, patience=None, cosine=False,
                 device="cpu")
    assert HookedLinear.hook_calls == result.n_steps == 2 * math.ceil(len(splits.train) / 10)
    assert result.grad_evals == result.n_steps  # built-in optimizer: the closure reuses the first gradient
    np.testing.assert_allclose(result.history.train_loss.iloc[1:], 2.0 * init_train_mse, rtol=1e-5)


def test_sam_like_optimizer_costs_two_gradient_evaluations_per_step():
    splits = make_tiny_splits()
    result = fit(linear_model(), splits, optimizer=lambda p: ClosureSAM(p), epochs=2, batch_size=16,
                 max_train_batches=3, device="cpu")
    assert result.n_steps == 6
    assert result.grad_evals == 12


class EMASGD(torch.optim.SGD):
    """SGD keeping an exponential moving average of the weights, with the EEO EMA protocol."""

    def __init__(self, params, lr=0.05, decay=0.8):
        super().__init__(params, lr=lr)
        self.decay = decay
        self.ema = [p.detach().clone() for g in self.param_groups for p in g["params"]]
        self.swaps = self.finalized = 0

    def step(self, closure=None):
        loss = super().step(closure)
        with torch.no_grad():
            for average, p in zip(self.ema, self._params()):
                average.mul_(self.decay).add_(p, alpha=1 - self.decay)
        return loss

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    @contextmanager
    def ema_weights(self):
        self.swaps += 1
        raw = [p.detach().clone() for p in self._params()]
        with torch.no_grad():
            for p, average in zip(self._params(), self.ema):
                p.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, saved in zip(self._params(), raw):
                    p.copy_(saved)

    def finalize(self):
        self.finalized += 1
        with torch.no_grad():
            for p, average in zip(self._params(), self.ema):
                p.copy_(average)


def test_ema_weights_are_evaluated_checkpointed_and_restored():
    splits = make_tiny_splits()
    created, evaluated_weights = [], {}

    def factory(params):
        created.append(EMASGD(params))
        return created[0]

    def record(model, epoch, _splits):
        evaluated_weights[epoch] = model.weight.detach().clone()
        if epoch > 0:  # callbacks see the EMA weights, not the raw ones
            assert torch.equal(model.weight, created[0].ema[0])
        return {}

    result = fit(linear_model(), splits, optimizer=factory, epochs=4, batch_size=8, patience=None,
                 device="cpu", callbacks=[record])
    optimizer = created[0]
    assert optimizer.swaps == 4 and optimizer.finalized == 1
    assert torch.equal(result.model.weight, evaluated_weights[result.best_epoch])
    assert evaluate(result.model, splits.val)["mse"] == result.val_mse == result.history.val_mse.iloc[1:].min()


def test_progress_bar_and_auto_device_run(capsys):
    result = fit(linear_model(), make_tiny_splits(), optimizer=sgd(), epochs=2, batch_size=32, progress=True)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert result.device.startswith(expected)
    assert result.wall_time_s > 0 and len(result.history) == 3


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        (dict(epochs=0), ValueError, "epochs must be an integer >= 1, got 0"),
        (dict(epochs=2.5), ValueError, "epochs"),
        (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1, got 0"),
        (dict(patience=0), ValueError, "patience must be an integer >= 1 or None"),
        (dict(max_train_batches=0), ValueError, "max_train_batches"),
        (dict(eval_batch_size=-1), ValueError, "eval_batch_size"),
        (dict(min_delta=-0.1), ValueError, "min_delta"),
        (dict(optimizer="adam"), TypeError, "optimizer must be a factory"),
        (dict(device="tpu"), ValueError, "tpu"),
        (dict(seed="zero"), TypeError, "seed"),
        (dict(callbacks=[42]), TypeError, "callback"),
    ],
)
def test_invalid_arguments_raise_before_training(kwargs, error, fragment):
    model = linear_model()
    before = model.weight.detach().clone()
    arguments = dict(optimizer=sgd(), epochs=2, device="cpu") | kwargs
    with pytest.raises(error, match=fragment):
        fit(model, make_tiny_splits(), **arguments)
    assert torch.equal(model.weight, before)


def test_invalid_inputs_to_fit_and_evaluate():
    with pytest.raises(TypeError, match="optimizer must be a factory"):
        model = linear_model()
        fit(model, make_tiny_splits(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), device="cpu")
    with pytest.raises(TypeError, match="splits must have"):
        fit(linear_model(), object(), optimizer=sgd(), device="cpu")
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        fit(linear_model(), make_tiny_splits(), optimizer=lambda p: "not an optimizer", device="cpu")
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        evaluate(linear_model(), make_tiny_splits().val, batch_size=0)
    with pytest.raises(ValueError, match="does not match target shape"):
        evaluate(nn.Linear(LOOKBACK, HORIZON + 1), make_tiny_splits().val)


def test_deferred_non_finite_check_names_the_first_bad_step(monkeypatch):
    """The accelerator path (losses buffered on the device, checked every few steps) reports the same step."""
    import flatcast.trainer as trainer

    monkeypatch.setattr(trainer, "_check_every_step", lambda device: False)
    monkeypatch.setattr(trainer, "_FINITE_CHECK_EVERY", 3)
    splits = make_tiny_splits()
    steps_per_epoch = math.ceil(len(splits.train) / 16)
    assert steps_per_epoch == 4
    for bad_step in (2, 4):  # caught by the periodic check at step 3, and by the end-of-epoch check
        model = NaNAtCall(nan_at_training_call=steps_per_epoch + bad_step)
        with pytest.raises(FloatingPointError, match=rf"non-finite loss nan at epoch 2, step {bad_step}$"):
            fit(model, splits, optimizer=sgd(), epochs=5, batch_size=16, device="cpu")


def test_samformer_with_real_sam_on_the_toy_problem():
    """ChannelTransformer + the library's SAM (the default optimizer): 2 gradient evaluations per step."""
    splits = make_toy(n_train=64, n_val=32, lookback=LOOKBACK, horizon=HORIZON, n_channels=CHANNELS, seed=0)
    runs = [fit(ChannelTransformer(LOOKBACK, HORIZON, CHANNELS, seed=0), splits, epochs=2, batch_size=16,
                max_train_batches=3, device="cpu") for _ in range(2)]
    first, second = runs
    assert first.n_steps == 6 and first.grad_evals == 12
    pd.testing.assert_frame_equal(first.history, second.history)
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    assert first.test_mse == evaluate(first.model, splits.val)["mse"] == first.val_mse  # toy: test is val
    explicit = fit(ChannelTransformer(LOOKBACK, HORIZON, CHANNELS, seed=0), splits,
                   optimizer=lambda p: SAM(p, rho=0.7, lr=1e-3), epochs=2, batch_size=16, max_train_batches=3,
                   device="cpu")
    pd.testing.assert_frame_equal(first.history, explicit.history)  # the default is SAM(rho=0.7, lr=1e-3)


def test_real_eeo_checkpoint_is_the_evaluated_ema():
    splits = make_toy(n_train=64, n_val=32, lookback=LOOKBACK, horizon=HORIZON, n_channels=CHANNELS, seed=1)
    created, evaluated = [], {}

    def factory(params):
        created.append(EEO(params, rho=0.05, escape=False, ema_decay=0.5, lr=1e-2, seed=0))
        return created[0]

    def record(model, epoch, _splits):
        evaluated[epoch] = [p.detach().clone() for p in model.parameters()]
        if epoch > 0:  # validation and callbacks run on the EMA weights m (EEO-TFV Eq. 13)
            assert all(torch.equal(p, created[0].state[p]["ema"]) for p in model.parameters())
        return {}

    result = fit(nn.Linear(LOOKBACK, HORIZON), splits, optimizer=factory, epochs=3, batch_size=16,
                 patience=None, device="cpu", callbacks=[record])
    assert result.grad_evals == created[0].grad_evals == 2 * result.n_steps  # SAM step, no escape probes
    for restored, seen in zip(result.model.parameters(), evaluated[result.best_epoch]):
        assert torch.equal(restored, seen)
    assert evaluate(result.model, splits.val)["mse"] == result.val_mse == result.history.val_mse.iloc[1:].min()

"""Tests of flatcast.compiled: the opt-in compiled training kernel and its eager fallback (issue #13)."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

from flatcast import compiled
from flatcast.batched import BatchedChannelTransformer, losses_and_flat_gradient, losses_and_flat_gradient_maybe_compiled
from flatcast.compiled import COMPILE_ENV_VAR, CompiledOrEager, compile_enabled
from flatcast.models import ChannelTransformer
from flatcast.provenance import provenance
from flatcast.recipes import optimizer_factory
from flatcast.trainer import single_run_step

LOOKBACK, HORIZON, CHANNELS, BATCH = 24, 6, 3, 8
#: inductor's CPU backend writes C++ and builds it: without a compiler torch.compile cannot work (the wrapper then
#: falls back to eager, which the fallback tests cover with a fake failure)
needs_cxx = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                               reason="no C++ compiler on PATH: inductor cannot build CPU kernels")


@pytest.mark.parametrize("value, expected", [(None, False), ("0", False), ("1", True), ("", False)])
def test_compile_setting_is_read_from_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(COMPILE_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(COMPILE_ENV_VAR, value)
    assert compile_enabled() is expected
    assert provenance("cpu", ["x"])["compiled"] is expected


def test_a_mistyped_compile_setting_is_an_error(monkeypatch):
    monkeypatch.setenv(COMPILE_ENV_VAR, "yes")
    with pytest.raises(ValueError, match="FLATCAST_COMPILE must be 0 or 1, got 'yes'"):
        compile_enabled()


def test_off_calls_the_function_itself_and_never_compiles(monkeypatch):
    monkeypatch.setenv(COMPILE_ENV_VAR, "0")
    monkeypatch.setattr(compiled.torch, "compile", lambda *a, **k: pytest.fail("compiled while the setting is off"))
    wrapped = CompiledOrEager(lambda a, b=1: a * 10 + b)
    assert wrapped(3, b=2) == 32
    assert not wrapped.uses_compiled


def test_a_compile_failure_warns_once_and_falls_back_to_the_eager_function(monkeypatch):
    monkeypatch.setenv(COMPILE_ENV_VAR, "1")
    calls = {"compiled": 0, "eager": 0}

    def broken(*args, **kwargs):
        calls["compiled"] += 1
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(compiled.torch, "compile", lambda fn, dynamic: broken)

    def eager(x):
        calls["eager"] += 1
        return x + 1

    wrapped = CompiledOrEager(eager)
    with pytest.warns(RuntimeWarning, match="failed .*RuntimeError: no C\\+\\+ compiler.*eagerly"):
        assert wrapped(1) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert wrapped(5) == 6
    assert calls == {"compiled": 1, "eager": 2}
    assert isinstance(wrapped.failure, RuntimeError) and not wrapped.uses_compiled


def test_an_error_of_the_function_itself_still_surfaces(monkeypatch):
    monkeypatch.setenv(COMPILE_ENV_VAR, "1")
    monkeypatch.setattr(compiled.torch, "compile", lambda fn, dynamic: fn)

    def shape_error(x):
        raise ValueError("wrong shape")

    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="wrong shape"):
        CompiledOrEager(shape_error)(1)


def _net(seed: int = 0) -> BatchedChannelTransformer:
    net = BatchedChannelTransformer([ChannelTransformer(LOOKBACK, HORIZON, CHANNELS, seed=seed)])
    net.train()
    return net


def _batches(n: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, BATCH, CHANNELS, LOOKBACK, generator=generator) * 3 + 1
    y = torch.randn(n, BATCH, CHANNELS, HORIZON, generator=generator)
    return x, y


@needs_cxx
def test_compiled_kernel_equals_the_eager_one_to_float_rounding(monkeypatch):
    """The compiled loss and flat gradient (first evaluation, and the second that reuses RevIN's statistics) agree
    with the eager function; the padding of ``flat``'s rows stays exactly zero."""
    net = _net()
    x, y = _batches(1)
    x, y = x[0][None], y[0][None]
    weights = net._closed_form_weights()
    kwargs = {"revin": net.has_revin, "revin_eps": net.revin_eps, "chunks": net._chunk_layout}
    monkeypatch.setenv(COMPILE_ENV_VAR, "0")
    losses, gradient, statistics = losses_and_flat_gradient(x, y, weights, statistics=None, **kwargs)
    again, gradient_again, _ = losses_and_flat_gradient(x, y, weights, statistics=statistics, **kwargs)
    monkeypatch.setenv(COMPILE_ENV_VAR, "1")
    wrapped = losses_and_flat_gradient_maybe_compiled
    c_losses, c_gradient, c_statistics = wrapped(x, y, weights, statistics=None, **kwargs)
    c_again, c_gradient_again, _ = wrapped(x, y, weights, statistics=c_statistics, **kwargs)
    assert wrapped.failure is None, f"compiling failed: {wrapped.failure!r}"
    import torch._dynamo.config as dynamo_config

    assert dynamo_config.recompile_limit >= compiled.RECOMPILE_LIMIT  # raised on the first compile
    assert gradient.shape == c_gradient.shape == net.flat.shape
    torch.testing.assert_close(c_losses, losses, rtol=1e-5, atol=0)
    torch.testing.assert_close(c_again, again, rtol=1e-5, atol=0)
    scale = gradient.abs().max()
    assert (c_gradient - gradient).abs().max() <= 1e-5 * scale
    assert (c_gradient_again - gradient_again).abs().max() <= 1e-5 * scale
    assert net.n_padding > 0 and not c_gradient[:, -net.n_padding:].any()


def _train(steps: int, compile_flag: str, monkeypatch) -> torch.Tensor:
    monkeypatch.setenv(COMPILE_ENV_VAR, compile_flag)
    model = ChannelTransformer(LOOKBACK, HORIZON, CHANNELS, seed=0)
    model.train()
    step, optimizer = single_run_step(model, optimizer_factory("sam", 1e-2, 0.5))
    x, y = _batches(steps)
    losses = torch.stack([step(x[i], y[i]) for i in range(steps)])
    flat = optimizer.param_groups[0]["params"][0].detach()
    # every weight but W_K's bias: its exact gradient is 0 (a softmax ignores a shift of a whole row of scores),
    # so Adam turns float noise in it into moves of ~lr per step that no output depends on (tests/test_batched.py)
    offset, shape = _net().layout["key.bias"]
    return losses, torch.cat([flat[0, :offset], flat[0, offset + shape[0]:]])


@needs_cxx
def test_a_compiled_sam_training_follows_the_eager_one_and_repeats_itself(monkeypatch):
    """fit's step (SAM around Adam) with the compiled kernel: the same losses and weights as the eager step to
    float tolerance after 6 steps, and bit for bit the same numbers when run twice (same seed, same setting)."""
    eager_losses, eager_weights = _train(6, "0", monkeypatch)
    losses, weights = _train(6, "1", monkeypatch)
    repeat_losses, repeat_weights = _train(6, "1", monkeypatch)
    assert losses_and_flat_gradient_maybe_compiled.failure is None
    torch.testing.assert_close(losses, eager_losses, rtol=1e-4, atol=0)
    torch.testing.assert_close(weights, eager_weights, rtol=1e-4, atol=1e-6)
    assert torch.equal(losses, repeat_losses) and torch.equal(weights, repeat_weights)
    assert eager_losses[-1] < eager_losses[0]  # it trains


@needs_cxx
def test_the_per_parameter_trainer_path_compiles_the_same_gradient(monkeypatch):
    """``model_loss_and_gradient`` (TrainingStep's closed form, which EEO's runs take) with the compiled kernel:
    the same loss and ``.grad`` of every parameter as eager, to float rounding."""
    from flatcast.models.channel_gradient import loss_and_gradient_maybe_compiled, model_loss_and_gradient

    model = ChannelTransformer(LOOKBACK, HORIZON, CHANNELS, seed=3)
    x, y = _batches(1, seed=4)
    results = {}
    for flag in ("0", "1"):
        monkeypatch.setenv(COMPILE_ENV_VAR, flag)
        loss, statistics = model_loss_and_gradient(model, x[0], y[0])
        again, _ = model_loss_and_gradient(model, x[0], y[0], statistics)
        results[flag] = (loss, again, {n: p.grad.clone() for n, p in model.named_parameters() if n != "key.bias"})
    assert loss_and_gradient_maybe_compiled.failure is None
    (loss, again, grads), (c_loss, c_again, c_grads) = results["0"], results["1"]
    torch.testing.assert_close(c_loss, loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(c_again, again, rtol=1e-5, atol=0)
    for name, grad in grads.items():
        assert (c_grads[name] - grad).abs().max() <= 1e-5 * grad.abs().max() + 1e-9, name

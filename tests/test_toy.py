"""The SAMformer §2.2 toy problem Y = X W_toy + ε and its least-squares oracle."""

from __future__ import annotations

import math

import pytest
import torch

from flatcast.data import DEFAULT_TOY_NOISE_STD, Splits, make_toy, oracle_least_squares

SMALL = dict(n_train=300, n_val=100, lookback=16, horizon=4, n_channels=3)


def test_shapes_and_defaults_of_the_signature():
    splits = make_toy(**SMALL)
    assert isinstance(splits, Splits)
    assert splits.train.x.shape == (300, 3, 16) and splits.train.y.shape == (300, 3, 4)
    assert splits.val.x.shape == (100, 3, 16)
    assert splits.extras["W_toy"].shape == (16, 4)
    assert splits.test is splits.val  # n_test = 0: test is the validation set
    assert splits.train.x.dtype == torch.float32
    assert (splits.lookback, splits.horizon, splits.n_channels, splits.name) == (16, 4, 3, "toy")
    assert splits.extras["noise_std"] == DEFAULT_TOY_NOISE_STD == 1.0
    assert torch.equal(splits.mean, torch.zeros(3)) and torch.equal(splits.std, torch.ones(3))


def test_same_seed_same_numbers_other_seed_other_numbers():
    a, b, c = make_toy(**SMALL, seed=3), make_toy(**SMALL, seed=3), make_toy(**SMALL, seed=4)
    for part in ("train", "val"):
        assert torch.equal(getattr(a, part).x, getattr(b, part).x)
        assert torch.equal(getattr(a, part).y, getattr(b, part).y)
    assert torch.equal(a.extras["W_toy"], b.extras["W_toy"])
    assert not torch.equal(a.train.x, c.train.x) and not torch.equal(a.extras["W_toy"], c.extras["W_toy"])


def test_validation_samples_do_not_depend_on_the_training_size():
    small, large = make_toy(**{**SMALL, "n_train": 50}), make_toy(**SMALL)
    assert torch.equal(small.val.x, large.val.x) and torch.equal(small.extras["W_toy"], large.extras["W_toy"])


def test_separate_test_set_when_asked():
    splits = make_toy(**SMALL, n_test=40)
    assert splits.test is not splits.val and len(splits.test) == 40
    assert not torch.equal(splits.test.x[:40], splits.val.x[:40])
    assert splits.borders["test"] == (400, 440)


def test_targets_are_x_times_w_plus_noise_of_the_documented_level():
    splits = make_toy(n_train=2000, n_val=10, lookback=16, horizon=4, n_channels=3, noise_std=0.5, seed=1)
    w_toy = splits.extras["W_toy"]
    residual = (splits.train.y - splits.train.x @ w_toy).double()
    # 24000 N(0, 0.25) draws: the sample std is within ~1 % of 0.5, the mean within ~0.01 of 0
    assert residual.std().item() == pytest.approx(0.5, rel=0.03)
    assert abs(residual.mean().item()) < 0.02
    noiseless = make_toy(**SMALL, noise_std=0.0)
    torch.testing.assert_close(noiseless.train.y, noiseless.train.x @ noiseless.extras["W_toy"])


def test_standard_normal_weights_give_targets_of_variance_about_lookback():
    splits = make_toy(n_train=500, n_val=10, lookback=64, horizon=8, n_channels=2, noise_std=0.0, seed=2)
    w_toy = splits.extras["W_toy"]
    assert w_toy.std().item() == pytest.approx(1.0, rel=0.1)
    # Var((X W)_dh | W) = sum_l W_lh^2 exactly in expectation
    torch.testing.assert_close(splits.train.y.var(dim=(0, 1)), (w_toy**2).sum(0), rtol=0.1, atol=0.0)
    unit = make_toy(n_train=500, n_val=10, lookback=64, horizon=8, n_channels=2, noise_std=0.0, seed=2,
                    weight_std=1 / math.sqrt(64))
    assert unit.train.y.var().item() == pytest.approx(1.0, rel=0.15)


def test_oracle_recovers_w_toy_when_noise_is_small():
    splits = make_toy(**SMALL, noise_std=1e-3, seed=5)
    fit = oracle_least_squares(splits, chunk_size=64)  # chunking must not change the answer
    torch.testing.assert_close(fit.weights, splits.extras["W_toy"], atol=2e-3, rtol=0.0)
    assert fit.val_mse == pytest.approx(1e-6, rel=0.3)
    assert fit.test_mse == fit.val_mse


def test_oracle_agrees_with_torch_lstsq_and_reaches_the_noise_floor():
    splits = make_toy(**SMALL, noise_std=0.7, seed=6, n_test=50)
    fit = oracle_least_squares(splits)
    a = splits.train.x.reshape(-1, 16).double()
    b = splits.train.y.reshape(-1, 4).double()
    reference = torch.linalg.lstsq(a, b).solution
    torch.testing.assert_close(fit.weights.double(), reference, atol=1e-5, rtol=1e-5)
    expected_val = ((splits.val.x.double() @ reference - splits.val.y.double()) ** 2).mean().item()
    assert fit.val_mse == pytest.approx(expected_val, rel=1e-6)
    # out-of-sample error of OLS ≈ σ² (1 + L / (N D)) = 0.49 * (1 + 16/900)
    assert fit.val_mse == pytest.approx(0.49 * (1 + 16 / 900), rel=0.1)
    assert fit.test_mse != fit.val_mse


def test_bad_arguments_raise_naming_the_value():
    with pytest.raises(ValueError, match="n_train must be >= 1, got 0"):
        make_toy(**{**SMALL, "n_train": 0})
    with pytest.raises(ValueError, match="noise_std must be a finite number >= 0, got -1"):
        make_toy(**SMALL, noise_std=-1)
    with pytest.raises(ValueError, match="lookback must be a positive integer, got 0"):
        make_toy(**{**SMALL, "lookback": 0})
    with pytest.raises(TypeError, match="n_channels must be an integer"):
        make_toy(**{**SMALL, "n_channels": 2.0})
    with pytest.raises(ValueError, match="at least lookback=16 training rows"):
        oracle_least_squares(make_toy(**{**SMALL, "n_train": 5}))

"""TSMixer (Chen et al. 2023) and the benchmark's baseline recipes."""

from __future__ import annotations

import pytest
import torch

from flatcast.models import TSMixer
from flatcast.models.tsmixer import tsmixer_settings


def test_shapes_and_exact_parameter_count():
    L, H, D, ff, blocks = 32, 8, 3, 5, 2
    model = TSMixer(L, H, D, n_blocks=blocks, ff_dim=ff, dropout=0.0, seed=0)
    assert model(torch.randn(4, D, L)).shape == (4, D, H)
    per_block = 2 * (2 * L * D) + (L * L + L) + (D * ff + ff) + (ff * D + D)  # 2 batch norms, time MLP, feature MLP
    assert model.n_parameters() == 2 * D + blocks * per_block + (L * H + H)  # RevIN affine + blocks + head


def test_head_is_the_only_part_that_grows_with_the_horizon():
    a = TSMixer(512, 96, 7, **tsmixer_settings("ETTh1")).n_parameters()
    b = TSMixer(512, 192, 7, **tsmixer_settings("ETTh1")).n_parameters()
    assert b - a == 513 * 96


def test_time_mixing_mixes_time_and_feature_mixing_mixes_channels():
    torch.manual_seed(0)
    model = TSMixer(16, 4, 3, n_blocks=1, ff_dim=4, dropout=0.0, revin=False, seed=1).eval()
    x = torch.randn(8, 3, 16)
    base = model(x)
    x2 = x.clone()
    x2[:, 0, 0] += 1.0  # one channel, one time step
    diff = (model(x2) - base).abs()
    assert diff[:, 1:].sum() > 0, "feature mixing must carry a change in channel 0 to the other channels"


def test_seeded_and_deterministic():
    x = torch.randn(2, 4, 24)
    a = TSMixer(24, 6, 4, seed=3, dropout=0.0).eval()(x)
    b = TSMixer(24, 6, 4, seed=3, dropout=0.0).eval()(x)
    assert torch.equal(a, b)


def test_bad_input_raises():
    with pytest.raises(ValueError):
        TSMixer(16, 4, 3, dropout=1.0)
    with pytest.raises(ValueError):
        TSMixer(16, 4, 3)(torch.randn(2, 4, 16))


@pytest.mark.parametrize("name", ["tsmixer_sam", "dlinear", "dlinear_oce"])
def test_baseline_recipes_train_on_real_windows(name):
    from flatcast.data import make_splits
    from flatcast.recipes import fit_any_seeds

    splits = make_splits("ETTh1", 48, 96)
    results = fit_any_seeds(name, splits, [0], epochs=1, max_train_batches=2, device="cpu", threads=1)
    r = results[0]
    assert r.recipe["name"] == name and r.test_mse > 0 and r.test_mae > 0
    if name == "tsmixer_sam":
        assert r.recipe["rho"] == 1.0  # SAMformer Table 4, TSMixer row, ETTh1 H=96
        assert r.grad_evals == 2 * r.n_steps  # SAM: two gradients per step
    if name.startswith("dlinear"):
        assert r.recipe["lr"] == 0.005  # OCE-TS settings
    with pytest.raises(KeyError, match="tsmixer"):
        fit_any_seeds("patchtst", splits, [0])

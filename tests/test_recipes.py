"""The shared training recipes: the paper's hyperparameters, the models they build, and a short real fit."""

import pytest
import torch

from flatcast.models import ChannelTransformer
from flatcast.optim import EEO, SAM
from flatcast.recipes import (RECIPES, SGD_LR, build_model, fit_recipe, fit_recipe_seeds, optimizer_factory, paper_lr,
                              paper_rho, recipe, recipe_optimizer)


def test_paper_learning_rates_follow_table3():
    assert paper_lr("ETTh1") == 1e-3 and paper_lr("ETTm2") == 1e-3
    assert paper_lr("exchange_rate") == 1e-3
    assert paper_lr("weather") == 1e-4
    with pytest.raises(KeyError, match="national_illness"):
        paper_lr("national_illness")
    assert paper_lr("national_illness", fallback=True) == 1e-3


def test_paper_rho_follows_table4():
    assert paper_rho("ETTh1", 96) == 0.5
    assert paper_rho("ETTm2", 96) == 0.2
    assert paper_rho("exchange_rate", 192) == 0.8
    assert paper_rho("ETTh1", 96, model="TSMixer+SAM") == 1.0
    with pytest.raises(KeyError, match="H=97"):
        paper_rho("ETTh1", 97)
    assert paper_rho("ETTh1", 97, fallback=True) == 0.7


def test_unknown_names_are_rejected_with_the_allowed_values():
    with pytest.raises(KeyError, match="samformer"):
        recipe("samformr")
    with pytest.raises(ValueError, match="adam"):
        optimizer_factory("adagrad", 1e-3)
    with pytest.raises(ValueError, match="rho"):
        optimizer_factory("sam", 1e-3)
    with pytest.raises(ValueError, match="only apply to 'eeo'"):
        optimizer_factory("sam", 1e-3, rho=0.5, escape=False)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_builds_its_model_and_optimizer(name):
    model = build_model(name, lookback=32, horizon=8, n_channels=3, seed=0)
    assert isinstance(model, ChannelTransformer)
    r = recipe(name)
    assert model.attention_kind == r.attention and model.sigma_reparam == r.sigma_reparam
    factory, lr, rho = recipe_optimizer(name, "ETTh1", 96)
    opt = factory([p for p in model.parameters() if p.requires_grad])
    assert lr == (SGD_LR if r.optimizer == "sgd" else 1e-3)
    assert opt.param_groups[0]["lr"] == lr
    if r.optimizer == "sam":
        assert isinstance(opt, SAM) and rho == 0.5
    elif r.optimizer == "eeo":
        assert isinstance(opt, EEO) and rho == 0.5
    elif r.optimizer == "sgd":
        assert type(opt) is torch.optim.SGD and rho is None
    elif r.optimizer.startswith("adamw_"):
        assert type(opt) is torch.optim.AdamW and rho is None
        assert opt.param_groups[0]["weight_decay"] == float(r.optimizer.split("_")[1])
    else:
        assert type(opt) is torch.optim.Adam and rho is None


def test_an_explicit_learning_rate_overrides_sgds_default():
    factory, lr, _ = recipe_optimizer("transformer_sgd", "ETTh1", 96, lr=0.5)
    assert lr == 0.5
    assert factory([torch.nn.Parameter(torch.zeros(2))]).param_groups[0]["lr"] == 0.5


def test_same_seed_same_model():
    a = build_model("samformer", 32, 8, 3, seed=4)
    b = build_model("samformer", 32, 8, 3, seed=4)
    c = build_model("samformer", 32, 8, 3, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_fit_recipe_trains_with_the_paper_settings_and_is_reproducible(etth1_small_splits):
    kwargs = dict(epochs=2, patience=None, max_train_batches=3, device="cpu")
    first = fit_recipe("samformer", etth1_small_splits, seed=0, **kwargs)
    again = fit_recipe_seeds("samformer", etth1_small_splits, seeds=[0], **kwargs)[0]
    assert first.recipe == {"name": "samformer", "lr": 1e-3, "rho": paper_rho("ETTh1", etth1_small_splits.horizon,
                                                                               fallback=True)}
    assert first.test_mse == again.test_mse
    assert first.grad_evals == 2 * first.n_steps  # SAM: two gradients per step


@pytest.fixture(scope="module")
def etth1_small_splits(benchmark_data_dir):
    from flatcast.data import make_splits

    return make_splits("ETTh1", lookback=48, horizon=96, data_dir=benchmark_data_dir)


def test_oce_recipe_trains_the_clamped_ordinal_loss_and_its_cells_say_so(etth1_small_splits):
    """OCE-TS's benchmark recipe uses the clamped OCE (the authors' code clamps too). Clamping Q_k, 1 − Q_k at 1e-30
    can only raise their logs, so the clamped loss is at most the exact one; at the initial (peaked) head some
    levels are clamped and it is lower by well under 1 %. The cell identity records the choice."""
    from flatcast.benchmark import expand
    from flatcast.benchmark.store import cell_identity
    from flatcast.losses import oce_loss_from_logits
    from flatcast.recipes import OCE_TRAINING, build_baseline

    model = build_baseline("dlinear_oce", etth1_small_splits, seed=0)
    assert OCE_TRAINING["exact_loss"] is False and model.exact_loss is False
    x, y = etth1_small_splits.train.x[:4], etth1_small_splits.train.y[:4]
    with torch.no_grad():
        logits = model(x)
        p = model.target_probabilities(y)
        clamped, exact = model.training_loss(x, y), oce_loss_from_logits(p, logits)
    assert clamped <= exact and (exact - clamped) / exact < 0.01
    cell = expand("oce-table2", datasets=["ETTh1"], horizons=[96], recipes=["dlinear_oce"])[0]
    assert cell_identity(cell)["hyper"]["exact_loss"] is False


@pytest.mark.parametrize("name", ["adam", "adamw_1e-4", "sam", "eeo"])
def test_the_fused_adam_kernel_takes_the_default_kernels_steps(name):
    """The recipes' optimizers use Adam's fused kernel; 60 steps of it follow the default implementation to float
    rounding (the same update, evaluated in another order), on the same model and batches."""
    from flatcast.recipes import ADAM_KERNEL

    options = {"rho": 0.3} if name in ("sam", "eeo") else {}
    fused = optimizer_factory(name, 1e-2, seed=0, **options)
    probe = fused([torch.nn.Parameter(torch.zeros(3))])
    base = getattr(probe, "base_optimizer", probe)
    assert base.param_groups[0]["fused"] is ADAM_KERNEL["fused"] is True
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 12, generator=generator), torch.randn(8, 3, 4, generator=generator))
               for _ in range(60)]
    finals = []
    for kernel in ("fused", "default"):
        model = ChannelTransformer(12, 4, 3, seed=1)
        opt = fused(model.parameters())
        if kernel == "default":  # the same optimizer with torch's default (single-tensor) kernel
            base = getattr(opt, "base_optimizer", opt)
            for group in base.param_groups:
                group["fused"] = None
        for x, y in batches:
            def closure():
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                return loss
            closure()
            opt.step(closure)
        finals.append(torch.cat([p.detach().reshape(-1) for n, p in model.named_parameters() if n != "key.bias"]))
    torch.testing.assert_close(finals[0], finals[1], rtol=1e-4, atol=1e-5)
    assert not torch.equal(finals[0], torch.cat([p.detach().reshape(-1) for n, p in
                                                 ChannelTransformer(12, 4, 3, seed=1).named_parameters()
                                                 if n != "key.bias"]))

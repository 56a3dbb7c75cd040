"""Training recipes that several chapters train: which model, which optimizer, which hyperparameters.

One place for "SAMformer", "Transformer", "σReparam", "EEO", ... so that the sharpness, attention, EEO and
benchmark chapters train exactly the same thing when they use the same name.

Real-data protocol (SAMformer App. A.1, "Training parameters"; ``data/reference/hyperparameters.csv``):
Adam, batch 32, cosine annealing, 300 epochs with early stopping (patience 5) on the validation MSE, look-back
L = 512, the learning rate of Table 3 (ETT 1e-3, Exchange 1e-3, Weather 1e-4, Electricity 1e-4, Traffic 1e-4)
and the SAM neighbourhood ρ* of Table 4 (per dataset and horizon). Where the paper is silent:

* national_illness is not in SAMformer's tables; it gets the ETT learning rate (1e-3) and ρ = 0.7 (§3.4: "ρ,
  generally above 0.7"), and :func:`paper_rho` says so by raising unless ``fallback=True``.
* EEO's SAM step uses the SAMformer ρ* of the same cell (EEO-TFV states no ρ; its settings "follow those of
  SAMFormer", §4); every other EEO setting is :class:`flatcast.optim.EEO`'s documented default.
* σReparam (SAMformer Eq. 5) is applied to every weight matrix of the channel transformer.
* The App. C.3 optimizer recipes (SAMformer §3.4: "SGD … fails to converge and AdamW … leads to similar
  performance but is very sensitive to the choice of the weight decay") train the Transformer with plain SGD at
  :data:`SGD_LR` (the paper gives no SGD learning rate; at Adam's 1e-3 SGD barely moves, see the toy chapter) or
  AdamW with weight decay 1e-5, 1e-4, 1e-3 at the dataset's Adam learning rate.

========================== ===================================================================================
recipe                      what it is
========================== ===================================================================================
``transformer``             channel-wise attention (SAMformer Eq. 3–4) + RevIN, Adam (SAMformer's "Transformer")
``samformer``               the same model trained with SAM around Adam (SAMformer, the paper's model)
``sigma_reparam``           Transformer + σReparam on every weight matrix (Eq. 5), Adam (Fig. 8)
``samformer_sigma_reparam`` σReparam + SAM (Fig. 8, App. B.5 Fig. 11)
``transformer_eeo``         the same model trained with EEO around Adam (EEO-TFV §3.6)
``random_transformer``      attention weights frozen at initialisation (SAMformer §2.2 "Random Transformer")
``identity_sam``            A(X) = I_D, trained with SAM (SAMformer App. C.4 Table 10)
``temporal``                temporal (L×L) attention, Adam, no SAM (SAMformer App. C.4 Table 9)
``transformer_sgd``         the Transformer trained with plain SGD at :data:`SGD_LR` (SAMformer App. C.3)
``transformer_adamw_<wd>``  the Transformer trained with AdamW, weight decay 1e-5, 1e-4 or 1e-3 (App. C.3)
========================== ===================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flatcast.optim import EEO, SAM
from flatcast.reference import load_reference
from flatcast.utils import check_positive_int, resolve_device, seed_everything, torch_threads

__all__ = ["Recipe", "RECIPES", "recipe", "OPTIMIZERS", "SGD_LR", "OPTIMIZER_RECIPES", "optimizer_factory", "paper_lr", "paper_rho",
           "build_model", "recipe_optimizer", "fit_recipe", "fit_recipe_seeds", "PAPER_TRAINING"]

#: Optimizer names understood by :func:`optimizer_factory` (SAMformer App. C.3 / Fig. 15, plus SAM and EEO).
OPTIMIZERS = ("sgd", "adam", "adamw_1e-5", "adamw_1e-4", "adamw_1e-3", "sam", "eeo")

#: Plain SGD's learning rate in the App. C.3 recipes (and the toy chapter's): the paper states none.
SGD_LR = 3e-2

#: SAMformer App. A.1: 300 epochs, early stopping with patience 5, batch 32, cosine annealing, L = 512.
PAPER_TRAINING = {"epochs": 300, "patience": 5, "batch_size": 32, "cosine": True, "lookback": 512}


@dataclass(frozen=True)
class Recipe:
    """A model kind and the optimizer that trains it (see the module docstring's table)."""

    name: str
    label: str
    attention: str = "learned"
    sigma_reparam: bool = False
    optimizer: str = "adam"
    where: str = ""

    @property
    def uses_rho(self) -> bool:
        return self.optimizer in ("sam", "eeo")


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("transformer", "Transformer", optimizer="adam", where="SAMformer §2.2, Table 1 'Transformer'"),
    Recipe("samformer", "SAMformer", optimizer="sam", where="SAMformer §2.4, Table 1"),
    Recipe("sigma_reparam", "Transformer + σReparam", sigma_reparam=True, optimizer="adam",
           where="SAMformer Eq. 5, §3.4, Fig. 8"),
    Recipe("samformer_sigma_reparam", "SAMformer + σReparam", sigma_reparam=True, optimizer="sam",
           where="SAMformer §3.4, Fig. 8; App. B.5 Fig. 11"),
    Recipe("transformer_eeo", "Transformer + EEO", optimizer="eeo", where="EEO-TFV §3.6, Eqs. 9–13"),
    Recipe("random_transformer", "Random Transformer", attention="random", optimizer="adam",
           where="SAMformer §2.2"),
    Recipe("identity_sam", "SAMformer with A(X) = I", attention="identity", optimizer="sam",
           where="SAMformer §3.2, App. C.4 Table 10"),
    Recipe("temporal", "Transformer, temporal attention", attention="temporal", optimizer="adam",
           where="SAMformer §3.4, App. C.4 Table 9"),
    Recipe("transformer_sgd", "Transformer (SGD)", optimizer="sgd", where="SAMformer §3.4, App. C.3"),
    *[Recipe(f"transformer_adamw_{wd}", f"Transformer (AdamW, wd {wd})", optimizer=f"adamw_{wd}",
             where="SAMformer §3.4, App. C.3") for wd in ("1e-5", "1e-4", "1e-3")],
]}

#: The Transformer under the optimizers SAMformer App. C.3 tried instead of Adam.
OPTIMIZER_RECIPES = ("transformer_sgd", "transformer_adamw_1e-5", "transformer_adamw_1e-4", "transformer_adamw_1e-3")

# the names the papers' tables use for the datasets of the registry
_TABLE_NAMES = {"ETTh1": "ETTh1", "ETTh2": "ETTh2", "ETTm1": "ETTm1", "ETTm2": "ETTm2", "exchange_rate": "Exchange",
                "weather": "Weather", "electricity": "Electricity", "traffic": "Traffic"}


def recipe(name: str) -> Recipe:
    """The :class:`Recipe` called ``name``; ``KeyError`` naming the known recipes otherwise."""
    try:
        return RECIPES[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown recipe {name!r}: use one of {sorted(RECIPES)}") from None


def _table_name(dataset: str, fallback: bool) -> str | None:
    if dataset in _TABLE_NAMES:
        return _TABLE_NAMES[dataset]
    if fallback:
        return None
    raise KeyError(f"SAMformer's tables have no dataset {dataset!r} (they have {sorted(_TABLE_NAMES)}); "
                   f"pass fallback=True to use the documented default")


def paper_lr(dataset: str, fallback: bool = False) -> float:
    """SAMformer App. A.1 Table 3's learning rate for ``dataset`` (a registry name such as ``"ETTh1"``).

    Datasets outside the table raise ``KeyError``; with ``fallback=True`` they get 1e-3 (the ETT value)."""
    name = _table_name(dataset, fallback)
    if name is None:
        return 1e-3
    table = load_reference("samformer_table3_lr")
    row = table[(table["dataset"] == name) & (table["parameter"] == "learning_rate")]
    return float(row["value"].iloc[0])


def paper_rho(dataset: str, horizon: int, model: str = "SAMformer", fallback: bool = False) -> float:
    """SAMformer App. A.1 Table 4's ρ* for ``dataset`` at ``horizon`` (``model``: "SAMformer" or "TSMixer+SAM").

    Cells outside the table raise ``KeyError``; with ``fallback=True`` they get 0.7 (§3.4 "generally above 0.7").
    """
    name = _table_name(dataset, fallback)
    if name is None:
        return 0.7
    table = load_reference("samformer_table4_rho")
    row = table[(table["dataset"] == name) & (table["horizon"] == int(horizon)) & (table["model"] == model)]
    if row.empty:
        if fallback:
            return 0.7
        models = sorted(set(table["model"]))
        raise KeyError(f"SAMformer Table 4 has no ρ* for {model!r} on {name} at H={horizon} (models: {models})")
    return float(row["value"].iloc[0])


#: Adam's (and AdamW's) fused kernel, torch >= 2.4 on CPU and CUDA: the whole update of a tensor in one pass. The
#: same update as the default implementation up to float rounding (tests/test_recipes.py), ~10 % less time per
#: SAMformer step on two CPU threads, where the update of ~130 k weights is a visible share of a step.
ADAM_KERNEL = {"fused": True}


def optimizer_factory(name: str, lr: float, rho: float | None = None, seed: int = 0,
                      sgd_lr: float | None = None,
                      **eeo_options: Any) -> Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]:
    """A factory ``params -> optimizer`` for one of :data:`OPTIMIZERS`.

    ``sgd`` uses ``sgd_lr`` when given (else ``lr``); ``adamw_<wd>`` is AdamW with that weight decay (SAMformer
    App. C.3); ``sam`` is SAM around Adam (SAMformer Eq. 3's ρ); ``eeo`` is EEO around Adam (EEO-TFV Eqs. 9–13,
    ``eeo_options`` passed to :class:`flatcast.optim.EEO`, e.g. ``escape=False``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: use one of {OPTIMIZERS}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be a positive number, got {lr!r}")
    if name in ("sam", "eeo") and (rho is None or rho < 0):
        raise ValueError(f"{name} needs rho >= 0, got {rho!r}")
    if eeo_options and name != "eeo":
        raise ValueError(f"options {sorted(eeo_options)} only apply to 'eeo', not {name!r}")
    if name == "sgd":
        return lambda params: torch.optim.SGD(params, lr=sgd_lr if sgd_lr is not None else lr)
    if name == "adam":
        return lambda params: torch.optim.Adam(params, lr=lr, **ADAM_KERNEL)
    if name.startswith("adamw_"):
        weight_decay = float(name.split("_", 1)[1])
        return lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **ADAM_KERNEL)
    if name == "sam":
        return lambda params: SAM(params, base_optimizer=torch.optim.Adam, rho=rho, lr=lr, **ADAM_KERNEL)
    return lambda params: EEO(params, base_optimizer=torch.optim.Adam, rho=rho, lr=lr, seed=seed, **ADAM_KERNEL,
                               **eeo_options)


def build_model(name: str, lookback: int, horizon: int, n_channels: int, seed: int, revin: bool = True,
                d_model: int = 16) -> torch.nn.Module:
    """The channel transformer of recipe ``name`` (RevIN on by default, as on real data), initialised from
    ``seed``."""
    from flatcast.models import ChannelTransformer

    r = recipe(name)
    return ChannelTransformer(lookback, horizon, n_channels, d_model=d_model, attention=r.attention,
                              sigma_reparam=r.sigma_reparam, revin=revin, seed=int(seed))


def recipe_optimizer(name: str, dataset: str, horizon: int, lr: float | None = None, rho: float | None = None,
                     seed: int = 0, fallback: bool = True, **eeo_options: Any):
    """The optimizer factory of recipe ``name`` on ``dataset`` at ``horizon``: the paper's lr (Table 3; SGD:
    :data:`SGD_LR`) and ρ* (Table 4) unless given. Returns ``(factory, lr, rho)`` (``rho`` is ``None`` for optimizers without one)."""
    r = recipe(name)
    if lr is None:
        lr = SGD_LR if r.optimizer == "sgd" else paper_lr(dataset, fallback=fallback)
    lr = float(lr)
    if r.uses_rho:
        rho = paper_rho(dataset, horizon, fallback=fallback) if rho is None else float(rho)
    else:
        rho = None
    return optimizer_factory(r.optimizer, lr, rho, seed=seed, **eeo_options), lr, rho


def fit_recipe(name: str, splits, seed: int, *, epochs: int = PAPER_TRAINING["epochs"],
               patience: int | None = PAPER_TRAINING["patience"], batch_size: int = PAPER_TRAINING["batch_size"],
               cosine: bool = PAPER_TRAINING["cosine"], lr: float | None = None, rho: float | None = None,
               device: str = "auto", callbacks: Sequence = (), max_train_batches: int | None = None,
               threads: int | None = None, revin: bool = True, eeo_options: dict | None = None,
               restore_best: bool = True):
    """Train recipe ``name`` on ``splits`` (a :class:`flatcast.data.Splits` of a registry dataset) from ``seed``.

    The protocol is SAMformer App. A.1's (see the module docstring); every setting can be overridden (quick
    profiles shorten ``epochs`` and cap ``max_train_batches``). Returns the trainer's ``FitResult``, with
    ``result.recipe = {"name", "lr", "rho"}`` added."""
    from flatcast.trainer import fit

    recipe(name)
    check_positive_int("epochs", epochs)
    factory, lr, rho = recipe_optimizer(name, splits.name, splits.horizon, lr=lr, rho=rho, seed=seed,
                                        **(eeo_options or {}))
    seed_everything(int(seed))
    model = build_model(name, splits.lookback, splits.horizon, splits.n_channels, seed, revin=revin)
    cpu = resolve_device(device).type == "cpu"
    with torch_threads(threads if cpu else None):
        result = fit(model, splits, optimizer=factory, epochs=epochs, batch_size=batch_size, patience=patience,
                     cosine=cosine, seed=int(seed), device=device, callbacks=callbacks,
                     max_train_batches=max_train_batches, restore_best=restore_best)
    result.recipe = {"name": name, "lr": lr, "rho": rho}
    return result


def fit_recipe_seeds(name: str, splits, seeds: Sequence[int], *, batched: bool | None = None,
                     **options: Any) -> list:
    """:func:`fit_recipe` for each seed in ``seeds`` (one ``FitResult`` per seed, in order).

    This is the entry point chapters use for "this recipe over several seeds". The seeds are trained together
    as one batched model (:func:`flatcast.trainer.fit_many`) when the recipe's optimizer allows it (Adam, AdamW,
    SGD, SAM around them) and its model does (every channel-transformer recipe); each result equals the
    seed's :func:`fit_recipe` run to float tolerance. EEO recipes (global curvature probes, SGLD noise, EMA)
    run one seed after the other, and so does a single seed (unless ``batched=True``). ``batched=False`` forces sequential runs, ``batched=True`` raises when the
    recipe cannot be batched. ``options`` are :func:`fit_recipe`'s."""
    from flatcast.trainer import fit_many

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    r = recipe(name)
    if r.optimizer == "eeo" or batched is False or (batched is None and len(seeds) == 1):
        if batched:
            raise ValueError(f"recipe {name!r} trains with EEO, which the batched trainer does not split per member")
        return [fit_recipe(name, splits, seed, **options) for seed in seeds]
    unknown = sorted(set(options) - _FIT_RECIPE_OPTIONS)
    if unknown:
        raise TypeError(f"fit_recipe_seeds got unknown options {unknown}")
    settings = {"epochs": PAPER_TRAINING["epochs"], "patience": PAPER_TRAINING["patience"],
                "batch_size": PAPER_TRAINING["batch_size"], "cosine": PAPER_TRAINING["cosine"], "lr": None,
                "rho": None, "device": "auto", "callbacks": (), "max_train_batches": None, "threads": None,
                "revin": True, "eeo_options": None, "restore_best": True} | options
    check_positive_int("epochs", settings["epochs"])
    factory, lr, rho = recipe_optimizer(name, splits.name, splits.horizon, lr=settings["lr"], rho=settings["rho"],
                                        seed=seeds[0], **(settings["eeo_options"] or {}))
    seed_everything(seeds[0])
    models = [build_model(name, splits.lookback, splits.horizon, splits.n_channels, seed, revin=settings["revin"])
              for seed in seeds]
    cpu = resolve_device(settings["device"]).type == "cpu"
    with torch_threads(settings["threads"] if cpu else None):
        results = fit_many(models, splits, optimizer=factory, epochs=settings["epochs"],
                           batch_size=settings["batch_size"], patience=settings["patience"],
                           cosine=settings["cosine"], seeds=seeds, device=settings["device"],
                           callbacks=settings["callbacks"], max_train_batches=settings["max_train_batches"],
                           restore_best=settings["restore_best"], batched=batched)
    for result in results:
        result.recipe = {"name": name, "lr": lr, "rho": rho}
    return results


_FIT_RECIPE_OPTIONS = {"epochs", "patience", "batch_size", "cosine", "lr", "rho", "device", "callbacks",
                       "max_train_batches", "threads", "revin", "eeo_options", "restore_best"}


# ---------------------------------------------------------------------------------------------------------------
# Baselines of the benchmark chapter (issue 14): TSMixer ± SAM (SAMformer Table 1) and DLinear / OCE-TS (OCE-TS
# Table 2). They are not channel transformers, so they have their own small table and fit function; the benchmark
# runner calls :func:`fit_any_seeds`, which sends the channel-transformer recipes to :func:`fit_recipe_seeds`.
# ---------------------------------------------------------------------------------------------------------------

#: OCE-TS "Experimental Settings": w = 336 (ILI 104), H 96–720 (ILI 24–60), batch 32, 15 epochs, Adam with lr 0.005,
#: patience 5; K = 100 bins (main text; App. C calls 75 the default). The paper's "dynamic learning rate adjustment
#: based on validation performance" is not in the trainer: the lr stays constant (cosine=False).
#: ``exact_loss=False``: the OCE of Eq. 2 with Q_k and 1 − Q_k clamped at 1e-30 before the log
#: (:func:`flatcast.losses.oce_loss_from_logits_clamped`; the authors' code clamps at 1e-8). It equals the exact
#: log-cumsum-exp version wherever no cumulative probability is below the clamp, and its step is 8× faster at
#: H = 96 and 4× at H = 720 on the CPU (K = 100 bins, batch 32, 7 channels: 0.10 s vs 0.79 s and 1.75 s vs 7.4 s,
#: with the autograd losses). Both now go through :func:`flatcast.losses.oce_loss_fused` (same value and gradient
#: to rounding): ``python scripts/benchmark_oce_loss.py`` (``MinMaxWindowOCE``, L = 336; one thread, 2026-12-02,
#: two other processes on the machine's two cores) measured a clamped step at 0.93 s against 2.15 s before at
#: H = 720 (2.3×) and 0.13 s against 0.17 s at H = 96; an exact step at 4.8 s against 8.3 s at H = 720.
OCE_TRAINING = {"epochs": 15, "patience": 5, "batch_size": 32, "cosine": False, "lr": 0.005, "lookback": 336,
                "lookback_ili": 104, "n_bins": 100, "exact_loss": False}


@dataclass(frozen=True)
class BaselineRecipe:
    """A non-transformer model of the benchmark and the optimizer that trains it."""

    name: str
    label: str
    model: str  # "tsmixer" | "dlinear" | "dlinear_oce"
    optimizer: str = "adam"
    where: str = ""

    @property
    def uses_rho(self) -> bool:
        return self.optimizer == "sam"


BASELINE_RECIPES: dict[str, BaselineRecipe] = {r.name: r for r in [
    BaselineRecipe("tsmixer", "TSMixer", "tsmixer", "adam", "Chen et al. 2023; SAMformer Table 1 'TSMixer'"),
    BaselineRecipe("tsmixer_sam", "TSMixer+SAM", "tsmixer", "sam",
                   "SAMformer Table 1 'TSMixer (with SAM)', ρ* of Table 4"),
    BaselineRecipe("dlinear", "DLinear (MSE)", "dlinear", "adam", "OCE-TS Table 2 'DLinear'"),
    BaselineRecipe("dlinear_oce", "OCE-TS", "dlinear_oce", "adam", "OCE-TS Table 2 'Ours' (Eqs. 2, 8–18)"),
]}


def build_baseline(name: str, splits, seed: int) -> torch.nn.Module:
    """The model of baseline recipe ``name`` for ``splits``, initialised from ``seed``."""
    from flatcast.models import DLinear, DLinearOCE
    from flatcast.models.tsmixer import TSMixer, tsmixer_settings
    from flatcast.targets import Bins

    r = BASELINE_RECIPES[name]
    if r.model == "tsmixer":
        return TSMixer(splits.lookback, splits.horizon, splits.n_channels, seed=int(seed),
                       **tsmixer_settings(splits.name))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if r.model == "dlinear":
            return DLinear(splits.lookback, splits.horizon, splits.n_channels)
        bins = Bins.from_data(splits.train.y, n_bins=OCE_TRAINING["n_bins"])
        return DLinearOCE(splits.lookback, splits.horizon, splits.n_channels, bins,
                          exact_loss=OCE_TRAINING["exact_loss"])


def baseline_defaults(name: str) -> dict[str, Any]:
    """Training protocol of baseline ``name``: SAMformer App. A.1 for TSMixer, OCE-TS's settings for DLinear/OCE."""
    r = BASELINE_RECIPES[name]
    if r.model == "tsmixer":
        return {k: PAPER_TRAINING[k] for k in ("epochs", "patience", "batch_size", "cosine")}
    return {k: OCE_TRAINING[k] for k in ("epochs", "patience", "batch_size", "cosine")}


def fit_baseline(name: str, splits, seed: int, *, epochs: int | None = None, patience: int | None = -1,
                 batch_size: int | None = None, cosine: bool | None = None, lr: float | None = None,
                 rho: float | None = None, device: str = "auto", max_train_batches: int | None = None,
                 threads: int | None = None):
    """Train baseline recipe ``name`` (:data:`BASELINE_RECIPES`) on ``splits`` from ``seed``.

    TSMixer: Adam (or SAM around Adam) with SAMformer Table 3's lr and Table 4's TSMixer ρ*; DLinear / OCE-TS:
    Adam with lr 0.005 (:data:`OCE_TRAINING`). Returns the trainer's ``FitResult`` with ``result.recipe``."""
    from flatcast.trainer import fit

    if name not in BASELINE_RECIPES:
        raise KeyError(f"unknown baseline {name!r}: use one of {sorted(BASELINE_RECIPES)}")
    r = BASELINE_RECIPES[name]
    settings = baseline_defaults(name)
    epochs = settings["epochs"] if epochs is None else epochs
    patience = settings["patience"] if patience == -1 else patience
    batch_size = settings["batch_size"] if batch_size is None else batch_size
    cosine = settings["cosine"] if cosine is None else cosine
    if lr is None:
        lr = paper_lr(splits.name, fallback=True) if r.model == "tsmixer" else OCE_TRAINING["lr"]
    if r.uses_rho and rho is None:
        rho = paper_rho(splits.name, splits.horizon, model="TSMixer+SAM", fallback=True)
    factory = optimizer_factory(r.optimizer, float(lr), rho if r.uses_rho else None, seed=int(seed))
    seed_everything(int(seed))
    model = build_baseline(name, splits, seed)
    cpu = resolve_device(device).type == "cpu"
    with torch_threads(threads if cpu else None):
        result = fit(model, splits, optimizer=factory, epochs=epochs, batch_size=batch_size, patience=patience,
                     cosine=cosine, seed=int(seed), device=device, max_train_batches=max_train_batches)
    result.recipe = {"name": name, "lr": float(lr), "rho": rho if r.uses_rho else None}
    return result


def fit_any_seeds(name: str, splits, seeds: Sequence[int], **options: Any) -> list:
    """One ``FitResult`` per seed for any recipe name: :data:`RECIPES` go through :func:`fit_recipe_seeds`
    (batched seeds when the trainer offers it), :data:`BASELINE_RECIPES` through :func:`fit_baseline`."""
    if name in RECIPES:
        return fit_recipe_seeds(name, splits, seeds, **options)
    if name in BASELINE_RECIPES:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must name at least one seed")
        return [fit_baseline(name, splits, s, **options) for s in seeds]
    raise KeyError(f"unknown recipe {name!r}: use one of {sorted(RECIPES) + sorted(BASELINE_RECIPES)}")


__all__ += ["OCE_TRAINING", "BaselineRecipe", "BASELINE_RECIPES", "build_baseline", "baseline_defaults",
            "fit_baseline", "fit_any_seeds"]

"""The benchmark grids: which cells (dataset × horizon × recipe × seeds × protocol) reproduce which paper table.

A :class:`Cell` is everything that determines a result: recipe, dataset, horizon, look-back, seeds and the
training protocol. Tables that share cells share results: SAMformer Table 6 (MAE) and Table 7 (t-tests) are the
cells of Table 1, and EEO-TFV's SAMformer column is the SAMformer cells of Table 1 (the identity hash does not
contain the table's name, so such a cell runs once).

Protocols (``profile``):

* ``paper`` — each paper's appendix: SAMformer App. A.1 (L = 512, batch 32, Adam/SAM, cosine, 300 epochs, early
  stopping patience 5, Table 3 lr, Table 4 ρ*, 5 seeds); OCE-TS "Experimental Settings" (w = 336, ILI w = 104 and
  H 24–60, batch 32, 15 epochs, lr 0.005, patience 5). Seeds 0–4 (no paper states its seed values).
* ``quick`` — the same code path at toy size for CI: L = 96 (ILI 36), 2 epochs, at most 4 optimizer steps per
  epoch, 2 seeds, one dataset and horizon.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from flatcast.data import DATASETS

__all__ = ["Cell", "Grid", "GRIDS", "PROFILES", "grid", "expand", "RECIPE_LABELS"]

PROFILES = ("quick", "paper")
SAMFORMER_DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "exchange_rate", "weather")
OCE_DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "exchange_rate", "weather", "national_illness")
EEO_DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather")
HORIZONS = (96, 192, 336, 720)
ILI_HORIZONS = (24, 36, 48, 60)
PAPER_SEEDS = (0, 1, 2, 3, 4)

#: The label each recipe has in the papers' tables (``model`` column of ``data/reference``).
RECIPE_LABELS = {"samformer": "SAMformer", "transformer": "Transformer", "tsmixer": "TSMixer",
                 "tsmixer_sam": "TSMixer+SAM", "transformer_eeo": "EEO-TFV", "dlinear": "DLinear",
                 "dlinear_oce": "OCE-TS", "identity_sam": "Identity Attention", "temporal": "Temporal Attention"}


@dataclass(frozen=True)
class Cell:
    """One cell of a grid: a recipe trained on one dataset at one horizon over several seeds."""

    recipe: str
    dataset: str
    horizon: int
    lookback: int
    seeds: tuple[int, ...]
    epochs: int
    patience: int | None
    batch_size: int
    max_train_batches: int | None = None
    profile: str = "paper"

    def config(self) -> dict:
        """The cell's settings as a plain dict (what the identity hash covers, with the code/data versions)."""
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        return d

    @property
    def label(self) -> str:
        return f"{self.dataset}/H{self.horizon}/{self.recipe}"


@dataclass(frozen=True)
class Grid:
    """A declared grid: recipes × datasets × horizons (per dataset), the protocol of each recipe family."""

    name: str
    title: str
    recipes: tuple[str, ...]
    datasets: tuple[str, ...]
    family: str  # "samformer" (SAMformer App. A.1) or "oce" (OCE-TS settings)
    tables: tuple[str, ...] = ()
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())

    def horizons(self, dataset: str, profile: str) -> tuple[int, ...]:
        if profile == "quick":
            return (24,) if dataset == "national_illness" else (96,)
        return ILI_HORIZONS if dataset == "national_illness" else HORIZONS

    def lookback(self, dataset: str, profile: str) -> int:
        if self.family == "samformer":
            return 96 if profile == "quick" else 512
        if dataset == "national_illness":
            return 36 if profile == "quick" else 104
        return 96 if profile == "quick" else 336

    def protocol(self, profile: str) -> dict:
        if profile == "quick":
            return {"epochs": 2, "patience": 5, "batch_size": 32, "max_train_batches": 4}
        if self.family == "samformer":
            return {"epochs": 300, "patience": 5, "batch_size": 32, "max_train_batches": None}
        return {"epochs": 15, "patience": 5, "batch_size": 32, "max_train_batches": None}


GRIDS: dict[str, Grid] = {g.name: g for g in [
    Grid("samformer-table1", "SAMformer Tables 1, 6, 7: SAMformer, TSMixer ± SAM, Transformer",
         ("samformer", "tsmixer_sam", "transformer", "tsmixer"), SAMFORMER_DATASETS, "samformer",
         ("samformer_table1_mse", "samformer_table6_mae", "samformer_table7_ttest"),
         "electricity and traffic are not available here", aliases=("samformer-table6", "samformer-table7")),
    Grid("oce-table2", "OCE-TS Table 2: OCE-TS (DLinear + softmax head + OCE) vs MSE-trained DLinear",
         ("dlinear_oce", "dlinear"), OCE_DATASETS, "oce", ("oce_table2_main",),
         "Autoformer, iTransformer, TimeXer, TimeBridge are the paper's numbers, not re-run here"),
    Grid("eeo-table1", "EEO-TFV Tables 1, 5: the channel transformer trained with EEO vs SAMformer",
         ("transformer_eeo", "samformer"), EEO_DATASETS, "samformer", ("eeo_table1_avg", "eeo_table5_long"),
         "EEO-TFV states no training settings; they 'follow those of SAMFormer' (§4)",
         aliases=("eeo-table5",)),
    Grid("samformer-table9", "SAMformer App. C.4 Tables 9–10: channel-wise attention vs temporal attention and "
         "A(X) = I", ("samformer", "identity_sam", "transformer", "temporal"), SAMFORMER_DATASETS, "samformer",
         ("samformer_table9_temporal", "samformer_table10_identity"),
         "electricity and traffic are not available here; the SAMformer and Transformer cells are Table 1's",
         aliases=("samformer-table10",)),
    Grid("quick", "CI smoke grid: three model families through the same engine",
         ("samformer", "tsmixer", "dlinear"), ("ETTh1",), "samformer", (), "quick profile only"),
]}

_ALIASES = {alias: g.name for g in GRIDS.values() for alias in g.aliases}


def grid(name: str) -> Grid:
    """The grid called ``name`` (or one of its aliases); ``KeyError`` naming the known grids otherwise."""
    name = _ALIASES.get(name, name)
    if name not in GRIDS:
        raise KeyError(f"unknown grid {name!r}: use one of {sorted(list(GRIDS) + list(_ALIASES))}")
    return GRIDS[name]


def _check_subset(what: str, asked: Iterable | None, allowed: Sequence) -> tuple:
    if asked is None:
        return tuple(allowed)
    asked = tuple(asked)
    unknown = [a for a in asked if a not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown} for this grid: allowed values are {list(allowed)}")
    return asked


def expand(name: str, profile: str = "paper", datasets: Iterable[str] | None = None,
           horizons: Iterable[int] | None = None, recipes: Iterable[str] | None = None,
           seeds: Iterable[int] | None = None) -> list[Cell]:
    """The cells of grid ``name`` in run order (horizon, then dataset, then recipe), optionally restricted.

    Every argument is checked before anything runs: an unknown grid, profile, dataset, horizon or recipe raises
    with the allowed values named."""
    g = grid(name)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {PROFILES}")
    if g.name == "quick" and profile != "quick":
        raise ValueError("the 'quick' grid only runs in the quick profile")
    for d in g.datasets:
        if d not in DATASETS:  # pragma: no cover - declaration error
            raise ValueError(f"grid {g.name} names dataset {d!r} that the registry does not know")
    ds = _check_subset("datasets", datasets, g.datasets)
    rs = _check_subset("recipes", recipes, g.recipes)
    all_h = sorted({h for d in ds for h in g.horizons(d, profile)})
    hs = _check_subset("horizons", None if horizons is None else [int(h) for h in horizons], all_h)
    seed_list = tuple(int(s) for s in seeds) if seeds is not None else (
        (0, 1) if profile == "quick" else PAPER_SEEDS)
    if not seed_list or any(s < 0 for s in seed_list):
        raise ValueError(f"seeds must be non-negative integers, got {list(seed_list)}")
    proto = g.protocol(profile)
    cells = []
    for d in ds:
        for h in g.horizons(d, profile):
            if h not in hs:
                continue
            for r in rs:
                cells.append(Cell(r, d, int(h), g.lookback(d, profile), seed_list, proto["epochs"],
                                  proto["patience"], proto["batch_size"], proto["max_train_batches"], profile))
    order = {d: i for i, d in enumerate(g.datasets)}
    rorder = {r: i for i, r in enumerate(g.recipes)}
    rank_h = {h: i for i, h in enumerate(sorted({c.horizon for c in cells}))}
    cells.sort(key=lambda c: (rank_h[c.horizon] if c.dataset != "national_illness" else
                              list(g.horizons(c.dataset, profile)).index(c.horizon), order[c.dataset],
                              rorder[c.recipe]))
    return cells

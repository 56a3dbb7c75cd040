"""Two-dimensional test functions and optimizer trajectories on them: EEO's mechanism in pictures.

Each :class:`TestFunction` is a smooth f: R² → R written in torch (so autograd gives exact gradients and
Hessians) together with a start point, a plotting window and the optimizer settings the EEO chapter uses on
it. :func:`run_trajectory` runs one optimizer from the start point with the trainer's protocol (backward, then
``step(closure)``) and records the iterates, the loss, and every escape probe of :class:`flatcast.optim.EEO`
(where it fired, the finite-difference curvature it read, the exact vᵀHv along the same direction, and the
kick). :data:`VARIANTS` names the EEO configurations of the chapter (Adam, SAM, SAM + escape, ...).

The functions
-------------
``saddle``       f(x, y) = x² − y² + y⁴/4: a strict saddle at 0 (Hessian diag(2, −2)), minima at (0, ±√2) with
                 f = −1. Started exactly on the saddle's stable manifold, (0.3, 0), gradient methods never
                 leave it (the y-gradient is exactly 0); only the escape or noise can. (From (0.3, 1e-6) Adam
                 leaves within a few dozen steps: its per-coordinate normalisation turns a 1e-6 gradient into
                 an lr-sized step.)
``flat_sharp``   1 − 1.05·exp(−‖w − a‖²/(2·0.12²)) − 0.9·exp(−‖w − b‖²/(2·0.7²)) + 0.02‖w‖², with a = (−0.6, 0)
                 a narrow, slightly deeper (sharp) well and b = (1, 0) a wide (flat) one; between them a saddle.
                 Started on the sharp well's shoulder, Adam falls in; SAM (ρ = 0.3, wider than the sharp well)
                 is pushed out of it but stalls near the saddle between the wells, a known trap of SAM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from flatcast.optim import EEO

__all__ = ["TestFunction", "TEST_FUNCTIONS", "test_function", "VARIANTS", "PARTS", "variant_options",
           "Trajectory", "run_trajectory", "exact_hessian", "exact_curvature", "loss_grid"]


@dataclass(frozen=True)
class TestFunction:
    """A 2-D test function with the settings the chapter uses on it (see the module docstring)."""

    name: str
    label: str
    formula: str
    fn: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    lr: float
    rho: float
    steps: int
    temperature: float
    minima: tuple[tuple[float, float], ...] = ()
    saddles: tuple[tuple[float, float], ...] = ()

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        if w.shape[-1] != 2:
            raise ValueError(f"{self.name} takes points of shape (..., 2), got {tuple(w.shape)}")
        return self.fn(w)


def _saddle(w: torch.Tensor) -> torch.Tensor:
    x, y = w[..., 0], w[..., 1]
    return x**2 - y**2 + y**4 / 4


_SHARP, _FLAT = (-0.6, 0.0), (1.0, 0.0)


def _flat_sharp(w: torch.Tensor) -> torch.Tensor:
    x, y = w[..., 0], w[..., 1]
    sharp = 1.05 * torch.exp(-((x - _SHARP[0]) ** 2 + (y - _SHARP[1]) ** 2) / (2 * 0.12**2))
    flat = 0.9 * torch.exp(-((x - _FLAT[0]) ** 2 + (y - _FLAT[1]) ** 2) / (2 * 0.7**2))
    return 1 - sharp - flat + 0.02 * (x**2 + y**2)


TEST_FUNCTIONS: dict[str, TestFunction] = {
    "saddle": TestFunction(
        "saddle", "strict saddle", "f(x, y) = x² − y² + y⁴/4", _saddle, start=(0.3, 0.0),
        xlim=(-0.45, 0.45), ylim=(-1.8, 1.8), lr=0.01, rho=0.05, steps=250, temperature=2e-4,
        minima=((0.0, math.sqrt(2)), (0.0, -math.sqrt(2))), saddles=((0.0, 0.0),)),
    "flat_sharp": TestFunction(
        "flat_sharp", "sharp well beside a flat one",
        "f = 1 − 1.05·exp(−‖w−a‖²/(2·0.12²)) − 0.9·exp(−‖w−b‖²/(2·0.7²)) + 0.02‖w‖²", _flat_sharp,
        start=(-0.38, 0.12), xlim=(-1.2, 2.2), ylim=(-1.0, 1.0), lr=0.01, rho=0.3, steps=300,
        temperature=2e-4, minima=(_SHARP, _FLAT)),
}


def test_function(name: str) -> TestFunction:
    """The :class:`TestFunction` called ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return TEST_FUNCTIONS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown test function {name!r}: use one of {sorted(TEST_FUNCTIONS)}") from None


#: EEO's four parts, in the order of the update (EEO-TFV §3.6).
PARTS = ("sam", "escape", "sgld", "ema")

#: The chapter's named configurations: which parts are on (Adam = everything off).
VARIANTS: dict[str, dict[str, bool]] = {
    "Adam": dict(sam=False, escape=False, sgld=False, ema=False),
    "SAM": dict(sam=True, escape=False, sgld=False, ema=False),
    "SAM + escape": dict(sam=True, escape=True, sgld=False, ema=False),
    "SAM + escape + SGLD": dict(sam=True, escape=True, sgld=True, ema=False),
    "EEO (SAM + escape + SGLD + EMA)": dict(sam=True, escape=True, sgld=True, ema=True),
}


def variant_options(variant: str | Mapping[str, bool]) -> dict[str, bool]:
    """The EEO switches of a named variant, or of a mapping part → on/off (missing parts are off)."""
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise KeyError(f"unknown variant {variant!r}: use one of {list(VARIANTS)}")
        return dict(VARIANTS[variant])
    unknown = set(variant) - set(PARTS)
    if unknown:
        raise KeyError(f"unknown EEO parts {sorted(unknown)}: the parts are {PARTS}")
    return {part: bool(variant.get(part, False)) for part in PARTS}


def exact_hessian(fn: Callable[[torch.Tensor], torch.Tensor], w: Any) -> np.ndarray:
    """The exact 2×2 (or d×d) Hessian of ``fn`` at ``w`` by autograd, in float64."""
    point = torch.as_tensor(np.asarray(w, dtype=np.float64))
    return torch.autograd.functional.hessian(fn, point).numpy()


def exact_curvature(fn: Callable[[torch.Tensor], torch.Tensor], w: Any, v: Any) -> float:
    """vᵀH(w)v / vᵀv with the exact Hessian (the quantity EEO's Eq. 10 estimates by finite differences)."""
    v = np.asarray(v, dtype=np.float64)
    return float(v @ exact_hessian(fn, w) @ v / (v @ v))


def loss_grid(function: TestFunction, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, Y, Z)`` of the function on an n×n grid over its plotting window (for contour plots)."""
    xs = np.linspace(*function.xlim, n)
    ys = np.linspace(*function.ylim, n)
    grid_x, grid_y = np.meshgrid(xs, ys)
    points = torch.from_numpy(np.stack([grid_x, grid_y], axis=-1))
    with torch.no_grad():
        values = function(points).numpy()
    return grid_x, grid_y, values


@dataclass
class Trajectory:
    """One optimizer run on a 2-D function.

    ``path`` (steps + 1, 2): the raw iterates w_t; ``ema_path``: the EMA m_t (Eq. 13) when EMA is on, else
    ``None``; ``evaluated``: the weights a reader would use (the EMA when on, else the iterates);
    ``loss``: f along ``evaluated``; ``probes``: one dict per escape probe with ``step``, ``where`` (w at the
    probe), ``fd_curvature`` (the Rayleigh quotient EEO read), ``exact_curvature`` (vᵀHv/vᵀv with the exact
    Hessian along the same v), ``kicked`` and ``kick`` (the displacement, zero without a kick);
    ``grad_evals``: gradient evaluations used.
    """

    function: str
    variant: dict[str, bool]
    path: np.ndarray
    ema_path: np.ndarray | None
    loss: np.ndarray
    probes: list[dict[str, Any]]
    grad_evals: int

    @property
    def evaluated(self) -> np.ndarray:
        return self.ema_path if self.ema_path is not None else self.path

    @property
    def kicks(self) -> list[dict[str, Any]]:
        return [p for p in self.probes if p["kicked"]]

    def first_step_below(self, level: float) -> int | None:
        """The first step at which f (along ``evaluated``) is below ``level``; ``None`` if never."""
        below = np.nonzero(self.loss < level)[0]
        return int(below[0]) if below.size else None


def run_trajectory(function: TestFunction | str, variant: str | Mapping[str, bool], *, steps: int | None = None,
                   lr: float | None = None, rho: float | None = None, temperature: float | None = None,
                   seed: int = 0, start: tuple[float, float] | None = None, **eeo_options: Any) -> Trajectory:
    """Run :class:`flatcast.optim.EEO` around Adam with the parts of ``variant`` from the function's start.

    Unset settings come from the :class:`TestFunction`; ``eeo_options`` go to EEO (e.g. ``probe_every=5``).
    The weights are one float64 vector of length 2; the trainer's protocol is used (one backward, then
    ``step(closure)``), and EEO's probe record (``record_probes=True``) supplies the probes.
    """
    function = test_function(function) if isinstance(function, str) else function
    options = variant_options(variant)
    steps = function.steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    w = torch.nn.Parameter(torch.tensor(function.start if start is None else start, dtype=torch.float64))
    settings = dict(probe_every=10, power_iters=3)
    settings.update(eeo_options)
    optimizer = EEO([w], torch.optim.Adam, rho=function.rho if rho is None else rho,
                    temperature=function.temperature if temperature is None else temperature, seed=seed,
                    lr=function.lr if lr is None else lr, record_probes=True, **options, **settings)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = function(w)
        value.backward()
        return value

    path = [w.detach().numpy().copy()]
    ema_path = [w.detach().numpy().copy()] if options["ema"] else None
    for _ in range(steps):
        closure()
        optimizer.step(closure)
        path.append(w.detach().numpy().copy())
        if ema_path is not None:
            ema_path.append(optimizer.state[w]["ema"].numpy().copy())
    path_array = np.array(path)
    ema_array = np.array(ema_path) if ema_path is not None else None
    evaluated = ema_array if ema_array is not None else path_array
    with torch.no_grad():
        loss = function(torch.from_numpy(evaluated)).numpy()
    probes = []
    for record in optimizer.probe_log:
        where = np.asarray(record["weights"][0], dtype=np.float64)
        direction = np.asarray(record["direction"][0], dtype=np.float64)
        probes.append({
            "step": record["step"],
            "where": where,
            "fd_curvature": record["curvature"],
            "exact_curvature": exact_curvature(function, where, direction),
            "direction": direction,
            "kicked": record["kicked"],
            "kick": np.asarray(record["kick"][0], dtype=np.float64) if record["kicked"] else np.zeros(2),
        })
    return Trajectory(function.name, options, path_array, ema_array, loss, probes, optimizer.grad_evals)

"""Numeric checks of EEO-TFV's Lemmas 3.1–3.4 and the finite-difference HVP error study (Lemma 3.3).

Every function here evaluates one checkable statement of a lemma on a small problem where the exact answer is
known (autograd Hessians in float64, closed-form expectations), and returns a table. What each lemma says and
what is checked:

Lemma 3.3 (i), FD-HVP consistency. The paper prints ‖(Ĥ − H)v‖ ≤ (ρ_H/6) α²‖v‖³ with ρ_H the
    Hessian-Lipschitz constant. The Taylor expansion of its own proof (Eq. 22) gives the central-difference error
    (α²/6)∇⁴L(w)[v, v, v] + O(α⁴): the constant that bounds it is M₄ = sup‖∇⁴L‖ (the Lipschitz constant of
    ∇³L), not ρ_H. With only a Hessian-Lipschitz loss the sharp bound is first order, (ρ_H/2) α‖v‖²
    (:func:`fd_error_bounds`). :func:`fd_hvp_error_curve` measures the error against α in float64 and float32;
    :data:`FD_CASES` holds three 1-D-in-2-D test cases: a quartic (M₄ attains the α² bound), |x|³/6 (ρ_H = 1,
    no fourth derivative: the error is exactly α/2, first order) and a³·sin(x/a) (ρ_H = 1 but M₄ = 1/a: the
    printed bound fails by orders of magnitude).
Lemma 3.3 (ii), negative-curvature descent. L(w + ηu) ≤ L(w) + ηε − η²γ/2 + O(η³ρ_H) (Eq. 25) under
    η ≤ min{ε/γ, γ/ρ_H, 1/L}. But η ≤ ε/γ gives ηε ≥ η²γ, so the right side is ≥ L(w) + η²γ/2: the stated
    condition excludes the descent it claims unless ⟨g, u⟩ ≤ 0, i.e. unless the sign of u is chosen downhill
    (the paper's Eq. 11 kicks along +v with no sign rule). :func:`negative_curvature_step` measures both signs.
Lemma 3.2, robust objective. U_ρ(w) = max_{‖δ‖≤ρ} L(w + δ) = L + ρ‖g‖ + O(ρ²) and ∇U_ρ = g(w + e_w) + O(ρ).
    :func:`robust_objective` computes U_ρ on a 2-D function by a dense search over the disc, so the residuals
    and their orders in ρ can be measured (:func:`robust_expansion_table`). The descent claim assumes U_ρ is
    L-smooth; :func:`robust_descent_table` measures the residual of the printed inequality per step.
Lemma 3.4, expected descent with SGLD. For a quadratic L(w) = ½wᵀAw (so U_ρ → L as ρ → 0 and there are no
    higher-order terms) the expectation is exact: E L(w − ηg + √(2ηT)ε) = L(w − ηg) + ηT·tr(A). The printed
    bound has ηTd; its proof's Eq. 27 and step (4) give (L/2)·2ηTd = L·ηTd. :func:`sgld_expected_change`
    compares both with the exact value and with a Monte-Carlo average.
Lemma 3.1, attention-loss descent ("strictly decreases the attention loss"). :func:`attention_descent_run`
    trains single-head softmax attention A(Z) = softmax(ZW_q(ZW_k)ᵀ/√d) with EEO on L_att = ½‖A − A*‖²_F for a
    target A* that attention cannot reach, and records per step whether L_att rose and the ratio
    ⟨∇_θL_att, ∇_θL_att(θ + e)⟩ / ‖∇_A L_att‖²_F that the proof bounds below by c₁ > 0 (Eq. 16).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from flatcast.optim import EEO, fd_hvp

__all__ = [
    "FDCase", "FD_CASES", "fd_case", "fd_error_bounds", "fd_hvp_error", "fd_hvp_error_curve", "fitted_slope",
    "robust_objective", "robust_expansion_table", "robust_descent_table", "negative_curvature_step",
    "sgld_expected_change", "attention_descent_run",
]


# ---------------------------------------------------------------------------------------------- Lemma 3.3 (i)
@dataclass(frozen=True)
class FDCase:
    """A test function for the FD-HVP error, with its Hessian-Lipschitz constant ρ_H and M₄ = sup|∇⁴L| (math.inf
    where the fourth derivative does not exist), a point ``w`` and a unit direction ``v``."""

    name: str
    formula: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    rho_h: float
    m4: float
    w: tuple[float, float]
    v: tuple[float, float]


def _quartic(w: torch.Tensor) -> torch.Tensor:
    return w[..., 0] ** 4 / 24 + w[..., 1] ** 2 / 2


def _abs_cubic(w: torch.Tensor) -> torch.Tensor:
    return w[..., 0].abs() ** 3 / 6 + w[..., 1] ** 2 / 2


_A = 0.01


def _fast_sine(w: torch.Tensor) -> torch.Tensor:
    return _A**3 * torch.sin(w[..., 0] / _A) + w[..., 1] ** 2 / 2


FD_CASES: dict[str, FDCase] = {
    # ρ_H of the quartic is its Hessian-Lipschitz constant on the ball |x| ≤ 1.5 that holds every FD point.
    "quartic": FDCase("quartic", "x⁴/24 + y²/2", _quartic, rho_h=1.5, m4=1.0, w=(1.0, 0.3), v=(1.0, 0.0)),
    "abs_cubic": FDCase("abs_cubic", "|x|³/6 + y²/2", _abs_cubic, rho_h=1.0, m4=math.inf, w=(0.0, 0.3),
                        v=(1.0, 0.0)),
    "fast_sine": FDCase("fast_sine", f"a³·sin(x/a) + y²/2, a = {_A}", _fast_sine, rho_h=1.0, m4=1.0 / _A,
                        w=(_A * math.pi / 2, 0.3), v=(1.0, 0.0)),
}
# (the quartic's third derivative is x, unbounded on R², so it has no global ρ_H; on |x| ≤ r it is r; at w = (1, ·)
# and α ≤ 0.5 every point of the central difference lies in |x| ≤ 1.5.)


def fd_case(name: str) -> FDCase:
    try:
        return FD_CASES[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown FD case {name!r}: use one of {sorted(FD_CASES)}") from None


def fd_error_bounds(alpha: float | np.ndarray, rho_h: float, m4: float, v_norm: float = 1.0) -> dict[str, object]:
    """The three candidate bounds on ‖(Ĥ − H)v‖: the printed (ρ_H/6)α²‖v‖³, the fourth-derivative bound
    (M₄/6)α²‖v‖³ and the sharp Hessian-Lipschitz bound (ρ_H/2)α‖v‖²."""
    alpha = np.asarray(alpha, dtype=np.float64)
    return {"printed": rho_h / 6 * alpha**2 * v_norm**3, "fourth_derivative": m4 / 6 * alpha**2 * v_norm**3,
            "hessian_lipschitz": rho_h / 2 * alpha * v_norm**2}


def fd_hvp_error(fn: Callable[[torch.Tensor], torch.Tensor], w: Sequence[float], v: Sequence[float], alpha: float,
                 dtype: torch.dtype = torch.float64) -> float:
    """‖(Ĥ − H)v‖ with Ĥv from :func:`flatcast.optim.fd_hvp` in ``dtype`` and Hv exact (autograd, float64)."""
    w64 = torch.tensor(w, dtype=torch.float64)
    v64 = torch.tensor(v, dtype=torch.float64)
    exact = torch.autograd.functional.hvp(fn, w64, v64)[1]
    param = torch.nn.Parameter(w64.to(dtype))

    def grad_fn():
        return list(torch.autograd.grad(fn(param), [param]))

    (approx,) = fd_hvp(grad_fn, [param], [v64.to(dtype)], float(alpha))
    return float(torch.linalg.vector_norm(approx.to(torch.float64) - exact))


def fd_hvp_error_curve(case: FDCase | str, alphas: Sequence[float] | None = None,
                       dtypes: Sequence[torch.dtype] = (torch.float64, torch.float32)) -> pd.DataFrame:
    """Error of the FD-HVP against α for one :class:`FDCase`, in each dtype, beside the candidate bounds."""
    case = fd_case(case) if isinstance(case, str) else case
    alphas = np.logspace(-6, np.log10(0.5), 23) if alphas is None else np.asarray(alphas, dtype=np.float64)
    rows = []
    for dtype in dtypes:
        for alpha in alphas:
            bounds = fd_error_bounds(alpha, case.rho_h, case.m4)
            rows.append({"case": case.name, "dtype": str(dtype).replace("torch.", ""), "alpha": float(alpha),
                         "error": fd_hvp_error(case.fn, case.w, case.v, float(alpha), dtype),
                         **{f"bound_{k}": float(b) for k, b in bounds.items()}})
    return pd.DataFrame(rows)


def fitted_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x (points with y ≤ 0 are dropped)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = (x > 0) & (y > 0)
    if keep.sum() < 2:
        raise ValueError("need at least two positive points to fit a slope")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


# ---------------------------------------------------------------------------------------------- Lemma 3.3 (ii)
def negative_curvature_step(fn: Callable[[torch.Tensor], torch.Tensor], w: Sequence[float],
                            etas: Sequence[float]) -> pd.DataFrame:
    """L(w ± ηu_min) − L(w) for both signs of the most negative Hessian eigenvector u_min, against −η²γ/2.

    Columns: eta, gamma (= −λ_min), grad_norm ε, slope ⟨g, u⟩ of the ``+`` sign, change_downhill (the sign
    with ⟨g, u⟩ ≤ 0), change_uphill, claimed (−η²γ/2), first-order (ηε − η²γ/2, Eq. 25's bound without the
    O(η³) term) and whether η meets the lemma's η ≤ ε/γ.
    """
    point = torch.tensor(w, dtype=torch.float64)
    hessian = torch.autograd.functional.hessian(fn, point)
    eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
    gamma, u = -float(eigenvalues[0]), eigenvectors[:, 0]
    if gamma <= 0:
        raise ValueError(f"the Hessian at {list(w)} has no negative eigenvalue (λ_min = {-gamma:g})")
    gradient = torch.autograd.functional.jacobian(fn, point)
    slope = float(gradient @ u)
    downhill = -u if slope > 0 else u
    base = float(fn(point))
    rows = []
    with torch.no_grad():
        for eta in etas:
            rows.append({"eta": float(eta), "gamma": gamma, "grad_norm": float(gradient.norm()), "slope": slope,
                         "change_downhill": float(fn(point + eta * downhill)) - base,
                         "change_uphill": float(fn(point - eta * downhill)) - base,
                         "claimed": -eta**2 * gamma / 2,
                         "first_order_bound": eta * float(gradient.norm()) - eta**2 * gamma / 2,
                         "meets_eta_le_eps_over_gamma": bool(eta <= float(gradient.norm()) / gamma)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- Lemma 3.2
def robust_objective(fn: Callable[[torch.Tensor], torch.Tensor], w: Sequence[float], rho: float,
                     n_angles: int = 2048, n_radii: int = 16, refine: int = 40) -> tuple[float, np.ndarray]:
    """U_ρ(w) = max_{‖δ‖≤ρ} L(w + δ) for a 2-D ``fn``, and the maximiser δ*.

    A polar grid over the disc (``n_radii`` radii × ``n_angles`` angles) is searched, then the best angle (on
    the best radius) is refined by golden-section search; on the boundary this resolves U_ρ to ~1e-12·ρ‖g‖.
    """
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho!r}")
    centre = torch.tensor(w, dtype=torch.float64)
    angles = torch.linspace(0, 2 * math.pi, n_angles + 1, dtype=torch.float64)[:-1]
    radii = torch.linspace(rho / n_radii, rho, n_radii, dtype=torch.float64)
    directions = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    with torch.no_grad():
        candidates = centre + radii[:, None, None] * directions[None, :, :]
        values = fn(candidates)
        flat_index = int(torch.argmax(values))
        best_radius_index, best_angle_index = divmod(flat_index, n_angles)
        radius = float(radii[best_radius_index])
        value = float(values.reshape(-1)[flat_index])
        if value < float(fn(centre)):
            return float(fn(centre)), np.zeros(2)

        def at(angle: float) -> float:
            return float(fn(centre + radius * torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)))

        step = 2 * math.pi / n_angles
        low, high = float(angles[best_angle_index]) - step, float(angles[best_angle_index]) + step
        ratio = (math.sqrt(5) - 1) / 2
        for _ in range(refine):
            a, b = high - ratio * (high - low), low + ratio * (high - low)
            if at(a) > at(b):
                high = b
            else:
                low = a
        angle = (low + high) / 2
        best = at(angle)
        if best < value:
            angle, best = float(angles[best_angle_index]), value
    return best, radius * np.array([math.cos(angle), math.sin(angle)])


def _gradient(fn: Callable[[torch.Tensor], torch.Tensor], w: Sequence[float] | np.ndarray) -> np.ndarray:
    return torch.autograd.functional.jacobian(fn, torch.as_tensor(np.asarray(w, dtype=np.float64))).numpy()


def robust_expansion_table(fn: Callable[[torch.Tensor], torch.Tensor], w: Sequence[float],
                           rhos: Sequence[float], scaling: Callable[[np.ndarray], np.ndarray] | None = None
                           ) -> pd.DataFrame:
    """Lemma 3.2's two expansions at ``w`` for each ρ.

    Columns: ``value_residual`` = |U_ρ − L − ρ‖g‖| (claimed O(ρ²)); ``gradient_residual`` = ‖∇U_ρ −
    g(w + e_w)‖ (claimed O(ρ)), with ∇U_ρ = g(w + δ*) by Danskin's theorem (the maximiser is unique here) and
    e_w = ρ s⊙g/‖s⊙g‖ (s = 1 unless ``scaling`` maps w to s(w)).
    """
    point = np.asarray(w, dtype=np.float64)
    gradient = _gradient(fn, point)
    loss = float(fn(torch.from_numpy(point)))
    s = np.ones(2) if scaling is None else np.asarray(scaling(point), dtype=np.float64)
    rows = []
    for rho in rhos:
        value, delta = robust_objective(fn, point, float(rho))
        e_w = rho * s * gradient / np.linalg.norm(s * gradient)
        rows.append({"rho": float(rho), "value_residual": abs(value - loss - rho * np.linalg.norm(gradient)),
                     "gradient_residual": float(np.linalg.norm(_gradient(fn, point + delta)
                                                               - _gradient(fn, point + e_w)))})
    return pd.DataFrame(rows)


def robust_descent_table(fn: Callable[[torch.Tensor], torch.Tensor], points: Sequence[Sequence[float]],
                         rhos: Sequence[float], etas: Sequence[float], smoothness: float) -> pd.DataFrame:
    """Residual of Lemma 3.2's descent inequality for one SAM step w⁺ = w − η g(w + e_w), without its O(ηρ):

        r = U_ρ(w⁺) − U_ρ(w) + η(1 − Lη/2)‖∇U_ρ(w)‖²   (the lemma says r ≤ O(ηρ)).

    One row per (point, ρ, η) with r and r/(ηρ); ``smoothness`` is the L of the lemma (a bound on ‖∇²L‖).
    """
    rows = []
    for point in points:
        point = np.asarray(point, dtype=np.float64)
        gradient = _gradient(fn, point)
        for rho in rhos:
            u_now, delta = robust_objective(fn, point, float(rho))
            grad_u = _gradient(fn, point + delta)
            e_w = rho * gradient / np.linalg.norm(gradient)
            for eta in etas:
                if not 0 < eta < 2 / smoothness:
                    raise ValueError(f"eta={eta} is outside (0, 2/L) = (0, {2 / smoothness:g})")
                moved = point - eta * _gradient(fn, point + e_w)
                u_next, _ = robust_objective(fn, moved, float(rho))
                residual = u_next - u_now + eta * (1 - smoothness * eta / 2) * float(grad_u @ grad_u)
                rows.append({"x": point[0], "y": point[1], "rho": float(rho), "eta": float(eta),
                             "residual": residual, "residual_over_eta_rho": residual / (eta * rho)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- Lemma 3.4
def sgld_expected_change(curvatures: Sequence[float], w: Sequence[float], eta: float, temperature: float,
                         n_samples: int = 200_000, seed: int = 0) -> dict[str, float]:
    """One SGLD step on L(w) = ½ wᵀdiag(a)w: the exact E[L(w⁺)] − L(w) against Lemma 3.4's right side.

    w⁺ = w − ηg + √(2ηT)ε. Exact: E L(w⁺) = L(w − ηg) + ηT·Σa. Returns ``exact``, ``monte_carlo`` (from
    ``n_samples`` draws), ``printed_bound`` = −η(1 − Lη/2)‖g‖² + ηTd and ``corrected_bound`` = −η(1 − Lη/2)‖g‖²
    + LηTd with L = max a (ρ → 0, so U_ρ = L and the O(ηρ) term vanishes; a quadratic has no O(η³ρ_H) term).
    """
    a = np.asarray(curvatures, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    d, smoothness = a.size, float(a.max())
    gradient = a * w
    moved = w - eta * gradient

    def loss(x: np.ndarray) -> np.ndarray:
        return 0.5 * np.sum(a * x**2, axis=-1)

    generator = np.random.default_rng(seed)
    samples = moved + math.sqrt(2 * eta * temperature) * generator.standard_normal((n_samples, d))
    descent = -eta * (1 - smoothness * eta / 2) * float(gradient @ gradient)
    return {"exact": float(loss(moved) + eta * temperature * a.sum() - loss(w)),
            "monte_carlo": float(loss(samples).mean() - loss(w)),
            "printed_bound": descent + eta * temperature * d,
            "corrected_bound": descent + smoothness * eta * temperature * d,
            "d": d, "L": smoothness}


# ---------------------------------------------------------------------------------------------- Lemma 3.1
def attention_descent_run(n_tokens: int = 8, d_model: int = 4, d_key: int = 2, steps: int = 400,
                          lr: float = 0.05, rho: float = 0.05, seed: int = 0, **eeo_options) -> pd.DataFrame:
    """Train single-head softmax attention on L_att = ½‖A(Z) − A*‖²_F with EEO (plain SGD base, so η is the lr
    of Lemma 3.1) and record, per step: ``loss`` L_att before the step, ``rose`` (L_att after > before),
    ``grad_A_sq`` = ‖∇_A L_att‖²_F = ‖A − A*‖²_F and ``c1`` = ⟨∇_θL, ∇_θL(θ + e_θ)⟩ / ‖∇_A L‖²_F, the ratio
    Eq. 16 bounds below by c₁ > 0. A* is a random row-stochastic matrix, which attention with
    d_key < n_tokens cannot reach, so L_att cannot reach 0.
    """
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n_tokens, d_model, generator=generator, dtype=torch.float64)
    target = torch.softmax(2 * torch.randn(n_tokens, n_tokens, generator=generator, dtype=torch.float64), dim=-1)
    w_q = torch.nn.Parameter(0.5 * torch.randn(d_model, d_key, generator=generator, dtype=torch.float64))
    w_k = torch.nn.Parameter(0.5 * torch.randn(d_model, d_key, generator=generator, dtype=torch.float64))
    params = [w_q, w_k]

    def attention() -> torch.Tensor:
        return torch.softmax((tokens @ w_q) @ (tokens @ w_k).T / math.sqrt(d_key), dim=-1)

    def loss_fn() -> torch.Tensor:
        return 0.5 * ((attention() - target) ** 2).sum()

    options = dict(sam=True, escape=True, sgld=True, ema=False, seed=seed)
    options.update(eeo_options)
    optimizer = EEO(params, torch.optim.SGD, rho=rho, lr=lr, **options)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss_fn()
        value.backward()
        return value

    rows = []
    for step in range(steps):
        before = closure()
        grad_here = [p.grad.detach().clone() for p in params]
        with torch.no_grad():
            grad_a_sq = float(((attention() - target) ** 2).sum())
        # the gradient at the SAM-perturbed point, θ + ρ g/‖g‖ (what the outer step descends along)
        norm = math.sqrt(sum(float((g * g).sum()) for g in grad_here))
        originals = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, g in zip(params, grad_here):
                p.add_(g, alpha=rho / max(norm, 1e-30))
        perturbed = [torch.autograd.grad(loss_fn(), [p])[0] for p in params]
        with torch.no_grad():
            for p, original in zip(params, originals):
                p.copy_(original)
            for p, g in zip(params, grad_here):
                p.grad = g.clone()
        inner = sum(float((g * h).sum()) for g, h in zip(grad_here, perturbed))
        optimizer.step(closure)
        with torch.no_grad():
            after = float(loss_fn())
        before = float(before.detach())
        rows.append({"step": step, "loss": before, "loss_after": after, "rose": after > before,
                     "grad_A_sq": grad_a_sq, "grad_theta_sq": norm**2, "c1": inner / grad_a_sq})
    return pd.DataFrame(rows)

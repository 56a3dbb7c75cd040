"""EEO: the explore–escape optimizer of EEO-TFV §3.6 (Eqs. 9–13), every part behind its own switch.

One EEO update, in order (each part can be switched off, so every ablation row of EEO Table 4 is one
configuration of this class):

``escape`` (Eqs. 10–11), on probe steps only (every ``probe_every`` steps, starting with the first)
    Estimate the most negative curvature direction v of the loss Hessian H with Hessian-vector products
    computed by finite differences of gradients (Lemma 3.3),

        H v ≈ (g(w + αv) − g(w − αv)) / (2α),      ‖v‖ = 1 in the global parameter vector,

    and power iteration. Phase 1 power-iterates H from a random unit vector v₀ (``power_iters`` products) and
    records σ = max ‖Hv‖, an estimate of the spectral radius. If the last Rayleigh quotient vᵀHv is negative,
    the dominant-magnitude eigenvalue is negative and hence the most negative one: phase 2 is skipped.
    Otherwise phase 2 power-iterates the shifted operator σI − H from v₀ (another ``power_iters``
    products); its dominant eigenvector belongs to the smallest eigenvalue of H. The direction kept is the one
    with the smallest Rayleigh quotient λ = vᵀHv / vᵀv seen in either phase, so a kick is never taken along a
    direction whose measured curvature is not negative. If λ < 0 the weights move by a kick of length
    ``negcur_kick · ρ`` along ±v; the sign is first-order: −sign(g(w)ᵀv) (+v when gᵀv = 0), the sign that
    lowers the loss to second order because both signs lower the curvature term ½λ·kick². This needs no extra
    evaluation. After a kick the gradient is re-evaluated at the new weights; without a kick the weights are
    restored exactly (copied back) and so is the original gradient. Both gradients of a product draw the same
    random numbers (``probe_same_noise``), so that dropout, if the model has it, does not enter the difference.

``sam`` (Eq. 9)
    Sharpness-aware outer step: e_w = ρ · s(w)⊙g(w) / (‖s(w)⊙g(w)‖ + ε), gradient at w + e_w, base optimizer
    step at w. The paper does not define s(w); ``scaling="none"`` takes s(w) = 1 (plain SAM, the default, and
    the configuration that equals :class:`~flatcast.optim.SAM` exactly) and ``scaling="adaptive"`` takes
    s(w) = |w| + ξ elementwise, the scale of adaptive SAM (ASAM, Kwon et al. 2021), with Eq. 9 read literally:
    the perturbation has global norm exactly ρ. (This differs from ``SAM(adaptive=True)``, which uses ASAM's
    ρ·T²g/‖Tg‖.) With ``sam=False`` the base optimizer steps with g(w).

``sgld`` (Eq. 12)
    After the base step, w ← w + √(2ηT) · ε with ε ~ N(0, I) drawn from a private ``torch.Generator`` seeded
    with ``seed`` (same seed, same numbers). η is the *current* ``lr`` of the parameter's group, so LR
    schedulers also anneal the noise; only parameters that received a gradient are perturbed.

``ema`` (Eq. 13)
    m ← βm + (1 − β)w after every step, with m₀ = the weights at construction. Evaluate with the averaged
    weights inside ``with opt.ema_weights(): ...``; ``finalize()`` writes m into the weights (the paper's final
    weights are the EMA).

With ``escape``, ``sgld`` and ``ema`` off, EEO equals SAM number for number; with everything off it equals the
base optimizer (the closure is then optional and never called).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from .sam import SAM, validate_nonnegative, validate_rho

__all__ = ["EEO", "fd_hvp"]

_SCALINGS = ("none", "adaptive")


def _validate_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def _validate_switch(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Inner product of two parameter-shaped tensor lists, as one number (one device sync)."""
    device = a[0].device
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    return float(torch.stack([torch.sum(x * y).to(device, dtype) for x, y in zip(a, b)]).sum().item())


def _global_norm(tensors: Sequence[torch.Tensor]) -> float:
    return math.sqrt(_dot(tensors, tensors))


def _gradients_from(closure_or_grad_fn: Callable[[], Any], params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Call the function with grad enabled and return the gradients (its return value, or the ``.grad``s)."""
    with torch.enable_grad():
        returned = closure_or_grad_fn()
    if (
        isinstance(returned, (list, tuple))
        and len(returned) == len(params)
        and all(isinstance(t, torch.Tensor) for t in returned)
    ):
        return [t.detach().clone() for t in returned]
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]


@contextlib.contextmanager
def _replayed_global_noise(params: Sequence[torch.Tensor]) -> Iterator[Callable[[], None]]:
    """Inside the block, ``replay()`` resets torch's global generators (the CPU's and those of the CUDA devices
    holding ``params``) to their state at entry, so that two calls draw the same random numbers (e.g. dropout
    masks); on exit the generators are restored to that state, so the block consumes none of the global stream."""
    cuda_devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda_devices):
        cpu_state = torch.get_rng_state()
        cuda_states = [torch.cuda.get_rng_state(index) for index in cuda_devices]

        def replay() -> None:
            torch.set_rng_state(cpu_state)
            for index, state in zip(cuda_devices, cuda_states):
                torch.cuda.set_rng_state(state, index)

        yield replay


@torch.no_grad()
def _fd_gradient_pair(
    closure_or_grad_fn: Callable[[], Any],
    params: Sequence[torch.Tensor],
    v: Sequence[torch.Tensor],
    alpha: float,
    same_noise: bool = True,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Gradients at w + αv and w − αv; the weights are copied back exactly afterwards. With ``same_noise`` both
    gradients draw the same global random numbers (:func:`_replayed_global_noise`)."""
    originals = [p.detach().clone() for p in params]
    noise = _replayed_global_noise(params) if same_noise else contextlib.nullcontext(lambda: None)
    try:
        with noise as replay:
            for p, w, d in zip(params, originals, v):
                p.copy_(w).add_(d, alpha=alpha)
            grads_plus = _gradients_from(closure_or_grad_fn, params)
            replay()
            for p, w, d in zip(params, originals, v):
                p.copy_(w).add_(d, alpha=-alpha)
            grads_minus = _gradients_from(closure_or_grad_fn, params)
    finally:
        for p, w in zip(params, originals):
            p.copy_(w)
    return grads_plus, grads_minus


def fd_hvp(
    closure_or_grad_fn: Callable[[], Any],
    params: Iterable[torch.Tensor],
    v: Iterable[torch.Tensor],
    alpha: float,
    same_noise: bool = True,
) -> list[torch.Tensor]:
    """Finite-difference Hessian-vector product Hv ≈ (g(w + αv) − g(w − αv)) / (2α) (EEO-TFV Lemma 3.3).

    Args:
        closure_or_grad_fn: either a closure that computes the loss and calls ``backward()`` (gradients are
            then read from ``p.grad``), or a function returning the list of gradients, one per parameter.
        params: the parameters w (they are perturbed in place and restored exactly before returning).
        v: the direction, one tensor per parameter (any norm; the error bound is O(α²‖v‖³)).
        alpha: the finite-difference step α > 0. The central difference has error (α²/6)∇⁴L[v,v,v] + O(α⁴),
            i.e. at most (M₄/6)α²‖v‖³ with M₄ a bound on the fourth derivative of the loss (Lemma 3.3 prints the
            Hessian-Lipschitz constant here; with only that, the sharp bound is first order,
            (ρ_H/2)α‖v‖²); in float32, α ≈ 5e-3 balances that against the O(ε_machine / α) rounding error.
        same_noise: evaluate both gradients with the same draws of torch's global generators (common random
            numbers), so that a closure with randomness (dropout) is differentiated at one fixed mask: the result
            is then that mask's loss Hessian times v. With independent draws (``False``) the difference of two
            gradients with different masks, divided by 2α, is mostly mask noise amplified by 1/α. With ``True``
            the call leaves the global generators as it found them; with ``False`` both gradients advance them. A
            closure without randomness gives the same product either way.

    Costs two gradient evaluations. Returns one tensor per parameter.
    """
    params = list(params)
    v = list(v)
    if not isinstance(same_noise, bool):
        raise TypeError(f"same_noise must be True or False, got {same_noise!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if not params:
        raise ValueError("params is empty")
    if len(v) != len(params):
        raise ValueError(f"v has {len(v)} tensors but params has {len(params)}")
    for index, (p, d) in enumerate(zip(params, v)):
        if d.shape != p.shape:
            raise ValueError(f"v[{index}] has shape {tuple(d.shape)}, parameter has shape {tuple(p.shape)}")
    grads_plus, grads_minus = _fd_gradient_pair(closure_or_grad_fn, params, v, float(alpha), same_noise)
    return [(gp - gm) / (2 * alpha) for gp, gm in zip(grads_plus, grads_minus)]


class EEO(SAM):
    """The EEO optimizer (EEO-TFV §3.6): SAM outer step, negative-curvature escape, SGLD noise and EMA.

    See the module docstring for the algorithm. Arguments (every unstated number of the paper is a parameter):

    Args:
        params, base_optimizer, **base_kwargs: as for :class:`~flatcast.optim.SAM` (Table 4's ablation
            baseline is AdamW: pass ``base_optimizer=torch.optim.AdamW``).
        rho: SAM radius ρ = 0.05 (Foret et al.'s default; the paper gives no number). Also sets the kick scale.
        sam, escape, sgld, ema: switch each part on or off (Table 4 ablations).
        scaling: s(w) in Eq. 9, ``"none"`` (s = 1) or ``"adaptive"`` (s = |w| + ξ).
        adaptive_xi: ξ = 0.01 in s(w) = |w| + ξ (ASAM's η), so zero weights still get perturbed.
        fd_alpha: α = 5e-3 of the finite-difference HVP, ≈ (float32 ε)^(1/3), the step that balances the O(α²)
            truncation error of Lemma 3.3 against O(ε/α) rounding.
        power_iters: 3 Hessian-vector products per power-iteration phase. A kick needs only *a* direction of
            negative curvature, not a converged eigenvector, and each product costs two gradients.
        probe_every: 10; probing costs 2·power_iters (phase 1) + 2·power_iters (phase 2, when run) gradient
            evaluations, so with the defaults the escape adds at most 1.2 evaluations per step on average to
            SAM's 2.
        negcur_kick: 2.0, the kick length in units of ρ. It must exceed 1: along a negative-curvature
            direction the SAM ascent (length ≤ ρ) reverses the sign of the gradient within distance ρ of a
            saddle, so SAM pulls weights closer than ρ back into the saddle; 2ρ lands safely outside.
        kick_threshold: 0.0, Eq. 11 as printed: kick whenever the measured curvature λ < 0. With τ > 0 kick only
            when λ < −τ·σ, σ the largest ‖Hv‖ of the probe's first phase (≤ the spectral radius): a kick then needs
            curvature that is negative on the scale of the spectrum, not merely below zero. Not in the paper.
        temperature: T = 1e-5 in Eq. 12. For a mean loss over N samples the Bayesian temperature is 1/N ≈ 1e-4
            for ~10⁴ training windows; a 10× colder posterior (Wenzel et al. 2020) keeps the noise at
            √(2·1e-3·1e-5) ≈ 1.4e-4 per coordinate at lr = 1e-3, about 14 % of an Adam step.
        ema_decay: β = 0.99 in Eq. 13, an averaging horizon of ~100 steps (under one epoch of the book's data
            sets) so the EMA tracks the weights even in the short ``quick`` profile runs.
        seed: seed of the private generator used for the SGLD noise and the power-iteration start vectors.
        probe_same_noise: True: each finite-difference product of the probe evaluates its two gradients with the
            same global random draws (:func:`fd_hvp`'s ``same_noise``), so a model with dropout is probed at one
            fixed mask. The paper's Eq. 10 is silent on randomness in the loss; with ``False`` (independent masks)
            the FD curvature of a model with dropout is mask noise amplified by 1/α, of random sign, and the
            escape fires at nearly every probe. No effect on a closure without randomness.

    Gradient-evaluation count ``grad_evals`` per ``step``: 1 for the caller's initial backward, +1 for the SAM
    closure at w + e_w, and on probe steps +2 per Hessian-vector product (+1 more if a kick is taken, for the
    gradient at the kicked weights). The kick sign needs no evaluation. ``last_probe`` holds the outcome of the
    most recent probe (``curvature`` λ, ``spectral_radius`` σ, ``kicked``, ``grad_evals``) and ``n_kicks`` the
    number of kicks taken so far.

    Instrumentation (no effect on the update): ``probe_log`` keeps one record per probe, ``last_probe``'s fields
    plus ``gradient_norm`` ‖g(w)‖ at the probe; with ``record_probes=True`` each record also holds ``weights``
    (w at the probe), ``direction`` (the unit v whose Rayleigh quotient was kept) and ``kick`` (the
    displacement, ``None`` without a kick), as CPU tensors, one per parameter with a gradient. The log is not
    part of ``state_dict``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
        rho: float = 0.05,
        *,
        sam: bool = True,
        escape: bool = True,
        sgld: bool = True,
        ema: bool = True,
        scaling: str = "none",
        adaptive_xi: float = 0.01,
        fd_alpha: float = 5e-3,
        power_iters: int = 3,
        probe_every: int = 10,
        negcur_kick: float = 2.0,
        kick_threshold: float = 0.0,
        temperature: float = 1e-5,
        ema_decay: float = 0.99,
        seed: int = 0,
        probe_same_noise: bool = True,
        record_probes: bool = False,
        **base_kwargs: Any,
    ) -> None:
        if "adaptive" in base_kwargs:
            raise TypeError("EEO takes scaling='none'|'adaptive' (Eq. 9) instead of adaptive=...")
        self.sam = _validate_switch("sam", sam)
        self.escape = _validate_switch("escape", escape)
        self.sgld = _validate_switch("sgld", sgld)
        self.ema = _validate_switch("ema", ema)
        if scaling not in _SCALINGS:
            raise ValueError(f"scaling must be one of {_SCALINGS}, got {scaling!r}")
        fd_alpha = validate_nonnegative("fd_alpha", fd_alpha)
        if fd_alpha == 0:
            raise ValueError(f"fd_alpha must be > 0, got {fd_alpha!r}")
        self.fd_alpha = fd_alpha
        self.power_iters = _validate_positive_int("power_iters", power_iters)
        self.probe_every = _validate_positive_int("probe_every", probe_every)
        if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) or not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be a number in [0, 1), got {ema_decay!r}")
        self.ema_decay = float(ema_decay)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self.record_probes = _validate_switch("record_probes", record_probes)
        self.probe_same_noise = _validate_switch("probe_same_noise", probe_same_noise)
        self.kick_threshold = validate_nonnegative("kick_threshold", kick_threshold)
        wrapper_defaults = {
            "rho": validate_rho(rho),
            "scaling": scaling,
            "adaptive_xi": validate_nonnegative("adaptive_xi", adaptive_xi),
            "negcur_kick": validate_nonnegative("negcur_kick", negcur_kick),
            "temperature": validate_nonnegative("temperature", temperature),
        }
        self._init_wrapper(params, base_optimizer, wrapper_defaults, base_kwargs)
        self.steps_taken = 0
        self.n_kicks = 0
        self.last_probe: dict[str, Any] | None = None
        self.probe_log: list[dict[str, Any]] = []
        self._generators: dict[str, torch.Generator] = {}
        if self.ema:
            with torch.no_grad():
                for p in self._all_params():
                    self.state[p]["ema"] = p.detach().clone()

    # ------------------------------------------------------------------ helpers and persistence
    def _all_params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        if group["scaling"] not in _SCALINGS:
            raise ValueError(f"scaling must be one of {_SCALINGS}, got {group['scaling']!r}")
        for name in ("negcur_kick", "temperature"):
            group[name] = validate_nonnegative(name, group[name])

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            generator = torch.Generator(device=device)
            generator.manual_seed(self.seed)
            self._generators[key] = generator
        return self._generators[key]

    def _counters(self) -> dict[str, Any]:
        counters = super()._counters()
        counters.update(
            steps_taken=self.steps_taken,
            n_kicks=self.n_kicks,
            generator_states={key: g.get_state() for key, g in self._generators.items()},
        )
        return counters

    def _load_counters(self, counters: dict[str, Any]) -> None:
        super()._load_counters(counters)
        self.steps_taken = int(counters["steps_taken"])
        self.n_kicks = int(counters["n_kicks"])
        self._generators = {}
        for key, state in counters["generator_states"].items():
            self._generator(torch.device(key)).set_state(state)

    def _ascent_terms(self, p: torch.Tensor, group: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 9: numerator and normalised part are both s(w)⊙g(w)."""
        if group["scaling"] == "adaptive":
            scaled_grad = p.detach().abs().add_(group["adaptive_xi"]) * p.grad
            return scaled_grad, scaled_grad
        return p.grad, p.grad

    # ------------------------------------------------------------------ escape (Eqs. 10–11)
    @torch.no_grad()
    def _escape(self, closure: Callable[[], Any]) -> None:
        """Probe the curvature with FD-HVP power iteration and kick along negative curvature (Eqs. 10–11)."""
        pairs = self._with_grad()
        if not pairs:
            return
        params = [p for p, _ in pairs]
        without_grad = [p for p in self._all_params() if p.grad is None]
        grad_at_w = [p.grad.detach().clone() for p in params]
        evals_before = self.grad_evals

        start = [
            torch.randn(p.shape, generator=self._generator(p.device), device=p.device, dtype=p.dtype) for p in params
        ]
        start_norm = _global_norm(start)
        start = [t / start_norm for t in start]

        best_direction, best_curvature = start, math.inf

        def hessian_times(direction: list[torch.Tensor]) -> tuple[list[torch.Tensor], float]:
            """FD-HVP (2 gradient evaluations) and the Rayleigh quotient of the unit ``direction``."""
            nonlocal best_direction, best_curvature
            product = fd_hvp(closure, params, direction, self.fd_alpha, same_noise=self.probe_same_noise)
            self.grad_evals += 2
            curvature = _dot(direction, product)
            if curvature < best_curvature:
                best_direction, best_curvature = direction, curvature
            return product, curvature

        # Phase 1: power iteration on H; sigma = largest ‖Hv‖ seen (≤ spectral radius).
        direction, spectral_radius, last_curvature = start, 0.0, 0.0
        for _ in range(self.power_iters):
            product, last_curvature = hessian_times(direction)
            norm = _global_norm(product)
            spectral_radius = max(spectral_radius, norm)
            if norm == 0:
                break
            direction = [t / norm for t in product]
        # Phase 2: power iteration on sigma·I − H, whose dominant eigenvector is H's most negative one.
        if last_curvature >= 0 and spectral_radius > 0:
            direction = start
            for _ in range(self.power_iters):
                product, _ = hessian_times(direction)
                shifted = [spectral_radius * d - h for d, h in zip(direction, product)]
                norm = _global_norm(shifted)
                if norm == 0:
                    break
                direction = [t / norm for t in shifted]

        kicked = (best_curvature < -self.kick_threshold * spectral_radius  # τ = 0: any λ < 0 (Eq. 11)
                  and any(group["rho"] * group["negcur_kick"] > 0 for _, group in pairs))
        weights_at_probe = [p.detach().clone() for p in params] if self.record_probes else None
        kick: list[torch.Tensor] | None = None
        if kicked:
            slope = _dot(grad_at_w, best_direction)
            sign = -1.0 if slope > 0 else 1.0
            kick = [d * (sign * group["negcur_kick"] * group["rho"]) for (_, group), d in zip(pairs, best_direction)]
            for (p, group), d in zip(pairs, best_direction):
                p.add_(d, alpha=sign * group["negcur_kick"] * group["rho"])
            with torch.enable_grad():
                closure()
            self.grad_evals += 1
            self.n_kicks += 1
        else:
            for p, g in zip(params, grad_at_w):
                p.grad = g
            for p in without_grad:
                p.grad = None
        self.last_probe = {
            "step": self.steps_taken,
            "curvature": best_curvature,
            "spectral_radius": spectral_radius,
            "kicked": kicked,
            "grad_evals": self.grad_evals - evals_before,
        }
        record = dict(self.last_probe, gradient_norm=_global_norm(grad_at_w))
        if self.record_probes:
            record.update(
                weights=[w.cpu() for w in weights_at_probe],
                direction=[d.detach().cpu().clone() for d in best_direction],
                kick=[k.cpu() for k in kick] if kick is not None else None,
            )
        self.probe_log.append(record)

    # ------------------------------------------------------------------ SGLD (Eq. 12) and EMA (Eq. 13)
    @torch.no_grad()
    def _add_langevin_noise(self) -> None:
        for p, group in self._with_grad():
            temperature = group["temperature"]
            if temperature == 0:
                continue
            std = math.sqrt(2.0 * float(group["lr"]) * temperature)
            noise = torch.randn(p.shape, generator=self._generator(p.device), device=p.device, dtype=p.dtype)
            p.add_(noise, alpha=std)

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = self.ema_decay
        for p in self._all_params():
            state = self.state[p]
            if "ema" not in state:
                state["ema"] = p.detach().clone()
            else:
                state["ema"].mul_(beta).add_(p, alpha=1.0 - beta)

    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """Swap the EMA weights m (Eq. 13) into the parameters for the block; restore the raw ones on exit.

        A no-op context when ``ema=False``.
        """
        if not self.ema:
            yield
            return
        params = self._all_params()
        with torch.no_grad():
            raw = [p.detach().clone() for p in params]
            for p in params:
                p.copy_(self.state[p]["ema"])
        try:
            yield
        finally:
            with torch.no_grad():
                for p, w in zip(params, raw):
                    p.copy_(w)

    @torch.no_grad()
    def finalize(self) -> None:
        """Write the EMA weights into the parameters for good (the paper's final weights); no-op if ema=False."""
        if not self.ema:
            return
        for p in self._all_params():
            p.copy_(self.state[p]["ema"])

    # ------------------------------------------------------------------ the update
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One EEO update (see the module docstring); returns the closure's loss at w + e_w (None if sam=False).

        The closure is required when ``sam`` or ``escape`` is on.
        """
        if self.sam or self.escape:
            closure = self._require_closure(closure, type(self).__name__)
        self.grad_evals += 1
        if self.escape and self.steps_taken % self.probe_every == 0:
            self._escape(closure)
        loss = None
        if self.sam:
            self._ascend()
            loss = closure()
            self.grad_evals += 1
            self._descend()
        else:
            self.base_optimizer.step()
        if self.sgld:
            self._add_langevin_noise()
        if self.ema:
            self._update_ema()
        self.steps_taken += 1
        return loss

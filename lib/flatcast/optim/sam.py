"""Sharpness-aware minimisation (SAM, Foret et al. 2021; adaptive variant ASAM, Kwon et al. 2021).

SAM minimises the worst loss in a ball of radius ρ around the weights. Each update takes two gradients:

1. the gradient g(w) at the current weights (computed by the caller, e.g. the trainer's ``loss.backward()``);
2. the ascent perturbation  e_w = ρ · g(w) / (‖g(w)‖ + ε)          (SAM Eq. 2; EEO-TFV Eq. 9 with s(w) = 1),
   and the gradient g(w + e_w) at the perturbed weights (the ``closure``);
3. the base optimizer's step *from w* with g(w + e_w) in place of g(w).

The norm ‖·‖ is the global Euclidean norm over every parameter of every group, so the ascent moves the
weights by exactly ρ (up to ε = 1e-12) in that norm. With ``adaptive=True`` the perturbation follows ASAM
(Kwon et al. 2021, Eq. 11 with p = 2):  e_w = ρ · T_w² g / ‖T_w g‖,  T_w = |w| + ξ elementwise, which is the
steepest ascent inside the ellipsoid ‖T_w⁻¹ e‖ ≤ ρ and so is invariant to rescaling of the weights.

The interface follows davda54/sam: ``first_step()``, ``second_step()`` and ``step(closure)``, with the
parameter groups shared with the base optimizer so that LR schedulers can drive the SAM object itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from flatcast.utils import check_nonnegative

__all__ = ["SAM"]

_NORM_EPS = 1e-12


def validate_rho(rho: Any) -> float:
    """Return ``rho`` as a float, raising if it is not a finite number ≥ 0 (the SAM radius)."""
    return check_nonnegative("rho", rho)


def validate_base_optimizer(base_optimizer: Any) -> type[torch.optim.Optimizer]:
    """Check that ``base_optimizer`` is an optimizer *class* (e.g. ``torch.optim.Adam``), not an instance."""
    if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)):
        raise TypeError(
            "base_optimizer must be a torch.optim.Optimizer subclass such as torch.optim.Adam, "
            f"got {base_optimizer!r}"
        )
    return base_optimizer


def validate_nonnegative(name: str, value: Any) -> float:
    """Return ``value`` as a float, raising if it is not a finite number ≥ 0."""
    return check_nonnegative(name, value)


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation wrapped around any base optimizer (SAM Eq. 2; ASAM Eq. 11).

    Args:
        params: parameters or parameter groups, as for any torch optimizer. A group may set its own ``rho``.
        base_optimizer: the optimizer *class* that takes the outer step (default ``torch.optim.Adam``).
        rho: radius ρ ≥ 0 of the ascent; ρ = 0 reproduces the base optimizer exactly (same numbers).
        adaptive: use ASAM's scale-invariant perturbation ρ·T²g/‖Tg‖ with T = |w| + ξ.
        adaptive_xi: ξ ≥ 0 in T = |w| + ξ (ASAM's η = 0.01: keeps zero-initialised weights perturbable;
            ξ = 0 gives davda54's ``adaptive=True`` exactly).
        **base_kwargs: passed to ``base_optimizer`` (``lr``, ``weight_decay``, ...).

    Protocol: the caller computes the loss and calls ``backward()``, then ``step(closure)``, where
    ``closure()`` zeroes the gradients, recomputes the loss on the same batch, calls ``backward()`` and returns
    the loss. ``step`` without a closure raises ``ValueError``. ``param_groups`` *is* the base optimizer's
    list, so schedulers such as ``CosineAnnealingLR(sam, ...)`` change the base learning rate.

    Gradient-evaluation count ``grad_evals``: every gradient an update consumes counts once, the caller's
    initial backward included. ``first_step`` counts the gradient at w and ``second_step`` the one at
    w + e_w, so one ``step(closure)`` (or one manual first/second pair) adds 2.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
        rho: float = 0.05,
        adaptive: bool = False,
        adaptive_xi: float = 0.01,
        **base_kwargs: Any,
    ) -> None:
        if not isinstance(adaptive, bool):
            raise TypeError(f"adaptive must be True or False, got {adaptive!r}")
        wrapper_defaults = {
            "rho": validate_rho(rho),
            "adaptive": adaptive,
            "adaptive_xi": validate_nonnegative("adaptive_xi", adaptive_xi),
        }
        self._init_wrapper(params, base_optimizer, wrapper_defaults, base_kwargs)

    # ------------------------------------------------------------------ construction and persistence
    def _init_wrapper(
        self,
        params: Any,
        base_optimizer: Any,
        wrapper_defaults: dict[str, Any],
        base_kwargs: dict[str, Any],
    ) -> None:
        """Build the wrapper and its base optimizer so that both share one list of parameter groups."""
        base_cls = validate_base_optimizer(base_optimizer)
        clashes = sorted(set(wrapper_defaults) & set(base_kwargs))
        if clashes:
            raise TypeError(f"arguments given twice (wrapper and base optimizer): {clashes}")
        super().__init__(params, {**wrapper_defaults, **base_kwargs})
        for group in self.param_groups:
            self._validate_group(group)
        self.base_optimizer = base_cls(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.grad_evals = 0
        self.members: int | None = None  # set by per_member(k): parameters stack k models along dim 0
        self._member_rho: list[float] | None = None
        self._weights_before_ascent: dict[torch.Tensor, torch.Tensor] = {}
        self._ascended = False

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Check the wrapper's per-group settings (a group may override the constructor's ``rho``)."""
        group["rho"] = validate_rho(group["rho"])
        group["adaptive_xi"] = validate_nonnegative("adaptive_xi", group["adaptive_xi"])

    def _counters(self) -> dict[str, Any]:
        """Counters and other non-tensor state saved by ``state_dict`` (extended by subclasses)."""
        return {"grad_evals": self.grad_evals}

    def _load_counters(self, counters: dict[str, Any]) -> None:
        self.grad_evals = int(counters["grad_evals"])

    def state_dict(self) -> dict[str, Any]:
        """The wrapper's own state, the base optimizer's state (e.g. Adam moments) and the counters."""
        own = super().state_dict()
        own["base_optimizer"] = self.base_optimizer.state_dict()
        own["counters"] = self._counters()
        return own

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Inverse of ``state_dict``; afterwards ``param_groups`` is again shared with the base optimizer."""
        missing = [key for key in ("state", "param_groups", "base_optimizer", "counters") if key not in state_dict]
        if missing:
            raise ValueError(f"not a {type(self).__name__} state_dict: missing keys {missing}")
        self.base_optimizer.load_state_dict(state_dict["base_optimizer"])
        super().load_state_dict({"state": state_dict["state"], "param_groups": state_dict["param_groups"]})
        self.param_groups = self.base_optimizer.param_groups
        self._load_counters(state_dict["counters"])

    # ------------------------------------------------------------------ the ascent (Eq. 2 / Eq. 9)
    def _ascent_terms(self, p: torch.Tensor, group: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (numerator, normalised part) so that e_w = ρ · numerator / ‖normalised part‖ (global norm).

        Plain SAM: (g, g). ASAM: (T² g, T g) with T = |w| + ξ. Subclasses change the geometry here.
        """
        grad = p.grad
        if group["adaptive"]:
            scale = p.detach().abs().add_(group["adaptive_xi"])
            scaled_grad = scale * grad
            return scale * scaled_grad, scaled_grad
        return grad, grad

    def _with_grad(self) -> list[tuple[torch.Tensor, dict[str, Any]]]:
        return [(p, group) for group in self.param_groups for p in group["params"] if p.grad is not None]

    def per_member(self, members: int, rho: Any = None) -> "SAM":
        """Make the ascent per member: every parameter carries a leading dimension of ``members`` stacked models.

        Each member's perturbation is e_w = ρ · g / (‖g‖ + ε) with ‖g‖ the norm over *that member's* slices of
        every parameter (SAM Eq. 2 for each model on its own), so k models trained as one batched model take
        exactly the steps they would take alone. The base optimizer must be elementwise (Adam, AdamW, SGD) for
        the same reason. ``rho`` optionally gives each member its own radius (a sequence of k numbers ≥ 0; a
        member with ρ = 0 takes plain base-optimizer steps, number for number). Returns ``self``.
        """
        if type(self) is not SAM:
            raise TypeError(f"per_member is only defined for SAM itself, not for {type(self).__name__}")
        members = int(members)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim < 1 or p.shape[0] != members:
                    raise ValueError(f"per_member({members}) needs every parameter to have a leading dimension "
                                     f"of {members}, got shape {tuple(p.shape)}")
        self.members = members
        self._member_rho = None
        if rho is not None:
            values = [validate_rho(r) for r in rho]
            if len(values) != members:
                raise ValueError(f"per_member({members}) needs one rho per member, got {len(values)}")
            self._member_rho = values
        return self

    def _remember(self, params: list[torch.Tensor]) -> None:
        """Keep a copy of w (reusing the buffers of the previous step when the parameters are the same)."""
        saved = self._weights_before_ascent
        if list(saved) == params and all(s.shape == p.shape for s, p in zip(saved.values(), params)):
            torch._foreach_copy_(list(saved.values()), params)
        else:
            saved.clear()
            saved.update({p: p.detach().clone() for p in params})

    def _member_norms(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Per-member Euclidean norm over every parameter's slice: shape ``(members,)``."""
        squares = [part.reshape(part.shape[0], -1).square().sum(dim=1) for part in parts]
        return torch.stack(squares).sum(dim=0).sqrt() if len(squares) > 1 else squares[0].sqrt()

    @torch.no_grad()
    def _ascend(self) -> None:
        """Move every parameter to w + e_w, remembering w (no counting).

        Lean form of Eq. 2: the per-tensor norms, the global norm and the update are foreach operations (one
        call per kind over all tensors), the plain-SAM numerator is the gradient itself (no copies), and w is
        kept in buffers reused from step to step.
        """
        pairs = self._with_grad()
        if not pairs:
            return
        params = [p for p, _ in pairs]
        plain = type(self)._ascent_terms is SAM._ascent_terms and not any(g["adaptive"] for _, g in pairs)
        if plain:
            numerators = parts = [p.grad for p in params]
        else:
            terms = [self._ascent_terms(p, group) for p, group in pairs]
            numerators, parts = [t[0] for t in terms], [t[1] for t in terms]
        self._remember(params)
        self._ascended = True
        shared_device, norm_dtype = params[0].device, params[0].dtype
        if self.members is not None:
            norm = self._member_norms(parts)  # (members,)
            for (p, group), numerator in zip(pairs, numerators):
                rho = group["rho"] if self._member_rho is None else norm.new_tensor(self._member_rho)
                scale = (rho / (norm + _NORM_EPS)).to(p.device, numerator.dtype)
                p.add_(numerator * scale.view(-1, *([1] * (p.ndim - 1))))
            return
        if all(part.device == shared_device and part.dtype == norm_dtype for part in parts):
            norms = torch._foreach_norm(parts)
            global_norm = torch.linalg.vector_norm(torch.stack(norms))
        else:
            global_norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(part).to(shared_device, norm_dtype) for part in parts])
            )
        rhos = {group["rho"] for _, group in pairs}
        if len(rhos) == 1 and all(p.device == shared_device and p.dtype == norm_dtype for p in params):
            scale = rhos.pop() / (global_norm + _NORM_EPS)
            torch._foreach_add_(params, torch._foreach_mul(numerators, scale))
            return
        for (p, group), numerator in zip(pairs, numerators):
            scale = group["rho"] / (global_norm.to(p.device) + _NORM_EPS)
            p.add_(numerator * scale.to(numerator.dtype))

    @torch.no_grad()
    def _descend(self) -> None:
        """Put the weights back at w (exactly) and take the base optimizer's step with g(w + e_w)."""
        saved = self._weights_before_ascent
        if self._ascended and saved:
            torch._foreach_copy_(list(saved), list(saved.values()))
        self._ascended = False
        self.base_optimizer.step()

    def first_step(self, zero_grad: bool = False) -> None:
        """Ascent w → w + e_w using the gradient g(w) already in ``p.grad`` (counts 1 gradient evaluation)."""
        self.grad_evals += 1
        self._ascend()
        if zero_grad:
            self.zero_grad()

    def second_step(self, zero_grad: bool = False) -> None:
        """Return to w and step the base optimizer with g(w + e_w) from ``p.grad`` (counts 1 evaluation)."""
        self.grad_evals += 1
        self._descend()
        if zero_grad:
            self.zero_grad()

    @staticmethod
    def _require_closure(closure: Callable[[], Any] | None, who: str) -> Callable[[], Any]:
        if closure is None:
            raise ValueError(
                f"{who}.step needs a closure that zeroes the gradients, recomputes the loss on the same batch, "
                "calls backward() and returns the loss (got closure=None)"
            )
        if not callable(closure):
            raise TypeError(f"closure must be callable, got {closure!r}")
        return torch.enable_grad()(closure)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One SAM update (2 gradient evaluations); returns the loss the closure computed at w + e_w."""
        closure = self._require_closure(closure, type(self).__name__)
        self.first_step(zero_grad=False)
        loss = closure()
        self.second_step(zero_grad=False)
        return loss

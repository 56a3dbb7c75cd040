"""Attention and representation diagnostics: entropy, nuclear norm, SAMformer Proposition 5, effective rank.

- Attention entropy (SAMformer, Ilbert et al. 2024, Fig. 3b; entropy collapse of Zhai et al. 2023): the mean
  over rows of the Shannon entropy ``H(a) = −Σ_j a_j log a_j`` (nats) of each row ``a`` of the row-stochastic
  attention matrix ``A``. Uniform rows give ``log D`` (the maximum), one-hot rows (identity attention) give 0.
- Nuclear norm ``‖A‖_* = Σ σ_i(A)`` (SAMformer Fig. 7), a convex surrogate of the rank of the attention.
- SAMformer Proposition 5: ``‖X W_Q W_Kᵀ Xᵀ‖_* ≤ ‖W_Q W_Kᵀ‖₂ ‖X‖_F²`` for ``X ∈ R^{D×L}``, ``W_Q, W_K ∈ R^{L×d}``
  (stated with ``W_Q W_Kᵀ`` symmetric PSD; it follows in general from Hölder's inequality for Schatten norms,
  ``‖ABC‖_* ≤ ‖A‖_F ‖B‖₂ ‖C‖_F``).
- Effective rank (Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality"): with ``p_i = σ_i / Σ_j σ_j`` the normalised singular values,
  ``erank(M) = exp(−Σ_i p_i log p_i)``; ``erank(I_D) = D``, ``erank`` of a rank-1 matrix is 1. The singular
  spectrum of representation matrices is the quantity of EEO-TFV Figs. 2–3.

- Trained weights and Proposition 5's assumption: :func:`score_weights_psd` measures how far ``M = W_Q W_Kᵀ`` is
  from symmetric (``‖M − Mᵀ‖_F / ‖M‖_F``) and from PSD (smallest eigenvalue of its symmetric part over ``‖M‖₂``);
  :func:`model_proposition5` evaluates both sides on a model's own (RevIN-normalised) inputs, biases included
  through the augmentation ``X̃ = [X, 1]``, ``W̃ = [W; bᵀ]`` (so ``X̃ W̃_Q W̃_Kᵀ X̃ᵀ`` *is* the model's score matrix).
- Last-layer representation (EEO-TFV §4.2–4.3, Figs. 2–3): :func:`head_representation` returns what the
  channel transformer's linear head reads, ``X + A(X) X W_V W_O`` (Eq. 4's bracket), one row per (window, channel).

Matrices are the last two dimensions of a tensor; leading dimensions are batch dimensions. Singular values are
computed in float64. The ``*_callback`` factories build trainer callbacks ``callback(model, epoch, splits) ->
dict[str, float]`` (see ARCHITECTURE.md, Trainer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from flatcast.utils import eval_mode, model_device

__all__ = [
    "attention_entropy",
    "nuclear_norm",
    "proposition5_sides",
    "effective_rank",
    "singular_spectrum",
    "collect_attention",
    "attention_entropy_callback",
    "attention_nuclear_norm_callback",
    "sharpness_callback",
    "effective_rank_callback",
    "score_weights_psd",
    "augmented_score_weights",
    "model_proposition5",
    "head_representation",
    "proposition5_callback",
    "representation_rank_callback",
]

_REDUCTIONS = ("mean", "none")


def _as_matrices(M, name: str) -> torch.Tensor:
    if isinstance(M, np.ndarray):
        M = torch.from_numpy(M)
    if not isinstance(M, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(M).__name__}")
    if M.dim() < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (…, rows, cols), got shape {tuple(M.shape)}")
    if M.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(M.shape)})")
    if not torch.isfinite(M).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return M.detach().to(torch.float64)


def _reduce(values: torch.Tensor, reduce: str):
    if reduce == "mean":
        return float(values.mean())
    return values


def _check_reduce(reduce: str) -> None:
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}")


# --------------------------------------------------------------------------------------------------- metrics
def attention_entropy(A, reduce: str = "mean", atol: float = 1e-3):
    """Mean row-wise Shannon entropy (nats) of attention matrices ``A`` (SAMformer Fig. 3b).

    ``A``: ``(D, D)`` or ``(B, D, D)`` (any leading dimensions), each row a probability vector (checked to
    ``atol``). Per matrix: ``(1/D) Σ_i −Σ_j A_ij log A_ij`` with ``0 log 0 = 0``. ``reduce="none"`` returns a
    float64 tensor of the leading shape (``(B,)``, or 0-d for one matrix); ``reduce="mean"`` the float average.
    """
    _check_reduce(reduce)
    A = _as_matrices(A, "A")
    if (A < -atol).any():
        raise ValueError(f"A has negative entries (min {float(A.min()):.3g}): not an attention matrix")
    row_sums = A.sum(dim=-1)
    worst = float((row_sums - 1).abs().max())
    if worst > atol:
        raise ValueError(f"rows of A must sum to 1 (row-stochastic attention); worst deviation {worst:.3g}")
    A = A.clamp_min(0.0)
    per_row = -torch.special.xlogy(A, A).sum(dim=-1)
    return _reduce(per_row.mean(dim=-1), reduce)


def nuclear_norm(A, reduce: str = "mean"):
    """Nuclear norm ``‖A‖_* = Σ_i σ_i(A)`` of each matrix (SAMformer Fig. 7); per matrix (``"none"``) or mean."""
    _check_reduce(reduce)
    A = _as_matrices(A, "A")
    return _reduce(torch.linalg.matrix_norm(A, ord="nuc"), reduce)


def proposition5_sides(X, W_Q, W_K) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides of SAMformer Proposition 5: ``(‖X W_Q W_Kᵀ Xᵀ‖_*, ‖W_Q W_Kᵀ‖₂ ‖X‖_F²)``.

    ``X``: ``(D, L)`` or ``(B, D, L)`` (channels × look-back, as the model's input), ``W_Q``, ``W_K``: ``(L, d)``.
    Returns two float64 tensors of the leading shape of ``X`` (0-d for a single ``X``); ``lhs ≤ rhs``.
    """
    X = _as_matrices(X, "X")
    W_Q = _as_matrices(W_Q, "W_Q")
    W_K = _as_matrices(W_K, "W_K")
    if W_Q.dim() != 2 or W_K.dim() != 2 or W_Q.shape != W_K.shape:
        raise ValueError(f"W_Q and W_K must be 2-D of the same shape (L, d), got {tuple(W_Q.shape)} and "
                         f"{tuple(W_K.shape)}")
    if X.shape[-1] != W_Q.shape[0]:
        raise ValueError(f"X has look-back {X.shape[-1]} (last dim) but W_Q has {W_Q.shape[0]} rows")
    score_weights = W_Q @ W_K.T
    scores = X @ score_weights @ X.transpose(-1, -2)
    lhs = torch.linalg.matrix_norm(scores, ord="nuc")
    rhs = torch.linalg.matrix_norm(score_weights, ord=2) * torch.linalg.matrix_norm(X, ord="fro") ** 2
    return lhs, rhs


def singular_spectrum(M, normalize: bool | str = True) -> torch.Tensor:
    """Singular values of each matrix in decreasing order, float64, shape ``(…, min(rows, cols))``.

    ``normalize``: ``True`` or ``"sum"`` → divided by their sum (the distribution ``p`` of the effective rank);
    ``"max"`` → divided by the largest; ``False`` → raw. Normalising a zero matrix raises ``ValueError``.
    """
    if normalize not in (True, False, "sum", "max"):
        raise ValueError(f"normalize must be True, False, 'sum' or 'max', got {normalize!r}")
    M = _as_matrices(M, "M")
    sigma = torch.linalg.svdvals(M)
    if normalize is False:
        return sigma
    denominator = sigma[..., :1] if normalize == "max" else sigma.sum(dim=-1, keepdim=True)
    if (denominator == 0).any():
        raise ValueError("cannot normalise the singular spectrum of a zero matrix")
    return sigma / denominator


def effective_rank(M) -> torch.Tensor:
    """Effective rank of Roy & Vetterli (2007): ``exp(−Σ_i p_i log p_i)``, ``p_i = σ_i / Σ_j σ_j``.

    Lies in ``[1, min(rows, cols)]``: ``D`` for ``I_D`` (or any matrix with equal singular values), 1 for rank 1.
    ``M``: ``(rows, cols)`` or batched ``(…, rows, cols)``; returns a float64 tensor of the leading shape
    (0-d for one matrix; ``float(...)`` it). The effective rank of a zero matrix is undefined: ``ValueError``.
    """
    p = singular_spectrum(M, normalize="sum")
    entropy = -torch.special.xlogy(p, p).sum(dim=-1)
    return torch.exp(entropy)


# ----------------------------------------------------------------------------------------------- callbacks
def _get_split(splits, split: str):
    windows = getattr(splits, split, None)
    if windows is None:
        raise KeyError(f"splits has no split {split!r} (expected 'train', 'val' or 'test')")
    return windows


def _check_positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def collect_attention(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Run ``model`` (eval mode, no grad) on ``x`` batch by batch and stack ``model.last_attention`` (CPU)."""
    device = model_device(model)
    pieces = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            model(x[start : start + batch_size].to(device))
            attention = getattr(model, "last_attention", None)
            if not isinstance(attention, torch.Tensor):
                raise AttributeError(f"{type(model).__name__} has no tensor `last_attention` after forward: "
                                     "attention diagnostics need an attention model (e.g. ChannelTransformer)")
            pieces.append(attention.detach().cpu())
    return torch.cat(pieces)


def _attention_measure_callback(measure: Callable[[torch.Tensor], float], n_samples: int, split: str,
                                batch_size: int, key: str) -> Callable:
    n_samples = _check_positive(n_samples, "n_samples")
    batch_size = _check_positive(batch_size, "batch_size")

    def callback(model: nn.Module, epoch: int, splits) -> dict[str, float]:
        x = _get_split(splits, split).x[:n_samples]
        return {key: measure(collect_attention(model, x, batch_size))}

    return callback


def attention_entropy_callback(n_samples: int = 256, split: str = "val", batch_size: int = 256,
                               key: str = "attention_entropy") -> Callable:
    """Trainer callback: mean attention entropy on the first ``n_samples`` windows of ``split`` → ``{key: float}``."""
    return _attention_measure_callback(attention_entropy, n_samples, split, batch_size, key)


def attention_nuclear_norm_callback(n_samples: int = 256, split: str = "val", batch_size: int = 256,
                                    key: str = "attention_nuclear_norm") -> Callable:
    """Trainer callback: mean nuclear norm of the attention on the first ``n_samples`` windows → ``{key: float}``."""
    return _attention_measure_callback(nuclear_norm, n_samples, split, batch_size, key)


def sharpness_callback(n_iter: int = 20, n_samples: int = 256, split: str = "train",
                       params: str | Callable[[nn.Module], Sequence[torch.Tensor]] = "all",
                       loss_fn=None, tol: float = 1e-4, seed: int = 0, batch_size: int = 256,
                       key: str = "lambda_max") -> Callable:
    """Trainer callback: Hessian λmax (SAMformer Fig. 3b) on a fixed subset of ``n_samples`` windows → ``{key}``.

    The subset is drawn once per call from ``seed`` (a sorted random sample without replacement, the same at
    every epoch). ``params``: ``"all"`` (every trainable parameter), ``"attention"``
    (``model.attention_parameters()``) or a callable ``model -> list of parameters``. See
    :func:`flatcast.diagnostics.hessian.top_eigenvalue` for ``n_iter``, ``tol``, ``loss_fn``.
    """
    from .hessian import top_eigenvalue

    n_iter = _check_positive(n_iter, "n_iter")
    n_samples = _check_positive(n_samples, "n_samples")
    if not (params in ("all", "attention") or callable(params)):
        raise ValueError(f"params must be 'all', 'attention' or a callable model -> parameters, got {params!r}")

    def callback(model: nn.Module, epoch: int, splits) -> dict[str, float]:
        windows = _get_split(splits, split)
        n = len(windows)
        generator = torch.Generator().manual_seed(int(seed))
        index = torch.sort(torch.randperm(n, generator=generator)[: min(n_samples, n)]).values
        data = (windows.x[index], windows.y[index])
        if params == "all":
            chosen = None
        elif params == "attention":
            if not callable(getattr(model, "attention_parameters", None)):
                raise AttributeError(f"{type(model).__name__} has no attention_parameters() for params='attention'")
            chosen = list(model.attention_parameters())
        else:
            chosen = list(params(model))
        value, _ = top_eigenvalue(model, data, params=chosen, loss_fn=loss_fn, n_iter=n_iter, tol=tol, seed=seed,
                                  batch_size=batch_size)
        return {key: value}

    return callback


def effective_rank_callback(representation_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                            n_samples: int = 256, split: str = "val", n_singular_values: int = 0,
                            key: str = "effective_rank") -> Callable:
    """Trainer callback: effective rank (and leading singular spectrum) of a representation (EEO Figs. 2–3).

    ``representation_fn(model, x) -> tensor`` is called in eval mode without gradients on the first
    ``n_samples`` windows of ``split``. A 2-D result ``(N, F)`` is one representation matrix (samples × features);
    a ≥3-D result is a batch of matrices whose effective ranks are averaged. Returns ``{key: float}`` plus, when
    ``n_singular_values > 0``, ``{f"{key}_sv{i}": σ_i / Σσ}`` for ``i = 1..n_singular_values`` (batch-averaged;
    NaN beyond the available number of singular values).
    """
    if not callable(representation_fn):
        raise TypeError(f"representation_fn must be callable (model, x) -> tensor, got "
                        f"{type(representation_fn).__name__}")
    n_samples = _check_positive(n_samples, "n_samples")
    if isinstance(n_singular_values, bool) or not isinstance(n_singular_values, int) or n_singular_values < 0:
        raise ValueError(f"n_singular_values must be a non-negative integer, got {n_singular_values!r}")

    def callback(model: nn.Module, epoch: int, splits) -> dict[str, float]:
        x = _get_split(splits, split).x[:n_samples].to(model_device(model))
        with eval_mode(model), torch.no_grad():
            representation = representation_fn(model, x)
        out = {key: float(effective_rank(representation).mean())}
        if n_singular_values:
            spectrum = singular_spectrum(representation, normalize="sum")
            spectrum = spectrum.reshape(-1, spectrum.shape[-1]).mean(dim=0)
            for i in range(n_singular_values):
                out[f"{key}_sv{i + 1}"] = float(spectrum[i]) if i < spectrum.numel() else float("nan")
        return out

    return callback


# --------------------------------------------------------------------- Prop. 5 on trained weights (additions)
def score_weights_psd(W_Q, W_K, tol: float = 1e-6) -> dict[str, float]:
    """How far ``M = W_Q W_Kᵀ`` is from Proposition 5's assumption ``M = Mᵀ ≽ 0`` (SAMformer §2.3).

    ``W_Q``, ``W_K``: ``(L, d)``. Returns ``asymmetry = ‖M − Mᵀ‖_F / ‖M‖_F`` (0 for symmetric ``M``, √2 for
    antisymmetric), ``min_eig`` and ``max_eig``: the extreme eigenvalues of the symmetric part ``(M + Mᵀ)/2``
    divided by ``‖M‖₂`` (PSD ⇔ ``min_eig ≥ 0`` once ``M`` is symmetric), and ``symmetric_psd``: 1.0 when
    ``asymmetry ≤ tol`` and ``min_eig ≥ −tol``, else 0.0. A zero ``M`` raises ``ValueError``.
    """
    W_Q = _as_matrices(W_Q, "W_Q")
    W_K = _as_matrices(W_K, "W_K")
    if W_Q.dim() != 2 or W_K.dim() != 2 or W_Q.shape != W_K.shape:
        raise ValueError(f"W_Q and W_K must be 2-D of the same shape (L, d), got {tuple(W_Q.shape)} and "
                         f"{tuple(W_K.shape)}")
    small = _low_rank_score_factors(W_Q, W_K)
    frobenius = torch.linalg.matrix_norm(small["M"], ord="fro")
    if float(frobenius) == 0.0:
        raise ValueError("W_Q W_Kᵀ is the zero matrix: its symmetry and definiteness are undefined")
    spectral = torch.linalg.matrix_norm(small["M"], ord=2)
    asymmetry = float(torch.linalg.matrix_norm(small["M_minus_MT"], ord="fro") / frobenius)
    eigenvalues = torch.linalg.eigvalsh(small["sym"]) / spectral
    min_eig, max_eig = float(eigenvalues[0]), float(eigenvalues[-1])
    if small["rank_deficient"]:  # (M + Mᵀ)/2 also has L − 2d zero eigenvalues
        min_eig, max_eig = min(min_eig, 0.0), max(max_eig, 0.0)
    psd = asymmetry <= tol and min_eig >= -tol
    return {"asymmetry": asymmetry, "min_eig": min_eig, "max_eig": max_eig, "symmetric_psd": float(psd)}


def _low_rank_score_factors(W_Q: torch.Tensor, W_K: torch.Tensor) -> dict[str, torch.Tensor]:
    """Small matrices with the same norms/spectra as ``M = W_Q W_Kᵀ`` (L×L, rank ≤ d), without forming ``M``.

    With the thin QR ``[W_Q, W_K] = Q R`` (``Q`` with orthonormal columns, ``R = [R_Q, R_K]``), ``M = Q R_Q R_Kᵀ Qᵀ``,
    so ``R_Q R_Kᵀ`` has the singular values of ``M``, ``R_Q R_Kᵀ − R_K R_Qᵀ`` those of ``M − Mᵀ``, and the symmetric
    ``(R_Q R_Kᵀ + R_K R_Qᵀ)/2`` the non-zero eigenvalues of ``(M + Mᵀ)/2`` (plus ``L − 2d`` zeros when ``L > 2d``).
    """
    d = W_Q.shape[1]
    Q, R = torch.linalg.qr(torch.cat([W_Q, W_K], dim=1))
    R_Q, R_K = R[:, :d], R[:, d:]
    M = R_Q @ R_K.T
    return {"M": M, "M_minus_MT": M - M.T, "sym": (M + M.T) / 2, "rank_deficient": W_Q.shape[0] > Q.shape[1]}


def _layer_matrix_and_bias(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A linear layer's effective weight in the paper's ``(in, out)`` layout and its bias (σReparam resolved)."""
    effective = getattr(layer, "effective_weight", None)
    weight = effective() if callable(effective) else layer.weight
    return weight.detach().t(), (None if getattr(layer, "bias", None) is None else layer.bias.detach())


def augmented_score_weights(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W̃_Q, W̃_K)``, each ``(L + 1, d)`` (or ``(L, d)`` without biases): the model's query/key maps with their
    biases as an extra last row, so that ``[X, 1] W̃_Q = X W_Q + 1 b_Qᵀ`` are exactly the model's queries.

    ``model`` must have ``query`` and ``key`` linear layers (a learned/random :class:`ChannelTransformer`)."""
    query, key = getattr(model, "query", None), getattr(model, "key", None)
    if query is None or key is None:
        raise AttributeError(f"{type(model).__name__} has no query/key maps (identity attention has no W_Q W_Kᵀ)")
    pieces = []
    for layer in (query, key):
        weight, bias = _layer_matrix_and_bias(layer)
        pieces.append(weight if bias is None else torch.cat([weight, bias[None, :]], dim=0))
    if (pieces[0].shape[0] == pieces[1].shape[0] - 1) or (pieces[1].shape[0] == pieces[0].shape[0] - 1):
        raise ValueError("query and key must both have biases or both have none")
    return pieces[0], pieces[1]


def _model_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The token matrices the attention of a ChannelTransformer sees (RevIN-normalised; temporal: transposed)."""
    normalise, tokens = getattr(model, "_normalized", None), getattr(model, "_tokens", None)
    if not (callable(normalise) and callable(tokens)):
        raise AttributeError(f"{type(model).__name__} is not a ChannelTransformer (no _normalized/_tokens)")
    return tokens(normalise(x))


def model_proposition5(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Proposition 5 (SAMformer §2.3, App. E.3) on a trained model's own inputs ``x`` ``(B, D, L)``, per window.

    With the biases folded in (``X̃ = [X, 1]``, :func:`augmented_score_weights`), ``X̃ W̃_Q W̃_Kᵀ X̃ᵀ`` is exactly the
    model's score matrix before the ``1/√d_m`` scale and the softmax. Returns float64 tensors ``(B,)``:
    ``lhs = ‖X̃ W̃_Q W̃_Kᵀ X̃ᵀ‖_*``, ``rhs = ‖W̃_Q W̃_Kᵀ‖₂ ‖X̃‖_F²`` (``lhs ≤ rhs`` for *any* weights, by Hölder)
    and ``attention_nuclear_norm = ‖A(X)‖_*``, the quantity SAMformer Fig. 7 plots.
    """
    device = model_device(model)
    W_Q, W_K = augmented_score_weights(model)
    W_Q, W_K = W_Q.to(torch.float64).cpu(), W_K.to(torch.float64).cpu()
    spectral = torch.linalg.matrix_norm(_low_rank_score_factors(W_Q, W_K)["M"], ord=2)  # ‖W̃_Q W̃_Kᵀ‖₂
    lhs, rhs, nuclear = [], [], []
    with eval_mode(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device)
            tokens = _model_tokens(model, xb).to(torch.float64).cpu()
            if W_Q.shape[0] == tokens.shape[-1] + 1:
                ones = torch.ones(*tokens.shape[:-1], 1, dtype=tokens.dtype)
                tokens = torch.cat([tokens, ones], dim=-1)
            elif W_Q.shape[0] != tokens.shape[-1]:
                raise ValueError(f"W_Q has {W_Q.shape[0]} rows but the tokens have width {tokens.shape[-1]}")
            scores = (tokens @ W_Q) @ (tokens @ W_K).transpose(-1, -2)  # X̃ W̃_Q W̃_Kᵀ X̃ᵀ without the L×L product
            lhs.append(torch.linalg.matrix_norm(scores, ord="nuc"))
            rhs.append(spectral * torch.linalg.matrix_norm(tokens, ord="fro") ** 2)
            nuclear.append(nuclear_norm(model.attention_scores(xb).cpu(), reduce="none"))
    return {"lhs": torch.cat(lhs), "rhs": torch.cat(rhs), "attention_nuclear_norm": torch.cat(nuclear)}


def head_representation(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The last-layer representation of a channel transformer: the input of its linear head ``W`` (Eq. 4's
    ``X + A(X) X W_V W_O``, RevIN-normalised), captured with a forward pre-hook on ``model.head``.

    Returns ``(B · D, L)`` float64 on the CPU: one row per (window, channel) token, the "samples × features"
    representation matrix whose singular spectrum EEO-TFV §4.3 (Fig. 3) plots.
    """
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise AttributeError(f"{type(model).__name__} has no `head` module to read the last-layer representation")
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().cpu()))
    device = model_device(model)
    try:
        with eval_mode(model), torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                model(x[start : start + batch_size].to(device))
    finally:
        handle.remove()
    representation = torch.cat(captured).to(torch.float64)
    return representation.reshape(-1, representation.shape[-1])


def proposition5_callback(n_samples: int = 256, split: str = "val", batch_size: int = 256) -> Callable:
    """Trainer callback: Proposition 5 along training on the first ``n_samples`` windows of ``split``.

    Returns the means over windows of ``prop5_lhs``, ``prop5_rhs`` and ``attention_nuclear_norm``
    (:func:`model_proposition5`), plus ``score_asymmetry``, ``score_min_eig`` and ``score_symmetric_psd`` of
    the bias-free ``W_Q W_Kᵀ`` (:func:`score_weights_psd`), the matrix Proposition 5's assumption is about."""
    n_samples = _check_positive(n_samples, "n_samples")
    batch_size = _check_positive(batch_size, "batch_size")

    def callback(model: nn.Module, epoch: int, splits) -> dict[str, float]:
        x = _get_split(splits, split).x[:n_samples]
        sides = model_proposition5(model, x, batch_size)
        matrices = model.weight_matrices()
        check = score_weights_psd(matrices["W_Q"], matrices["W_K"])
        return {"prop5_lhs": float(sides["lhs"].mean()), "prop5_rhs": float(sides["rhs"].mean()),
                "attention_nuclear_norm": float(sides["attention_nuclear_norm"].mean()),
                "score_asymmetry": check["asymmetry"], "score_min_eig": check["min_eig"],
                "score_symmetric_psd": check["symmetric_psd"]}

    return callback


def representation_rank_callback(n_samples: int = 64, split: str = "val", batch_size: int = 256,
                                 key: str = "representation_erank") -> Callable:
    """Trainer callback: effective rank of the last-layer representation (:func:`head_representation`) on the
    first ``n_samples`` windows of ``split`` (EEO-TFV §4.2 Fig. 2's rank-collapse diagnostic) → ``{key}``."""
    n_samples = _check_positive(n_samples, "n_samples")
    batch_size = _check_positive(batch_size, "batch_size")

    def callback(model: nn.Module, epoch: int, splits) -> dict[str, float]:
        x = _get_split(splits, split).x[:n_samples]
        return {key: float(effective_rank(head_representation(model, x, batch_size)))}

    return callback

"""Point-forecast metrics on the standardised scale (SAMformer §4 and OCE-TS §5 report test MSE and MAE there)."""

from __future__ import annotations

import torch

__all__ = ["mse", "mae"]


def _check(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if pred.numel() == 0:
        raise ValueError("pred and target are empty: a metric over no element is undefined")
    return pred, target


def mse(pred, target) -> torch.Tensor:
    """Mean squared error ``mean((pred − target)²)`` over every element, as a 0-dim tensor (differentiable)."""
    pred, target = _check(pred, target)
    return torch.mean((pred - target) ** 2)


def mae(pred, target) -> torch.Tensor:
    """Mean absolute error ``mean(|pred − target|)`` over every element, as a 0-dim tensor (differentiable)."""
    pred, target = _check(pred, target)
    return torch.mean(torch.abs(pred - target))

"""Time an OCE-TS training step with the fused OCE against the plain-autograd OCE it replaces.

``python scripts/benchmark_oce_loss.py [--horizons 96 720] [--steps 3] [--repeats 2] [--threads 1]``

One step = ``MinMaxWindowOCE.training_loss`` (L = 336, 7 channels, K = 100 bins, batch 32, random walks) + backward
+ Adam, after one warm-up step. "fused" is the library's loss (:func:`flatcast.losses.oce_loss_fused`); "autograd"
is the same model with its loss computed as before, ``target_to_probs`` then
``oce_loss_from_logits(_clamped)`` through autograd. The two alternate ``--repeats`` times, so that a changing load
on a shared machine hits both. The loss values of the timed steps are printed too: they agree to float rounding.
"""

from __future__ import annotations

import argparse
import time

import torch

from flatcast.losses import oce_loss_from_logits, oce_loss_from_logits_clamped
from flatcast.models.dlinear import DLinearOCE, MinMaxWindowOCE


def _autograd_loss(model: DLinearOCE, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    with torch.no_grad():
        p = model.target_probabilities(y.to(logits.dtype))
    return (oce_loss_from_logits if model.exact_loss else oce_loss_from_logits_clamped)(p, logits)


def time_steps(horizon: int, exact: bool, fused: bool, steps: int, lookback: int = 336, channels: int = 7,
               batch: int = 32) -> tuple[float, list[float]]:
    """Seconds per step and the losses of the timed steps."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, lookback, generator=g).cumsum(-1) * 0.1
    y = x[..., -1:] + torch.randn(batch, channels, horizon, generator=g).cumsum(-1) * 0.1
    torch.manual_seed(0)
    model = MinMaxWindowOCE(lookback, horizon, channels, exact_loss=exact)
    if not fused:
        inner = model.inner
        inner.training_loss = lambda xs, ys: _autograd_loss(inner, xs, ys)  # noqa: E731  (instance override)
    opt = torch.optim.Adam(model.parameters(), lr=0.005)

    def step() -> float:
        opt.zero_grad()
        loss = model.training_loss(x, y)
        loss.backward()
        opt.step()
        return loss.item()

    step()
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    return (time.perf_counter() - start) / steps, losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[96, 720])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--exact", choices=["clamped", "exact", "both"], default="both")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    modes = {"clamped": [False], "exact": [True], "both": [False, True]}[args.exact]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} timed steps after one warm-up")
    print(f"{'H':>4} {'loss':>8} {'autograd s/step':>16} {'fused s/step':>13} {'speed-up':>9}  last loss (autograd / fused)")
    for horizon in args.horizons:
        for exact in modes:
            old, new = [], []
            for _ in range(args.repeats):
                t_old, l_old = time_steps(horizon, exact, False, args.steps)
                t_new, l_new = time_steps(horizon, exact, True, args.steps)
                old.append(t_old)
                new.append(t_new)
            label = "exact" if exact else "clamped"
            print(f"{horizon:>4} {label:>8} {min(old):>16.3f} {min(new):>13.3f} {min(old) / min(new):>8.2f}×  "
                  f"{l_old[-1]:.6g} / {l_new[-1]:.6g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The training loop shared by every chapter: :func:`fit` and :func:`evaluate`.

What it does (ARCHITECTURE.md, "Trainer" and "Optimizers"):

* **Objective.** ``model.training_loss(x, y)`` when the model defines it (e.g. the OCE loss of OCE-TS Eq. 12
  for ``DLinearOCE``), otherwise the mean squared error of ``model(x)`` against ``y`` -- the training
  objective of SAMformer (Eq. 1 of the SAMformer paper).
* **Optimizer protocol.** Per step the trainer computes the loss, calls ``backward()``, then
  ``optimizer.step(closure)``; the closure zeroes the gradients, re-evaluates the loss *on the same batch*
  and calls ``backward()``. This is what SAM needs (SAMformer Eq. 3: the second gradient is taken at the
  perturbed weights ``w + rho * g / ||g||``) and what EEO needs (same protocol plus EMA/SGLD).
  Built-in ``torch.optim`` optimizers (Adam, SGD, ...) call the closure once before touching the weights;
  for them the closure returns the loss already computed when the weights have not changed since (checked
  with the parameters' in-place version counters), so plain Adam costs one gradient evaluation per step,
  not two. ``torch.optim.LBFGS``, which moves the weights between closure calls, still gets fresh
  evaluations.
* **Gradient evaluations.** ``optimizer.grad_evals`` when the optimizer keeps that count (SAM, EEO), else the
  trainer's own count: one per step plus every closure call that actually recomputed the gradient.
* **EMA.** If the optimizer has ``ema_weights()`` (EEO), validation, callbacks and checkpointing after each
  epoch happen inside that context, so the best checkpoint holds the weights that were *evaluated* (the
  EMA weights). At the end ``finalize()`` (if present) copies the EMA into the weights, and then the best
  checkpoint is restored; the test metrics are measured on exactly the weights that gave the best
  validation MSE.
* **Early stopping** on the validation MSE with ``patience`` (``None`` disables stopping): an epoch
  improves when ``val_mse < best - min_delta``; training stops after ``patience`` epochs without
  improvement, i.e. at ``best_epoch + patience``. Only trained epochs (>= 1) are candidates for the best
  checkpoint; epoch 0 (the initialisation) is evaluated and logged but never restored.
* **Cosine annealing** (``CosineAnnealingLR`` with ``T_max=epochs``, stepped once per epoch). The ``lr``
  column of the history is the learning rate *used during* that epoch:
  ``lr_e = lr_0 (1 + cos(pi (e - 1) / epochs)) / 2`` for ``e = 1..epochs``.
* **Data on the device.** ``splits`` is moved to the device once; a batch is an index gather
  ``splits.train.x[idx]`` on the (possibly strided ``unfold``) window view, with ``idx`` a slice of a
  ``torch.randperm`` drawn each epoch from a private generator seeded with ``seed``. No Dataset/DataLoader.
* **Non-finite losses** raise ``FloatingPointError("non-finite loss ... at epoch e, step s")`` (epochs and
  steps counted from 1). On the CPU the check reads every step's loss (``.item()`` is cheap there); on an
  accelerator the per-step losses are kept in a device buffer and checked every ``_FINITE_CHECK_EVERY``
  steps and at the end of the epoch, to avoid a host sync per step -- the error still names the first bad
  step.
* **Reproducibility.** :func:`flatcast.utils.seed_everything` is called first; the model is *not*
  re-initialised (build it after seeding, or with its own seed). Same seed, same numbers on the CPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from flatcast.utils import keep_freed_memory_in_heap, model_device, resolve_device, seed_everything

__all__ = ["FitResult", "fit", "fit_many", "batched_optimizer_unsupported", "evaluate", "default_optimizer", "compute_training_loss", "TrainingStep"]

#: On a non-CPU device the finiteness of the per-step losses is checked (one host sync) every this many steps.
_FINITE_CHECK_EVERY = 50

_HISTORY_COLUMNS = ("epoch", "train_loss", "val_mse", "lr")

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
Callback = Callable[[nn.Module, int, Any], Mapping[str, Any]]


def default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """SAM around Adam with the SAMformer settings (``rho=0.7``, ``lr=1e-3``; SAMformer Eq. 3), Adam's fused kernel
    (:data:`flatcast.recipes.ADAM_KERNEL`)."""
    from flatcast.optim import SAM

    return SAM(params, rho=0.7, lr=1e-3, fused=True)


@dataclass
class FitResult:
    """What :func:`fit` returns.

    ``history`` has one row per epoch, epoch 0 being the initialisation (``train_loss`` and ``lr`` NaN), with
    columns ``epoch, train_loss, val_mse, lr`` plus one column per key returned by the callbacks.
    ``val_mse`` is the validation MSE of the returned weights (the best epoch's when the best checkpoint is
    restored), ``test_mse``/``test_mae`` are on the standardized scale, ``grad_evals`` counts gradient
    evaluations, ``n_steps`` optimizer steps and ``wall_time_s`` the whole call (training and evaluation).
    """

    history: pd.DataFrame
    test_mse: float
    test_mae: float
    val_mse: float
    best_epoch: int
    wall_time_s: float
    grad_evals: int
    n_steps: int
    model: nn.Module = field(repr=False)
    device: str = "cpu"


def compute_training_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The trainer's objective: ``model.training_loss(x, y)`` if defined, else MSE of ``model(x)`` vs ``y``."""
    hook = getattr(model, "training_loss", None)
    if callable(hook):
        return hook(x, y)
    return torch.nn.functional.mse_loss(model(x), y)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    windowset: Any,
    device: str | torch.device | None = None,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Mean squared and absolute error of the model's point forecast over every element of ``windowset``.

    Uses ``model.predict(x)`` when defined (for OCE models the expected value, OCE-TS Eq. 18), else
    ``model(x)``, in eval mode under ``torch.no_grad``, ``batch_size`` windows at a time. The errors are
    summed in float64 and divided by the total number of elements, so an uneven last batch is weighted
    correctly (the result equals the full-batch MSE/MAE). ``device=None`` uses the model's device; the
    model's train/eval mode is restored afterwards. Returns ``{"mse": float, "mae": float}``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (hasattr(windowset, "x") and hasattr(windowset, "y")):
        raise TypeError(f"windowset must have .x and .y tensors, got {type(windowset).__name__}")
    n_windows = len(windowset.x)
    if n_windows == 0:
        raise ValueError("cannot evaluate on an empty window set (0 windows)")
    target_device = model_device(model) if device is None else resolve_device(device)
    predict = getattr(model, "predict", None)
    forecast = predict if callable(predict) else model
    was_training = model.training
    model.eval()
    try:
        squared_sum = torch.zeros((), dtype=torch.float64, device=target_device)
        absolute_sum = torch.zeros((), dtype=torch.float64, device=target_device)
        n_elements = 0
        for start in range(0, n_windows, batch_size):
            x = windowset.x[start : start + batch_size].to(target_device, non_blocking=True)
            y = windowset.y[start : start + batch_size].to(target_device, non_blocking=True)
            pred = forecast(x)
            if pred.shape != y.shape:
                raise ValueError(f"forecast shape {tuple(pred.shape)} does not match target shape {tuple(y.shape)}")
            error = pred.to(torch.float64) - y.to(torch.float64)
            squared_sum += error.square().sum()
            absolute_sum += error.abs().sum()
            n_elements += y.numel()
    finally:
        model.train(was_training)
    return {"mse": squared_sum.item() / n_elements, "mae": absolute_sum.item() / n_elements}


class TrainingStep:
    """One optimizer step of the trainer's protocol on a batch (ARCHITECTURE.md, "Optimizers").

    ``step(xb, yb)`` zeroes the gradients, computes ``loss = compute_training_loss(model, xb, yb)``, calls
    ``backward()`` and ``optimizer.step(closure)``; the closure zeroes the gradients, re-evaluates the loss
    on the same batch at the optimizer's current weights (for SAM: the perturbed weights of SAMformer Eq. 3)
    and calls ``backward()``. For built-in ``torch.optim`` optimizers the closure reuses the loss and
    gradients already computed when no parameter was modified in place since (parameter version counters),
    so plain Adam costs one gradient evaluation per step. Returns the detached loss of the first evaluation
    (the loss at the weights before the step). ``grad_evals`` counts the gradient evaluations actually made.
    Used by :func:`fit` and by ``scripts/benchmark_training.py`` so both time the same code.

    For SAMformer's channel transformer with learned attention and the MSE objective (``closed_form=None``:
    whenever :func:`flatcast.models.channel_gradient.closed_form_unsupported` allows it) the loss and its
    gradient come from :func:`flatcast.models.channel_gradient.model_loss_and_gradient`, the gradient derived by
    hand (the same numbers as autograd to float rounding, without building a graph), and SAM's second evaluation
    reuses the batch's RevIN statistics. ``closed_form=False`` forces autograd; ``True`` raises if not possible.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, closed_form: bool | None = None):
        from flatcast.models.channel_gradient import closed_form_unsupported

        self.model, self.optimizer = model, optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.reuse_unchanged = type(optimizer).__module__.startswith("torch.optim")
        self.grad_evals = 0
        reason = closed_form_unsupported(model)
        if closed_form and reason is not None:
            raise ValueError(f"TrainingStep(closed_form=True) cannot be used here: {reason}")
        self.closed_form = reason is None if closed_form is None else bool(closed_form)

    def _loss_and_gradient(self, xb: torch.Tensor, yb: torch.Tensor, statistics: Any) -> tuple[torch.Tensor, Any]:
        """The training loss at the current weights, with its gradient in every ``.grad`` (replaced, not added)."""
        if self.closed_form:
            from flatcast.models.channel_gradient import model_loss_and_gradient

            return model_loss_and_gradient(self.model, xb, yb, statistics)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = compute_training_loss(self.model, xb, yb)
            loss.backward()
        return loss.detach(), None

    def _versions(self) -> list[int]:
        return [p._version for p in self.params]

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        first_loss, statistics = self._loss_and_gradient(xb, yb, None)
        self.grad_evals += 1
        latest = {"loss": first_loss, "versions": self._versions()}

        def closure() -> torch.Tensor:
            if self.reuse_unchanged and latest["versions"] == self._versions():
                return latest["loss"]  # weights unchanged since the last backward: the gradients are current
            recomputed, _ = self._loss_and_gradient(xb, yb, statistics)  # same batch: same RevIN statistics
            self.grad_evals += 1
            latest["loss"], latest["versions"] = recomputed, self._versions()
            return recomputed

        self.optimizer.step(closure)
        return first_loss


class BatchedTrainingStep:
    """One optimizer step of :func:`fit_many`: k members of a :class:`flatcast.batched.BatchedChannelTransformer`,
    each on its own batch (``xb`` ``(k, B, D, L)``, ``yb`` ``(k, B, D, H)``).

    The loss is the sum of the members' MSEs, so each member's slice of the gradient is that of its own loss; its
    gradient comes from the hand-derived gradient when the model allows it (``net.closed_form``), else from
    autograd. SAM (made per member) takes its perturbed second evaluation through the closure; a plain
    elementwise optimizer steps once. Returns the members' losses ``(k,)`` before the step. Used by
    :func:`fit_many` and by ``scripts/benchmark_training.py``, so both time the same code.
    """

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer):
        from flatcast.optim import SAM

        self.net, self.optimizer = net, optimizer
        self.is_sam = isinstance(optimizer, SAM)

    def _losses(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        net = self.net
        if net.closed_form:
            return net.member_losses_and_gradient(xb, yb)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            losses = net.member_losses(xb, yb)
            losses.sum().backward()
        return losses.detach()

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        first_losses = self._losses(xb, yb)
        if self.is_sam:
            self.optimizer.step(lambda: self._losses(xb, yb))
        else:
            self.optimizer.step()
        return first_losses


def single_run_step(model: nn.Module, optimizer: OptimizerFactory) -> tuple[Any, torch.optim.Optimizer]:
    """The step :func:`fit` takes for ``model`` under ``optimizer`` (a factory), outside of ``fit``: ``(step,
    optimizer)`` with ``step(xb, yb)`` one optimizer step on a batch ``(B, D, L)``, ``(B, D, H)`` returning its
    loss. A one-member :class:`BatchedTrainingStep` where ``fit`` batches the model (:func:`_one_member_plan`;
    the model's weights are then updated in a flat copy, not in ``model`` itself), else a :class:`TrainingStep`.
    Used by ``scripts/benchmark_training.py`` to time exactly fit's step."""
    plan = _one_member_plan(model, optimizer)
    if plan is None:
        opt = optimizer(model.parameters())
        return TrainingStep(model, opt), opt
    from flatcast.batched import BatchedChannelTransformer

    factory, member_rho, _ = plan
    net = BatchedChannelTransformer([model]).to(model_device(model))
    net.train()
    opt = _member_optimizer(factory, [net.flat], 1, member_rho)
    batched_step = BatchedTrainingStep(net, opt)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return batched_step(xb.unsqueeze(0), yb.unsqueeze(0))[0]

    return step, opt


def _move_splits(splits: Any, device: torch.device) -> Any:
    """``splits.to(device)`` (the storage moves once); falls back to moving each window set."""
    mover = getattr(splits, "to", None)
    if callable(mover):
        moved = mover(device)
        return splits if moved is None else moved
    for part in ("train", "val", "test"):
        moved = getattr(splits, part).to(device)
        if moved is not None:
            setattr(splits, part, moved)
    return splits


def _validate_fit_arguments(
    model, splits, optimizer, epochs, batch_size, patience, seed, callbacks, max_train_batches,
    eval_batch_size, min_delta,
) -> tuple[Callback, ...]:
    def is_int(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameters")
    for part in ("train", "val", "test"):
        windows = getattr(splits, part, None)
        if windows is None or not hasattr(windows, "x") or not hasattr(windows, "y"):
            raise TypeError(f"splits must have .train/.val/.test window sets with .x and .y; {part!r} is missing")
        if len(windows.x) == 0:
            raise ValueError(f"splits.{part} is empty (0 windows)")
    if not callable(optimizer) or isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a factory params -> torch.optim.Optimizer (e.g. lambda p: SAM(p, rho=0.7)), "
            f"got {optimizer!r}"
        )
    if not is_int(epochs) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if patience is not None and (not is_int(patience) or patience < 1):
        raise ValueError(f"patience must be an integer >= 1 or None (no early stopping), got {patience!r}")
    if not is_int(seed):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if max_train_batches is not None and (not is_int(max_train_batches) or max_train_batches < 1):
        raise ValueError(f"max_train_batches must be an integer >= 1 or None, got {max_train_batches!r}")
    if not is_int(eval_batch_size) or eval_batch_size < 1:
        raise ValueError(f"eval_batch_size must be an integer >= 1, got {eval_batch_size!r}")
    if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or not min_delta >= 0:
        raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
    if callable(callbacks):
        callbacks = (callbacks,)
    callbacks = tuple(callbacks)
    for callback in callbacks:
        if not callable(callback):
            raise TypeError(f"every callback must be callable, got {callback!r}")
    return callbacks


def _run_callbacks(callbacks: tuple[Callback, ...], model: nn.Module, epoch: int, splits: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for callback in callbacks:
        values = callback(model, epoch, splits)
        if not isinstance(values, Mapping):
            raise TypeError(f"callback {callback!r} must return a dict of column -> value, got {type(values).__name__}")
        for key, value in values.items():
            if key in _HISTORY_COLUMNS:
                raise ValueError(f"callback column {key!r} clashes with a trainer column {_HISTORY_COLUMNS}")
            if key in row:
                raise ValueError(f"callback column {key!r} is returned by two callbacks")
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            row[key] = value
    return row


def _check_every_step(device: torch.device) -> bool:
    """Whether the non-finite-loss check reads every step's loss (CPU) or is deferred (accelerators)."""
    return device.type == "cpu"


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def fit(
    model: nn.Module,
    splits: Any,
    optimizer: OptimizerFactory = default_optimizer,
    epochs: int = 100,
    batch_size: int = 32,
    patience: int | None = 5,
    cosine: bool = True,
    seed: int = 0,
    device: str | torch.device = "auto",
    callbacks: Iterable[Callback] = (),
    progress: bool = False,
    max_train_batches: int | None = None,
    eval_batch_size: int = 1024,
    min_delta: float = 0.0,
    restore_best: bool = True,
    flat_weights: bool | None = None,
) -> FitResult:
    """Train ``model`` on ``splits.train``, early-stop on ``splits.val``, report on ``splits.test``.

    ``optimizer`` is a factory ``params -> torch.optim.Optimizer`` (default: SAM with ``rho=0.7``,
    ``lr=1e-3``, SAMformer Eq. 3). ``callbacks`` are ``callback(model, epoch, splits) -> dict`` called at
    epoch 0 (the initialisation) and after every epoch; their keys become history columns and their
    exceptions propagate. ``max_train_batches`` caps the optimizer steps per epoch (quick profiles);
    ``restore_best=False`` keeps the last weights instead of the best checkpoint. See the module docstring
    for the optimizer/EMA protocol, early stopping, the learning-rate schedule and the NaN check.

    ``flat_weights=None`` (default) trains a SAMformer-style channel transformer with the hand-derived gradient
    under Adam/AdamW/SGD/SAM as a one-member :func:`fit_many` batch (:func:`_one_member_plan`: the same steps,
    with every weight in one flat parameter, which is faster on a CPU); ``False`` always runs this function's
    own loop over the model's parameters (the reference the tests compare the batched trainer with).
    """
    callbacks = _validate_fit_arguments(
        model, splits, optimizer, epochs, batch_size, patience, seed, callbacks, max_train_batches,
        eval_batch_size, min_delta,
    )
    target_device = resolve_device(device)
    if flat_weights not in (None, False):
        raise ValueError(f"flat_weights must be None (automatic) or False, got {flat_weights!r}")
    plan = None if flat_weights is False else _one_member_plan(model, optimizer)
    if plan is not None:  # the same training, with the weights as one flat parameter (faster; see below)
        from flatcast.batched import BatchedChannelTransformer

        return _fit_batched([model], splits, plan, epochs, batch_size, patience, cosine, [int(seed)],
                            target_device, callbacks, progress, max_train_batches, eval_batch_size, min_delta,
                            restore_best, BatchedChannelTransformer)[0]
    keep_freed_memory_in_heap()
    start_time = time.perf_counter()
    shuffle_generator = seed_everything(int(seed))

    model.to(target_device)
    splits = _move_splits(splits, target_device)
    train_x, train_y = splits.train.x, splits.train.y
    n_train = len(train_x)

    opt = optimizer(model.parameters())
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"the optimizer factory must return a torch.optim.Optimizer, got {type(opt).__name__}")
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs) if cosine else None
    ema_context = getattr(opt, "ema_weights", None)
    ema_context = ema_context if callable(ema_context) else None
    training_step = TrainingStep(model, opt)

    # --- epoch 0: the initialisation (plain weights: no EMA exists yet) ---
    history: list[dict[str, Any]] = []
    init_val = evaluate(model, splits.val, batch_size=eval_batch_size)["mse"]
    row = {"epoch": 0, "train_loss": math.nan, "val_mse": init_val, "lr": math.nan}
    row.update(_run_callbacks(callbacks, model, 0, splits))
    history.append(row)

    best_val, best_epoch, best_state = math.inf, 0, None
    epochs_without_improvement = 0
    n_steps = 0
    steps_per_epoch = math.ceil(n_train / batch_size)
    if max_train_batches is not None:
        steps_per_epoch = min(steps_per_epoch, max_train_batches)
    on_cpu = _check_every_step(target_device)

    epoch_iterator: Iterable[int] = range(1, epochs + 1)
    progress_bar = None
    if progress:
        from tqdm.auto import tqdm

        progress_bar = tqdm(epoch_iterator, total=epochs, desc="epochs")
        epoch_iterator = progress_bar

    for epoch in epoch_iterator:
        model.train()
        lr_used = float(opt.param_groups[0]["lr"])
        permutation = torch.randperm(n_train, generator=shuffle_generator).to(target_device)
        step_losses = None if on_cpu else torch.zeros(steps_per_epoch, device=target_device)
        weighted_loss_sum = torch.zeros((), dtype=torch.float64, device=target_device)
        n_seen = 0
        checked_up_to = 0

        def raise_if_non_finite(upto: int) -> None:
            nonlocal checked_up_to
            losses = step_losses[checked_up_to:upto]
            if not bool(torch.isfinite(losses).all()):
                bad = int((~torch.isfinite(losses)).nonzero()[0, 0]) + checked_up_to
                raise FloatingPointError(
                    f"non-finite loss {step_losses[bad].item()} at epoch {epoch}, step {bad + 1}"
                )
            checked_up_to = upto

        for step in range(steps_per_epoch):
            idx = permutation[step * batch_size : (step + 1) * batch_size]
            xb, yb = train_x[idx], train_y[idx]
            batch_loss = training_step(xb, yb)
            if on_cpu:
                value = batch_loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"non-finite loss {value} at epoch {epoch}, step {step + 1}")
            else:
                step_losses[step] = batch_loss
                if (step + 1) % _FINITE_CHECK_EVERY == 0:
                    raise_if_non_finite(step + 1)
            weighted_loss_sum += batch_loss.to(torch.float64) * len(idx)
            n_seen += len(idx)
            n_steps += 1
        if not on_cpu:
            raise_if_non_finite(steps_per_epoch)
        if scheduler is not None:
            scheduler.step()
        train_loss = weighted_loss_sum.item() / n_seen

        # --- validation, callbacks and checkpoint on the evaluated weights (EMA weights when present) ---
        with ema_context() if ema_context is not None else contextlib.nullcontext():
            val_mse = evaluate(model, splits.val, batch_size=eval_batch_size)["mse"]
            row = {"epoch": epoch, "train_loss": train_loss, "val_mse": val_mse, "lr": lr_used}
            row.update(_run_callbacks(callbacks, model, epoch, splits))
            improved = val_mse < best_val - min_delta
            if improved:
                best_val, best_epoch = val_mse, epoch
                if restore_best:
                    best_state = _snapshot(model)
        history.append(row)
        epochs_without_improvement = 0 if improved else epochs_without_improvement + 1
        if progress_bar is not None:
            progress_bar.set_postfix(train_loss=f"{train_loss:.4g}", val_mse=f"{val_mse:.4g}", best=best_epoch)
        if patience is not None and epochs_without_improvement >= patience:
            break
    if progress_bar is not None:
        progress_bar.close()

    finalize = getattr(opt, "finalize", None)
    if callable(finalize):
        finalize()
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
        final_val = best_val
    else:
        final_val = evaluate(model, splits.val, batch_size=eval_batch_size)["mse"]
    test_metrics = evaluate(model, splits.test, batch_size=eval_batch_size)
    model.eval()
    grad_evals = int(getattr(opt, "grad_evals", training_step.grad_evals))
    if target_device.type == "cuda":
        torch.cuda.synchronize(target_device)
    wall_time = time.perf_counter() - start_time

    return FitResult(
        history=pd.DataFrame(history),
        test_mse=test_metrics["mse"],
        test_mae=test_metrics["mae"],
        val_mse=final_val,
        best_epoch=best_epoch,
        wall_time_s=wall_time,
        grad_evals=grad_evals,
        n_steps=n_steps,
        model=model,
        device=str(target_device),
    )



# ================================================================================================ many runs at once
_ELEMENTWISE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def batched_optimizer_unsupported(optimizer: OptimizerFactory) -> str | None:
    """``None`` when ``optimizer`` (a factory) can train k stacked members as one model, else the reason.

    Elementwise optimizers (Adam, AdamW, SGD) act on each member's slice exactly as on the member alone; SAM
    around one of them does once its ascent is made per member (:meth:`flatcast.optim.SAM.per_member`).
    Anything else (EEO: its curvature probes, SGLD noise and EMA are global; LBFGS; custom classes) is not
    batched. The factory is called once on a probe parameter to find out which optimizer it builds.
    """
    from flatcast.optim import SAM

    probe = optimizer([nn.Parameter(torch.zeros(2, 1))])
    if type(probe) in _ELEMENTWISE_OPTIMIZERS:
        return None
    if type(probe) is SAM and type(probe.base_optimizer) in _ELEMENTWISE_OPTIMIZERS:
        return None
    name = type(probe).__name__
    if type(probe) is SAM:
        name += f" around {type(probe.base_optimizer).__name__}"
    return f"the optimizer {name} is not one the batched trainer can split per member"


def _plan_member_optimizers(optimizer: Any, k: int):
    """How k members are optimized as one: ``(reason, factory, member_rho, gradient evaluations per step of each
    member)``; ``reason`` is ``None`` when they can be batched. ``optimizer`` is one factory for every member or
    a sequence of k factories that may differ only in SAM's ρ (a plain base optimizer counts as ρ = 0: SAM with
    ρ = 0 is that optimizer number for number)."""
    from flatcast.optim import SAM

    factories = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
    for factory in factories:
        reason = batched_optimizer_unsupported(factory)
        if reason is not None:
            return reason, None, None, None
    probes = [factory([nn.Parameter(torch.zeros(2, 1))]) for factory in factories]
    if len(factories) == 1:
        return None, factories[0], None, [2 if isinstance(probes[0], SAM) else 1] * k

    def settings(probe):
        base = probe.base_optimizer if isinstance(probe, SAM) else probe
        wrapper = ("params", "rho", "adaptive", "adaptive_xi")
        return type(base), {key: value for key, value in base.param_groups[0].items() if key not in wrapper}

    first = settings(probes[0])
    for i, probe in enumerate(probes[1:], start=1):
        if settings(probe) != first:
            return (f"member {i}'s optimizer differs from member 0's in more than SAM's rho", None, None, None)
    sams = [probe for probe in probes if isinstance(probe, SAM)]
    if not sams:
        return None, factories[0], None, [1] * k
    if len({(p.param_groups[0]["adaptive"], p.param_groups[0]["adaptive_xi"]) for p in sams}) > 1:
        return "the members' SAM optimizers differ in adaptive/adaptive_xi", None, None, None
    rhos = [float(p.param_groups[0]["rho"]) if isinstance(p, SAM) else 0.0 for p in probes]
    evals = [2 if isinstance(p, SAM) else 1 for p in probes]
    return None, factories[probes.index(sams[0])], rhos, evals


def _one_member_plan(model: nn.Module, optimizer: OptimizerFactory):
    """The batched trainer's plan for training ``model`` alone, or ``None`` when :func:`fit` keeps its own loop.

    A channel transformer with the hand-derived gradient (:func:`flatcast.models.channel_gradient.
    closed_form_unsupported`) under an optimizer the batched trainer splits per member (Adam, AdamW, SGD, SAM
    around one of them) is trained as a one-member :class:`flatcast.batched.BatchedChannelTransformer`: the same
    steps (the tests compare both loops to float tolerance) with every weight in one flat parameter, so SAM's
    ascent and restore and the optimizer's update are one operation each instead of one per tensor.
    """
    from flatcast.batched import batching_unsupported
    from flatcast.models.channel_gradient import closed_form_unsupported

    if closed_form_unsupported(model) is not None or batching_unsupported([model]) is not None:
        return None
    plan = _plan_member_optimizers(optimizer, 1)
    return None if plan[0] is not None else plan[1:]


def _slice_member_state(state: Any, keep: torch.Tensor, k_old: int) -> Any:
    """Optimizer state with every per-member tensor (leading dim ``k_old``) restricted to the ``keep`` rows."""
    if isinstance(state, torch.Tensor):
        if state.ndim >= 1 and state.shape[0] == k_old:
            return state.index_select(0, keep.to(state.device)).clone()
        return state.clone()
    if isinstance(state, dict):
        return {key: _slice_member_state(value, keep, k_old) for key, value in state.items()}
    return state


def _member_optimizer(factory: OptimizerFactory, params: list[nn.Parameter], k: int,
                      rho: list[float] | None = None) -> torch.optim.Optimizer:
    from flatcast.optim import SAM

    opt = factory(params)
    if isinstance(opt, SAM):
        opt.per_member(k, rho=rho)
    return opt


def _compact_optimizer(opt, factory, net, keep: list[int], k_old: int,
                       rho: list[float] | None = None) -> torch.optim.Optimizer:
    """A new optimizer for the compacted ``net.flat`` carrying the kept members' state (Adam moments, step)."""
    keep_index = torch.as_tensor(keep, dtype=torch.long)
    saved = opt.state_dict()

    def sliced(state_dict: dict[str, Any]) -> dict[str, Any]:
        out = dict(state_dict)
        out["state"] = _slice_member_state(state_dict["state"], keep_index, k_old)
        if "base_optimizer" in out:
            out["base_optimizer"] = sliced(state_dict["base_optimizer"])
        return out

    net.select(keep)
    new = _member_optimizer(factory, [net.flat], len(keep), rho)
    new.load_state_dict(sliced(saved))
    return new


def fit_many(
    models: Iterable[nn.Module],
    splits: Any,
    optimizer: OptimizerFactory | Sequence[OptimizerFactory] = default_optimizer,
    epochs: int = 100,
    batch_size: int = 32,
    patience: int | None = 5,
    cosine: bool = True,
    seeds: Iterable[int] | None = None,
    device: str | torch.device = "auto",
    callbacks: Iterable[Callback] = (),
    progress: bool = False,
    max_train_batches: int | None = None,
    eval_batch_size: int = 1024,
    min_delta: float = 0.0,
    restore_best: bool = True,
    batched: bool | None = None,
) -> list[FitResult]:
    """Train several models of one architecture on the same splits; one :class:`FitResult` per model, in order.

    Member ``i`` is trained exactly as ``fit(models[i], splits, optimizer, ..., seed=seeds[i])`` would train it
    (its own batch order from its seed, its own early stopping, best checkpoint and history) -- to float
    tolerance, because the arithmetic runs as batched products. With ``batched=None`` (default) the members
    are trained together as one :class:`flatcast.batched.BatchedChannelTransformer` when both the models
    (:func:`flatcast.batched.batching_unsupported`) and the optimizer (:func:`batched_optimizer_unsupported`:
    Adam, AdamW, SGD, SAM around one of them) allow it, else one after the other with :func:`fit`;
    ``batched=True`` raises instead of falling back, ``batched=False`` always runs :func:`fit` per model.
    ``optimizer`` may also be a list of one factory per model that differ only in SAM's ρ (e.g. a ρ sweep, or
    SAM and plain Adam side by side: a plain base optimizer is batched as ρ = 0, which is that optimizer
    number for number, and is counted as 1 gradient evaluation per step).

    Per member: SAM's gradient norm and perturbation (``SAM.per_member``), Adam's moments, the NaN check (the
    error names the member and its seed), early stopping (a stopped member leaves the batch: the weights and
    optimizer state of the others are compacted, so it costs nothing afterwards), the best checkpoint and the
    history. ``seeds`` defaults to 0 for every member (``fit``'s default). Callbacks are called per member with
    that member's own model, holding its current weights. ``wall_time_s`` of each result is the batched call's
    wall time divided by the number of members; the history's ``val_mse`` comes from the batched evaluation,
    the returned ``val_mse``/``test_mse`` from :func:`evaluate` on the member's model.
    """
    from flatcast.batched import BatchedChannelTransformer, batching_unsupported

    models = list(models)
    if not models:
        raise ValueError("fit_many needs at least one model")
    k = len(models)
    seeds = [0] * k if seeds is None else list(seeds)
    if len(seeds) != k:
        raise ValueError(f"seeds must give one seed per model: {len(seeds)} seeds for {k} models")
    factories = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer] * k
    if len(factories) != k:
        raise ValueError(f"optimizer must be one factory or one factory per model: {len(factories)} for {k} models")
    for factory in factories:
        callbacks = _validate_fit_arguments(
            models[0], splits, factory, epochs, batch_size, patience, seeds[0], callbacks, max_train_batches,
            eval_batch_size, min_delta,
        )
    for i, (model, seed) in enumerate(zip(models, seeds)):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model {i} must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed {i} must be an integer, got {seed!r}")
    if len({id(m) for m in models}) != k:
        raise ValueError("the same model object appears twice in models")
    if batched not in (None, True, False):
        raise TypeError(f"batched must be None, True or False, got {batched!r}")
    target_device = resolve_device(device)
    reason = plan = None
    if batched is not False:
        reason = batching_unsupported(models)
        if reason is None:
            plan = _plan_member_optimizers(optimizer, k)
            reason = plan[0]
        if reason is not None and batched:
            raise ValueError(f"fit_many(batched=True) cannot batch these runs: {reason}")
    sequential_kwargs = dict(epochs=epochs, batch_size=batch_size, patience=patience,
                             cosine=cosine, device=target_device, callbacks=callbacks, progress=progress,
                             max_train_batches=max_train_batches, eval_batch_size=eval_batch_size,
                             min_delta=min_delta, restore_best=restore_best)
    if batched is False or reason is not None:
        if batched is False:  # each model through fit's own loop, not a one-member batch
            sequential_kwargs["flat_weights"] = False
        return [fit(model, splits, optimizer=factory, seed=int(seed), **sequential_kwargs)
                for model, factory, seed in zip(models, factories, seeds)]
    return _fit_batched(models, splits, plan[1:], epochs, batch_size, patience, cosine, [int(s) for s in seeds],
                        target_device, callbacks, progress, max_train_batches, eval_batch_size, min_delta,
                        restore_best, BatchedChannelTransformer)


def _fit_batched(models, splits, optimizer, epochs, batch_size, patience, cosine, seeds, target_device, callbacks,
                 progress, max_train_batches, eval_batch_size, min_delta, restore_best, batched_class):
    from flatcast.optim import SAM

    keep_freed_memory_in_heap()
    start_time = time.perf_counter()
    k = len(models)
    seed_everything(seeds[0])
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    for model in models:
        model.to(target_device)
    splits = _move_splits(splits, target_device)
    train_x, train_y = splits.train.x, splits.train.y
    n_train = len(train_x)

    optimizer, member_rho, evals_per_step = optimizer  # the plan of _plan_member_optimizers
    net = batched_class(models).to(target_device)
    net.train()
    opt = _member_optimizer(optimizer, [net.flat], k, member_rho)
    # the learning-rate schedule is fit's CosineAnnealingLR, driven on a probe optimizer (same float sequence)
    # and copied into the members' optimizer, which is rebuilt whenever members leave the batch
    probe_param = torch.zeros(1, requires_grad=True)
    lr_probe = torch.optim.SGD([probe_param], lr=float(opt.param_groups[0]["lr"]))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(lr_probe, T_max=epochs) if cosine else None

    def member_callbacks(position: int, member: int, epoch: int) -> dict[str, Any]:
        if not callbacks:
            return {}
        model = models[member]
        net.write_member(position, model)
        model.train()
        row = _run_callbacks(callbacks, model, epoch, splits)
        net.read_buffers_from(position, model)
        return row

    histories: list[list[dict[str, Any]]] = [[] for _ in range(k)]
    init_val, _ = net.evaluate_members(splits.val, eval_batch_size)
    for member in range(k):
        row = {"epoch": 0, "train_loss": math.nan, "val_mse": float(init_val[member]), "lr": math.nan}
        row.update(member_callbacks(member, member, 0))
        histories[member].append(row)

    best_val = [math.inf] * k
    best_epoch = [0] * k
    best_state: list[dict[str, torch.Tensor] | None] = [None] * k
    without_improvement = [0] * k
    n_steps = [0] * k
    active = list(range(k))  # member index of each position of the batch
    steps_per_epoch = math.ceil(n_train / batch_size)
    if max_train_batches is not None:
        steps_per_epoch = min(steps_per_epoch, max_train_batches)
    on_cpu = _check_every_step(target_device)

    training_step = BatchedTrainingStep(net, opt)

    def raise_non_finite(losses: torch.Tensor, epoch: int, step: int) -> None:
        position = int((~torch.isfinite(losses)).nonzero()[0, 0])
        member = active[position]
        raise FloatingPointError(f"non-finite loss {losses[position].item()} of member {member} (seed "
                                 f"{seeds[member]}) at epoch {epoch}, step {step}")

    epoch_iterator: Iterable[int] = range(1, epochs + 1)
    progress_bar = None
    if progress:
        from tqdm.auto import tqdm

        progress_bar = tqdm(epoch_iterator, total=epochs, desc=f"epochs ({k} members)")
        epoch_iterator = progress_bar

    for epoch in epoch_iterator:
        net.train()
        lr_used = float(lr_probe.param_groups[0]["lr"])
        for group in opt.param_groups:
            group["lr"] = lr_used
        permutations = torch.stack([torch.randperm(n_train, generator=generators[m]) for m in active])
        permutations = permutations.to(target_device)
        k_active = len(active)
        step_losses = None if on_cpu else torch.zeros(steps_per_epoch, k_active, device=target_device)
        loss_sums = torch.zeros(k_active, dtype=torch.float64, device=target_device)
        n_seen = 0
        checked_up_to = 0
        for step in range(steps_per_epoch):
            index = permutations[:, step * batch_size:(step + 1) * batch_size]
            xb, yb = train_x[index], train_y[index]
            first_losses = training_step(xb, yb)
            if on_cpu:
                if not bool(torch.isfinite(first_losses).all()):
                    raise_non_finite(first_losses, epoch, step + 1)
            else:
                step_losses[step] = first_losses
                if (step + 1) % _FINITE_CHECK_EVERY == 0 or step + 1 == steps_per_epoch:
                    window = step_losses[checked_up_to:step + 1]
                    if not bool(torch.isfinite(window).all()):
                        bad_step = int((~torch.isfinite(window)).any(dim=1).nonzero()[0, 0]) + checked_up_to
                        raise_non_finite(step_losses[bad_step], epoch, bad_step + 1)
                    checked_up_to = step + 1
            loss_sums += first_losses.to(torch.float64) * index.shape[1]
            n_seen += index.shape[1]
        if scheduler is not None:
            probe_param.grad = None
            lr_probe.step()
            scheduler.step()
        train_losses = (loss_sums / n_seen).tolist()
        val_mse, _ = net.evaluate_members(splits.val, eval_batch_size)
        stopped = []
        for position, member in enumerate(active):
            n_steps[member] += steps_per_epoch
            value = float(val_mse[position])
            row = {"epoch": epoch, "train_loss": train_losses[position], "val_mse": value, "lr": lr_used}
            row.update(member_callbacks(position, member, epoch))
            histories[member].append(row)
            if value < best_val[member] - min_delta:
                best_val[member], best_epoch[member] = value, epoch
                without_improvement[member] = 0
                if restore_best:
                    best_state[member] = net.member_state(position)
            else:
                without_improvement[member] += 1
            if patience is not None and without_improvement[member] >= patience:
                stopped.append(position)
        if progress_bar is not None:
            progress_bar.set_postfix(active=len(active) - len(stopped))
        if stopped:
            for position in stopped:
                net.write_member(position, models[active[position]])
            keep = [p for p in range(len(active)) if p not in stopped]
            active = [active[p] for p in keep]
            if not active:
                break
            opt = _compact_optimizer(opt, optimizer, net, keep, k_active,
                                     None if member_rho is None else [member_rho[m] for m in active])
            training_step.optimizer = opt
    if progress_bar is not None:
        progress_bar.close()
    for position, member in enumerate(active):
        net.write_member(position, models[member])

    if target_device.type == "cuda":
        torch.cuda.synchronize(target_device)
    results = []
    for member, model in enumerate(models):
        if restore_best and best_state[member] is not None:
            net.load_member_state(model, best_state[member])
        final_val = evaluate(model, splits.val, batch_size=eval_batch_size)["mse"]
        test_metrics = evaluate(model, splits.test, batch_size=eval_batch_size)
        model.eval()
        results.append(FitResult(
            history=pd.DataFrame(histories[member]), test_mse=test_metrics["mse"], test_mae=test_metrics["mae"],
            val_mse=final_val, best_epoch=best_epoch[member], wall_time_s=0.0,
            grad_evals=evals_per_step[member] * n_steps[member], n_steps=n_steps[member], model=model,
            device=str(target_device)))
    wall_time = time.perf_counter() - start_time
    for result in results:
        result.wall_time_s = wall_time / k
    return results

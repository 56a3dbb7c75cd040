"""Run a grid's unfinished cells on Ray (embedded local cluster by default), writing each result as it finishes.

Engine: Ray core tasks (``ray.init()`` starts an embedded local Ray instance with no setup;
``ray.init(address="auto" | "ray://…")`` — ``--address`` or ``RAY_ADDRESS`` — runs the same code on a cluster).
This is TFB's pattern (PVLDB 2024, ``--eval-backend ray``) plus the resume TFB lacks: the **driver** alone writes
results, atomically, keyed by the cell's identity hash (:mod:`.store`), so

* a cell whose file exists is never submitted again (no finished cell runs twice);
* killing the driver (SIGINT, SIGTERM, SIGKILL) loses only the cells that were running; Ray's process reaper
  stops the local workers with it, and the next run computes exactly the cells without a complete file;
* a failed cell records its error under ``failed/`` and the grid goes on; ``retry_failed=True`` reruns them
  (by default a cell that failed with the same identity is skipped and counted as failed).

Each task asks for ``num_cpus=1`` (and ``num_gpus=gpu_fraction`` on a GPU: several small cells share a device,
as TFB does); at most ``workers`` cells run at once, each with ``threads`` intra-op threads. ``backend="inline"``
runs the cells in the driver process (no Ray) — for debugging only; the CLI and the chapter use Ray.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .grids import Cell
from .store import ResultStore, cell_key, runner_lock

__all__ = ["run_cell", "run_cells", "RunSummary", "BACKENDS", "cell_status"]

BACKENDS = ("ray", "inline")


def _resolve_cell_fn(spec: str):
    """``"module:function?key=value&..."`` → (function, {key: value}) (the test hook of :func:`run_cells`)."""
    import importlib
    from urllib.parse import parse_qsl

    target, _, query = spec.partition("?")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name), dict(parse_qsl(query))


def run_cell(config: dict, device: str = "cpu", threads: int = 1, data_dir: str | None = None,
             cell_fn: str | None = None, command: list[str] | None = None) -> dict:
    """Train one cell (all its seeds) and return its result record (per-seed metrics, provenance).

    ``config`` is :meth:`Cell.config`. Runs in a Ray worker (or inline); it never writes to the store.
    ``cell_fn`` (``"module:function?key=value"``) replaces the training by another function of the config —
    the kill-and-resume tests use :func:`flatcast.benchmark.testing.sleepy_cell` to have cells of known length."""
    if cell_fn:
        fn, params = _resolve_cell_fn(cell_fn)
        return fn(config, **params)
    import torch

    from flatcast import recipes
    from flatcast.data import make_splits
    from flatcast.provenance import provenance
    from flatcast.utils import resolve_device

    if data_dir:
        os.environ["FLATCAST_DATA"] = data_dir
    cell = Cell(**{**config, "seeds": tuple(config["seeds"])})
    torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    start = time.perf_counter()
    splits = make_splits(cell.dataset, cell.lookback, cell.horizon)
    results = recipes.fit_any_seeds(cell.recipe, splits, list(cell.seeds), epochs=cell.epochs,
                                    patience=cell.patience, batch_size=cell.batch_size,
                                    max_train_batches=cell.max_train_batches, device=str(dev), threads=threads)
    wall = time.perf_counter() - start
    model = results[0].model
    per_seed = []
    for seed, r in zip(cell.seeds, results):
        per_seed.append({"seed": int(seed), "test_mse": float(r.test_mse), "test_mae": float(r.test_mae),
                         "val_mse": float(r.val_mse), "best_epoch": int(r.best_epoch),
                         "epochs_run": int(r.history["epoch"].max()), "wall_time_s": float(r.wall_time_s),
                         "grad_evals": int(r.grad_evals), "n_steps": int(r.n_steps)})
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"per_seed": per_seed, "recipe_settings": results[0].recipe, "n_parameters": int(n_params),
            "wall_time_s": wall, "device": str(dev),
            "provenance": provenance(dev, command=command or [sys.executable, "-m", "flatcast.benchmark", "run"])}


def _driver_command() -> list[str]:
    return [os.path.basename(sys.executable), *sys.argv] if sys.argv and sys.argv[0] else [sys.executable]


@dataclass
class RunSummary:
    total: int = 0
    done_before: int = 0
    done_now: int = 0
    failed: int = 0
    skipped_failed: int = 0
    older_code: int = 0  # of done_before: cells accepted from older code (accept_older_code=True)
    interrupted: bool = False
    wall_time_s: float = 0.0
    errors: dict = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return self.total - self.done_before - self.done_now - self.failed - self.skipped_failed


def cell_status(cells: Sequence[Cell], store: ResultStore) -> list[dict]:
    """One row per cell: ``label``, ``key``, ``state`` (done / older / failed / pending) and the stored result
    (``older``: only a result computed by other code exists, :meth:`ResultStore.older`)."""
    rows = []
    for c in cells:
        k = cell_key(c)
        res = store.get(c, k)
        state = "done" if res is not None else ("failed" if store.failure(c, k) else "pending")
        if res is None:
            older = store.older(c)
            if older is not None:
                res, state = older, "older"
        rows.append({"cell": c, "label": c.label, "key": k, "state": state, "result": res})
    return rows


class _Progress:
    """A tqdm bar over cells with done / running / failed / remaining in its postfix (ETA from tqdm)."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="cell", desc="benchmark", file=sys.stderr,
                            dynamic_ncols=True)

    def update(self, advance: int, done: int, running: int, failed: int, remaining: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"done={done} running={running} failed={failed} remaining={remaining}",
                                     refresh=advance == 0)
            if advance:
                self.bar.update(advance)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_cells(cells: Sequence[Cell], store: ResultStore | None = None, *, backend: str = "ray",
              workers: int = 1, threads: int = 1, device: str = "cpu", gpu_fraction: float = 0.0,
              retry_failed: bool = False, address: str | None = None, progress: bool = True,
              max_cells: int | None = None, on_result: Callable[[Cell, dict], None] | None = None,
              cell_fn: str | None = None, accept_older_code: bool = False) -> RunSummary:
    """Compute the cells of ``cells`` that the store does not hold yet (see the module docstring).

    ``accept_older_code=True`` counts a cell as done when the store holds it computed by other code (the same
    config, hyperparameters and data; :meth:`ResultStore.older`): for code changes that cannot move a result
    beyond float rounding, where recomputing a CPU grid would cost hours. Such cells stay labelled as computed
    by older code wherever they are shown (:func:`flatcast.experiments.benchmark.paper_results`).

    ``max_cells`` stops after that many new cells (for sessions with a time budget). Returns a
    :class:`RunSummary`. A ``KeyboardInterrupt`` (SIGINT) stops the run cleanly: finished cells are kept,
    running ones are abandoned and recomputed next time; the interrupt is re-raised."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {BACKENDS}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if address is None and not os.environ.get("RAY_ADDRESS"):
        from flatcast.utils import resolve_device

        device = str(resolve_device(device))  # an unavailable device fails here, before any cell runs
        if device.startswith("cuda") and gpu_fraction <= 0:
            gpu_fraction = 1.0 / workers  # the workers share the local GPU (Ray hides it from tasks with 0 GPUs)
    store = store or ResultStore()
    start = time.perf_counter()
    summary = RunSummary(total=len(cells))
    data_dir = os.environ.get("FLATCAST_DATA")
    cell_fn = cell_fn or os.environ.get("FLATCAST_BENCHMARK_CELL_FN") or None
    # the code a runner computes with is the code of its start (the cell keys, i.e. the code fingerprints, are
    # taken now): each result records that commit too, beside the one its worker saw when it finished
    from flatcast.provenance import runner_start

    at_start = runner_start("cpu")
    with runner_lock(store.root):
        store.clean_temporaries()
        todo: list[tuple[Cell, str]] = []
        for c in cells:
            k = cell_key(c)
            if store.has(c, k):
                summary.done_before += 1
            elif accept_older_code and store.older(c) is not None:
                summary.done_before += 1
                summary.older_code += 1
            elif store.failure(c, k) is not None and not retry_failed:
                summary.skipped_failed += 1
            else:
                todo.append((c, k))
        if max_cells is not None:
            todo = todo[:max_cells]
        bar = _Progress(summary.total, summary.done_before, progress)
        bar.update(0, summary.done_before, min(workers, len(todo)) if backend == "ray" else min(1, len(todo)),
                   summary.skipped_failed, len(todo) - (min(workers, len(todo)) if backend == "ray" else
                                                        min(1, len(todo))))
        def record(cell: Cell, key: str, result: dict | None, error: str | None, running: int = 0) -> None:
            if error is None:
                result = {**result, "provenance": {**result.get("provenance", {}), "runner_start": at_start}}
                store.put(cell, key, result)
                summary.done_now += 1
                if on_result is not None:
                    on_result(cell, result)
            else:
                store.put_failure(cell, key, error)
                summary.failed += 1
                summary.errors[cell.label] = error.strip().splitlines()[-1] if error.strip() else error
            bar.update(1, summary.done_before + summary.done_now, running, summary.failed + summary.skipped_failed,
                       summary.total - summary.done_before - summary.done_now - summary.failed
                       - summary.skipped_failed - running)

        try:
            if backend == "inline":
                for c, k in todo:
                    try:
                        res, err = run_cell(c.config(), device, threads, data_dir, cell_fn, _driver_command()), None
                    except Exception:  # noqa: BLE001 - a failed cell is recorded and the grid goes on
                        res, err = None, traceback.format_exc()
                    record(c, k, res, err)
            elif todo:
                _run_ray(todo, record, workers=workers, threads=threads, device=device,
                         gpu_fraction=gpu_fraction, address=address, data_dir=data_dir, cell_fn=cell_fn)
        except KeyboardInterrupt:
            summary.interrupted = True
            raise
        finally:
            bar.close()
            summary.wall_time_s = time.perf_counter() - start
    return summary


def _signal_handlers() -> dict:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers: dict) -> None:
    import signal

    for sig, handler in handlers.items():
        if handler is not None and signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


def _run_ray(todo, record, *, workers, threads, device, gpu_fraction, address, data_dir, cell_fn) -> None:
    import ray

    started_here = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        handlers = _signal_handlers()
        if address:
            ray.init(address=address, **kwargs)
        else:  # embedded local instance: as many CPU slots as workers, a small object store
            ray.init(num_cpus=workers, object_store_memory=80 * 1024**2, **kwargs)
        _restore_signal_handlers(handlers)  # ray.init installs its own SIGTERM handler: the driver's comes back
        started_here = True
    try:
        task = ray.remote(num_cpus=1, num_gpus=gpu_fraction, max_retries=0)(run_cell)
        pending = list(todo)
        in_flight: dict = {}
        while pending or in_flight:
            while pending and len(in_flight) < workers:
                c, k = pending.pop(0)
                in_flight[task.remote(c.config(), device, threads, data_dir, cell_fn, _driver_command())] = (c, k)
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            c, k = in_flight.pop(ref)
            try:
                res, err = ray.get(ref), None
            except Exception as exc:  # noqa: BLE001 - RayTaskError wraps the worker's traceback
                res, err = None, f"{type(exc).__name__}: {exc}"
            record(c, k, res, err, len(in_flight))
    finally:
        if started_here:
            ray.shutdown()

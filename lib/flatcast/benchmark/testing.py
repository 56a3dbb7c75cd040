"""A stand-in cell for the runner's kill-and-resume tests: it logs its start and end and sleeps.

``run_cells(..., cell_fn="flatcast.benchmark.testing:sleepy_cell?log=/path&sleep=1.5")`` (or the environment
variable ``FLATCAST_BENCHMARK_CELL_FN``) makes every cell call :func:`sleepy_cell` instead of training, so a test
can kill a real runner (and its Ray workers) at a known moment and check what was recomputed.
"""

from __future__ import annotations

import os
import time


def _append(log: str, line: str) -> None:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def sleepy_cell(config: dict, log: str, sleep: str = "1.0") -> dict:
    """Log ``start <label>``, sleep ``sleep`` seconds, log ``end <label>``; return a well-formed result record."""
    label = f"{config['dataset']}/H{config['horizon']}/{config['recipe']}"
    _append(log, f"start {label} {os.getpid()}")
    time.sleep(float(sleep))
    _append(log, f"end {label} {os.getpid()}")
    per_seed = [{"seed": s, "test_mse": 0.1 * (1 + s), "test_mae": 0.2, "val_mse": 0.1, "best_epoch": 1,
                 "epochs_run": 1, "wall_time_s": float(sleep), "grad_evals": 0, "n_steps": 0}
                for s in config["seeds"]]
    return {"per_seed": per_seed, "recipe_settings": {}, "n_parameters": 0, "wall_time_s": float(sleep),
            "device": "cpu", "provenance": {"command": "sleepy_cell"}}

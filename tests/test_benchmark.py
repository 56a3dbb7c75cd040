"""The benchmark runner: grid declarations, cell identity, the atomic store, and kill-and-resume of a real runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from flatcast.benchmark import (GRIDS, ResultStore, StoreLocked, cell_key, expand, grid, run_cells)
from flatcast.benchmark.store import runner_lock

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ grids
def test_paper_grids_have_the_papers_sizes():
    assert len(expand("samformer-table1")) == 6 * 4 * 4  # datasets × horizons × recipes
    assert len(expand("oce-table2")) == 7 * 4 * 2
    assert len(expand("eeo-table1")) == 5 * 4 * 2
    cells = expand("samformer-table1")
    assert {c.lookback for c in cells} == {512} and {c.seeds for c in cells} == {(0, 1, 2, 3, 4)}
    assert {c.batch_size for c in cells} == {32} and {c.patience for c in cells} == {5}
    ili = [c for c in expand("oce-table2") if c.dataset == "national_illness"]
    assert {c.horizon for c in ili} == {24, 36, 48, 60} and {c.lookback for c in ili} == {104}
    assert {c.lookback for c in expand("oce-table2") if c.dataset != "national_illness"} == {336}
    assert {c.epochs for c in expand("oce-table2")} == {15}
    # run order: the first cells are SAMformer Table 1 at H=96 on ETTh1
    assert cells[0].label == "ETTh1/H96/samformer" and cells[0].horizon == 96
    assert grid("samformer-table7") is GRIDS["samformer-table1"]


@pytest.mark.parametrize("kwargs, named", [
    ({"datasets": ["traffic"]}, "ETTh1"), ({"horizons": [97]}, "96"), ({"recipes": ["patchtst"]}, "samformer"),
])
def test_bad_input_fails_before_any_work_and_names_the_allowed_values(kwargs, named):
    with pytest.raises(ValueError, match=named):
        expand("samformer-table1", "paper", **kwargs)
    with pytest.raises(KeyError, match="samformer-table1"):
        expand("samformer-table99")
    with pytest.raises(ValueError, match="quick"):
        expand("samformer-table1", "fast")


def test_cli_rejects_an_unknown_dataset_before_training(tmp_path):
    out = subprocess.run([sys.executable, "-m", "flatcast.benchmark", "run", "--grid", "oce-table2",
                          "--datasets", "electricity", "--store", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "allowed values" in out.stderr and "national_illness" in out.stderr
    assert not (tmp_path / "cells").exists()


# ------------------------------------------------------------------------------------------------ identity
def test_cell_key_changes_with_every_setting_and_not_with_the_table():
    cell = expand("samformer-table1", datasets=["ETTh1"], horizons=[96], recipes=["samformer"])[0]
    key = cell_key(cell)
    assert key == cell_key(replace(cell))  # deterministic
    for change in ({"seeds": (0, 1, 2)}, {"epochs": 299}, {"batch_size": 64}, {"lookback": 336},
                   {"horizon": 192}, {"patience": None}, {"max_train_batches": 10}):
        assert cell_key(replace(cell, **change)) != key, change
    # EEO-TFV's SAMformer column is the same cell as SAMformer Table 1's: it runs once
    eeo = [c for c in expand("eeo-table1") if c.recipe == "samformer" and c.dataset == "ETTh1" and c.horizon == 96]
    assert cell_key(eeo[0]) == key
    # so are the SAMformer and Transformer cells of Tables 9–10 (samformer-table9); its other two recipes are new
    table9 = expand("samformer-table9")
    assert len(table9) == 6 * 4 * 4 and grid("samformer-table10") is GRIDS["samformer-table9"]
    table1_keys = {cell_key(c) for c in expand("samformer-table1")}
    shared = [c for c in table9 if cell_key(c) in table1_keys]
    assert {c.recipe for c in shared} == {"samformer", "transformer"} and len(shared) == 48


def test_cell_key_changes_with_the_code(monkeypatch):
    from flatcast.benchmark import store as store_module

    cell = expand("quick", "quick")[0]
    key = cell_key(cell)
    monkeypatch.setattr(store_module, "code_fingerprint", lambda recipe: "0" * 64)
    assert cell_key(cell) != key


# ------------------------------------------------------------------------------------------------ store
def _fake_result(value=0.5):
    return {"per_seed": [{"seed": 0, "test_mse": value, "test_mae": value}], "wall_time_s": 1.0, "device": "cpu"}


def test_store_is_atomic_and_ignores_partial_or_foreign_files(tmp_path):
    store = ResultStore(tmp_path)
    cell = expand("quick", "quick")[0]
    key = cell_key(cell)
    assert store.get(cell, key) is None
    path = store.put(cell, key, _fake_result())
    assert store.get(cell, key)["per_seed"][0]["test_mse"] == 0.5
    assert not list(tmp_path.glob("cells/.*.tmp"))
    text = path.read_text()
    # a file cut anywhere (what a non-atomic writer would leave after a power loss) is never read as done
    for cut in (0, 1, len(text) // 3, len(text) // 2, len(text) - 3):
        path.write_text(text[:cut])
        assert store.get(cell, key) is None, cut
    # a complete file whose key is not the cell's (a stale config) is not reused
    payload = json.loads(text)
    payload["key"] = "f" * 64
    path.write_text(json.dumps(payload))
    assert store.get(cell, key) is None
    # a leftover temporary of a killed writer is ignored and cleaned
    path.write_text(text)
    tmp = path.with_name(f".{path.name}.999.tmp")
    tmp.write_text(text[:10])
    assert store.get(cell, key) is not None
    assert store.clean_temporaries() == 1 and not tmp.exists()


def test_only_one_runner_per_store(tmp_path):
    with runner_lock(tmp_path):
        with pytest.raises(StoreLocked):
            with runner_lock(tmp_path):
                pass
    with runner_lock(tmp_path):  # released on exit
        pass


def test_failed_cell_is_recorded_the_grid_goes_on_and_retry_reruns_it(tmp_path, monkeypatch):
    from flatcast.benchmark import executor

    cells = expand("quick", "quick")
    calls = []

    def fake(config, device, threads, data_dir, cell_fn=None, command=None):
        calls.append(config["recipe"])
        if config["recipe"] == "tsmixer":
            raise RuntimeError("boom")
        return _fake_result()

    monkeypatch.setattr(executor, "run_cell", fake)
    store = ResultStore(tmp_path)
    s = run_cells(cells, store, backend="inline", progress=False)
    assert (s.done_now, s.failed) == (2, 1) and "boom" in s.errors["ETTh1/H96/tsmixer"]
    assert (tmp_path / "failed").is_dir() and len(list((tmp_path / "failed").glob("*.json"))) == 1
    s = run_cells(cells, store, backend="inline", progress=False)
    assert (s.done_before, s.skipped_failed, s.done_now) == (2, 1, 0) and calls == ["samformer", "tsmixer",
                                                                                     "dlinear"]
    s = run_cells(cells, store, backend="inline", progress=False, retry_failed=True)
    assert s.failed == 1 and calls[-1] == "tsmixer" and len(calls) == 4


def test_cells_of_older_code_are_found_labelled_and_only_reused_on_request(tmp_path, monkeypatch):
    """A code change gives every cell a new key; the store still finds the older result of the same config,
    hyperparameters and data, cell_status labels it, and run_cells reuses it only with accept_older_code."""
    from flatcast.benchmark import executor
    from flatcast.benchmark import store as store_module
    from flatcast.benchmark.executor import cell_status

    cells = expand("quick", "quick")
    store = ResultStore(tmp_path)
    real_fingerprint = store_module.code_fingerprint
    monkeypatch.setattr(store_module, "code_fingerprint", lambda recipe: "0" * 64)  # "older code"
    for c in cells:
        store.put(c, cell_key(c), _fake_result(0.25))
    monkeypatch.setattr(store_module, "code_fingerprint", real_fingerprint)
    other = replace(cells[0], seeds=(7,))  # another config: never taken for an older version of cells[0]
    assert store.older(other) is None and not store.has(cells[0])
    older = store.older(cells[0])
    assert older is not None and older["identity"]["code"] == "0" * 64
    assert [r["state"] for r in cell_status(cells, store)] == ["older"] * len(cells)
    calls = []
    monkeypatch.setattr(executor, "run_cell", lambda config, *a, **k: calls.append(config["recipe"]) or
                        _fake_result())
    s = run_cells(cells, store, backend="inline", progress=False, accept_older_code=True)
    assert (s.done_before, s.older_code, s.done_now, calls) == (len(cells), len(cells), 0, [])
    s = run_cells(cells, store, backend="inline", progress=False)
    assert (s.done_before, s.done_now) == (0, len(cells)) and len(calls) == len(cells)
    assert [r["state"] for r in cell_status(cells, store)] == ["done"] * len(cells)
    start = store.get(cells[0])["provenance"]["runner_start"]  # the commit the runner (and its keys) started from
    assert set(start) == {"commit", "dirty", "date"} and start["date"]


# ------------------------------------------------------------------------------------------------ kill & resume
def _runner(store: Path, log: Path, sleep: float, backend: str = "ray", sigint_ignored: bool = False
            ) -> subprocess.Popen:
    env = {**os.environ, "FLATCAST_BENCHMARK_CELL_FN":
           f"flatcast.benchmark.testing:sleepy_cell?log={log}&sleep={sleep}", "RAY_AUTH_MODE": "disabled"}
    # sigint_ignored: start the runner as a non-interactive shell starts a background job (SIGINT inherited as ignored)
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen([sys.executable, "-m", "flatcast.benchmark", "run", "--grid", "samformer-table1",
                             "--datasets", "ETTh1", "ETTh2", "--horizons", "96", "--store", str(store),
                             "--backend", backend, "--no-progress"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore)


def _done_files(store: Path) -> set[str]:
    return {p.name for p in (store / "cells").glob("*.json")} if (store / "cells").is_dir() else set()


def _log_lines(log: Path, kind: str) -> list[str]:
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith(kind + " ")]


def _wait_for(predicate, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_runner_resumes_with_only_the_unfinished_cells(tmp_path, sig):
    """Kill a real runner (Ray backend) mid-grid, restart it: finished cells never rerun, nothing half-written
    is read as done, every cell ends up done exactly once in the store."""
    store, log = tmp_path / "store", tmp_path / "calls.log"
    cells = expand("samformer-table1", datasets=["ETTh1", "ETTh2"], horizons=[96])
    first = _runner(store, log, sleep=1.5)
    try:
        _wait_for(lambda: len(_done_files(store)) >= 2, timeout=240)
        os.kill(first.pid, sig)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    if sig == signal.SIGINT:
        assert first.returncode == 130 and "rerun the same command" in first.stderr.read()
    finished_first = _done_files(store)
    assert 2 <= len(finished_first) < len(cells)
    # every file in the store is complete and valid; none is a leftover temporary
    st = ResultStore(store)
    labels_done = {c.label for c in cells if st.has(c)}
    assert len(labels_done) == len(finished_first)
    time.sleep(2.0)  # let a cell that outlived the driver (if Ray's reaper were slow) show itself in the log
    starts_before = len(_log_lines(log, "start"))

    second = _runner(store, log, sleep=0.2)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert f"{len(finished_first)} already done" in out
    rerun = _log_lines(log, "start")[starts_before:]
    assert not set(rerun) & labels_done, "a finished cell ran twice"
    assert sorted(rerun) == sorted(c.label for c in cells if c.label not in labels_done)
    assert all(st.has(c) for c in cells) and len(_done_files(store)) == len(cells)
    assert not list((store / "cells").glob(".*.tmp"))


@pytest.mark.parametrize("sig, sigint_ignored", [(signal.SIGINT, False), (signal.SIGTERM, False),
                                                  (signal.SIGINT, True)])
def test_a_signal_stops_a_runner_promptly_while_long_cells_run(tmp_path, sig, sigint_ignored):
    """The driver must not sit in a blocking wait until a long cell ends: SIGINT/SIGTERM stop it within seconds
    (exit 130, the running cells abandoned, nothing written for them) — SIGINT also when the runner was started
    with SIGINT ignored, as a background job of a non-interactive shell is."""
    store, log = tmp_path / "store", tmp_path / "calls.log"
    runner = _runner(store, log, sleep=300.0, sigint_ignored=sigint_ignored)
    try:
        _wait_for(lambda: len(_log_lines(log, "start")) >= 1, timeout=240)
        sent = time.monotonic()
        os.kill(runner.pid, sig)
        runner.wait(timeout=30)
        assert time.monotonic() - sent < 15
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130 and "rerun the same command" in runner.stderr.read()
    assert not _done_files(store)


def test_status_and_report_read_the_store(tmp_path):
    from flatcast.benchmark.testing import sleepy_cell

    cells = expand("oce-table2", datasets=["national_illness"], horizons=[24])
    store = ResultStore(tmp_path)
    store.put(cells[0], cell_key(cells[0]), sleepy_cell(cells[0].config(), str(tmp_path / "log"), "0"))
    args = ["--grid", "oce-table2", "--datasets", "national_illness", "--horizons", "24", "--store", str(tmp_path)]
    out = subprocess.run([sys.executable, "-m", "flatcast.benchmark", "status", *args], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "2 cells: 1 done, 0 done by older code, 0 failed, 1 pending" in out.stdout
    out = subprocess.run([sys.executable, "-m", "flatcast.benchmark", "report", *args], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "OCE-TS" in out.stdout and "ILI" in out.stdout


def test_a_real_cell_trains_and_repeats_exactly_on_cpu(tmp_path):
    """The real training path of one quick cell (DLinear, 2 seeds): a complete record, the same numbers twice."""
    from flatcast.benchmark import run_cell

    cell = [c for c in expand("quick", "quick") if c.recipe == "dlinear"][0]
    a = run_cell(cell.config(), "cpu", 1)
    b = run_cell(cell.config(), "cpu", 1)
    assert [s["seed"] for s in a["per_seed"]] == [0, 1]
    for key in ("test_mse", "test_mae", "val_mse", "best_epoch", "epochs_run", "grad_evals"):
        assert [s[key] for s in a["per_seed"]] == [s[key] for s in b["per_seed"]], key
    assert a["per_seed"][0]["test_mse"] != a["per_seed"][1]["test_mse"]  # seeds differ
    assert a["provenance"]["commit"] and a["n_parameters"] == 2 * (96 * 96 + 96)
    store = ResultStore(tmp_path)
    store.put(cell, cell_key(cell), a)
    assert store.get(cell)["per_seed"] == a["per_seed"]


def test_an_unavailable_device_fails_before_any_cell(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        run_cells(expand("quick", "quick"), ResultStore(tmp_path), device="cuda", progress=False)
    assert not (tmp_path / "cells").exists()


def test_grid_progress_counts_the_cells_a_gpu_trained(tmp_path):
    from flatcast.experiments.benchmark import grid_progress

    store = ResultStore(tmp_path)
    cells = expand("samformer-table9", "paper")[:3]
    for cell, device in zip(cells, ("cpu", "cuda", None)):
        result = _fake_result()
        if device is None:
            del result["device"]  # a cell from before the field: the CPU
        else:
            result["device"] = device
        store.put(cell, cell_key(cell), result)
    row = grid_progress(store).set_index("grid").loc["samformer-table9"]
    assert (row["done"], row["on_gpu"], row["pending"]) == (3, 1, len(expand("samformer-table9", "paper")) - 3)

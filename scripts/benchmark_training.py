"""Training speed of SAMformer (channel-wise transformer + SAM around Adam): single runs, batched members, the port.

Prints, on the current machine and in one run (so that the ratios compare like with like):

1. **single run**: optimizer steps per second of exactly :func:`flatcast.trainer.fit`'s step
   (:func:`flatcast.trainer.single_run_step`: for SAMformer a one-member batched step with the hand-derived
   gradient, SAM's ascent, the second gradient at the perturbed weights and Adam's fused update, SAMformer Eq. 3)
   on batches gathered from the windows kept on the device, as ``fit`` does; the optimizer is the recipes' own
   (:func:`flatcast.recipes.optimizer_factory`);
2. **batched members**: member-steps per second of :func:`flatcast.trainer.fit_many`'s step (k members of
   :class:`flatcast.batched.BatchedChannelTransformer`, SAM per member, each member on its own batch) for each
   k of ``--members``, and the ratio to k sequential single runs (= the single-run rate);
3. **official port**: ``../shared/peers/bench_official.py`` (the official SAMformer PyTorch port, unchanged) run
   as a subprocess with the same threads, data and batch, and the ratio single / port;
4. the projected time of the SAMformer Table 1 grid (6 datasets × 4 horizons × 5 seeds × {SAM, no SAM}) at the
   measured batched rate, under a stated number of epochs per run.

``--compile both`` (the default) times 1 and 2 twice, with the step's kernel eager and compiled by
``torch.compile`` (:mod:`flatcast.compiled`, what ``FLATCAST_COMPILE=1`` gives ``fit`` and ``fit_many``); the
compile time falls in the untimed warm-up steps and is printed.

On a CUDA machine (``--device auto`` picks it) 1, 2 and 4 are measured on the GPU; the port is timed on the CPU
(it has no device option). Not a test: it prints numbers.

    python scripts/benchmark_training.py --threads 2 --steps 200 --members 1,5,10,20
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from flatcast.compiled import COMPILE_ENV_VAR
from flatcast.batched import BatchedChannelTransformer
from flatcast.data import make_splits
from flatcast.models import ChannelTransformer
from flatcast.recipes import optimizer_factory
from flatcast.trainer import BatchedTrainingStep, single_run_step
from flatcast.utils import keep_freed_memory_in_heap, resolve_device, seed_everything

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = REPO_ROOT.parent / "shared" / "peers" / "bench_official.py"
TABLE1_DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "exchange_rate", "weather")
TABLE1_HORIZONS = (96, 192, 336, 720)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def member_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads on the CPU")
    parser.add_argument("--steps", type=positive_int, default=200, help="timed steps of the single run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (allocator, kernels)")
    parser.add_argument("--members", type=member_list, default=[1, 5, 10, 20], help="k values of the batched runs")
    parser.add_argument("--dataset", default="ETTh1")
    parser.add_argument("--data-dir", default=None, help="directory holding the CSV (default: FLATCAST_DATA, data/raw)")
    parser.add_argument("--lookback", type=positive_int, default=512)
    parser.add_argument("--horizon", type=positive_int, default=96)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--rho", type=float, default=0.7, help="SAM radius (SAMformer uses 0.7 on ETTh1, H=96)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-official", action="store_true", help="skip timing the official port")
    parser.add_argument("--repeats", type=positive_int, default=2,
                        help="official port and single run are timed this many times, alternating (median kept)")
    parser.add_argument("--compile", choices=("off", "on", "both"), default="both",
                        help="time the eager step, the compiled one (flatcast.compiled), or both (default)")
    parser.add_argument("--grid-epochs", type=positive_int, default=(30, 300), nargs="+",
                        help="epochs per run assumed by the Table 1 grid projection (300 = no early stop)")
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.rho < 0:
        parser.error(f"--rho must be >= 0, got {args.rho}")
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run, warmup: int, steps: int, device: torch.device) -> tuple[float, torch.Tensor, float]:
    start = time.perf_counter()
    run(0, warmup)
    synchronize(device)
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    last = run(warmup, steps)
    synchronize(device)
    elapsed = time.perf_counter() - start
    if not bool(torch.isfinite(last).all()):
        raise FloatingPointError(f"non-finite training loss {last} during the benchmark")
    return elapsed, last, warmup_seconds


def orders(n_train: int, n_batches: int, batch_size: int, generator: torch.Generator, device) -> torch.Tensor:
    n_permutations = -(-n_batches * batch_size // n_train)
    return torch.cat([torch.randperm(n_train, generator=generator) for _ in range(n_permutations)]).to(device)


def sam_factory(args):
    """The recipes' SAM around Adam (:func:`flatcast.recipes.optimizer_factory`, Adam's fused kernel included)."""
    return optimizer_factory("sam", args.lr, args.rho)


def single_stepper(args, splits, device, total: int):
    """``run(first, count)`` of fit's own step (:func:`flatcast.trainer.single_run_step`) on one
    ChannelTransformer + SAM."""
    generator = seed_everything(args.seed)
    model = ChannelTransformer(args.lookback, args.horizon, splits.n_channels, seed=args.seed).to(device)
    model.train()
    step, optimizer = single_run_step(model, sam_factory(args))
    train_x, train_y = splits.train.x, splits.train.y
    order = orders(len(train_x), total, args.batch_size, generator, device)
    b = args.batch_size

    def run(first: int, count: int) -> torch.Tensor:
        loss = torch.zeros((), device=device)
        for i in range(first, first + count):
            idx = order[i * b:(i + 1) * b]
            loss = step(train_x[idx], train_y[idx])
        return loss

    run.model, run.optimizer = model, optimizer
    return run


@contextlib.contextmanager
def step_kernel(mode: str):
    """The training step's kernel ``eager`` or ``compiled`` (``FLATCAST_COMPILE``, :mod:`flatcast.compiled`) inside
    the block; the variable's previous value is restored after it."""
    previous = os.environ.get(COMPILE_ENV_VAR)
    os.environ[COMPILE_ENV_VAR] = "1" if mode == "compiled" else "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(COMPILE_ENV_VAR, None)
        else:
            os.environ[COMPILE_ENV_VAR] = previous


def single_run_rate(args, splits, device) -> dict:
    """Steps/s of the trainer's own step (fit's path) on one ChannelTransformer + SAM."""
    run = single_stepper(args, splits, device, args.warmup + args.steps)
    elapsed, last, warmup_seconds = _timed(run, args.warmup, args.steps, device)
    return {"rate": args.steps / elapsed, "elapsed": elapsed, "steps": args.steps, "loss": float(last),
            "warmup_seconds": warmup_seconds,
            "params": sum(p.numel() for p in run.model.parameters()),
            "grad_evals": run.optimizer.grad_evals / (args.warmup + args.steps)}


def batched_stepper(args, splits, device, k: int, total: int):
    """``run(first, count)`` of fit_many's step: k members, SAM per member, each member on its own batch."""
    seed_everything(args.seed)
    members = [ChannelTransformer(args.lookback, args.horizon, splits.n_channels, seed=args.seed + i)
               for i in range(k)]
    net = BatchedChannelTransformer(members).to(device)
    net.train()
    optimizer = sam_factory(args)([net.flat]).per_member(k)
    train_x, train_y = splits.train.x, splits.train.y
    b = args.batch_size
    order = torch.stack([orders(len(train_x), total, b, torch.Generator().manual_seed(args.seed + i), device)[: total * b]
                         for i in range(k)])
    step = BatchedTrainingStep(net, optimizer)

    def run(first: int, count: int) -> torch.Tensor:
        losses = torch.zeros(k, device=device)
        for i in range(first, first + count):
            idx = order[:, i * b:(i + 1) * b]
            losses = step(train_x[idx], train_y[idx])
        return losses

    return run


def batched_vs_sequential(args, splits, device, k: int, rounds: int) -> dict:
    """Member-steps/s of the batched step and steps/s of the single run, timed in alternating chunks (so that
    both see the same machine load): each round times ``max(2, ⌈20/k⌉)`` batched steps (≥ 20 member-steps) and 20
    single steps."""
    # chunks of ~20 member-steps each: shorter ones (2 steps) evict each other's weights and activations from the
    # caches between chunks and time a cold start that neither loop has in real training
    batched_chunk, single_chunk = max(2, math.ceil(20 / k)), 20
    batched = batched_stepper(args, splits, device, k, args.warmup + rounds * batched_chunk)
    single = single_stepper(args, splits, device, args.warmup + rounds * single_chunk)
    batched(0, args.warmup)
    single(0, args.warmup)
    times = {"batched": 0.0, "single": 0.0}
    for r in range(rounds):
        for name, run, chunk in (("batched", batched, batched_chunk), ("single", single, single_chunk)):
            synchronize(device)
            start = time.perf_counter()
            last = run(args.warmup + r * chunk, chunk)
            synchronize(device)
            times[name] += time.perf_counter() - start
            if not bool(torch.isfinite(last).all()):
                raise FloatingPointError(f"non-finite training loss {last} during the benchmark")
    member_rate = k * rounds * batched_chunk / times["batched"]
    single_rate = rounds * single_chunk / times["single"]
    return {"k": k, "rate": member_rate, "single_rate": single_rate, "steps": rounds * batched_chunk}


def official_rate(args) -> float | None:
    """Steps/s printed by ../shared/peers/bench_official.py (run with this interpreter, same threads)."""
    if not OFFICIAL.is_file():
        print(f"official port: {OFFICIAL} not found, skipped")
        return None
    command = [sys.executable, str(OFFICIAL), "--threads", str(args.threads), "--steps", str(args.steps),
               "--lookback", str(args.lookback), "--horizon", str(args.horizon), "--batch-size", str(args.batch_size),
               "--rho", str(args.rho)]
    env = dict(os.environ)
    if keep_freed_memory_in_heap():  # the port gets the same allocator setting (glibc reads it from the environment)
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(256 * 2**20))
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str(512 * 2**20))
    if args.data_dir is not None:
        env["FLATCAST_DATA"] = str(Path(args.data_dir).resolve())
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    match = re.search(r"([0-9.]+) steps/s", done.stdout)
    if done.returncode != 0 or match is None:
        print(f"official port failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
        return None
    print(done.stdout.strip())
    return float(match.group(1))


def table1_projection(args, member_steps_per_s: float, k: int) -> None:
    """Projected time of SAMformer Table 1's grid at ``member_steps_per_s`` (batched k seeds per cell)."""
    steps_per_epoch = {}
    for dataset in TABLE1_DATASETS:
        for horizon in TABLE1_HORIZONS:
            try:
                kwargs = {} if args.data_dir is None else {"data_dir": args.data_dir}
                n_train = len(make_splits(dataset, args.lookback, horizon, **kwargs).train)
            except Exception as error:  # noqa: BLE001 - a missing dataset only drops a cell from the projection
                print(f"  (projection: {dataset} H={horizon} unavailable: {error})")
                continue
            steps_per_epoch[(dataset, horizon)] = math.ceil(n_train / args.batch_size)
    n_cells = len(steps_per_epoch)
    seeds, variants = 5, 2
    total_steps_per_epoch = sum(steps_per_epoch.values()) * seeds * variants
    for epochs in args.grid_epochs:
        seconds = total_steps_per_epoch * epochs / member_steps_per_s
        print(f"  Table 1 grid ({n_cells} dataset×horizon cells × {seeds} seeds × {{SAM, no SAM}}, {epochs} epochs "
              f"per run, every step costed as a SAM step at the batched k={k} rate of ETTh1 H={args.horizon}): "
              f"{seconds / 60:.1f} min")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    allocator = keep_freed_memory_in_heap()  # as fit and fit_many do
    split_kwargs = {} if args.data_dir is None else {"data_dir": args.data_dir}
    splits = make_splits(args.dataset, args.lookback, args.horizon, **split_kwargs).to(device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(f"device: {device} ({device_name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; freed memory kept in the heap "
          f"(glibc mallopt, also given to the port): {allocator}")
    print(f"data: {args.dataset} L={args.lookback} H={args.horizon} batch {args.batch_size} "
          f"({len(splits.train)} training windows); SAM(rho={args.rho}) around Adam(lr={args.lr})")

    modes = {"off": ("eager",), "on": ("compiled",), "both": ("eager", "compiled")}[args.compile]
    officials, singles = [], {mode: [] for mode in modes}
    for repeat in range(args.repeats):  # official and single alternate, so that both see the same load
        official = None if args.no_official else official_rate(args)
        if official is not None:
            officials.append(official)
        for mode in modes:
            with step_kernel(mode):
                single = single_run_rate(args, splits, device)
            singles[mode].append(single)
            print(f"single run, {mode} kernel (fit's step, ChannelTransformer {single['params']} parameters, "
                  f"{single['grad_evals']:.1f} gradient evaluations/step): {single['rate']:.1f} steps/s "
                  f"({1000 / single['rate']:.2f} ms/step, {single['steps']} steps; warm-up "
                  f"{single['warmup_seconds']:.1f} s)"
                  + (f"; / official port: {single['rate'] / official:.2f}x" if official is not None else ""))
    official = sorted(officials)[len(officials) // 2] if officials else None
    medians = {}
    for mode in modes:
        runs = singles[mode]
        medians[mode] = sorted(runs, key=lambda s: s["rate"])[len(runs) // 2]
        line = f"{mode} kernel, median of {args.repeats}: single run {medians[mode]['rate']:.1f} steps/s"
        if officials:
            ratios = [s["rate"] / o for s, o in zip(runs, officials)]
            line += (f", official port {official:.1f} steps/s; single / port per alternating pair: "
                     f"{', '.join(f'{r:.2f}x' for r in ratios)} (geometric mean "
                     f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}x)")
        print(line)
    batched = []
    for mode in modes:
        with step_kernel(mode):
            for k in args.members:
                rounds = max(4, args.steps // (k * max(2, math.ceil(20 / k))))
                result = batched_vs_sequential(args, splits, device, k, rounds)
                result["kernel"] = mode
                batched.append(result)
                print(f"batched k={k:>3}, {mode} kernel (fit_many's step, SAM per member): {result['rate']:.1f} "
                      f"member-steps/s ({result['rate'] / k:.1f} batched steps/s, {result['steps']} steps); single "
                      f"run alternating with it: {result['single_rate']:.1f} steps/s; vs {k} sequential single "
                      f"runs: {result['rate'] / result['single_rate']:.2f}x"
                      + (f"; vs the official port: {result['rate'] / official:.2f}x" if official and k == 1 else ""))
    fastest = max(batched, key=lambda r: r["rate"] if r["k"] == 5 else 0.0)
    reference = fastest if fastest["k"] == 5 else batched[-1]
    print(f"Table 1 projection at the {reference['kernel']} kernel's rate:")
    table1_projection(args, reference["rate"], reference["k"])
    if device.type != "cuda":
        print("no CUDA device here: GPU figures not measured (run this script on a GPU machine for them)")
    return {"official": official, "single": medians, "batched": batched}


if __name__ == "__main__":
    main()

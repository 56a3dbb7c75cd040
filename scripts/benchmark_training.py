"""Training speed of SAMformer (channel-wise transformer + SAM) on one dataset: optimizer steps per second.

Times exactly the trainer's step (:class:`flatcast.trainer.TrainingStep`: loss, backward, ``SAM.step(closure)``
with its second forward/backward at the perturbed weights, SAMformer Eq. 3) on batches gathered from the
windows kept on the device, as :func:`flatcast.trainer.fit` does. Not a test: it prints a number.

    python scripts/benchmark_training.py --device auto --steps 200 --dataset ETTh1 --lookback 512 --horizon 96
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from flatcast.data import make_splits
from flatcast.models import ChannelTransformer
from flatcast.optim import SAM
from flatcast.trainer import TrainingStep
from flatcast.utils import resolve_device, seed_everything


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--steps", type=positive_int, default=200, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (allocator, kernels)")
    parser.add_argument("--dataset", default="ETTh1")
    parser.add_argument("--data-dir", default=None, help="directory holding the CSV (default: FLATCAST_DATA, data/raw)")
    parser.add_argument("--lookback", type=positive_int, default=512)
    parser.add_argument("--horizon", type=positive_int, default=96)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--rho", type=float, default=0.7, help="SAM radius (SAMformer uses 0.7 on ETTh1, H=96)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.rho < 0:
        parser.error(f"--rho must be >= 0, got {args.rho}")
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    device = resolve_device(args.device)
    shuffle_generator = seed_everything(args.seed)

    split_kwargs = {} if args.data_dir is None else {"data_dir": args.data_dir}
    splits = make_splits(args.dataset, args.lookback, args.horizon, **split_kwargs).to(device)
    model = ChannelTransformer(args.lookback, args.horizon, splits.n_channels, seed=args.seed).to(device)
    model.train()
    optimizer = SAM(model.parameters(), rho=args.rho, lr=args.lr)
    step = TrainingStep(model, optimizer)
    train_x, train_y = splits.train.x, splits.train.y
    n_train = len(train_x)

    total = args.warmup + args.steps
    n_permutations = -(-total * args.batch_size // n_train)
    order = torch.cat([torch.randperm(n_train, generator=shuffle_generator) for _ in range(n_permutations)])
    order = order.to(device)

    def run(first: int, count: int) -> torch.Tensor:
        loss = torch.zeros((), device=device)
        for i in range(first, first + count):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            loss = step(train_x[idx], train_y[idx])
        return loss

    run(0, args.warmup)
    synchronize(device)
    start = time.perf_counter()
    last_loss = run(args.warmup, args.steps)
    synchronize(device)
    elapsed = time.perf_counter() - start
    if not torch.isfinite(last_loss):
        raise FloatingPointError(f"non-finite training loss {last_loss.item()} during the benchmark")

    steps_per_second = args.steps / elapsed
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device} ({device_name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: ChannelTransformer + SAM(rho={args.rho}), {sum(p.numel() for p in model.parameters())} "
          f"parameters; data: {args.dataset} L={args.lookback} H={args.horizon} batch {args.batch_size} "
          f"({n_train} training windows)")
    print(f"gradient evaluations per step: {optimizer.grad_evals / total:.1f}; last loss {last_loss.item():.4f}")
    print(f"{args.steps} steps in {elapsed:.3f} s: {steps_per_second:.1f} steps/s "
          f"({1000 * elapsed / args.steps:.2f} ms/step)")
    return steps_per_second


if __name__ == "__main__":
    main()

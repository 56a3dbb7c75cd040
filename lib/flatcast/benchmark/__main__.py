"""``python -m flatcast.benchmark run|status|report`` — see :mod:`flatcast.benchmark` and ``--help``."""

from __future__ import annotations

import argparse
import signal
import sys
from collections import Counter
from pathlib import Path

from .executor import BACKENDS, cell_status, run_cells
from .grids import GRIDS, PROFILES, expand
from .store import ResultStore, StoreLocked


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flatcast.benchmark", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("run", "status", "report"):
        s = sub.add_parser(name)
        s.add_argument("--grid", required=True, help=f"one of {sorted(GRIDS)} (aliases: samformer-table6/7, "
                                                     "eeo-table5)")
        s.add_argument("--profile", default="paper", choices=PROFILES)
        s.add_argument("--datasets", nargs="+")
        s.add_argument("--horizons", nargs="+", type=int)
        s.add_argument("--recipes", "--models", nargs="+", dest="recipes")
        s.add_argument("--seeds", nargs="+", type=int)
        s.add_argument("--store", type=Path, default=None, help="result folder (default data/results/benchmark)")
        if name == "run":
            s.add_argument("--device", default="cpu")
            s.add_argument("--backend", default="ray", choices=BACKENDS)
            s.add_argument("--workers", type=int, default=1, help="cells at once (Ray tasks of 1 CPU each)")
            s.add_argument("--threads", type=int, default=1, help="torch intra-op threads per cell")
            s.add_argument("--gpu-fraction", type=float, default=0.0, help="GPU share per cell (e.g. 0.25)")
            s.add_argument("--address", default=None, help="Ray cluster address (default: embedded local Ray)")
            s.add_argument("--retry-failed", action="store_true")
            s.add_argument("--accept-older-code", action="store_true",
                           help="count a cell computed by older code (same config, hyperparameters, data) as done")
            s.add_argument("--max-cells", type=int, default=None)
            s.add_argument("--no-progress", action="store_true")
    return p


def _raise_interrupt(signum, frame):  # SIGTERM → the same clean stop as SIGINT
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cells = expand(args.grid, args.profile, args.datasets, args.horizons, args.recipes, args.seeds)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    store = ResultStore(args.store)
    if args.command == "run":
        # SIGINT too: a runner started in the background by a non-interactive shell inherits SIGINT as ignored, and
        # Python then installs no KeyboardInterrupt handler of its own; `kill -INT` must stop it all the same.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _raise_interrupt)
        try:
            s = run_cells(cells, store, backend=args.backend, workers=args.workers, threads=args.threads,
                          device=args.device, gpu_fraction=args.gpu_fraction, retry_failed=args.retry_failed,
                          address=args.address, progress=not args.no_progress, max_cells=args.max_cells,
                          accept_older_code=args.accept_older_code)
        except StoreLocked as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        except KeyboardInterrupt:
            print("interrupted: finished cells are stored; rerun the same command to resume", file=sys.stderr)
            return 130
        older = f" ({s.older_code} by older code)" if s.older_code else ""
        print(f"{args.grid}: {s.total} cells, {s.done_before} already done{older}, {s.done_now} computed now, "
              f"{s.failed} failed, {s.skipped_failed} skipped (failed before; --retry-failed), "
              f"{s.remaining} remaining; {s.wall_time_s:.1f} s")
        for label, err in s.errors.items():
            print(f"  failed {label}: {err}")
        return 1 if s.failed else 0
    rows = cell_status(cells, store)
    if args.command == "status":
        counts = Counter(r["state"] for r in rows)
        wall = sum(r["result"]["wall_time_s"] for r in rows if r["result"])
        print(f"{args.grid} ({args.profile}): {len(rows)} cells: {counts.get('done', 0)} done, "
              f"{counts.get('older', 0)} done by older code, "
              f"{counts.get('failed', 0)} failed, {counts.get('pending', 0)} pending; "
              f"{wall / 3600:.2f} h of compute in the finished cells")
        for r in rows:
            extra = ""
            if r["result"]:
                res = r["result"]
                extra = f"  {res['wall_time_s']:.0f} s on {res['device']}"
            key = r["result"]["key"] if r["result"] else r["key"]  # an older cell: the key it was stored under
            print(f"  {r['state']:8s} {r['label']:36s} {key[:16]}{extra}")
        return 0
    from flatcast.experiments.benchmark import comparison_table

    table = comparison_table([r["result"] for r in rows if r["result"]])
    if table.empty:
        print("no finished cells")
        return 0
    with __import__("pandas").option_context("display.width", 200, "display.max_rows", 500):
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

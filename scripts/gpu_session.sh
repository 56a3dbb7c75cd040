#!/usr/bin/env bash
# One prepared, time-boxed call on a lent GPU machine for the open paper-profile work (README, "On a lent GPU").
#
# Here, before the call:   make gpu-prepare     (copies the dataset CSVs, checked, into .gpu/data: git-ignored)
# Device tool:             run(command="bash scripts/gpu_session.sh 530", carry=[".gpu"], timeout_s=600)
# After it:                tar xzf <files_at>/results.tgz    (in the checkout, with no local runner writing to
#                          data/results meanwhile: it holds data/results/... as the runners
#                          wrote them), then look at <files_at>/log.txt, regenerate the verdicts and commit.
#
# The machine has its own python3 with a CUDA PyTorch and pandas/scipy/matplotlib, but no Ray and no network: the
# library runs from lib/ (PYTHONPATH) and the benchmark grid uses the runner's inline backend. Every runner below
# is resumable and writes each finished item at once, so a `timeout` loses only the item in progress. The steps
# run in the order of their value per GPU minute; each gets what is left of the budget (first argument, seconds).
set -u
BUDGET=${1:-530}
START=$(date +%s)
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu for a smoke test of this script on a CPU machine
OUT=${OUT:-/tmp/flatcast-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" FLATCAST_DATA="$PWD/.gpu/data" PYTHONUNBUFFERED=1

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
step() {  # step <seconds at most> <command...>: run while at least 60 s of the budget remain
  local cap=$1; shift
  local t; t=$(left); t=$(( t - 20 )); [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt 60 ]; then echo "== skipped (budget): $*"; return; fi
  echo "== $(date -u +%H:%M:%S) ($t s at most): $*"
  timeout --signal=INT "$t" "$@"; echo "== exit $?"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch, flatcast; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  step 90 "$PY" scripts/benchmark_training.py --device "$DEVICE" --no-official --steps 200 --members 1,5,10,20 \
      --compile off  # compiling each k would take most of the 90 s (untested on CUDA; eager figures first)
  step 300 "$PY" -m flatcast.experiments.sharpness --profile paper --device "$DEVICE" --no-verdicts
  step 300 "$PY" -m flatcast.benchmark run --grid samformer-table1 --backend inline --device "$DEVICE" \
      --accept-older-code --no-progress
  step 300 "$PY" -m flatcast.benchmark run --grid samformer-table9 --backend inline --device "$DEVICE" \
      --accept-older-code --no-progress
  step 300 "$PY" -m flatcast.experiments.attention --profile paper --device "$DEVICE" --threads 0 --no-verdicts
  step 300 "$PY" -m flatcast.experiments.eeo --profile paper --device "$DEVICE"
  step 300 "$PY" -m flatcast.experiments.oce --profile paper --device "$DEVICE"
} 2>&1 | tee "$OUT/log.txt"
tar czf "$OUT/results.tgz" data/results
echo "results: $OUT/results.tgz ($(du -h "$OUT/results.tgz" | cut -f1)), log: $OUT/log.txt"

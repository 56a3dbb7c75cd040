#!/usr/bin/env bash
# One prepared, time-boxed call on a lent GPU machine for the open paper-profile work (README, "On a lent GPU").
#
# Here, before the call:   `make gpu-prepare` (copies the dataset CSVs, checked, into .gpu/data; git-ignored)
# Device tool:             run(command="bash scripts/gpu_session.sh 560", carry=[".gpu"], timeout_s=600)
#                          (the machine gets the session's starting commit with the working tree on top: the
#                          results' provenance names that commit with dirty = true)
# After it:                tar xzf <files_at>/results.tgz  (in the checkout: it holds only files the call wrote
#                          or appended to under data/results), read <files_at>/log.txt, regenerate the verdicts, commit.
#
# The machine has its own python3 with a CUDA PyTorch and pandas/scipy/matplotlib, but no Ray and no network: the
# library runs from lib/ (PYTHONPATH) and the benchmark grid uses the runner's inline backend. The models are small,
# so one process leaves the GPU mostly idle (launch-bound): the jobs below run side by side, each a resumable runner
# of the project on its own slice (one benchmark store each: a store admits one runner), each writing every finished
# item at once, so the budget's `timeout` loses only the items in progress. The runtime benchmark (OCE-TS Table 3)
# runs first and alone, so that nothing else shares the GPU while it is timed.
set -u
BUDGET=${1:-560}
START=$(date +%s)
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu for a smoke test of this script on a CPU machine
OUT=${OUT:-/tmp/flatcast-gpu-out}
STORES=${STORES:-/tmp/flatcast-gpu-stores}
mkdir -p "$OUT" "$STORES"
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" FLATCAST_DATA="$PWD/.gpu/data" PYTHONUNBUFFERED=1
touch "$STORES/.start"

left() { echo $(( BUDGET - ($(date +%s) - START) - 25 )); }  # 25 s kept for packing the results
job() {  # job <name> <command...>: run under what is left of the budget, its output in $STORES/<name>.log
  local name=$1; shift
  local t; t=$(left); [ -n "${CAP:-}" ] && [ "$t" -gt "$CAP" ] && t=$CAP  # CAP=<s> job …: at most that
  if [ "$t" -lt 30 ]; then echo "== skipped (budget): $name"; return; fi
  echo "== $(date -u +%H:%M:%S) $name ($t s at most): $*"
  timeout --signal=TERM --kill-after=5 "$t" "$@" > "$STORES/$name.log" 2>&1
  local rc=$?
  echo "== $(date -u +%H:%M:%S) $name exit $rc"
}
grid() {  # grid <name> <benchmark run arguments...>: the benchmark runner on a store of its own, seeded with the
  local name=$1; shift  # committed cells so that a finished cell is skipped
  mkdir -p "$STORES/$name/cells" && cp data/results/benchmark/cells/*.json "$STORES/$name/cells/" 2>/dev/null
  job "$name" "$PY" -m flatcast.benchmark run --backend inline --device "$DEVICE" --threads 1 --accept-older-code \
      --no-progress --store "$STORES/$name" "$@"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch, flatcast; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  # alone first, since they time the device: OCE-TS Table 3 (rewrites data/results/oce_runtime_cuda.json with the
  # library as it is now, e.g. the fused OCE loss in one block off a CPU) and the training benchmark
  if [ "${TIMING:-1}" = 1 ]; then  # TIMING=0: a short call that only trains
    job oce_runtime "$PY" -m flatcast.experiments.oce --profile paper --runtime-only --runtime-steps 50 --device "$DEVICE"
    CAP=150 job training_benchmark "$PY" scripts/benchmark_training.py --device "$DEVICE" --no-official --steps 200 \
        --members 1,5,10,20 --repeats 1 --compile off
  fi
  # side by side: EEO-TFV Table 4's "Original" transformer, one job per (dataset, horizon), and whatever of SAMformer
  # Tables 9-10 is still pending (finished cells are skipped). ORIGINAL_VARIANTS picks what those jobs train: an AdamW
  # run took 166 s with 15 jobs on an H200, an EEO run ~3x that, so a call's ~6 minutes finish AdamW runs only
  # (an EEO run cut by the budget is lost); set it to "AdamW,EEO full" once the AdamW runs are in.
  for H in 96 192 336 720; do
    for D in ${ORIGINAL_DATASETS:-ETTh1 ETTh2 ETTm1 ETTm2}; do  # an ETTm run did not finish in 511 s with 16 jobs
      job "eeo_original_${D}_H$H" "$PY" -m flatcast.experiments.eeo --profile paper --device "$DEVICE" \
          --cells "$D:$H:original" --variants "${ORIGINAL_VARIANTS:-AdamW}" \
          --out "data/results/eeo_paper_runs_gpu_${D}_H$H.jsonl" &
    done
  done
  grid table9 --grid samformer-table9 --datasets weather ETTm1 ETTm2 &
  sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
  wait
  for f in "$STORES"/*.log; do echo "---- $f"; tail -n 6 "$f"; done
} 2>&1 | tee "$OUT/log.txt"
mkdir -p data/results/benchmark/cells
for d in "$STORES"/*/cells; do [ -d "$d" ] && cp -n "$d"/*.json data/results/benchmark/cells/ 2>/dev/null; done
find data/results -type f -newer "$STORES/.start" -print0 | tar czf "$OUT/results.tgz" --null -T -
tar czf "$OUT/logs.tgz" -C "$STORES" $(cd "$STORES" && ls *.log 2>/dev/null)
echo "results: $OUT/results.tgz ($(tar tzf "$OUT/results.tgz" | wc -l) files), log: $OUT/log.txt"

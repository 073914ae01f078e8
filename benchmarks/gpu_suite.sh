#!/usr/bin/env bash
# The GPU tables in one command, in under 8 minutes, with synthetic data, no internet, no pip and
# no tensorflow-datasets (jax, flax, optax, orbax preinstalled):
#   1. training throughput, DDPM++ U-Net (CIFAR-10 size), bfloat16 and float32, batch 128 and 512
#   2. training throughput, DiT-B/2 bfloat16 on 32x32x4 latents (256 tokens), batch 128 and 512
#   3. sampling throughput, EDM Heun 18 steps (35 NFE), batch 512, float32 and bfloat16
#   4. the host's data rate (image folder and in-memory arrays) against 3,300 img/s
# Compile times are a column of each table (lower + compile of the program measured). MFU is
# XLA's FLOP count over the peak: H200 dense bf16 989 TFLOP/s, fp32 67 (XLA's default precision
# may run fp32 matmuls as TF32, so fp32 MFU above 100% is possible); override with PEAK_BF16 and
# PEAK_FP32. Each section runs under `timeout` (the limits sum to 450 s); a section that runs out
# keeps the rows it printed, and the suite goes on to the next.
#
#   bash benchmarks/gpu_suite.sh            # on the GPU machine
#   bash benchmarks/gpu_suite.sh --smoke    # tiny networks, 1-2 steps: a CPU check of the plumbing
# Environment: PYTHON (default python3); GPU_SUITE_TIMEOUT=S gives every section S seconds instead.
# Exit status: 0 when every section finished, 1 when one failed or ran out of time.
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
unset JAX_COMPILATION_CACHE_DIR   # compile times are measured, not read from a warm cache
export GENFLOW_COMPILE_CACHE=0
export PYTHONUNBUFFERED=1         # a section stopped by its time limit keeps every line it printed
PY="${PYTHON:-python3}"
PEAK_BF16="${PEAK_BF16:-989}"
PEAK_FP32="${PEAK_FP32:-67}"
SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    *) echo "usage: bash benchmarks/gpu_suite.sh [--smoke]" >&2; exit 2 ;;
  esac
done
cd "$REPO"

B="$REPO/benchmarks"
PEAKS=(--peak-tflops "$PEAK_BF16" --peak-tflops-fp32 "$PEAK_FP32")
if [ "$SMOKE" = 1 ]; then
  TINY=(--tiny); DATA=(--smoke --sources folder memory --sizes 32)
else
  TINY=(); DATA=(--sources folder memory --sizes 32 64 --batches 512 --workers 1 4 8 --examples 1024 --seconds 0.4)
fi

SUMMARY=()
STATUS=0
section() {  # section TITLE SECONDS COMMAND...
  local title="$1" limit="${GPU_SUITE_TIMEOUT:-$2}"; shift 2
  echo; echo "## $title"; echo
  local start=$SECONDS rc=0
  timeout --kill-after=5 "$limit" "$@" || rc=$?
  local took=$((SECONDS - start)) how="done"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then how="stopped at its ${limit} s limit"; STATUS=1
  elif [ "$rc" != 0 ]; then how="failed (exit $rc)"; STATUS=1; fi
  [ "$how" = done ] || echo "(section '$title' $how)"
  SUMMARY+=("| $title | $took | $how |")
}

echo "# genflow GPU suite$([ "$SMOKE" = 1 ] && echo ' (smoke: tiny sizes, not a measurement)')"

# bf16 and fp32 are separate sections, so slow fp32 compiles cannot cost the bf16 rows
section "Training throughput: DDPM++ U-Net, CIFAR-10 size, bfloat16" 120 \
  "$PY" "$B/train_throughput.py" --dtypes bfloat16 --batches 128 512 --warmup 2 --iters 5 "${PEAKS[@]}" "${TINY[@]}"
section "Training throughput: DDPM++ U-Net, CIFAR-10 size, float32" 100 \
  "$PY" "$B/train_throughput.py" --dtypes float32 --batches 128 512 --warmup 2 --iters 5 "${PEAKS[@]}" "${TINY[@]}"
section "Training throughput: DiT-B/2, bfloat16, 32x32x4 latents" 80 \
  "$PY" "$B/train_throughput.py" --net dit --dit B/2 --shape 32 32 4 --dtypes bfloat16 --batches 128 512 \
  --warmup 2 --iters 5 "${PEAKS[@]}" "${TINY[@]}"
section "Sampling throughput: EDM Heun, 18 steps" 120 \
  "$PY" "$B/sampling_throughput.py" --batch 512 --steps 18 --iters 2 --dtypes float32 bfloat16 "${PEAKS[@]}" "${TINY[@]}"
section "Data rate of this host (no tfds here: folder and memory)" 30 \
  "$PY" "$B/data_rate.py" "${DATA[@]}"

echo; echo "## Sections"; echo
echo "| section | seconds | status |"
echo "|---|---|---|"
printf '%s\n' "${SUMMARY[@]}"
echo "total ${SECONDS} s"
exit "$STATUS"

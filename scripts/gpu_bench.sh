#!/usr/bin/env bash
# Run gradflow's benchmarks on an accelerator and write the numbers beside the CPU ones.
#
#   bash scripts/gpu_bench.sh [--quick] [--install] [--allow-cpu] [OUT]
#
# OUT defaults to results/bench/<platform>-<device kind> (e.g. results/bench/gpu-NVIDIA-H100-80GB-HBM3).
# Uses the JAX in .venv (or $PYTHON); --install first installs the cuda extra (pip install -e ".[cuda]").
# Every benchmark runs twice on a GPU: with full float32 matmuls (JAX_DEFAULT_MATMUL_PRECISION=highest, what
# gradflow's numbers mean) into OUT/highest, and with the platform's default (TF32 on NVIDIA) into OUT/default;
# bench_precision measures by how much the default moves lag profiles. --allow-cpu runs on a CPU (to test this
# script); --quick uses each benchmark's tiny sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=() install=0 allow_cpu=0 out=""
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick) ;;
    --install) install=1 ;;
    --allow-cpu) allow_cpu=1 ;;
    -*) echo "gpu_bench.sh: unknown option $arg" >&2; exit 2 ;;
    *) out="$arg" ;;
  esac
done
python="${PYTHON:-.venv/bin/python}"
if [ "$install" = 1 ]; then
  "$python" -m pip install --quiet -e ".[cuda]"
fi
platform=$("$python" -c 'import jax; print(jax.default_backend())')
kind=$("$python" -c 'import jax; print(jax.devices()[0].device_kind.replace(" ", "-"))')
if [ "$platform" = cpu ] && [ "$allow_cpu" = 0 ]; then
  echo "gpu_bench.sh: JAX sees no accelerator (platform cpu); install the cuda extra (--install) or pass --allow-cpu" >&2
  exit 2
fi
out="${out:-results/bench/${platform}-${kind}}"
echo "gpu_bench.sh: $platform ($kind) -> $out" >&2
"$python" -c 'import jax; print("jax", jax.__version__, jax.devices())'
for precision in highest default; do
  dir="$out/$precision"
  mkdir -p "$dir"
  for bench in bench_flow bench_train bench_gru; do
    flags=("${quick[@]}")
    [ "$bench" = bench_flow ] && flags+=(--no-rss)
    JAX_DEFAULT_MATMUL_PRECISION="$precision" "$python" "benchmarks/$bench.py" "${flags[@]}" --out "$dir"
  done
done
"$python" benchmarks/bench_precision.py "${quick[@]}" --out "$out"
echo "gpu_bench.sh: wrote $out" >&2

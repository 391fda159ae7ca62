#!/usr/bin/env bash
# The one prepared check for a GPU machine, run as one call inside a time budget
# (BUDGET seconds, 540 unless set; each stage gets the smaller of its own limit and what is
# left, so the check ends in time and keeps what it has):
#   1. build ramo._C with CUDA against the machine's torch (editable install; if the CUDA build
#      fails, a CPU-only build follows so that the Triton kernels can still be tested);
#   2. `ramo info`, then the op tests (cuda and triton tests included: on a GPU Triton runs
#      compiled, not interpreted), in parallel processes where pytest-xdist is installed;
#   3. the rule_head_select benchmark at N = 16384, D = 4096, R = 100, the ops' kernel time
#      against their wall time (benchmarks/profile_ops.py), the select_rules benchmark, the
#      op tests' cuda cases under compute-sanitizer's memcheck, then the rule_head_select and
#      judge_scores benchmarks at all shapes, judge_scores in bf16 and run_all's quick table,
#      as long as time is left (on an H200 all stages but profile_ops.py and run_all took 320 s).
# Logs and results go to RESULTS_DIR (benchmarks/results/gpu unless set); copy them into
# benchmarks/results/ afterwards. The exit code is 1 if any stage failed or was skipped.
#
#   bash benchmarks/gpu_check.sh
#   RESULTS_DIR=/tmp/gpu BUDGET=420 bash benchmarks/gpu_check.sh
#   tar czf gpu.tgz -C /tmp/gpu .      # the logs and results in one file, to copy back
# Under an outer time limit, set it about 40 s above BUDGET.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${RESULTS_DIR:-benchmarks/results/gpu}"
mkdir -p "$RESULTS"
PY="${PYTHON:-python3}"
deadline=$((SECONDS + ${BUDGET:-540}))
status=0

NVCC="$(command -v nvcc || true)"
if [ -z "$NVCC" ]; then echo "nvcc is not on the PATH" >&2; exit 1; fi
# CUDA_HOME must be the toolkit root, as nvcc itself knows it (nvcc on the PATH may be a
# wrapper script, or a link).
toolkit="$(nvcc --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p')"
export CUDA_HOME="${CUDA_HOME:-$(readlink -f "${toolkit:-$(dirname "$(readlink -f "$NVCC")")/..}")}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}" PYTHONUNBUFFERED=1
# The GPU machine may have no network: pip must not wait for a package index.
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# stage NAME LIMIT LOG COMMAND...: runs COMMAND for at most LIMIT seconds or the time left,
# its output into RESULTS/LOG, of which the tail is shown.
stage() {
  local name=$1 limit=$2 log=$RESULTS/$3 left=$((deadline - SECONDS)) rc
  shift 3
  if [ "$left" -lt "$limit" ]; then limit=$left; fi
  if [ "$limit" -lt 15 ]; then
    echo "== $name: skipped, the budget is spent"; status=1; return 1
  fi
  echo "== $name ($(date +%T), at most ${limit} s)"
  timeout "$limit" "$@" >"$log" 2>&1
  rc=$?
  tail -n "${TAIL:-12}" "$log"
  if [ "$rc" -ne 0 ]; then echo "== $name: exit code $rc"; status=1; fi
  return "$rc"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
  | tee "$RESULTS/nvidia-smi.txt"
# An editable install: it also maps kernels/triton to ramo.triton_kernels.
TAIL=4 stage "build with CUDA" 240 build.log \
  "$PY" -m pip install --no-build-isolation --no-deps -e . \
  || TAIL=4 RAMO_NO_CUDA=1 stage "CPU-only build (the CUDA build failed)" 150 build_cpu.log \
    "$PY" -m pip install --no-build-isolation --no-deps -e .
TAIL=20 stage "ramo info" 30 info.txt "$PY" -m ramo info

# The op tests only: the judge and rating tests need the offline judge, which a bare GPU
# machine lacks, and they run no GPU kernel of ramo's own.
op_tests=(python_tests/test_select_rules.py python_tests/test_judge_scores.py
          python_tests/test_rule_head_select.py)
parallel=()
if "$PY" -c "import xdist" 2>/dev/null; then parallel=(-n 8); fi
TAIL=25 stage "op tests" 200 pytest.log \
  "$PY" -m pytest "${op_tests[@]}" -q -p no:cacheprovider "${parallel[@]}" --tb=short -rfE --durations=10

cuda=(--device cuda --out "$RESULTS")
TAIL=8 stage "rule_head_select, N 16384 D 4096 R 100" 60 bench_rule_head_select_4096.log \
  "$PY" benchmarks/bench_rule_head_select.py "${cuda[@]}" --shape 16384,4096,100 --min-time 1
TAIL=14 stage "where the time goes (torch.profiler)" 90 profile_ops.log \
  "$PY" benchmarks/profile_ops.py "${cuda[@]}"
TAIL=14 stage "select_rules, all shapes" 170 bench_select_rules.log \
  "$PY" benchmarks/bench_select_rules.py "${cuda[@]}" --min-time 0.2
TAIL=8 stage "memcheck of the cuda tests" 90 memcheck.log \
  compute-sanitizer --tool memcheck --error-exitcode 1 \
  "$PY" -m pytest "${op_tests[@]}" -q -p no:cacheprovider -k "cuda and not compile and not opcheck" -x
TAIL=16 stage "rule_head_select, all shapes" 100 bench_rule_head_select.log \
  "$PY" benchmarks/bench_rule_head_select.py "${cuda[@]}" --min-time 0.3
TAIL=6 stage "judge_scores, all shapes" 60 bench_judge_scores.log \
  "$PY" benchmarks/bench_judge_scores.py "${cuda[@]}" --min-time 0.2
TAIL=6 stage "judge_scores, bf16" 40 bench_judge_scores_bf16.log \
  "$PY" benchmarks/bench_judge_scores.py "${cuda[@]}" --quick --dtype bfloat16 --min-time 0.2
TAIL=20 stage "run_all, quick" 150 run_all.log \
  "$PY" benchmarks/run_all.py --device cuda --out "$RESULTS/run_all"
echo "== done ($(date +%T)), status $status"
exit "$status"

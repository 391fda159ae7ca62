#!/usr/bin/env bash
# The one prepared check for a lent GPU machine (well under 8 minutes on an H100 / H200):
# build ramo._C with CUDA against the machine's torch (editable install), print `ramo info`, run the op
# tests (cuda and triton tests included: on a GPU Triton runs compiled, not interpreted), and
# run the select_rules, judge_scores and rule_head_select benchmarks on the GPU. Logs and results go to $OUT (the device tool's
# folder) or benchmarks/results/gpu; copy them into benchmarks/results/ afterwards.
#
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
NVCC="$(command -v nvcc || true)"
if [ -z "$NVCC" ]; then echo "nvcc is not on the PATH" >&2; exit 1; fi
# CUDA_HOME must be the toolkit root, the folder above the real nvcc's bin/.
export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}" PYTHONUNBUFFERED=1
status=0

echo "== build ($(date +%T))"
# An editable install: it also maps kernels/triton to ramo.triton_kernels.
timeout 300 "$PY" -m pip install --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1 \
  || status=1
tail -5 "$OUT/build.log"
"$PY" -m ramo info | tee "$OUT/info.txt"

echo "== tests ($(date +%T))"
# The op tests only: the judge and rating tests need transformers and the offline judge,
# which a bare GPU machine may lack, and they exercise no GPU kernel of ramo's own.
timeout 240 "$PY" -m pytest python_tests/test_select_rules.py python_tests/test_judge_scores.py \
  python_tests/test_rule_head_select.py -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | tail -15
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== benchmark ($(date +%T))"
timeout 240 "$PY" benchmarks/bench_select_rules.py --device cuda --min-time 0.2 --out "$OUT" \
  2>&1 | tee "$OUT/bench.log" | tail -20
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== judge_scores benchmark ($(date +%T))"
timeout 240 "$PY" benchmarks/bench_judge_scores.py --device cuda --min-time 0.2 --out "$OUT" \
  2>&1 | tee "$OUT/bench_judge_scores.log" | tail -20
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "== rule_head_select benchmark ($(date +%T))"
timeout 240 "$PY" benchmarks/bench_rule_heads.py --device cuda --min-time 0.2 --out "$OUT" \
  2>&1 | tee "$OUT/bench_rule_heads.log" | tail -20
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "== done ($(date +%T)), status $status"
exit "$status"

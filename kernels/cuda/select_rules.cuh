// Launcher of the CUDA select_rules kernel (docs/architecture.md, "select_rules"). Plain
// pointers and the CUDA runtime only, so this header and select_rules.cu compile with nvcc
// alone; the torch glue that fills SelectRulesParams lives in csrc/cuda/select_rules.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ramo {
namespace cuda {

enum class ScoreType { kFloat16, kBFloat16, kFloat32, kFloat64 };

// acc_t is float for fp16 / bf16 / fp32 scores and double for fp64 scores.
template <typename acc_t>
struct SelectRulesParams {
  const void* scores_a;  // [n, r] contiguous, of the ScoreType passed to the launcher
  const void* scores_b;  // [n, r] contiguous
  const acc_t* relevance;  // nullptr, or [r] (row stride 0) or [n, r] (row stride r)
  int64_t relevance_row_stride;
  const bool* valid;  // nullptr, or [r] (row stride 0) or [n, r] (row stride r)
  int64_t valid_row_stride;
  int64_t n;
  int64_t r;
  int k;  // 1 <= k <= min(r, kMaxFastK)
  acc_t discrepancy_weight;
  acc_t relevance_weight;
  acc_t tie_tolerance;
  int64_t* indices;  // [n, k]
  acc_t* criterion;  // [n, k]
  acc_t* reward_a;   // [n]
  acc_t* reward_b;   // [n]
  acc_t* margin;     // [n]
  int8_t* preference;  // [n]
  // Preset to n by the caller; the kernel lowers it (atomicMin) to the first row that has a
  // non-finite score or relevance in a valid position. Rows with such values may have
  // arbitrary outputs: the caller raises instead of returning them.
  unsigned long long* bad_row;
};

cudaError_t launch_select_rules(ScoreType type, const SelectRulesParams<float>& p,
                                cudaStream_t stream);
cudaError_t launch_select_rules(ScoreType type, const SelectRulesParams<double>& p,
                                cudaStream_t stream);

}  // namespace cuda
}  // namespace ramo

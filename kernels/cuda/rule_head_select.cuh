// Launcher of the CUDA kernel of rule_head_select's sparse backward (docs/architecture.md,
// "rule_head_select"). Plain pointers and the CUDA runtime only, so this header and
// rule_head_select.cu compile with nvcc alone; the torch glue (and the forward: two cuBLAS
// addmm + the CUDA select_rules kernel) lives in csrc/cuda/rule_head_select.cpp and
// csrc/rule_head_select.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "select_rules.cuh"  // ScoreType

namespace ramo {
namespace cuda {

// acc_t is float for fp16 / bf16 / fp32 heads and double for fp64 heads.
template <typename acc_t>
struct RuleHeadBackwardParams {
  const acc_t* grad_a;     // [n] gradient of reward_a (grad_margin folded in)
  const acc_t* grad_b;     // [n]
  const int64_t* indices;  // [n, k], values in [-1, r); -1 is padding and is skipped
  const void* hidden_a;    // [n, d] contiguous, of the ScoreType passed to the launcher
  const void* hidden_b;    // [n, d]
  const void* weight;      // [r, d]
  void* grad_hidden_a;     // [n, d] of the ScoreType, written
  void* grad_hidden_b;     // [n, d]
  // Zeroed by the caller and accumulated with atomicAdd (fp32, or fp64 for fp64 heads):
  // the sums are not bitwise reproducible from run to run (the CPU backend's are).
  acc_t* grad_weight;  // [r, d]
  acc_t* grad_bias;    // [r]
  int64_t n;
  int64_t d;
  int64_t r;
  int k;
};

cudaError_t launch_rule_head_select_backward(ScoreType type,
                                             const RuleHeadBackwardParams<float>& p,
                                             cudaStream_t stream);
cudaError_t launch_rule_head_select_backward(ScoreType type,
                                             const RuleHeadBackwardParams<double>& p,
                                             cudaStream_t stream);

}  // namespace cuda
}  // namespace ramo

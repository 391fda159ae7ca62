// Launcher of the CUDA kernels of rule_head_select's sparse backward (docs/architecture.md,
// "rule_head_select"). Plain pointers and the CUDA runtime only, so this header and
// rule_head_select.cu compile with nvcc alone; the torch glue (and the forward: two cuBLAS
// addmm + the CUDA select_rules kernel) lives in csrc/cuda/rule_head_select.cpp and
// csrc/rule_head_select.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "acc_types.h"               // ScoreType
#include "rule_head_select_steps.h"  // RuleHeadBackwardParams

namespace ramo {
namespace cuda {

cudaError_t launch_rule_head_select_backward(ScoreType type,
                                             const RuleHeadBackwardParams<float>& p,
                                             cudaStream_t stream);
cudaError_t launch_rule_head_select_backward(ScoreType type,
                                             const RuleHeadBackwardParams<double>& p,
                                             cudaStream_t stream);

}  // namespace cuda
}  // namespace ramo

// Launcher of the CUDA select_rules kernel (docs/architecture.md, "select_rules"). Plain
// pointers and the CUDA runtime only, so this header and select_rules.cu compile with nvcc
// alone; the torch glue that fills SelectRulesParams lives in csrc/cuda/select_rules.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "select_rules_steps.h"  // SelectRulesParams

namespace ramo {
namespace cuda {

enum class ScoreType { kFloat16, kBFloat16, kFloat32, kFloat64 };

cudaError_t launch_select_rules(ScoreType type, const SelectRulesParams<float>& p,
                                cudaStream_t stream);
cudaError_t launch_select_rules(ScoreType type, const SelectRulesParams<double>& p,
                                cudaStream_t stream);

}  // namespace cuda
}  // namespace ramo

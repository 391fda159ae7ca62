// The torch dtype of scores / hidden states as the enum the CUDA launchers take
// (kernels/cuda/acc_types.h), for every CUDA glue file that launches on those dtypes.
#pragma once

#include <ATen/core/ScalarType.h>

#include "../../kernels/cuda/acc_types.h"

namespace ramo {

inline cuda::ScoreType score_type(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return cuda::ScoreType::kFloat16;
    case at::kBFloat16: return cuda::ScoreType::kBFloat16;
    case at::kFloat: return cuda::ScoreType::kFloat32;
    default: return cuda::ScoreType::kFloat64;
  }
}

}  // namespace ramo

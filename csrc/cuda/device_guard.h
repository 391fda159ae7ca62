// The device guard that every CUDA glue function opens first.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>

#include <optional>

namespace ramo {

// Sets the current device to `first`'s only when it is a CUDA tensor: a direct torch.ops call
// with that input on the CPU and another on CUDA comes to the CUDA kernel too, and must reach
// the op's device check and its error, not the guard's. (A guard can be neither copied nor
// moved; C++17 returns it in place.)
inline c10::cuda::OptionalCUDAGuard guard_device_of(const at::Tensor& first) {
  return c10::cuda::OptionalCUDAGuard(first.is_cuda() ? std::make_optional(first.device())
                                                      : std::nullopt);
}

}  // namespace ramo

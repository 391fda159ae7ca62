// The fp16 type and conversions of CUDA's cuda_fp16.h that kernels/cuda uses, on the host
// (cuda_runtime.h here says why). Conversions round to nearest even, as the device's do.
#pragma once

#include <cstdint>
#include <cstring>

struct __half {
  uint16_t bits;
};

inline float __half2float(__half x) {
  _Float16 h;
  std::memcpy(&h, &x.bits, sizeof h);
  return static_cast<float>(h);
}

inline __half __float2half_rn(float x) {
  const _Float16 h = static_cast<_Float16>(x);
  __half out;
  std::memcpy(&out.bits, &h, sizeof h);
  return out;
}

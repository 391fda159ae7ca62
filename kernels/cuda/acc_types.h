// The storage dtype of scores / hidden states (fp16, bf16, fp32, fp64) as the launchers of every
// op take it (ScoreType), and conversions between it and the accumulation dtype (fp32, or fp64
// for fp64), shared by the CUDA kernels and their steps headers. The fp16 / bf16 overloads
// need CUDA's fp16 / bf16 headers: nvcc's, or the host emulation's (csrc/tests/simt, where the
// C++ unit tests run the kernels).
#pragma once

#include "../common/arith.h"  // RAMO_HD

#if defined(__CUDACC__) || defined(RAMO_HOST_SIMT)
#define RAMO_HALF_TYPES 1
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace ramo {
namespace cuda {

enum class ScoreType { kFloat16, kBFloat16, kFloat32, kFloat64 };

RAMO_HD float to_acc(float x) { return x; }
RAMO_HD double to_acc(double x) { return x; }
RAMO_HD void store_rn(float* p, float x) { *p = x; }
RAMO_HD void store_rn(double* p, double x) { *p = x; }
#if defined(RAMO_HALF_TYPES)
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void store_rn(__half* p, float x) { *p = __float2half_rn(x); }
__device__ __forceinline__ void store_rn(__nv_bfloat16* p, float x) {
  *p = __float2bfloat16_rn(x);
}
#endif

}  // namespace cuda
}  // namespace ramo

// What the device code of every op shares: the host / device function qualifier, the unroll
// hint, and the separately rounded arithmetic (docs/architecture.md, "Exactness"). Plain
// C++: no torch headers, so nvcc compiles it alone.
#pragma once

#if defined(__CUDACC__)
#define RAMO_HD __host__ __device__ __forceinline__
#else
#define RAMO_HD inline
#endif

// Unrolled by the device compiler (loads batched ahead of use); host compilers take the loop
// as written.
#if defined(__CUDA_ARCH__)
#define RAMO_UNROLL _Pragma("unroll")
#else
#define RAMO_UNROLL
#endif

namespace ramo {

// Each arithmetic step is rounded on its own: a fused multiply-add would round once and make
// a result differ from the reference in the last bit (in select_rules, enough to flip a
// near-tie). On the host this relies on -ffp-contract=off; on the device the _rn intrinsics
// are never fused.
RAMO_HD float sub_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(x, y);
#else
  return x - y;
#endif
}
RAMO_HD float mul_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(x, y);
#else
  return x * y;
#endif
}
RAMO_HD float add_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(x, y);
#else
  return x + y;
#endif
}
RAMO_HD double sub_rn(double x, double y) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(x, y);
#else
  return x - y;
#endif
}
RAMO_HD double mul_rn(double x, double y) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(x, y);
#else
  return x * y;
#endif
}
RAMO_HD double add_rn(double x, double y) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(x, y);
#else
  return x + y;
#endif
}

}  // namespace ramo

// CUDA kernel of rule_head_select's sparse backward (docs/architecture.md, "rule_head_select"):
//   grad_hidden_x[n] = g_x[n] * sum_j weight[idx[n, j]]               (selection order)
//   grad_weight[r]  += g_a[n] * hidden_a[n] + g_b[n] * hidden_b[n]    for each idx[n, j] = r
//   grad_bias[r]    += g_a[n] + g_b[n]                                for each idx[n, j] = r
// One block per (row, tile of kThreads columns): each thread owns one column of its row,
// reads hidden_a / hidden_b once, gathers the k selected weight rows (coalesced along the
// row) and adds its term to grad_weight with atomicAdd (fp32, fp64 for fp64 heads), since
// many rows select the same rule. Every product and sum is a separately rounded _rn
// intrinsic (never contracted into an FMA), as in the CPU kernel.
#include "rule_head_select.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "../common/select_rules.h"  // mul_rn, add_rn

namespace ramo {
namespace cuda {

namespace {

constexpr int kThreads = 256;
// Grid rows beyond this are taken by a grid-stride loop.
constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;

__device__ __forceinline__ float load_acc(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ float load_acc(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load_acc(const float* p) { return *p; }
__device__ __forceinline__ double load_acc(const double* p) { return *p; }

__device__ __forceinline__ void store(__half* p, float x) { *p = __float2half_rn(x); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(double* p, double x) { *p = x; }

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    rule_head_backward_kernel(const RuleHeadBackwardParams<acc_t> p) {
  const int64_t col = static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x;
  const bool in_cols = col < p.d;
  const bool adds_bias = blockIdx.y == 0 && threadIdx.x == 0;
  const auto* ha = static_cast<const scalar_t*>(p.hidden_a);
  const auto* hb = static_cast<const scalar_t*>(p.hidden_b);
  const auto* w = static_cast<const scalar_t*>(p.weight);
  auto* gha = static_cast<scalar_t*>(p.grad_hidden_a);
  auto* ghb = static_cast<scalar_t*>(p.grad_hidden_b);
  for (int64_t row = blockIdx.x; row < p.n; row += gridDim.x) {
    const acc_t ga = p.grad_a[row], gb = p.grad_b[row];
    const int64_t at = row * p.d + col;
    acc_t term = 0;
    if (in_cols) term = add_rn(mul_rn(ga, load_acc(ha + at)), mul_rn(gb, load_acc(hb + at)));
    const acc_t g_bias = add_rn(ga, gb);
    acc_t sum = 0;
    for (int j = 0; j < p.k; ++j) {
      const int64_t rule = p.indices[row * p.k + j];
      if (rule < 0) continue;
      if (in_cols) {
        sum = add_rn(sum, load_acc(w + rule * p.d + col));
        atomicAdd(p.grad_weight + rule * p.d + col, term);
      }
      if (adds_bias) atomicAdd(p.grad_bias + rule, g_bias);
    }
    if (in_cols) {
      store(gha + at, mul_rn(ga, sum));
      store(ghb + at, mul_rn(gb, sum));
    }
  }
}

template <typename scalar_t, typename acc_t>
cudaError_t dispatch(const RuleHeadBackwardParams<acc_t>& p, cudaStream_t stream) {
  if (p.n == 0 || p.d == 0) return cudaSuccess;
  const int64_t col_blocks = (p.d + kThreads - 1) / kThreads;
  if (col_blocks > 65535) return cudaErrorInvalidValue;  // D beyond 16.7M columns
  const dim3 grid(static_cast<unsigned>(p.n < kMaxRowBlocks ? p.n : kMaxRowBlocks),
                  static_cast<unsigned>(col_blocks));
  rule_head_backward_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_rule_head_select_backward(ScoreType type,
                                             const RuleHeadBackwardParams<float>& p,
                                             cudaStream_t stream) {
  switch (type) {
    case ScoreType::kFloat16: return dispatch<__half, float>(p, stream);
    case ScoreType::kBFloat16: return dispatch<__nv_bfloat16, float>(p, stream);
    case ScoreType::kFloat32: return dispatch<float, float>(p, stream);
    default: return cudaErrorInvalidValue;  // fp64 heads accumulate in fp64
  }
}

cudaError_t launch_rule_head_select_backward(ScoreType type,
                                             const RuleHeadBackwardParams<double>& p,
                                             cudaStream_t stream) {
  if (type != ScoreType::kFloat64) return cudaErrorInvalidValue;
  return dispatch<double, double>(p, stream);
}

}  // namespace cuda
}  // namespace ramo

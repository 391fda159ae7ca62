// CUDA judge_scores kernels (docs/architecture.md, "judge_scores");
// ramo/reference/judge_scores.py is the specification. The logits of a vocabulary chunk come
// from cuBLAS (the glue's at::mm_out into a buffer reused by every chunk); these kernels
// only fold them and finish the rows:
//
//   1. fold_kernel ("vocab" mode, once per chunk): a warp per (row, segment of kSegmentCols
//      columns) takes the segment's max, then its sum of exp(logit - max), each lane over
//      columns lane, lane + 32, ... (coalesced) and the warp by a shuffle butterfly, and
//      writes the pair as that segment's partial state. Segments give the GPU enough warps
//      when B is small.
//   2. finish_kernel: a warp per row merges the row's partial states (lane l takes segments
//      l, l + 32, ..., then the butterfly) and one lane computes the outputs from the
//      listed ids' logits (kernels/common/judge_scores.h).
// The per-lane steps live in judge_scores_steps.h.
#include "judge_scores.cuh"

#include <cstdint>

#include "grid.h"

namespace ramo {
namespace cuda {
namespace {

using namespace judge_scores_steps;

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kLanes;
constexpr int64_t kMaxRowBlocksY = RAMO_GRID_CAP(65535);  // grid y limit of fold_kernel
constexpr int64_t kMaxRowBlocks = RAMO_GRID_CAP(int64_t{1} << 20);  // finish_kernel's grid
// Rows beyond what a grid covers are taken by a grid-stride loop.

// The butterfly leaves the same value in every lane: max and + are commutative, and
// lse_merge(a, b) and lse_merge(b, a) round alike.
template <typename acc_t>
__device__ __forceinline__ acc_t warp_max(acc_t x) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    const acc_t y = __shfl_xor_sync(kFullMask, x, offset);
    x = y > x ? y : x;
  }
  return x;
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t x) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    x += __shfl_xor_sync(kFullMask, x, offset);
  }
  return x;
}

template <typename acc_t>
__device__ __forceinline__ judge::LseState<acc_t> warp_merge(judge::LseState<acc_t> st) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    const judge::LseState<acc_t> other{__shfl_xor_sync(kFullMask, st.max, offset),
                                       __shfl_xor_sync(kFullMask, st.sum, offset)};
    st = judge::lse_merge(st, other);
  }
  return st;
}

template <typename acc_t>
__global__ void __launch_bounds__(kThreads) fold_kernel(const FoldParams<acc_t> f) {
  const int lane = static_cast<int>(threadIdx.x) % kLanes;
  const int warp = static_cast<int>(threadIdx.x) / kLanes;
  const int64_t seg = blockIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.y) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.y) * kWarpsPerBlock + warp; row < f.b;
       row += step) {
    const acc_t m = warp_max(lane_max(f, row, seg, lane));
    const acc_t s = warp_sum(lane_sum(f, row, seg, lane, m));
    if (lane == 0) write_partial(f, row, seg, m, s);
  }
}

template <typename acc_t>
__global__ void __launch_bounds__(kThreads) finish_kernel(const FinishParams<acc_t> p) {
  const int lane = static_cast<int>(threadIdx.x) % kLanes;
  const int warp = static_cast<int>(threadIdx.x) / kLanes;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; row < p.b;
       row += step) {
    judge::LseState<acc_t> vocab = judge::lse_empty<acc_t>();
    if (!p.choices) vocab = warp_merge(lane_vocab_state(p, row, lane));
    if (lane == 0) finish_row(p, row, vocab);
  }
}

int64_t row_blocks(int64_t b, int64_t limit) {
  const int64_t blocks = (b + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return blocks < limit ? blocks : limit;
}

template <typename acc_t>
cudaError_t fold(const FoldParams<acc_t>& f, cudaStream_t stream) {
  if (f.b < 0 || f.c < 0 || f.first_segment < 0) return cudaErrorInvalidValue;
  if (f.b == 0 || f.c == 0) return cudaSuccess;
  const int64_t segments = segments_of(f.c);
  if (segments > INT32_MAX) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(segments),
                  static_cast<unsigned>(row_blocks(f.b, kMaxRowBlocksY)));
  fold_kernel<acc_t><<<grid, kThreads, 0, stream>>>(f);
  return cudaGetLastError();
}

template <typename acc_t>
cudaError_t finish(const FinishParams<acc_t>& p, cudaStream_t stream) {
  if (p.b < 0 || p.n_listed < 2 || p.n_yes < 1 || p.n_no < 1 || p.n_yes + p.n_no > p.n_listed ||
      (!p.choices && p.segments < 1)) {
    return cudaErrorInvalidValue;
  }
  if (p.b == 0) return cudaSuccess;
  finish_kernel<acc_t>
      <<<static_cast<unsigned>(row_blocks(p.b, kMaxRowBlocks)), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_judge_scores_fold(const JudgeScoresFoldParams<float>& p, cudaStream_t stream) {
  return fold(p, stream);
}

cudaError_t launch_judge_scores_fold(const JudgeScoresFoldParams<double>& p,
                                     cudaStream_t stream) {
  return fold(p, stream);
}

cudaError_t launch_judge_scores_finish(const JudgeScoresFinishParams<float>& p,
                                       cudaStream_t stream) {
  return finish(p, stream);
}

cudaError_t launch_judge_scores_finish(const JudgeScoresFinishParams<double>& p,
                                       cudaStream_t stream) {
  return finish(p, stream);
}

}  // namespace cuda
}  // namespace ramo

// CUDA judge_scores kernels (docs/architecture.md, "judge_scores");
// ramo/reference/judge_scores.py is the specification. Never more than a [32, 64] tile of
// logits exists at a time.
//
//   1. vocab_lse_kernel ("vocab" mode): block (i, s) takes rows [32 i, 32 i + 32) and the
//      s-th slice of the vocabulary, which it walks in tiles of 64 tokens. A tile's logits
//      are a plain shared-memory tiled matmul (hidden and weight read in slices of 32 along
//      D; each thread accumulates 2 x 4 outputs), then one thread per row folds the tile
//      into that row's running (max, sum of exp). Each slice writes its partial state; the
//      slices give the GPU enough blocks when B is small.
//   2. listed_logits_kernel: one thread per (row, listed id) computes that logit. This reads
//      only the listed rows of weight, which is all "choices" mode needs.
//   3. finish_kernel: one thread per row merges the slices' states into the vocabulary
//      log-sum-exp and computes the outputs (kernels/common/judge_scores.h).
// The steps between barriers live in judge_scores_tile.h, where the C++ unit tests run them.
#include "judge_scores.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace ramo {
namespace cuda {
namespace {

using namespace judge_tile;

constexpr int kSmallThreads = 128;  // per block of the two per-item kernels
// Items beyond what the grid covers are taken by a grid-stride loop.
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) vocab_lse_kernel(const Params<acc_t> p) {
  __shared__ Shared<acc_t> sh;
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t split = blockIdx.y;
  ThreadState<acc_t> st;
  st.row = judge::lse_empty<acc_t>();
  const int64_t first = split * p.tiles_per_split;
  const int64_t tiles = (p.v + kCols - 1) / kCols;
  const int64_t last = first + p.tiles_per_split < tiles ? first + p.tiles_per_split : tiles;
  for (int64_t tile = first; tile < last; ++tile) {
    const int64_t tok0 = tile * kCols;
    start_tile(st);
    for (int64_t k0 = 0; k0 < p.d; k0 += kDepth) {
      load_slice<scalar_t>(p, sh, tid, row0, tok0, k0);
      __syncthreads();
      accumulate_slice(sh, st, tid);
      __syncthreads();  // before the next slice overwrites sh.h and sh.w
    }
    store_logits(p, sh, st, tid, tok0);
    __syncthreads();
    fold_row(sh, st, tid);
    __syncthreads();  // before the next tile overwrites sh.logits
  }
  write_partial(p, st, tid, row0, split);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kSmallThreads) listed_logits_kernel(const Params<acc_t> p) {
  const int64_t items = p.b * p.n_listed;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       item < items; item += step) {
    listed_logit<scalar_t>(p, item);
  }
}

template <typename acc_t>
__global__ void __launch_bounds__(kSmallThreads) finish_kernel(const Params<acc_t> p) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; row < p.b;
       row += step) {
    finish_row(p, row);
  }
}

unsigned blocks_for(int64_t items) {
  const int64_t blocks = (items + kSmallThreads - 1) / kSmallThreads;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

template <typename scalar_t, typename acc_t>
cudaError_t launch(const Params<acc_t>& p, cudaStream_t stream) {
  if (p.b == 0) return cudaSuccess;
  if (p.b < 0 || p.v < 1 || p.d < 0 || p.n_listed < 2 || p.n_yes < 1 || p.n_no < 1 ||
      p.n_yes + p.n_no > p.n_listed) {
    return cudaErrorInvalidValue;
  }
  if (!p.choices) {
    const int64_t row_blocks = (p.b + kRows - 1) / kRows;
    if (row_blocks > INT32_MAX || p.splits < 1 || p.splits > 65535 ||
        p.splits * p.tiles_per_split * kCols < p.v) {
      return cudaErrorInvalidValue;
    }
    const dim3 grid(static_cast<unsigned>(row_blocks), static_cast<unsigned>(p.splits));
    vocab_lse_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(p);
  }
  listed_logits_kernel<scalar_t, acc_t>
      <<<blocks_for(p.b * p.n_listed), kSmallThreads, 0, stream>>>(p);
  finish_kernel<acc_t><<<blocks_for(p.b), kSmallThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_judge_scores(HiddenType type, const JudgeScoresParams<float>& p,
                                cudaStream_t stream) {
  switch (type) {
    case HiddenType::kFloat16: return launch<__half, float>(p, stream);
    case HiddenType::kBFloat16: return launch<__nv_bfloat16, float>(p, stream);
    case HiddenType::kFloat32: return launch<float, float>(p, stream);
    default: return cudaErrorInvalidValue;  // fp64 inputs accumulate in fp64
  }
}

cudaError_t launch_judge_scores(HiddenType type, const JudgeScoresParams<double>& p,
                                cudaStream_t stream) {
  if (type != HiddenType::kFloat64) return cudaErrorInvalidValue;
  return launch<double, double>(p, stream);
}

}  // namespace cuda
}  // namespace ramo

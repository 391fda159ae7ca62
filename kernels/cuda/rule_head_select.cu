// CUDA kernels of rule_head_select's sparse backward (docs/architecture.md, "rule_head_select");
// the per-thread steps, and the formulas, are in rule_head_select_steps.h.
//
//   * tiled_kernel (the rule pool's sums fit in 48 KB of shared memory: r up to 188 for
//     fp32 heads, 94 for fp64): a block per (tile of kTileCols columns, range of rows). Its
//     threads keep their column's grad_weight sums in shared memory over all the block's
//     rows and add them to grad_weight once at the end, so the global atomics number one per
//     (block, selected rule, column) instead of one per (row, selected rule, column): at
//     N = 16384, R = 100, k = 5, D = 4096 on 132 SMs, 33 row ranges x 100 x 4096 = 14M
//     instead of 335M, which were taken to bound the backward (about 1.6 ms on an H200,
//     where reading and writing the hidden states takes 0.3 ms).
//     Rows are loaded kBatch at a time so that several loads are in flight per thread.
//   * direct_kernel (larger pools): a block per (row, tile of kDirectThreads columns); each
//     thread adds its terms to grad_weight with one atomicAdd per selected rule.
// Both add in fp32 (fp64 for fp64 heads) and write grad_hidden in the heads' dtype.
#include "rule_head_select.cuh"

#include <cstdint>

#include "grid.h"

namespace ramo {
namespace cuda {

namespace {

using namespace rule_head_select_steps;

constexpr int kBatch = 8;
constexpr int kDirectThreads = 256;
// Without opting in to more, a block gets 48 KB of dynamic shared memory on every GPU.
constexpr int64_t kMaxTileShared = 48 * 1024;
// Row blocks of the direct kernel beyond this are taken by a grid-stride loop.
constexpr int64_t kMaxRowBlocks = RAMO_GRID_CAP(int64_t{1} << 20);
// Blocks of the tiled kernel per SM that the row ranges aim for (about two waves).
constexpr int kTiledBlocksPerSm = 16;

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kTileCols)
    tiled_kernel(const RuleHeadBackwardParams<acc_t> p, const int64_t rows_per_block) {
  extern __shared__ __align__(16) unsigned char shared[];
  const TileShared<acc_t> sh = TileShared<acc_t>::at(shared, p.r);
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kTileCols;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * rows_per_block;
  const int64_t last = first + rows_per_block < p.n ? first + rows_per_block : p.n;
  tile_start(p, sh, tid);
  for (int64_t row = first; row < last; row += kBatch) {
    RowValues<acc_t> v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      v[u] = row + u < last ? load_row<scalar_t>(p, row + u, col0 + tid) : RowValues<acc_t>{};
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (row + u < last) tile_row<scalar_t>(p, sh, tid, col0, row + u, v[u]);
    }
  }
  __syncthreads();  // thread 0's flags and bias sums, read by every thread
  tile_flush(p, sh, tid, col0);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kDirectThreads)
    direct_kernel(const RuleHeadBackwardParams<acc_t> p) {
  const int64_t col = static_cast<int64_t>(blockIdx.y) * kDirectThreads + threadIdx.x;
  for (int64_t row = blockIdx.x; row < p.n; row += gridDim.x) {
    direct_row<scalar_t>(p, row, col, load_row<scalar_t>(p, row, col));
  }
}

int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

template <typename scalar_t, typename acc_t>
cudaError_t dispatch(const RuleHeadBackwardParams<acc_t>& p, cudaStream_t stream) {
  if (p.n < 0 || p.d < 0 || p.r < 0 || p.k < 0) return cudaErrorInvalidValue;
  if (p.n == 0) return cudaSuccess;
  // At least one column tile, also for d = 0: the bias gradient is still owed.
  const int64_t shared = tile_shared_bytes<acc_t>(p.r);
  if (shared <= kMaxTileShared) {
    int device = 0, sms = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess) {
      err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    }
    if (err != cudaSuccess) return err;
    const int64_t rows = tile_rows(p.n, p.d, int64_t{kTiledBlocksPerSm} * sms);
    const int64_t col_tiles = p.d > 0 ? ceil_div(p.d, kTileCols) : 1;
    if (col_tiles > INT32_MAX) return cudaErrorInvalidValue;
    const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(ceil_div(p.n, rows)));
    tiled_kernel<scalar_t, acc_t><<<grid, kTileCols, static_cast<size_t>(shared), stream>>>(p, rows);
  } else {
    const int64_t col_blocks = p.d > 0 ? ceil_div(p.d, kDirectThreads) : 1;
    if (col_blocks > 65535) return cudaErrorInvalidValue;  // D beyond 16.7M columns
    const dim3 grid(static_cast<unsigned>(p.n < kMaxRowBlocks ? p.n : kMaxRowBlocks),
                    static_cast<unsigned>(col_blocks));
    direct_kernel<scalar_t, acc_t><<<grid, kDirectThreads, 0, stream>>>(p);
  }
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

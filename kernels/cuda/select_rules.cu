// CUDA select_rules kernels (docs/architecture.md, "select_rules");
// ramo/reference/select_rules.py is the specification, reproduced bit for bit.
//
//   * Many rows (n >= kThreadPathMinRows) of up to kWarpPathMaxR rules: one thread per row
//     (select_row in select_rules_steps.h) scans the row's rules in order into a private
//     TopK list and writes the outputs, like the CPU kernel's row loop. A row costs a thread
//     about 15 instructions per rule; the warp-per-row path below spends about as much per
//     row on each of its k shuffle merges, which left it instruction-bound at 9% of the
//     H200's copy bandwidth (N = 262144, R = 100, k = 5).
//   * Fewer rows, which would leave most of the GPU idle one per thread, or longer rows,
//     which one thread would scan too slowly: every thread scans
//     an interleaved subset of a row's rules (lane, lane + stride, ...) into a private TopK
//     list, which arrives in increasing rule order as TopK requires. A warp then merges its
//     lanes' lists one output slot at a time: each lane offers the best entry it has not
//     given yet and a shuffle reduction agrees on the best offer under the full order (rank
//     key, then rule index). Since rule indices are distinct, the winner is unique and the
//     result does not depend on scheduling.
//       - Rows of up to kWarpPathMaxR rules: one warp per row, several rows per block.
//       - Longer rows: one block per row; each warp merges into a list in shared memory,
//         then warp 0 merges those lists the same way.
// Rewards are summed serially in selection order (by one thread, or one warp after the
// selection is known), so the rounding matches the reference's running sum.
#include "select_rules.cuh"

#include <climits>
#include <cstdint>

#include "grid.h"

namespace ramo {
namespace cuda {
namespace {

using namespace select_rules_steps;

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpSize = 32;
constexpr int kThreads = 256;  // per block of the warp and block paths
constexpr int kWarpsPerBlock = kThreads / kWarpSize;
constexpr int kRowThreads = 128;  // per block of the thread-per-row path
// Rows beyond what the grid covers are taken by a grid-stride loop.
constexpr int64_t kMaxBlocks = RAMO_GRID_CAP(int64_t{1} << 20);
// Index of "no entry": ranks after every real entry, even one whose key is -inf.
constexpr int64_t kNoIndex = INT64_MAX;

// Leaves in (key, index) of every lane the best of the lanes' pairs. The order is total on
// distinct indices (keys hold no NaN), so every lane ends with the same pair.
template <typename acc_t>
__device__ __forceinline__ void warp_best(acc_t& key, int64_t& index) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    const acc_t other_key = __shfl_xor_sync(kFullMask, key, offset);
    const int64_t other_index = __shfl_xor_sync(kFullMask, index, offset);
    if (ranks_before(other_key, other_index, key, index)) {
      key = other_key;
      index = other_index;
    }
  }
}

// A lane's private list as a merge source.
template <typename acc_t, int KMAX>
struct ListSource {
  const TopK<acc_t, KMAX>& list;
  int head;
  __device__ bool has() const { return head < list.size; }
  __device__ acc_t key() const { return list.key[head]; }
  __device__ acc_t value() const { return list.value[head]; }
  __device__ int64_t index() const { return list.index[head]; }
};

// A warp's merged list in shared memory as a merge source.
template <typename acc_t>
struct SharedSource {
  const acc_t* keys;
  const acc_t* values;
  const int64_t* indices;
  int size;
  int head;
  __device__ bool has() const { return head < size; }
  __device__ acc_t key() const { return keys[head]; }
  __device__ acc_t value() const { return values[head]; }
  __device__ int64_t index() const { return indices[head]; }
};

// Merges the lanes' sorted sources into the first (up to) k entries of the full order:
// emit(j, key, index, value, mine) is called by every lane for output slot j, with value
// meaningful only where mine (the lane that held the entry). Returns the number of entries,
// less than k when the sources run out. Called by all 32 lanes of the warp.
template <typename acc_t, typename Source, typename Emit>
__device__ __forceinline__ int warp_merge(Source& src, int k, Emit&& emit) {
  int taken = 0;
  for (; taken < k; ++taken) {
    const bool has = src.has();
    acc_t key = has ? src.key() : neg_inf<acc_t>();
    int64_t index = has ? src.index() : kNoIndex;
    warp_best(key, index);
    if (index == kNoIndex) break;  // every source is empty (uniform across the warp)
    const bool mine = has && src.index() == index;
    emit(taken, key, index, mine ? src.value() : acc_t(0), mine);
    if (mine) ++src.head;
  }
  return taken;
}

// Padding, rewards, margin and preference of a row whose first `taken` outputs are written;
// lane l holds the rule of slot l in sel_lo and of slot l + 32 in sel_hi. Called by one
// whole warp.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void finish_row(const SelectRulesParams<acc_t>& p,
                                           const RowInputs<scalar_t, acc_t>& in, int64_t row,
                                           int taken, int64_t sel_lo, int64_t sel_hi, int lane) {
  for (int j = taken + lane; j < p.k; j += kWarpSize) {
    p.indices[row * p.k + j] = -1;
    p.criterion[row * p.k + j] = neg_inf<acc_t>();
  }
  // Gather in parallel, then add serially in slot order: one rounding per step, as the
  // reference's running sum.
  acc_t a_lo = 0, b_lo = 0, a_hi = 0, b_hi = 0;
  if (lane < taken) {
    a_lo = to_acc(__ldg(in.a + sel_lo));
    b_lo = to_acc(__ldg(in.b + sel_lo));
  }
  if (lane + kWarpSize < taken) {
    a_hi = to_acc(__ldg(in.a + sel_hi));
    b_hi = to_acc(__ldg(in.b + sel_hi));
  }
  acc_t reward_a = 0, reward_b = 0;
  for (int j = 0; j < taken; ++j) {
    const bool lo = j < kWarpSize;
    reward_a = add_rn(reward_a, __shfl_sync(kFullMask, lo ? a_lo : a_hi, j % kWarpSize));
    reward_b = add_rn(reward_b, __shfl_sync(kFullMask, lo ? b_lo : b_hi, j % kWarpSize));
  }
  if (lane == 0) {
    const acc_t margin = sub_rn(reward_a, reward_b);
    p.reward_a[row] = reward_a;
    p.reward_b[row] = reward_b;
    p.margin[row] = margin;
    p.preference[row] = preference_of(margin, p.tie_tolerance);
  }
}

// One thread per row.
template <typename scalar_t, typename acc_t, int KMAX>
__global__ void __launch_bounds__(kRowThreads)
    select_rules_thread_kernel(const SelectRulesParams<acc_t> p) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kRowThreads;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowThreads + threadIdx.x; row < p.n;
       row += step) {
    if (!select_row<scalar_t, acc_t, KMAX>(p, row)) {
      atomicMin(p.bad_row, static_cast<unsigned long long>(row));
    }
  }
}

// One warp per row.
template <typename scalar_t, typename acc_t, int KMAX>
__global__ void __launch_bounds__(kThreads)
    select_rules_warp_kernel(const SelectRulesParams<acc_t> p) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int64_t row_step = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; row < p.n;
       row += row_step) {
    const RowInputs<scalar_t, acc_t> in = row_inputs<scalar_t>(p, row);
    TopK<acc_t, KMAX> list(list_capacity(p.r, p.k, lane, kWarpSize));
    const bool bad = scan_row(in, p, lane, kWarpSize, list);
    if (__any_sync(kFullMask, bad)) {
      if (lane == 0) atomicMin(p.bad_row, static_cast<unsigned long long>(row));
      continue;
    }
    int64_t* out_index = p.indices + row * p.k;
    acc_t* out_crit = p.criterion + row * p.k;
    int64_t sel_lo = 0, sel_hi = 0;
    ListSource<acc_t, KMAX> src{list, 0};
    const int taken =
        warp_merge<acc_t>(src, p.k, [&](int j, acc_t, int64_t index, acc_t value, bool mine) {
          if (mine) {
            out_index[j] = index;
            out_crit[j] = value;
          }
          if (j == lane) sel_lo = index;
          if (j == lane + kWarpSize) sel_hi = index;
        });
    finish_row(p, in, row, taken, sel_lo, sel_hi, lane);
  }
}

// One block per row.
template <typename scalar_t, typename acc_t, int KMAX>
__global__ void __launch_bounds__(kThreads)
    select_rules_block_kernel(const SelectRulesParams<acc_t> p) {
  __shared__ acc_t s_key[kWarpsPerBlock][kMaxFastK];
  __shared__ acc_t s_value[kWarpsPerBlock][kMaxFastK];
  __shared__ int64_t s_index[kWarpsPerBlock][kMaxFastK];
  __shared__ int s_size[kWarpsPerBlock];

  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid % kWarpSize;
  const int warp = tid / kWarpSize;
  for (int64_t row = blockIdx.x; row < p.n; row += gridDim.x) {
    const RowInputs<scalar_t, acc_t> in = row_inputs<scalar_t>(p, row);
    TopK<acc_t, KMAX> list(list_capacity(p.r, p.k, tid, kThreads));
    const bool bad = scan_row(in, p, tid, kThreads, list);
    // Also the barrier after which the previous row's shared lists may be overwritten.
    if (__syncthreads_or(bad)) {
      if (tid == 0) atomicMin(p.bad_row, static_cast<unsigned long long>(row));
      continue;
    }
    ListSource<acc_t, KMAX> src{list, 0};
    const int size =
        warp_merge<acc_t>(src, p.k, [&](int j, acc_t key, int64_t index, acc_t value, bool mine) {
          if (mine) {
            s_key[warp][j] = key;
            s_value[warp][j] = value;
            s_index[warp][j] = index;
          }
        });
    if (lane == 0) s_size[warp] = size;
    __syncthreads();
    if (warp != 0) continue;

    int64_t* out_index = p.indices + row * p.k;
    acc_t* out_crit = p.criterion + row * p.k;
    int64_t sel_lo = 0, sel_hi = 0;
    const int w = lane < kWarpsPerBlock ? lane : 0;
    SharedSource<acc_t> shared{s_key[w], s_value[w], s_index[w],
                               lane < kWarpsPerBlock ? s_size[w] : 0, 0};
    const int taken =
        warp_merge<acc_t>(shared, p.k, [&](int j, acc_t, int64_t index, acc_t value, bool mine) {
          if (mine) {
            out_index[j] = index;
            out_crit[j] = value;
          }
          if (j == lane) sel_lo = index;
          if (j == lane + kWarpSize) sel_hi = index;
        });
    finish_row(p, in, row, taken, sel_lo, sel_hi, lane);
  }
}

enum class Path { kThread, kWarp, kBlock };

template <typename acc_t>
Path path_of(const SelectRulesParams<acc_t>& p) {
  if (p.r > kWarpPathMaxR) return Path::kBlock;  // a thread would scan too long a row
  return p.n >= kThreadPathMinRows ? Path::kThread : Path::kWarp;
}

unsigned blocks_for(int64_t rows, int64_t rows_per_block) {
  const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

template <typename scalar_t, typename acc_t, int KMAX>
cudaError_t launch(const SelectRulesParams<acc_t>& p, Path path, cudaStream_t stream) {
  switch (path) {
    case Path::kThread:
      select_rules_thread_kernel<scalar_t, acc_t, KMAX>
          <<<blocks_for(p.n, kRowThreads), kRowThreads, 0, stream>>>(p);
      break;
    case Path::kWarp:
      select_rules_warp_kernel<scalar_t, acc_t, KMAX>
          <<<blocks_for(p.n, kWarpsPerBlock), kThreads, 0, stream>>>(p);
      break;
    case Path::kBlock:
      select_rules_block_kernel<scalar_t, acc_t, KMAX>
          <<<blocks_for(p.n, 1), kThreads, 0, stream>>>(p);
      break;
  }
  return cudaGetLastError();
}

// Picks the smallest private list that holds what the busiest thread can keep: short lists
// cost fewer registers and less local memory.
template <typename scalar_t, typename acc_t>
cudaError_t dispatch(const SelectRulesParams<acc_t>& p, cudaStream_t stream) {
  if (p.n == 0) return cudaSuccess;
  if (p.n < 0 || p.r < 1 || p.k < 1 || p.k > kMaxFastK || p.k > p.r) return cudaErrorInvalidValue;
  const Path path = path_of(p);
  const int64_t stride = path == Path::kThread ? 1 : (path == Path::kWarp ? kWarpSize : kThreads);
  const int cap = list_capacity(p.r, p.k, 0, stride);
  if (cap <= 8) return launch<scalar_t, acc_t, 8>(p, path, stream);
  if (cap <= 16) return launch<scalar_t, acc_t, 16>(p, path, stream);
  if (cap <= 32) return launch<scalar_t, acc_t, 32>(p, path, stream);
  return launch<scalar_t, acc_t, kMaxFastK>(p, path, stream);
}

}  // namespace

cudaError_t launch_select_rules(ScoreType type, const SelectRulesParams<float>& p,
                                cudaStream_t stream) {
  switch (type) {
    case ScoreType::kFloat16: return dispatch<__half, float>(p, stream);
    case ScoreType::kBFloat16: return dispatch<__nv_bfloat16, float>(p, stream);
    case ScoreType::kFloat32: return dispatch<float, float>(p, stream);
    default: return cudaErrorInvalidValue;  // fp64 scores accumulate in fp64
  }
}

cudaError_t launch_select_rules(ScoreType type, const SelectRulesParams<double>& p,
                                cudaStream_t stream) {
  if (type != ScoreType::kFloat64) return cudaErrorInvalidValue;
  return dispatch<double, double>(p, stream);
}

}  // namespace cuda
}  // namespace ramo

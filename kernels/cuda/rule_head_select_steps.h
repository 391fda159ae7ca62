// The per-thread steps of the CUDA kernels of rule_head_select's sparse backward
// (kernels/cuda/rule_head_select.cu; docs/architecture.md, "rule_head_select"):
//   grad_hidden_x[n] = g_x[n] * sum_j weight[idx[n, j]]   (selection order; 0 if none)
//   grad_weight[r]  += g_a[n] * hidden_a[n] + g_b[n] * hidden_b[n]    for each idx[n, j] = r
//   grad_bias[r]    += g_a[n] + g_b[n]                                for each idx[n, j] = r
// Every thread owns one column of its block's tile. Every product and sum is a separately
// rounded _rn step (never contracted into an FMA), as in the CPU kernel. Plain C++ apart from
// the fp16 / bf16 conversions (acc_types.h); the C++ unit tests run the kernels on the host
// (docs/architecture.md, "The CUDA kernels on the host").
#pragma once

#include <cstdint>

#include "../common/arith.h"  // mul_rn, add_rn, RAMO_HD, RAMO_UNROLL
#include "acc_types.h"

namespace ramo {
namespace cuda {

// acc_t is float for fp16 / bf16 / fp32 heads and double for fp64 heads.
template <typename acc_t>
struct RuleHeadBackwardParams {
  const acc_t* grad_a;     // [n] gradient of reward_a (grad_margin folded in)
  const acc_t* grad_b;     // [n]
  const int64_t* indices;  // [n, k], values in [-1, r); -1 is padding and is skipped
  const void* hidden_a;    // [n, d] contiguous, of the ScoreType passed to the launcher
  const void* hidden_b;    // [n, d]
  const void* weight;      // [r, d]
  void* grad_hidden_a;     // [n, d] of the ScoreType, written
  void* grad_hidden_b;     // [n, d]
  // Zeroed by the caller and accumulated with atomicAdd (fp32, or fp64 for fp64 heads):
  // the sums are not bitwise reproducible from run to run (the CPU backend's are).
  acc_t* grad_weight;  // [r, d]
  acc_t* grad_bias;    // [r]
  int64_t n;
  int64_t d;
  int64_t r;
  int k;
};

namespace rule_head_select_steps {

template <typename acc_t>
RAMO_HD void atomic_add(acc_t* p, acc_t x) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, x);
#else
  *p = add_rn(*p, x);
#endif
}

// What one thread reads of one row: the two reward gradients and its column of both hidden
// states (0 outside the matrix). Loaded a few rows ahead of use, to keep loads in flight.
template <typename acc_t>
struct RowValues {
  acc_t ga, gb, ha, hb;
};

template <typename scalar_t, typename acc_t>
RAMO_HD RowValues<acc_t> load_row(const RuleHeadBackwardParams<acc_t>& p, int64_t row,
                                  int64_t col) {
  RowValues<acc_t> v{p.grad_a[row], p.grad_b[row], acc_t(0), acc_t(0)};
  if (col < p.d) {
    v.ha = to_acc(static_cast<const scalar_t*>(p.hidden_a)[row * p.d + col]);
    v.hb = to_acc(static_cast<const scalar_t*>(p.hidden_b)[row * p.d + col]);
  }
  return v;
}

// The row's grad_hidden in column col (in the selection order), and its term for each
// selected rule handed to add(rule, term) and its bias gradient to add_bias(rule, g).
// Selected rules whose indices, then weights, are loaded together before they are used: the
// weight loads hang on the index loads, so one at a time they would queue.
constexpr int kRuleBatch = 4;

template <typename scalar_t, typename acc_t, typename Add, typename AddBias>
RAMO_HD void backward_row(const RuleHeadBackwardParams<acc_t>& p, int64_t row, int64_t col,
                          const RowValues<acc_t>& v, Add&& add, AddBias&& add_bias) {
  const bool in_cols = col < p.d;
  const acc_t term = add_rn(mul_rn(v.ga, v.ha), mul_rn(v.gb, v.hb));
  const acc_t g_bias = add_rn(v.ga, v.gb);
  const scalar_t* w = static_cast<const scalar_t*>(p.weight);
  acc_t sum = 0;
  bool selected = false;
  for (int j0 = 0; j0 < p.k; j0 += kRuleBatch) {
    int64_t rule[kRuleBatch];
    acc_t weight[kRuleBatch];
    RAMO_UNROLL
    for (int u = 0; u < kRuleBatch; ++u) {
      rule[u] = j0 + u < p.k ? p.indices[row * p.k + j0 + u] : -1;
    }
    RAMO_UNROLL
    for (int u = 0; u < kRuleBatch; ++u) {
      weight[u] = rule[u] >= 0 && in_cols ? to_acc(w[rule[u] * p.d + col]) : acc_t(0);
    }
    RAMO_UNROLL
    for (int u = 0; u < kRuleBatch; ++u) {  // in selection order, as the reference sums
      if (rule[u] < 0) continue;
      selected = true;
      if (in_cols) {
        sum = add_rn(sum, weight[u]);
        add(rule[u], term);
      }
      add_bias(rule[u], g_bias);
    }
  }
  if (in_cols) {
    // A row that selected nothing gets 0 as in autograd, not g * 0 (NaN for an inf or NaN g).
    const acc_t zero = 0;
    store_rn(static_cast<scalar_t*>(p.grad_hidden_a) + row * p.d + col,
             selected ? mul_rn(v.ga, sum) : zero);
    store_rn(static_cast<scalar_t*>(p.grad_hidden_b) + row * p.d + col,
             selected ? mul_rn(v.gb, sum) : zero);
  }
}

// --- The tiled kernel: a block's partial sums in shared memory --------------------------
// A block takes a tile of kTileCols columns (one per thread) and a range of rows. Every
// thread adds its column's terms into its own column of a [r, kTileCols] array in shared
// memory (no two threads share an address: no atomics), and thread 0 keeps the bias sums
// and which rules the rows selected. After the rows (and a barrier), each thread adds its
// column of the selected rules to grad_weight with one atomicAdd each: the global atomics
// drop from one per (row, selected rule, column) to one per (block, selected rule, column).

constexpr int kTileCols = 64;

// Shared memory of a block: [r, kTileCols] sums, then [r] bias sums, then [r] flags.
template <typename acc_t>
RAMO_HD int64_t tile_shared_bytes(int64_t r) {
  return r * kTileCols * static_cast<int64_t>(sizeof(acc_t)) +
         r * static_cast<int64_t>(sizeof(acc_t)) + r;
}

template <typename acc_t>
struct TileShared {
  acc_t* sums;              // [r, kTileCols]
  acc_t* bias;              // [r], kept by thread 0 of the blocks of column tile 0
  unsigned char* selected;  // [r], kept by thread 0

  RAMO_HD static TileShared at(void* base, int64_t r) {
    acc_t* sums = static_cast<acc_t*>(base);
    return {sums, sums + r * kTileCols, reinterpret_cast<unsigned char*>(sums + r * kTileCols + r)};
  }
};

// Before the rows: the thread's column (and for thread 0 the bias sums and flags) zeroed.
// Each location is then touched only by the thread that zeroed it until the barrier.
template <typename acc_t>
RAMO_HD void tile_start(const RuleHeadBackwardParams<acc_t>& p, const TileShared<acc_t>& sh,
                        int tid) {
  for (int64_t r = 0; r < p.r; ++r) sh.sums[r * kTileCols + tid] = acc_t(0);
  if (tid != 0) return;
  for (int64_t r = 0; r < p.r; ++r) {
    sh.bias[r] = acc_t(0);
    sh.selected[r] = 0;
  }
}

// One row for thread tid of the block whose columns start at col0.
template <typename scalar_t, typename acc_t>
RAMO_HD void tile_row(const RuleHeadBackwardParams<acc_t>& p, const TileShared<acc_t>& sh,
                      int tid, int64_t col0, int64_t row, const RowValues<acc_t>& v) {
  const bool keeps_bias = tid == 0 && col0 == 0;
  backward_row<scalar_t>(
      p, row, col0 + tid, v,
      [&](int64_t rule, acc_t term) {
        acc_t& s = sh.sums[rule * kTileCols + tid];
        s = add_rn(s, term);
      },
      [&](int64_t rule, acc_t g) {
        if (tid != 0) return;
        sh.selected[rule] = 1;
        if (keeps_bias) sh.bias[rule] = add_rn(sh.bias[rule], g);
      });
}

// After the barrier that follows the last row: the block's sums into grad_weight (and
// grad_bias).
template <typename acc_t>
RAMO_HD void tile_flush(const RuleHeadBackwardParams<acc_t>& p, const TileShared<acc_t>& sh,
                        int tid, int64_t col0) {
  const int64_t col = col0 + tid;
  for (int64_t r = 0; r < p.r; ++r) {
    if (!sh.selected[r]) continue;
    if (col < p.d) atomic_add(p.grad_weight + r * p.d + col, sh.sums[r * kTileCols + tid]);
    if (tid == 0 && col0 == 0) atomic_add(p.grad_bias + r, sh.bias[r]);
  }
}

// Rows per block of the tiled kernel: enough blocks for `wanted` (a few per SM), at most
// 65535 row ranges (the grid's y limit), at least 32 rows so the flush is paid for.
inline int64_t tile_rows(int64_t n, int64_t d, int64_t wanted) {
  const int64_t col_tiles = d > 0 ? (d + kTileCols - 1) / kTileCols : 1;
  const int64_t row_tiles_wanted = (wanted + col_tiles - 1) / col_tiles;
  int64_t rows = (n + row_tiles_wanted - 1) / (row_tiles_wanted > 0 ? row_tiles_wanted : 1);
  const int64_t fewest = (n + 65534) / 65535;
  if (rows < fewest) rows = fewest;
  return rows < 32 ? 32 : rows;
}

// --- The direct kernel (rule pools too large for the shared sums) ----------------------
// One atomicAdd per (row, selected rule, column) into grad_weight; thread 0 of column 0's
// block adds the bias gradient.
template <typename scalar_t, typename acc_t>
RAMO_HD void direct_row(const RuleHeadBackwardParams<acc_t>& p, int64_t row, int64_t col,
                        const RowValues<acc_t>& v) {
  backward_row<scalar_t>(
      p, row, col, v,
      [&](int64_t rule, acc_t term) { atomic_add(p.grad_weight + rule * p.d + col, term); },
      [&](int64_t rule, acc_t g) {
        if (col == 0) atomic_add(p.grad_bias + rule, g);
      });
}

}  // namespace rule_head_select_steps
}  // namespace cuda
}  // namespace ramo

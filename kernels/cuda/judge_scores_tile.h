// The steps of the CUDA judge_scores kernels (kernels/cuda/judge_scores.cu), written as
// functions of (thread index, shared tile, thread state) between two barriers. The kernels
// call them with __syncthreads() in between; csrc/tests/test_judge_scores_kernel.cpp calls
// them on the host, running every thread of a block through one step before the next step
// starts, which is exactly what the barriers guarantee. So the indexing, masking and online
// softmax of the CUDA code are tested without a GPU. Plain C++ (no CUDA headers) apart from
// the fp16 / bf16 conversions, which only nvcc sees.
#pragma once

#include <cstdint>

#include "../common/judge_scores.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace ramo {
namespace cuda {
namespace judge_tile {

// A block computes [kRows, kCols] logits at a time, reading hidden and weight in slices of
// kDepth along D through shared memory. Each of the kThreads threads accumulates
// kRowsPerThread x kColsPerThread of them.
constexpr int kThreads = 256;
constexpr int kRows = 32;
constexpr int kCols = 64;
constexpr int kDepth = 32;
constexpr int kColGroups = 16;  // threads per row pair: thread t has columns t % 16 + 16 j
constexpr int kRowsPerThread = kRows / (kThreads / kColGroups);  // 2
constexpr int kColsPerThread = kCols / kColGroups;               // 4
static_assert(kRowsPerThread * kColsPerThread * kThreads == kRows * kCols, "tile split");
static_assert(kRows <= kThreads, "one thread per row folds the tile");

RAMO_HD float to_acc(float x) { return x; }
RAMO_HD double to_acc(double x) { return x; }
#if defined(__CUDACC__)
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
#endif

// Everything the kernels read and write. acc_t is float for fp16 / bf16 / fp32 inputs and
// double for fp64.
template <typename acc_t>
struct Params {
  const void* hidden;  // [b, d] contiguous, of the input type
  const void* weight;  // [v, d] contiguous
  const acc_t* bias;   // nullptr or [v]
  const int64_t* ids;  // [n_listed]: yes ids, then no ids, then other ids
  int64_t b, v, d, n_listed, n_yes, n_no;
  bool choices;
  int64_t splits;           // vocabulary slices (grid y of the vocabulary kernel)
  int64_t tiles_per_split;  // kCols-wide tiles per slice
  acc_t* part_max;          // [splits, b] workspace: each slice's running max per row
  acc_t* part_sum;          // [splits, b]: its sum of exp(logit - max)
  acc_t* listed;            // [b, n_listed] workspace: the listed ids' logits
  acc_t* p_yes;             // outputs, [b] each
  acc_t* p_no;
  acc_t* p_other;
  acc_t* score;
  acc_t* relevance;
};

template <typename acc_t>
struct Shared {
  acc_t h[kRows][kDepth + 1];  // +1: threads reading a column hit distinct banks
  acc_t w[kCols][kDepth + 1];
  acc_t logits[kRows][kCols + 1];
};

template <typename acc_t>
struct ThreadState {
  acc_t acc[kRowsPerThread][kColsPerThread];
  judge::LseState<acc_t> row;  // the running state of row tid (threads tid < kRows)
};

// How the vocabulary is cut: about four blocks per SM, in whole tiles.
struct Splits {
  int64_t splits, tiles_per_split;
};

inline Splits vocab_splits(int64_t b, int64_t v, int num_sms) {
  const int64_t tiles = (v + kCols - 1) / kCols;
  const int64_t row_blocks = (b + kRows - 1) / kRows;
  int64_t wanted = (4 * static_cast<int64_t>(num_sms)) / (row_blocks > 0 ? row_blocks : 1);
  wanted = wanted < 1 ? 1 : (wanted > tiles ? tiles : wanted);
  const int64_t per = (tiles + wanted - 1) / wanted;
  return {(tiles + per - 1) / per, per};
}

template <typename acc_t>
RAMO_HD void start_tile(ThreadState<acc_t>& st) {
  for (int i = 0; i < kRowsPerThread; ++i) {
    for (int j = 0; j < kColsPerThread; ++j) st.acc[i][j] = acc_t(0);
  }
}

// Step 1 of a depth slice: hidden[row0 + r, k0 + k] and weight[tok0 + c, k0 + k] into shared
// memory, zero outside the matrices. Consecutive threads read consecutive k: coalesced.
template <typename scalar_t, typename acc_t>
RAMO_HD void load_slice(const Params<acc_t>& p, Shared<acc_t>& sh, int tid, int64_t row0,
                        int64_t tok0, int64_t k0) {
  const scalar_t* hidden = static_cast<const scalar_t*>(p.hidden);
  const scalar_t* weight = static_cast<const scalar_t*>(p.weight);
  for (int e = tid; e < kRows * kDepth; e += kThreads) {
    const int r = e / kDepth, k = e % kDepth;
    const int64_t row = row0 + r, col = k0 + k;
    sh.h[r][k] = row < p.b && col < p.d ? to_acc(hidden[row * p.d + col]) : acc_t(0);
  }
  for (int e = tid; e < kCols * kDepth; e += kThreads) {
    const int c = e / kDepth, k = e % kDepth;
    const int64_t tok = tok0 + c, col = k0 + k;
    sh.w[c][k] = tok < p.v && col < p.d ? to_acc(weight[tok * p.d + col]) : acc_t(0);
  }
}

// Step 2 of a depth slice: the thread's outputs += the slice's products.
template <typename acc_t>
RAMO_HD void accumulate_slice(const Shared<acc_t>& sh, ThreadState<acc_t>& st, int tid) {
  const int r0 = (tid / kColGroups) * kRowsPerThread;
  const int c0 = tid % kColGroups;
  for (int k = 0; k < kDepth; ++k) {
    acc_t a[kRowsPerThread], w[kColsPerThread];
    for (int i = 0; i < kRowsPerThread; ++i) a[i] = sh.h[r0 + i][k];
    for (int j = 0; j < kColsPerThread; ++j) w[j] = sh.w[c0 + kColGroups * j][k];
    for (int i = 0; i < kRowsPerThread; ++i) {
      for (int j = 0; j < kColsPerThread; ++j) st.acc[i][j] += a[i] * w[j];
    }
  }
}

// After the last slice: the thread's logits (+ bias; -inf past the vocabulary) into the
// shared tile.
template <typename acc_t>
RAMO_HD void store_logits(const Params<acc_t>& p, Shared<acc_t>& sh, const ThreadState<acc_t>& st,
                          int tid, int64_t tok0) {
  const int r0 = (tid / kColGroups) * kRowsPerThread;
  const int c0 = tid % kColGroups;
  for (int j = 0; j < kColsPerThread; ++j) {
    const int c = c0 + kColGroups * j;
    const int64_t tok = tok0 + c;
    const acc_t bias = p.bias != nullptr && tok < p.v ? p.bias[tok] : acc_t(0);
    for (int i = 0; i < kRowsPerThread; ++i) {
      sh.logits[r0 + i][c] = tok < p.v ? st.acc[i][j] + bias : judge::neg_inf<acc_t>();
    }
  }
}

// Then thread tid < kRows folds row tid of the tile into its running state.
template <typename acc_t>
RAMO_HD void fold_row(const Shared<acc_t>& sh, ThreadState<acc_t>& st, int tid) {
  if (tid >= kRows) return;
  const acc_t* x = sh.logits[tid];
  acc_t m = judge::neg_inf<acc_t>();
  for (int c = 0; c < kCols; ++c) m = x[c] > m ? x[c] : m;
  if (m == judge::neg_inf<acc_t>()) return;  // every token of the tile masked
  acc_t s = 0;
  for (int c = 0; c < kCols; ++c) s += judge::exp_acc(x[c] - m);
  st.row = judge::lse_merge(st.row, judge::LseState<acc_t>{m, s});
}

template <typename acc_t>
RAMO_HD void write_partial(const Params<acc_t>& p, const ThreadState<acc_t>& st, int tid,
                           int64_t row0, int64_t split) {
  const int64_t row = row0 + tid;
  if (tid >= kRows || row >= p.b) return;
  p.part_max[split * p.b + row] = st.row.max;
  p.part_sum[split * p.b + row] = st.row.sum;
}

// The listed logits: item = row * n_listed + j, one dot product of length d each.
template <typename scalar_t, typename acc_t>
RAMO_HD void listed_logit(const Params<acc_t>& p, int64_t item) {
  const int64_t row = item / p.n_listed, j = item % p.n_listed;
  const int64_t tok = p.ids[j];
  const scalar_t* h = static_cast<const scalar_t*>(p.hidden) + row * p.d;
  const scalar_t* w = static_cast<const scalar_t*>(p.weight) + tok * p.d;
  acc_t s = 0;
  for (int64_t k = 0; k < p.d; ++k) s += to_acc(h[k]) * to_acc(w[k]);
  p.listed[item] = p.bias != nullptr ? s + p.bias[tok] : s;
}

// The outputs of one row: its slices' states merged, then judge::row_scores.
template <typename acc_t>
RAMO_HD void finish_row(const Params<acc_t>& p, int64_t row) {
  judge::LseState<acc_t> vocab = judge::lse_empty<acc_t>();
  if (!p.choices) {
    for (int64_t s = 0; s < p.splits; ++s) {
      vocab = judge::lse_merge(vocab, judge::LseState<acc_t>{p.part_max[s * p.b + row],
                                                            p.part_sum[s * p.b + row]});
    }
  }
  const judge::RowScores<acc_t> r = judge::row_scores(p.listed + row * p.n_listed, p.n_yes,
                                                      p.n_no, p.n_listed, vocab, p.choices);
  p.p_yes[row] = r.p_yes;
  p.p_no[row] = r.p_no;
  p.p_other[row] = r.p_other;
  p.score[row] = r.score;
  p.relevance[row] = r.relevance;
}

}  // namespace judge_tile
}  // namespace cuda
}  // namespace ramo

// The arithmetic and ordering rules of select_rules (docs/architecture.md, "select_rules"),
// shared by the C++ CPU kernel, the CUDA kernel and the C++ unit tests, so that every compiled
// backend rounds and ranks exactly like the PyTorch reference. Plain C++: no torch headers, so
// nvcc compiles it alone.
#pragma once

#include <cmath>
#include <cstdint>

#include "arith.h"  // RAMO_HD, RAMO_UNROLL, sub_rn, mul_rn, add_rn

namespace ramo {

// Fast paths keep the running top-k in fixed arrays of this size; larger k uses the reference.
constexpr int kMaxFastK = 64;

// What the per-row work of every compiled backend reads and writes besides the scores: the
// CPU kernel takes it whole, the CUDA launch parameters extend it (with the scores, the row
// count and the bad-row flag). Filled from the op's tensors by fill_select_rules_args
// (csrc/select_rules.h). acc_t is float for fp16 / bf16 / fp32 scores, double for fp64.
template <typename acc_t>
struct SelectRulesArgs {
  int64_t r;
  int k;  // 1 <= k <= min(r, kMaxFastK)
  const acc_t* relevance;  // nullptr, or [r] (row stride 0) or [n, r] (row stride r)
  int64_t relevance_row_stride;
  const bool* valid;  // nullptr, or [r] (row stride 0) or [n, r] (row stride r)
  int64_t valid_row_stride;
  acc_t discrepancy_weight;
  acc_t relevance_weight;
  acc_t tie_tolerance;
  int64_t* indices;    // [n, k]
  acc_t* criterion;    // [n, k]
  acc_t* reward_a;     // [n]
  acc_t* reward_b;     // [n]
  acc_t* margin;       // [n]
  int8_t* preference;  // [n]
};

// |x| by clearing the sign bit, as torch.abs does (|-0| = +0, NaN stays NaN); branch-free,
// so the CPU loops vectorise.
RAMO_HD float abs_exact(float x) { return fabsf(x); }
RAMO_HD double abs_exact(double x) { return fabs(x); }

// criterion = discrepancy_weight * |a - b| + relevance_weight * rel, each step rounded.
template <typename acc_t>
RAMO_HD acc_t criterion(acc_t a, acc_t b, acc_t discrepancy_weight) {
  return mul_rn(discrepancy_weight, abs_exact(sub_rn(a, b)));
}
template <typename acc_t>
RAMO_HD acc_t criterion(acc_t a, acc_t b, acc_t rel, acc_t discrepancy_weight,
                        acc_t relevance_weight) {
  return add_rn(criterion(a, b, discrepancy_weight), mul_rn(relevance_weight, rel));
}

// The value a criterion is ranked by: NaN (reachable only through overflow, e.g. 0 * inf)
// ranks like -inf, so the order is total and every backend agrees on it.
template <typename acc_t>
RAMO_HD acc_t rank_key(acc_t c) {
  return c != c ? -static_cast<acc_t>(INFINITY) : c;
}

// True when (key_x, idx_x) comes first: larger key, then lower rule index.
template <typename acc_t>
RAMO_HD bool ranks_before(acc_t key_x, int64_t idx_x, acc_t key_y, int64_t idx_y) {
  return key_x > key_y || (key_x == key_y && idx_x < idx_y);
}

template <typename acc_t>
RAMO_HD bool is_finite(acc_t x) {
  return x - x == acc_t(0);  // false for inf and NaN; needs no <cmath> on the device
}

// The k best (key, index) pairs seen so far, best first. Candidates must arrive in
// increasing index order, so a newcomer loses every tie with what is already held.
template <typename acc_t, int KMAX>
struct TopK {
  acc_t key[KMAX];
  acc_t value[KMAX];  // the criterion as computed (differs from key only for NaN)
  int64_t index[KMAX];
  int k;
  int size;

  RAMO_HD explicit TopK(int k_) : k(k_), size(0) {}

  // A candidate with key <= threshold() cannot enter a full list.
  RAMO_HD bool full() const { return size == k; }
  RAMO_HD acc_t threshold() const { return key[k - 1]; }

  RAMO_HD void offer(acc_t c, int64_t idx) {
    const acc_t kk = rank_key(c);
    if (size == k && !(kk > key[k - 1])) return;
    int pos = size < k ? size : k - 1;
    while (pos > 0 && kk > key[pos - 1]) {
      key[pos] = key[pos - 1];
      value[pos] = value[pos - 1];
      index[pos] = index[pos - 1];
      --pos;
    }
    key[pos] = kk;
    value[pos] = c;
    index[pos] = idx;
    if (size < k) ++size;
  }
};

// The pair's label from margin = reward_a - reward_b: +1, -1, or 0 within the tolerance.
// (The rewards themselves are summed by the kernels, in selection order from +0, exactly as
// the reference does.)
template <typename acc_t>
RAMO_HD int8_t preference_of(acc_t margin, acc_t tie_tolerance) {
  return margin > tie_tolerance ? int8_t(1) : (margin < -tie_tolerance ? int8_t(-1) : int8_t(0));
}

}  // namespace ramo

// What one CUDA thread does with (part of) one row in the select_rules kernels
// (kernels/cuda/select_rules.cu; docs/architecture.md, "select_rules"): scanning rules into a
// private TopK list, and, in the thread-per-row kernel, writing the row's outputs. Plain C++
// apart from the fp16 / bf16 conversions (acc_types.h) and the read-only loads.
#pragma once

#include <cstdint>

#include "../common/select_rules.h"
#include "acc_types.h"

namespace ramo {
namespace cuda {

// The launch parameters: the per-row arguments plus what the launch itself needs.
template <typename acc_t>
struct SelectRulesParams : SelectRulesArgs<acc_t> {
  const void* scores_a;  // [n, r] contiguous, of the ScoreType passed to the launcher
  const void* scores_b;  // [n, r] contiguous
  int64_t n;
  // Preset to n by the caller; the kernel lowers it (atomicMin) to the first row that has a
  // non-finite score or relevance in a valid position. Rows with such values may have
  // arbitrary outputs: the caller raises instead of returning them.
  unsigned long long* bad_row;
};

namespace select_rules_steps {

// Loads issued before the first of them is consumed, so that each thread keeps several
// memory requests in flight.
constexpr int kBatch = 4;

// A read-only load (through the read-only data cache on the device).
template <typename T>
RAMO_HD T load(const T* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

template <typename acc_t>
RAMO_HD acc_t neg_inf() {
  return -static_cast<acc_t>(INFINITY);
}

// The inputs of one row; rel and valid are nullptr when absent.
template <typename scalar_t, typename acc_t>
struct RowInputs {
  const scalar_t* a;
  const scalar_t* b;
  const acc_t* rel;
  const unsigned char* valid;  // torch bools are single bytes holding 0 or 1
};

template <typename scalar_t, typename acc_t>
RAMO_HD RowInputs<scalar_t, acc_t> row_inputs(const SelectRulesParams<acc_t>& p, int64_t row) {
  RowInputs<scalar_t, acc_t> in;
  in.a = static_cast<const scalar_t*>(p.scores_a) + row * p.r;
  in.b = static_cast<const scalar_t*>(p.scores_b) + row * p.r;
  in.rel = p.relevance ? p.relevance + row * p.relevance_row_stride : nullptr;
  in.valid = p.valid ? reinterpret_cast<const unsigned char*>(p.valid) + row * p.valid_row_stride
                     : nullptr;
  return in;
}

// How many entries the list of the thread that scans start, start + stride, ... needs: no
// more than k, and no more than it sees (at least 1, which TopK requires).
RAMO_HD int list_capacity(int64_t r, int k, int64_t start, int64_t stride) {
  const int64_t seen = start < r ? (r - 1 - start) / stride + 1 : 0;
  const int64_t cap = seen < k ? seen : k;
  return cap < 1 ? 1 : static_cast<int>(cap);
}

// Offers rules start, start + stride, ... of the row to list, in increasing order. Returns
// true when a candidate has a non-finite score or relevance.
template <typename scalar_t, typename acc_t, int KMAX>
RAMO_HD bool scan_row(const RowInputs<scalar_t, acc_t>& in, const SelectRulesParams<acc_t>& p,
                      int64_t start, int64_t stride, TopK<acc_t, KMAX>& list) {
  const acc_t wd = p.discrepancy_weight;
  const acc_t wr = p.relevance_weight;
  // The list's last key, kept in a register: most rules fail this test and never touch the
  // list, whose dynamically indexed arrays live in local memory.
  acc_t threshold = neg_inf<acc_t>();
  bool bad = false;
  for (int64_t base = start; base < p.r; base += kBatch * stride) {
    acc_t crit[kBatch];
    bool take[kBatch];
RAMO_UNROLL
    for (int u = 0; u < kBatch; ++u) {
      const int64_t j = base + u * stride;
      take[u] = j < p.r;
      crit[u] = acc_t(0);
      if (take[u]) {
        // Loaded whether or not the rule is valid, so no load waits for another.
        const acc_t x = to_acc(load(in.a + j));
        const acc_t y = to_acc(load(in.b + j));
        if (in.valid) take[u] = load(in.valid + j) != 0;
        bool finite = is_finite(x) & is_finite(y);
        if (in.rel) {
          const acc_t rel = load(in.rel + j);
          finite &= is_finite(rel);
          crit[u] = ramo::criterion(x, y, rel, wd, wr);
        } else {
          crit[u] = ramo::criterion(x, y, wd);
        }
        bad |= take[u] & !finite;
      }
    }
RAMO_UNROLL
    for (int u = 0; u < kBatch; ++u) {
      if (take[u] && (!list.full() || rank_key(crit[u]) > threshold)) {
        list.offer(crit[u], base + u * stride);
        if (list.full()) threshold = list.threshold();
      }
    }
  }
  return bad;
}

// One row by one thread (the thread-per-row kernel): every rule in order into a list of k,
// then the outputs, the rewards summed serially in selection order as the reference does.
// Returns false, writing nothing, when a valid position holds a non-finite value.
template <typename scalar_t, typename acc_t, int KMAX>
RAMO_HD bool select_row(const SelectRulesParams<acc_t>& p, int64_t row) {
  const RowInputs<scalar_t, acc_t> in = row_inputs<scalar_t>(p, row);
  TopK<acc_t, KMAX> list(p.k);
  if (scan_row(in, p, 0, 1, list)) return false;
  int64_t* out_index = p.indices + row * p.k;
  acc_t* out_crit = p.criterion + row * p.k;
  acc_t reward_a = 0, reward_b = 0;
  for (int j = 0; j < p.k; ++j) {
    if (j < list.size) {
      const int64_t rule = list.index[j];
      out_index[j] = rule;
      out_crit[j] = list.value[j];
      reward_a = add_rn(reward_a, to_acc(load(in.a + rule)));
      reward_b = add_rn(reward_b, to_acc(load(in.b + rule)));
    } else {
      out_index[j] = -1;
      out_crit[j] = neg_inf<acc_t>();
    }
  }
  const acc_t margin = sub_rn(reward_a, reward_b);
  p.reward_a[row] = reward_a;
  p.reward_b[row] = reward_b;
  p.margin[row] = margin;
  p.preference[row] = preference_of(margin, p.tie_tolerance);
  return true;
}

}  // namespace select_rules_steps
}  // namespace cuda
}  // namespace ramo

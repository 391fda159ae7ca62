// The CPU select_rules kernel over a range of rows: plain pointers, no torch, so the C++
// unit tests (csrc/tests) exercise exactly the code that ramo._C runs. Threading is the
// caller's (csrc/cpu/select_rules.cpp splits rows with at::parallel_for).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../../kernels/common/select_rules.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RAMO_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RAMO_CPU_CLONES
#endif
#define RAMO_CPU_INLINE __attribute__((always_inline)) inline

namespace ramo {
namespace cpu {

template <typename acc_t>
struct SelectRulesArgs {
  int64_t r;
  int k;  // 1 <= k <= min(r, kMaxFastK)
  const acc_t* relevance;  // nullptr, or row stride relevance_row_stride (0 for a shared [R])
  int64_t relevance_row_stride;
  const bool* valid;  // nullptr, or row stride valid_row_stride
  int64_t valid_row_stride;
  acc_t discrepancy_weight;
  acc_t relevance_weight;
  acc_t tie_tolerance;
  int64_t* indices;  // [n, k]
  acc_t* criterion;  // [n, k]
  acc_t* reward_a;
  acc_t* reward_b;
  acc_t* margin;
  int8_t* preference;
};

// Rules per block: block maxima are cheap SIMD reductions, and blocks let the candidate
// gather skip most of a long row.
constexpr int64_t kBlock = 8;

// Fills keys[j] with the rank key of rule j's criterion (-inf for invalid rules); returns
// false when a valid position holds a non-finite score (or row-specific relevance).
// Branch-free, so it vectorises.
template <typename scalar_t, typename acc_t, bool HAS_REL, bool HAS_VALID>
RAMO_CPU_INLINE bool row_keys(const scalar_t* a, const scalar_t* b, const acc_t* rel, bool check_rel,
                     const bool* valid, const SelectRulesArgs<acc_t>& p, acc_t* keys) {
  constexpr acc_t neg_inf = -static_cast<acc_t>(INFINITY);
  int bad = 0;
  for (int64_t j = 0; j < p.r; ++j) {
    const acc_t x = static_cast<acc_t>(a[j]);
    const acc_t y = static_cast<acc_t>(b[j]);
    int not_finite = !is_finite(x) | !is_finite(y);
    acc_t c;
    if constexpr (HAS_REL) {
      c = criterion(x, y, rel[j], p.discrepancy_weight, p.relevance_weight);
      not_finite |= static_cast<int>(check_rel) & !is_finite(rel[j]);
    } else {
      c = criterion(x, y, p.discrepancy_weight);
    }
    acc_t key = c == c ? c : neg_inf;  // rank_key, written so that it vectorises
    if constexpr (HAS_VALID) {
      not_finite &= static_cast<int>(valid[j]);
      key = valid[j] ? key : neg_inf;
    }
    keys[j] = key;
    bad |= not_finite;
  }
  return bad == 0;
}

// 32-byte SIMD vectors in GCC's vector extensions: 8 floats or 4 doubles, with an integer
// vector of the same lane width for indices and comparison masks.
template <typename acc_t>
struct Simd {
  static constexpr int kLanes = 32 / sizeof(acc_t);
  using index_t = std::conditional_t<sizeof(acc_t) == 4, int32_t, int64_t>;
  typedef acc_t keys_t __attribute__((vector_size(32)));
  typedef index_t index_vec_t __attribute__((vector_size(32)));
};

// Maximum of kBlock keys (keys hold no NaN).
template <typename acc_t>
RAMO_CPU_INLINE acc_t block_max(const acc_t* keys) {
  using V = typename Simd<acc_t>::keys_t;
  constexpr int lanes = Simd<acc_t>::kLanes;
  V m;
  __builtin_memcpy(&m, keys, sizeof(V));
  for (int i = lanes; i < kBlock; i += lanes) {
    V v;
    __builtin_memcpy(&v, keys + i, sizeof(V));
    m = v > m ? v : m;
  }
  acc_t out = m[0];
  for (int i = 1; i < lanes; ++i) out = m[i] > out ? m[i] : out;
  return out;
}

// A lower bound T0 of the k-th largest key: split the row into k groups; each holds a key at
// least as large as its maximum, so the smallest group maximum is at most the k-th largest
// key. -inf when a group holds only -inf (invalid or NaN rules), which disables filtering.
template <typename acc_t>
RAMO_CPU_INLINE acc_t kth_key_lower_bound(const acc_t* keys, int64_t r, int k, acc_t* block_maxima) {
  const int64_t blocks = r / kBlock;
  acc_t bound = static_cast<acc_t>(INFINITY);
  if (blocks >= k) {
    for (int64_t blk = 0; blk < blocks; ++blk) block_maxima[blk] = block_max(keys + blk * kBlock);
    for (int g = 0; g < k; ++g) {
      acc_t m = -static_cast<acc_t>(INFINITY);
      for (int64_t blk = blocks * g / k; blk < blocks * (g + 1) / k; ++blk) {
        m = block_maxima[blk] > m ? block_maxima[blk] : m;
      }
      bound = m < bound ? m : bound;
    }
  } else {
    for (int g = 0; g < k; ++g) {
      acc_t m = -static_cast<acc_t>(INFINITY);
      for (int64_t j = r * g / k; j < r * (g + 1) / k; ++j) m = keys[j] > m ? keys[j] : m;
      bound = m < bound ? m : bound;
    }
  }
  return bound;
}

// Compacts the rules with key >= bound, in increasing index order, without branching on
// the keys (the comparisons are unpredictable). Returns how many there are.
template <typename acc_t>
RAMO_CPU_INLINE int64_t gather_candidates(const acc_t* keys, int64_t r, int k, acc_t bound,
                                 const acc_t* block_maxima, int64_t* block_list,
                                 acc_t* cand_key, typename Simd<acc_t>::index_t* cand_index) {
  using index_t = typename Simd<acc_t>::index_t;
  const int64_t blocks = r / kBlock;
  int64_t count = 0, j = 0;
  if (blocks >= k) {  // block_maxima were filled by kth_key_lower_bound
    int64_t listed = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      block_list[listed] = blk;
      listed += block_maxima[blk] >= bound;
    }
    for (int64_t l = 0; l < listed; ++l) {
      const int64_t base = block_list[l] * kBlock;
      for (int64_t i = base; i < base + kBlock; ++i) {
        cand_key[count] = keys[i];
        cand_index[count] = static_cast<index_t>(i);
        count += keys[i] >= bound;
      }
    }
    j = blocks * kBlock;
  }
  for (; j < r; ++j) {
    cand_key[count] = keys[j];
    cand_index[count] = static_cast<index_t>(j);
    count += keys[j] >= bound;
  }
  return count;
}

// The best CHUNKS * kLanes (key, index) pairs, best first, updated without branches: a
// newcomer x moves into every slot it beats, shifting the rest down one slot. Candidates
// arrive in increasing index order, so an equal key never displaces an earlier one. Empty
// slots hold -inf, so every offered key must be > -inf.
template <typename acc_t, int CHUNKS>
struct SimdTopK {
  using S = Simd<acc_t>;
  using V = typename S::keys_t;
  using I = typename S::index_vec_t;
  static constexpr int kLanes = S::kLanes;
  V key[CHUNKS];
  I index[CHUNKS];

  SimdTopK() {
    for (int c = 0; c < CHUNKS; ++c) {
      key[c] = V{} - static_cast<acc_t>(INFINITY);
      index[c] = I{} - 1;
    }
  }

  RAMO_CPU_INLINE void offer(acc_t x, typename S::index_t i) {
    I shift;  // lane 0 takes the carry, lane q the slot above it
    shift[0] = 0;
    for (int q = 1; q < kLanes; ++q) shift[q] = kLanes + q - 1;
    V carry_key = V{} + static_cast<acc_t>(INFINITY);
    I carry_index = I{};
    for (int c = 0; c < CHUNKS; ++c) {
      const V above = __builtin_shuffle(carry_key, key[c], shift);
      const I above_index = __builtin_shuffle(carry_index, index[c], shift);
      const I beats = x > key[c];
      const I beats_above = x > above;
      carry_key = key[c][kLanes - 1] + V{};
      carry_index = index[c][kLanes - 1] + I{};
      key[c] = beats_above ? above : (beats ? x + V{} : key[c]);
      index[c] = beats_above ? above_index : (beats ? i + I{} : index[c]);
    }
  }

  RAMO_CPU_INLINE acc_t key_at(int j) const { return key[j / kLanes][j % kLanes]; }
  RAMO_CPU_INLINE int64_t index_at(int j) const { return index[j / kLanes][j % kLanes]; }
};

// Selection order of one row's keys into `selected` (size returned): the candidate filter
// plus the branch-free list when k fits it, else the scalar list over every valid rule.
template <typename acc_t, bool HAS_VALID>
RAMO_CPU_INLINE int select_row(const acc_t* keys, const bool* valid, int64_t r, int k,
                      acc_t* block_maxima, int64_t* block_list, acc_t* cand_key,
                      typename Simd<acc_t>::index_t* cand_index, int64_t* selected) {
  constexpr int lanes = Simd<acc_t>::kLanes;
  const acc_t bound = kth_key_lower_bound(keys, r, k, block_maxima);
  if (bound > -static_cast<acc_t>(INFINITY) && k <= 2 * lanes) {
    // Every candidate is valid: invalid rules have key -inf < bound.
    const int64_t count =
        gather_candidates(keys, r, k, bound, block_maxima, block_list, cand_key, cand_index);
    auto run = [&](auto& top) {
      for (int64_t c = 0; c < count; ++c) top.offer(cand_key[c], cand_index[c]);
      for (int j = 0; j < k; ++j) selected[j] = top.index_at(j);
      return k;  // count >= k by the bound's construction
    };
    if (k <= lanes) {
      SimdTopK<acc_t, 1> top;
      return run(top);
    }
    SimdTopK<acc_t, 2> top;
    return run(top);
  }
  TopK<acc_t, kMaxFastK> top(k);
  for (int64_t j = 0; j < r; ++j) {
    if (keys[j] >= bound && (!HAS_VALID || valid[j])) top.offer(keys[j], j);
  }
  for (int j = 0; j < top.size; ++j) selected[j] = top.index[j];
  return top.size;
}

// Processes rows [begin, end). Returns the first row with a non-finite valid value, or
// `end` when there is none; rows after a bad row are left unwritten (the caller raises).
// Compiled twice on x86-64 (AVX2 and baseline) and picked at load time: the branch-free
// top-k needs 256-bit shuffles to be fast. Everything it calls is inlined into each clone.
template <typename scalar_t, typename acc_t, bool HAS_REL, bool HAS_VALID>
RAMO_CPU_CLONES int64_t select_rules_rows(const scalar_t* scores_a, const scalar_t* scores_b,
                                 const SelectRulesArgs<acc_t>& p, int64_t begin, int64_t end) {
  const size_t r = static_cast<size_t>(p.r);
  std::vector<acc_t> keys(r), cand_key(r), block_maxima(r / kBlock + 1);
  std::vector<typename Simd<acc_t>::index_t> cand_index(r);
  std::vector<int64_t> block_list(r / kBlock + 1);
  int64_t selected[kMaxFastK];
  const bool check_rel = p.relevance_row_stride != 0;  // a shared [R] is checked once upfront
  for (int64_t n = begin; n < end; ++n) {
    const scalar_t* a = scores_a + n * p.r;
    const scalar_t* b = scores_b + n * p.r;
    const acc_t* rel = HAS_REL ? p.relevance + n * p.relevance_row_stride : nullptr;
    const bool* valid = HAS_VALID ? p.valid + n * p.valid_row_stride : nullptr;
    if (!row_keys<scalar_t, acc_t, HAS_REL, HAS_VALID>(a, b, rel, check_rel, valid, p,
                                                       keys.data())) {
      return n;
    }
    const int size =
        select_row<acc_t, HAS_VALID>(keys.data(), valid, p.r, p.k, block_maxima.data(),
                                     block_list.data(), cand_key.data(), cand_index.data(),
                                     selected);
    int64_t* out_index = p.indices + n * p.k;
    acc_t* out_crit = p.criterion + n * p.k;
    acc_t ra = acc_t(0), rb = acc_t(0);
    for (int j = 0; j < size; ++j) {
      const int64_t i = selected[j];
      const acc_t x = static_cast<acc_t>(a[i]), y = static_cast<acc_t>(b[i]);
      ra = add_rn(ra, x);
      rb = add_rn(rb, y);
      out_index[j] = i;
      // Recomputed rather than kept: the key differs from the criterion for NaN, and the
      // same operations on the same values give the same bits.
      if constexpr (HAS_REL) {
        out_crit[j] = criterion(x, y, rel[i], p.discrepancy_weight, p.relevance_weight);
      } else {
        out_crit[j] = criterion(x, y, p.discrepancy_weight);
      }
    }
    for (int j = size; j < p.k; ++j) {
      out_index[j] = -1;
      out_crit[j] = -static_cast<acc_t>(INFINITY);
    }
    const acc_t m = sub_rn(ra, rb);
    p.reward_a[n] = ra;
    p.reward_b[n] = rb;
    p.margin[n] = m;
    p.preference[n] = preference_of(m, p.tie_tolerance);
  }
  return end;
}

// Dispatches the relevance / valid variants, so the inner loops carry no per-element branch.
template <typename scalar_t, typename acc_t>
int64_t select_rules_range(const scalar_t* scores_a, const scalar_t* scores_b,
                           const SelectRulesArgs<acc_t>& p, int64_t begin, int64_t end) {
  const bool rel = p.relevance != nullptr, valid = p.valid != nullptr;
  if (rel && valid) return select_rules_rows<scalar_t, acc_t, true, true>(scores_a, scores_b, p, begin, end);
  if (rel) return select_rules_rows<scalar_t, acc_t, true, false>(scores_a, scores_b, p, begin, end);
  if (valid) return select_rules_rows<scalar_t, acc_t, false, true>(scores_a, scores_b, p, begin, end);
  return select_rules_rows<scalar_t, acc_t, false, false>(scores_a, scores_b, p, begin, end);
}

}  // namespace cpu
}  // namespace ramo

// The CPU select_rules kernel over a range of rows: plain pointers, no torch, so the C++
// unit tests (csrc/tests) exercise exactly the code that ramo._C runs. Threading is the
// caller's (csrc/cpu/select_rules.cpp hands chunks of rows to at::parallel_for's threads).
#pragma once

#include <algorithm>
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

#if defined(__x86_64__) && defined(__GNUC__)
#define RAMO_CPU_AVX2_PATH 1
#include <immintrin.h>
#else
#define RAMO_CPU_AVX2_PATH 0
#endif

namespace ramo {
namespace cpu {

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
    // v - V{} is v in every lane, folded to a broadcast (v + V{} is an addition: -0 + 0 = +0).
    const V xs = x - V{};
    const I is = i - I{};
    V carry_key = static_cast<acc_t>(INFINITY) - V{};
    I carry_index = I{};
    for (int c = 0; c < CHUNKS; ++c) {
      const V above = __builtin_shuffle(carry_key, key[c], shift);
      const I above_index = __builtin_shuffle(carry_index, index[c], shift);
      const I beats = xs > key[c];
      const I beats_above = xs > above;
      carry_key = key[c][kLanes - 1] - V{};
      carry_index = index[c][kLanes - 1] - I{};
      key[c] = beats_above ? above : (beats ? xs : key[c]);
      index[c] = beats_above ? above_index : (beats ? is : index[c]);
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

// Row n's scores, and its relevance and valid mask when given (a shared [R] has row stride 0).
template <typename scalar_t, typename acc_t>
struct RowInputs {
  const scalar_t* a;
  const scalar_t* b;
  const acc_t* rel;
  const bool* valid;
};
template <typename scalar_t, typename acc_t>
RAMO_CPU_INLINE RowInputs<scalar_t, acc_t> row_inputs(const scalar_t* scores_a,
                                                      const scalar_t* scores_b,
                                                      const SelectRulesArgs<acc_t>& p, int64_t n) {
  return {scores_a + n * p.r, scores_b + n * p.r,
          p.relevance ? p.relevance + n * p.relevance_row_stride : nullptr,
          p.valid ? p.valid + n * p.valid_row_stride : nullptr};
}

// Writes row n's outputs from its selection order (`size` rules; the rest are padding).
// `keys`, when given, are the row's rank keys and every selected key is above -inf, so it is
// the criterion itself; otherwise the criterion is recomputed (the key differs from it for
// NaN, and the same operations on the same values give the same bits).
template <typename scalar_t, typename acc_t, bool HAS_REL>
RAMO_CPU_INLINE void write_row(const scalar_t* a, const scalar_t* b, const acc_t* rel,
                               const SelectRulesArgs<acc_t>& p, int64_t n,
                               const int64_t* selected, int size, const acc_t* keys = nullptr) {
  int64_t* out_index = p.indices + n * p.k;
  acc_t* out_crit = p.criterion + n * p.k;
  acc_t ra = acc_t(0), rb = acc_t(0);
  for (int j = 0; j < size; ++j) {
    const int64_t i = selected[j];
    const acc_t x = static_cast<acc_t>(a[i]), y = static_cast<acc_t>(b[i]);
    ra = add_rn(ra, x);
    rb = add_rn(rb, y);
    out_index[j] = i;
    if (keys != nullptr) {
      out_crit[j] = keys[i];
    } else if constexpr (HAS_REL) {
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
    const auto [a, b, rel, valid] = row_inputs(scores_a, scores_b, p, n);
    if (!row_keys<scalar_t, acc_t, HAS_REL, HAS_VALID>(a, b, rel, check_rel, valid, p,
                                                       keys.data())) {
      return n;
    }
    const int size =
        select_row<acc_t, HAS_VALID>(keys.data(), valid, p.r, p.k, block_maxima.data(),
                                     block_list.data(), cand_key.data(), cand_index.data(),
                                     selected);
    write_row<scalar_t, acc_t, HAS_REL>(a, b, rel, p, n, selected, size);
  }
  return end;
}

#if RAMO_CPU_AVX2_PATH
// fp32 rows with k <= 16 on AVX2 (the common case: k about 5, R about 100), where the fixed
// cost per row, not the memory traffic, bounded the general path. One pass computes the
// keys and keeps each of the 8 lanes' maximum (and, for k > 8, its second largest key); the
// k-th largest of those 8 (16) keys is a lower bound of the k-th largest key (k distinct
// rules each hold a key at least that large), tighter than the general path's group bound.
// A second pass over the keys (in L1) marks the few candidates in a bit mask, and the
// branch-free list ranks them in index order. Same operations on the same values as the
// reference, so the same bits.
namespace avx2 {

#define RAMO_AVX2 __attribute__((target("avx2,popcnt,bmi")))

// m with its lanes rotated down by s (lane i takes lane (i + s) mod 8).
RAMO_AVX2 inline __m256 rotated(__m256 m, int s) {
  const __m256i lane =
      _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(s));
  return _mm256_permutevar8x32_ps(m, _mm256_and_si256(lane, _mm256_set1_epi32(7)));
}

// The smallest lane of m whose count in `larger` (of strictly larger values) is below k;
// +inf when there is none.
RAMO_AVX2 inline float min_counted_below(__m256 m, __m256i larger, int k) {
  const __m256i top = _mm256_cmpgt_epi32(_mm256_set1_epi32(k), larger);
  __m256 v = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), m, _mm256_castsi256_ps(top));
  v = _mm256_min_ps(v, _mm256_permute2f128_ps(v, v, 1));
  v = _mm256_min_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm256_min_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm256_cvtss_f32(v);
}

// The k-th largest of the 8 lanes of m (k in [1, 8]): lane i's count of strictly larger
// lanes is its position in a descending sort, so the k-th largest is the smallest lane
// whose count is below k. The rotations are independent, so they do not form a chain.
RAMO_AVX2 inline float kth_largest_lane(__m256 m, int k) {
  __m256i larger = _mm256_setzero_si256();
  for (int s = 1; s < 8; ++s) {
    const __m256 gt = _mm256_cmp_ps(rotated(m, s), m, _CMP_GT_OQ);
    larger = _mm256_sub_epi32(larger, _mm256_castps_si256(gt));
  }
  return min_counted_below(m, larger, k);
}

// The k-th largest of the 16 values in m1 and m2 (k in [1, 16]), the same way: each value
// is counted against all 16.
RAMO_AVX2 inline float kth_largest_of_two(__m256 m1, __m256 m2, int k) {
  __m256i larger1 = _mm256_setzero_si256(), larger2 = _mm256_setzero_si256();
  for (int s = 0; s < 8; ++s) {
    for (const __m256 o : {rotated(m1, s), rotated(m2, s)}) {
      larger1 = _mm256_sub_epi32(larger1, _mm256_castps_si256(_mm256_cmp_ps(o, m1, _CMP_GT_OQ)));
      larger2 = _mm256_sub_epi32(larger2, _mm256_castps_si256(_mm256_cmp_ps(o, m2, _CMP_GT_OQ)));
    }
  }
  return std::min(min_counted_below(m1, larger1, k), min_counted_below(m2, larger2, k));
}

// 8 lanes from j on (j + 8 <= r), or the row's last r - j lanes and `fill` beyond it.
RAMO_AVX2 inline __m256 load_lanes(const float* x, int64_t j, int64_t r, __m256i tail,
                                   float fill) {
  if (j + 8 <= r) return _mm256_loadu_ps(x + j);
  return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(x + j, tail),
                          _mm256_castsi256_ps(tail));
}

// TWO: k in [9, 16]; each lane then also keeps its second largest key, and T0 is the k-th
// largest of those 16 keys (k different rules each hold a key at least that large).
template <bool HAS_REL, bool HAS_VALID, bool TWO>
RAMO_AVX2 int64_t select_rules_rows(const float* scores_a, const float* scores_b,
                                    const SelectRulesArgs<float>& p, int64_t begin,
                                    int64_t end) {
  const int64_t r = p.r;
  const int64_t padded = (r + 7) / 8 * 8;
  const int64_t words = (padded + 63) / 64;  // of the candidate bit mask
  std::vector<float> keys(2 * padded), cand_key(padded), block_maxima(r / kBlock + 1);
  std::vector<int32_t> cand_index(padded);
  std::vector<int64_t> block_list(r / kBlock + 1);
  std::vector<uint64_t> candidates(words);
  int64_t selected[kMaxFastK];
  const bool check_rel = p.relevance_row_stride != 0;  // a shared [R] is checked once upfront
  // A shared relevance enters every row as the same products: computed once (same bits).
  std::vector<float> weighted_rel(HAS_REL && !check_rel ? padded : 0, 0.0f);
  for (int64_t j = 0; j < r && !weighted_rel.empty(); ++j) {
    weighted_rel[j] = mul_rn(p.relevance_weight, p.relevance[j]);
  }
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i tail =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r % 8 ? r % 8 : 8)), iota);
  const __m256 wd = _mm256_set1_ps(p.discrepancy_weight), wr = _mm256_set1_ps(p.relevance_weight);
  const __m256 neg_inf = _mm256_set1_ps(-INFINITY), sign = _mm256_set1_ps(-0.0f);
  // Short rows are software-pipelined: row n + 1's key pass (its loads) comes before row n's
  // selection in program order, so that memory traffic overlaps the selection's compute
  // (R = 100: 9% less time per row; R = 1024: 30% more, so long rows keep lag 0: the key
  // pass and the selection of a row in the same iteration). docs/architecture.md.
  const int64_t lag = padded <= 256 ? 1 : 0;
  float bounds[2] = {0.0f, 0.0f};  // T0 of row n in bounds[n & lag]
  for (int64_t m = begin - lag; m < end; ++m) {
    bool stop = false;  // row m + lag holds a non-finite value
    if (m + lag < end) {
      const int64_t n = m + lag;
      const auto [a, b, rel, valid] = row_inputs(scores_a, scores_b, p, n);
      float* next_keys = keys.data() + (n & lag) * padded;
      // A non-finite score (or row relevance) makes its criterion non-finite, and so the sum
      // of the criteria; a finite sum clears the row. Lanes past r load 0 (a finite score) and
      // get key -inf, like an invalid rule.
      __m256 lane_max = neg_inf, lane_second = neg_inf, sum = _mm256_setzero_ps();
      for (int64_t j = 0; j < padded; j += 8) {
        const __m256 x = load_lanes(a, j, r, tail, 0.0f), y = load_lanes(b, j, r, tail, 0.0f);
        __m256 c = _mm256_mul_ps(wd, _mm256_andnot_ps(sign, _mm256_sub_ps(x, y)));
        if constexpr (HAS_REL) {
          c = _mm256_add_ps(c, check_rel ? _mm256_mul_ps(wr, load_lanes(rel, j, r, tail, 0.0f))
                                         : _mm256_loadu_ps(weighted_rel.data() + j));
        }
        // maxps returns its second operand when either is NaN: the key of a NaN criterion is -inf.
        __m256 key = _mm256_max_ps(c, neg_inf);
        if (j + 8 > r) key = _mm256_blendv_ps(neg_inf, key, _mm256_castsi256_ps(tail));
        if constexpr (HAS_VALID) {
          __m256i v8;
          if (j + 8 <= r) {
            int64_t bytes;
            __builtin_memcpy(&bytes, valid + j, 8);
            v8 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes));
          } else {
            alignas(8) uint8_t bytes[8] = {};
            for (int64_t i = j; i < r; ++i) bytes[i - j] = valid[i];
            v8 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes)));
          }
          const __m256 on = _mm256_castsi256_ps(_mm256_cmpgt_epi32(v8, _mm256_setzero_si256()));
          key = _mm256_blendv_ps(neg_inf, key, on);
          c = _mm256_and_ps(c, on);  // non-finite values of invalid rules are allowed
        }
        sum = _mm256_add_ps(sum, c);
        _mm256_storeu_ps(next_keys + j, key);
        if constexpr (TWO) lane_second = _mm256_max_ps(lane_second, _mm256_min_ps(lane_max, key));
        lane_max = _mm256_max_ps(lane_max, key);
      }
      // The sum also overflows for large finite criteria: such rows are checked exactly.
      const __m256 sum_check = _mm256_sub_ps(sum, sum);  // 0, or NaN for a non-finite sum
      if (_mm256_movemask_ps(_mm256_cmp_ps(sum_check, _mm256_setzero_ps(), _CMP_NEQ_UQ)) &&
          !row_keys<float, float, HAS_REL, HAS_VALID>(a, b, rel, check_rel, valid, p, next_keys)) {
        stop = true;
      }
      bounds[n & lag] = TWO ? kth_largest_of_two(lane_max, lane_second, p.k)
                          : kth_largest_lane(lane_max, p.k);
    }
    if (stop && lag == 0) return m;
    if (m >= begin) {
      const int64_t n = m;
      const auto [a, b, rel, valid] = row_inputs(scores_a, scores_b, p, n);
      const float* row_keys_m = keys.data() + (n & lag) * padded;
      const float bound = bounds[n & lag];
      int size = p.k;
      if (bound > -INFINITY) {  // then every candidate is a valid rule
        const __m256 threshold = _mm256_set1_ps(bound);
        for (int64_t w = 0; w < words; ++w) {
          uint64_t bits = 0;
          for (int64_t j = w * 64; j < std::min(padded, w * 64 + 64); j += 8) {
            const __m256 key = _mm256_loadu_ps(row_keys_m + j);
            const unsigned mask = _mm256_movemask_ps(_mm256_cmp_ps(key, threshold, _CMP_GE_OQ));
            bits |= uint64_t{mask} << (j - w * 64);
          }
          candidates[w] = bits;
        }
        // Candidates in index order, so that ties keep the earlier rule. (A left-packed list
        // built with a permutation table, and a fixed count of offers padded with -inf keys,
        // were both slower: docs/architecture.md.)
        SimdTopK<float, TWO ? 2 : 1> top;
        for (int64_t w = 0; w < words; ++w) {
          for (uint64_t bits = candidates[w]; bits != 0; bits &= bits - 1) {
            const int32_t i = static_cast<int32_t>(w * 64 + __builtin_ctzll(bits));
            top.offer(row_keys_m[i], i);
          }
        }
        for (int j = 0; j < p.k; ++j) selected[j] = top.index_at(j);
      } else {  // fewer than k lanes hold a valid rule: the general selection
        size = select_row<float, HAS_VALID>(row_keys_m, valid, r, p.k, block_maxima.data(),
                                            block_list.data(), cand_key.data(),
                                            cand_index.data(), selected);
      }
      write_row<float, float, HAS_REL>(a, b, rel, p, n, selected, size,
                                       bound > -INFINITY ? row_keys_m : nullptr);
    }
    if (stop) return m + 1;
  }
  return end;
}

#undef RAMO_AVX2
}  // namespace avx2
#endif

// Dispatches the relevance / valid variants, so the inner loops carry no per-element branch.
template <typename scalar_t, typename acc_t>
int64_t select_rules_range(const scalar_t* scores_a, const scalar_t* scores_b,
                           const SelectRulesArgs<acc_t>& p, int64_t begin, int64_t end) {
  const bool rel = p.relevance != nullptr, valid = p.valid != nullptr;
#if RAMO_CPU_AVX2_PATH
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
    if (p.k <= 16 && __builtin_cpu_supports("avx2")) {
      using namespace avx2;
      auto run = [&](auto two) {
        constexpr bool kTwo = decltype(two)::value;
        const float *a = scores_a, *b = scores_b;
        if (rel && valid) return select_rules_rows<true, true, kTwo>(a, b, p, begin, end);
        if (rel) return select_rules_rows<true, false, kTwo>(a, b, p, begin, end);
        if (valid) return select_rules_rows<false, true, kTwo>(a, b, p, begin, end);
        return select_rules_rows<false, false, kTwo>(a, b, p, begin, end);
      };
      return p.k <= 8 ? run(std::false_type{}) : run(std::true_type{});
    }
  }
#endif
  if (rel && valid) return select_rules_rows<scalar_t, acc_t, true, true>(scores_a, scores_b, p, begin, end);
  if (rel) return select_rules_rows<scalar_t, acc_t, true, false>(scores_a, scores_b, p, begin, end);
  if (valid) return select_rules_rows<scalar_t, acc_t, false, true>(scores_a, scores_b, p, begin, end);
  return select_rules_rows<scalar_t, acc_t, false, false>(scores_a, scores_b, p, begin, end);
}

}  // namespace cpu
}  // namespace ramo

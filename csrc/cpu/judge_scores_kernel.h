// The CPU judge_scores kernel on plain pointers (no torch), so the C++ unit tests
// (csrc/tests) exercise exactly the code that ramo._C runs. csrc/cpu/judge_scores.cpp computes
// each vocabulary chunk's logits with a BLAS matmul and calls these functions on the rows of
// the chunk (threading is the caller's: it splits rows with at::parallel_for).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../../kernels/common/judge_scores.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// The exp loop is most of the non-matmul time: 16 lanes where the CPU has AVX-512.
#define RAMO_JUDGE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RAMO_JUDGE_CLONES
#endif

namespace ramo {
namespace cpu {

// exp(x) for x <= 0 in float, branch-free so that a loop of it vectorises (std::exp is a
// library call, which GCC does not vectorise without -ffast-math). Results below 2^-125
// (x < -87) flush to 0: they are summed against the row maximum's exp(0) = 1, where they
// vanish anyway. Relative error about 2 ulp. x = -inf (a masked token) gives 0.
inline float exp_nonpositive(float x) {
  const float ln2_hi = 0.693145751953125f;  // ln 2 = ln2_hi + ln2_lo, ln2_hi exact in 12 bits
  const float ln2_lo = 1.428606765330187e-06f;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the bits
  const float xc = x < -87.0f ? -87.0f : x;
  const float shifted = xc * 1.44269504088896341f + magic;
  const float n = shifted - magic;  // round-to-nearest(x / ln 2)
  uint32_t n_bits;
  std::memcpy(&n_bits, &shifted, sizeof n_bits);
  // The integer n itself (as 2^32 + n when negative); unsigned, so that a NaN input's
  // garbage wraps instead of overflowing.
  const uint32_t k = n_bits - 0x4B400000u;
  const float r = (xc - n * ln2_hi) - n * ln2_lo;  // |r| <= ln2 / 2
  // Taylor series to r^7: the truncation error is below r^8 / 8! < 6e-9 relative.
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  uint32_t p_bits;
  std::memcpy(&p_bits, &p, sizeof p_bits);
  p_bits += k << 23;  // p * 2^n: p is in [0.7, 1.5] and n >= -126, so it stays normal
  float out;
  std::memcpy(&out, &p_bits, sizeof out);
  // A NaN logit (only a non-finite weight makes one) stays NaN, as in torch.softmax.
  return x < -87.0f ? 0.0f : (x == x ? out : x);
}

// Adds bias (nullptr: none) to the c logits of one row in place and returns their maximum.
template <typename acc_t>
inline acc_t add_bias_and_max(acc_t* x, const acc_t* bias, int64_t c) {
  acc_t m = judge::neg_inf<acc_t>();
  if (bias != nullptr) {
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < c; ++j) {
      x[j] += bias[j];
      m = x[j] > m ? x[j] : m;
    }
  } else {
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < c; ++j) m = x[j] > m ? x[j] : m;
  }
  return m;
}

template <typename acc_t>
inline bool has_nan(const acc_t* x, int64_t c) {
  for (int64_t j = 0; j < c; ++j) {
    if (x[j] != x[j]) return true;
  }
  return false;
}

// Sum of exp(x[j] - m) over one row (m >= every x[j], finite).
inline float sum_exp(const float* x, int64_t c, float m) {
  float s = 0.0f;
  // The reduction is split over the SIMD lanes: several partial sums, which also keeps the
  // rounding error lower than one long serial sum.
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < c; ++j) s += exp_nonpositive(x[j] - m);
  return s;
}

inline double sum_exp(const double* x, int64_t c, double m) {
  double s = 0.0;
  for (int64_t j = 0; j < c; ++j) s += std::exp(x[j] - m);
  return s;
}

// Folds one chunk of logits into the running log-sum-exp states of rows [begin, end).
// logits: [rows, c] row-major with row stride c (the chunk's matmul output), modified in
// place (bias added). bias: the chunk's [c] slice or nullptr. state: per row, indexed from 0.
template <typename acc_t>
RAMO_JUDGE_CLONES void lse_update_rows(acc_t* logits, const acc_t* bias, int64_t c,
                                       int64_t begin, int64_t end, judge::LseState<acc_t>* state) {
  for (int64_t row = begin; row < end; ++row) {
    acc_t* x = logits + row * c;
    const acc_t m = add_bias_and_max(x, bias, c);
    if (m == judge::neg_inf<acc_t>()) {
      // Every logit of the chunk is -inf (masked) or NaN, which the max skips: the chunk
      // adds nothing, unless a NaN must make the row NaN. Rare, so a second pass is cheap.
      if (has_nan(x, c)) {
        state[row] = judge::lse_merge(
            state[row], judge::LseState<acc_t>{m, judge::quiet_nan<acc_t>()});
      }
      continue;
    }
    state[row] = judge::lse_merge(state[row], judge::LseState<acc_t>{m, sum_exp(x, c, m)});
  }
}

// The outputs of rows [begin, end) from their listed logits ([rows, n_listed]) and vocabulary
// states (unused when choices). Output arrays are [rows].
template <typename acc_t>
void finish_rows(const acc_t* listed, int64_t n_yes, int64_t n_no, int64_t n_listed,
                 const judge::LseState<acc_t>* state, bool choices, int64_t begin, int64_t end,
                 acc_t* p_yes, acc_t* p_no, acc_t* p_other, acc_t* score, acc_t* relevance) {
  for (int64_t row = begin; row < end; ++row) {
    const judge::RowScores<acc_t> s =
        judge::row_scores(listed + row * n_listed, n_yes, n_no, n_listed, state[row], choices);
    p_yes[row] = s.p_yes;
    p_no[row] = s.p_no;
    p_other[row] = s.p_other;
    score[row] = s.score;
    relevance[row] = s.relevance;
  }
}

}  // namespace cpu
}  // namespace ramo

// The CPU kernels of rule_head_select's sparse backward (docs/architecture.md,
// "rule_head_select"): plain pointers, no torch, so the C++ unit tests (csrc/tests) exercise
// exactly the code that ramo._C runs. Threading is the caller's
// (csrc/cpu/rule_head_select.cpp): fixed blocks of rows, chosen from the shapes only, each
// streaming its rows once (reading hidden, writing grad_hidden) into its own partial
// grad_weight / grad_bias, summed in row order; then the partials are added in block order. The
// result is bitwise the same for any number of threads.
//
// With g_a, g_b the reward gradients and idx the selected rules (-1: padding, skipped):
//   grad_hidden_x[n] = g_x[n] * sum_j weight[idx[n, j]]        (sum in selection order;
//                      0 when row n selected nothing)
//   grad_weight[r]  += g_a[n] * hidden_a[n] + g_b[n] * hidden_b[n]   for each idx[n, j] = r
//   grad_bias[r]    += g_a[n] + g_b[n]                               for each idx[n, j] = r
// Each operation is rounded on its own (the project compiles with -ffp-contract=off).
#pragma once

#include <algorithm>
#include <cstdint>

// The loops over D are plain vectorisable loops; on x86-64 each kernel is compiled twice
// (256-bit AVX2 and the baseline) and picked at load time, as select_rules_kernel.h does.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RAMO_RULE_HEAD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RAMO_RULE_HEAD_CLONES
#endif

namespace ramo {
namespace cpu {

// scalar_t: the dtype of hidden and weight (float, double, or torch's Half / BFloat16, which
// convert to float); acc_t: float, or double for double.
template <typename scalar_t, typename acc_t>
struct RuleHeadBackwardArgs {
  int64_t n, d, r;
  int64_t k;
  const acc_t* grad_a;     // [n]
  const acc_t* grad_b;     // [n]
  const int64_t* indices;  // [n, k], values in [-1, r)
  const scalar_t* hidden_a;  // [n, d]
  const scalar_t* hidden_b;  // [n, d]
  const scalar_t* weight;    // [r, d]
};

// Rows per block of the backward, from the shapes only (never the thread count, so that the
// sums are the same on any machine): at least 1024 rows, and at most 64 blocks whose partial
// grad_weight ([r, d] acc_t each) take 64 MiB together.
inline int64_t backward_block_rows(int64_t n, int64_t d, int64_t r, int64_t acc_size) {
  const int64_t partial_bytes = std::max<int64_t>(1, r * d * acc_size);
  const int64_t max_blocks = std::clamp<int64_t>((int64_t{64} << 20) / partial_bytes, 1, 64);
  return std::max<int64_t>(1024, (n + max_blocks - 1) / max_blocks);
}

// The whole backward of rows [begin, end), in row order: writes their rows of grad_hidden_a
// and grad_hidden_b ([n, d] each) and adds their terms to grad_weight ([r, d]) and grad_bias
// ([r]), both in acc_t and zeroed by the caller. The caller gives each block of rows its own
// grad_weight / grad_bias (a partial sum) and adds the partials up with add_partials in
// block order; blocks depend on the shapes only, so the result does not depend on the number
// of threads. `scratch` holds 2 d acc_t.
template <typename scalar_t, typename acc_t>
RAMO_RULE_HEAD_CLONES void backward_rows(const RuleHeadBackwardArgs<scalar_t, acc_t>& p,
                                         scalar_t* grad_hidden_a, scalar_t* grad_hidden_b,
                                         acc_t* grad_weight, acc_t* grad_bias,
                                         acc_t* scratch, int64_t begin, int64_t end) {
  const int64_t d = p.d;
  acc_t* __restrict__ sum = scratch;
  acc_t* __restrict__ term = scratch + d;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t* idx = p.indices + row * p.k;
    const acc_t ga = p.grad_a[row], gb = p.grad_b[row];
    const scalar_t* __restrict__ ha = p.hidden_a + row * d;
    const scalar_t* __restrict__ hb = p.hidden_b + row * d;
    scalar_t* __restrict__ out_a = grad_hidden_a + row * d;
    scalar_t* __restrict__ out_b = grad_hidden_b + row * d;
    for (int64_t c = 0; c < d; ++c) {
      sum[c] = acc_t(0);
      term[c] = ga * static_cast<acc_t>(ha[c]) + gb * static_cast<acc_t>(hb[c]);
    }
    const acc_t g_bias = ga + gb;
    bool selected = false;
    for (int64_t j = 0; j < p.k; ++j) {
      if (idx[j] < 0) continue;
      selected = true;
      const scalar_t* __restrict__ w = p.weight + idx[j] * d;
      acc_t* __restrict__ gw = grad_weight + idx[j] * d;
      for (int64_t c = 0; c < d; ++c) {
        sum[c] += static_cast<acc_t>(w[c]);
        gw[c] += term[c];
      }
      grad_bias[idx[j]] += g_bias;
    }
    if (!selected) {
      // No rule selected: the row's rewards do not depend on its hidden states, so their
      // gradient is 0 as in autograd, not g * 0 (NaN for an inf or NaN g).
      std::fill(out_a, out_a + d, static_cast<scalar_t>(acc_t(0)));
      std::fill(out_b, out_b + d, static_cast<scalar_t>(acc_t(0)));
      continue;
    }
    for (int64_t c = 0; c < d; ++c) {
      out_a[c] = static_cast<scalar_t>(ga * sum[c]);
      out_b[c] = static_cast<scalar_t>(gb * sum[c]);
    }
  }
}

// out[i] += partials[0][i], then += partials[1][i], ... (blocks partials of `size` each, in
// block order) for i in [begin, end).
template <typename acc_t>
RAMO_RULE_HEAD_CLONES void add_partials(acc_t* out, const acc_t* partials, int64_t blocks,
                                        int64_t size, int64_t begin, int64_t end) {
  acc_t* __restrict__ dst = out;
  for (int64_t b = 0; b < blocks; ++b) {
    const acc_t* __restrict__ src = partials + b * size;
    for (int64_t i = begin; i < end; ++i) dst[i] += src[i];
  }
}

}  // namespace cpu
}  // namespace ramo

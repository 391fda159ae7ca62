// C++ unit tests of the CPU select_rules kernel (csrc/cpu/select_rules_kernel.h) against a
// brute-force selection: a full sort of the valid rules by (criterion desc, index asc).
// Exercises every path: the fp32 AVX2 path for k <= 8 and for 8 < k <= 16, the filtered SIMD
// lists (k up to 2 vector widths), the scalar list, ties, masks, NaN criteria and the
// non-finite check. The CUDA launcher and its three kernels (a thread, a warp or a block per
// row), run on the host by csrc/tests/simt, must give the CPU kernel's bits on every case.
// Exit code 0 when all pass.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "../../kernels/cuda/select_rules.cuh"
#include "../cpu/select_rules_kernel.h"
#include "check.h"
#include "select_rules_outputs.h"

namespace {

using ramo_test::failures;

template <typename T>
bool same_bits(T x, T y) {
  return (std::isnan(x) && std::isnan(y)) || x == y;
}

template <typename acc_t>
struct Case {
  int64_t n, r;
  int k;
  std::vector<acc_t> a, b, rel;  // rel empty, [r] or [n * r]
  std::vector<char> valid;       // empty, [r] or [n * r]
  acc_t wd = acc_t(0.5), wr = acc_t(1), tol = acc_t(0);
};

template <typename acc_t>
Case<acc_t> random_case(std::mt19937& g, int64_t n, int64_t r, int k, bool ties, int rel_kind,
                        int valid_kind) {
  Case<acc_t> c{n, r, k, {}, {}, {}, {}};
  std::uniform_real_distribution<double> u(-1, 1);
  std::uniform_int_distribution<int> q(-2, 2);
  auto draw = [&] { return ties ? acc_t(q(g) * 0.5) : acc_t(u(g)); };
  for (int64_t i = 0; i < n * r; ++i) {
    c.a.push_back(draw());
    c.b.push_back(draw());
  }
  const int64_t rel_size = rel_kind == 0 ? 0 : (rel_kind == 1 ? r : n * r);
  for (int64_t i = 0; i < rel_size; ++i) c.rel.push_back(ties ? acc_t(q(g) * 0.25) : draw());
  const int64_t valid_size = valid_kind == 0 ? 0 : (valid_kind == 1 ? r : n * r);
  std::bernoulli_distribution keep(0.6);
  for (int64_t i = 0; i < valid_size; ++i) c.valid.push_back(keep(g));
  for (int64_t i = 0; i < valid_size; ++i) {  // invalid slots may hold NaN
    if (c.valid[i]) continue;
    for (int64_t row = 0; row < n; ++row) {  // a shared mask covers every row's slot i
      if (valid_size == r || row == i / r) c.a[row * r + i % r] = std::numeric_limits<acc_t>::quiet_NaN();
    }
  }
  return c;
}

namespace cuda = ramo::cuda;

template <typename acc_t>
cuda::ScoreType score_type() {
  return sizeof(acc_t) == 4 ? cuda::ScoreType::kFloat32 : cuda::ScoreType::kFloat64;
}

// The CUDA launcher, run on the host (csrc/tests/simt): p's scores in the given type, its
// outputs into out. Returns the row the kernel reports as non-finite (n if none), -1 if the
// launch failed.
template <typename acc_t>
int64_t run_cuda(cuda::ScoreType type, cuda::SelectRulesParams<acc_t> p,
                 ramo_test::SelectRulesOutputs<acc_t>& out) {
  p.indices = out.idx.data();
  p.criterion = out.crit.data();
  p.reward_a = out.ra.data();
  p.reward_b = out.rb.data();
  p.margin = out.m.data();
  p.preference = out.pref.data();
  unsigned long long bad = static_cast<unsigned long long>(p.n);
  p.bad_row = &bad;
  if (cuda::launch_select_rules(type, p, nullptr) != cudaSuccess) return -1;
  return static_cast<int64_t>(bad);
}

// Row `row` of got equals row `row % want_rows` of want, bit for bit.
template <typename acc_t>
bool same_rows(const ramo_test::SelectRulesOutputs<acc_t>& got,
               const ramo_test::SelectRulesOutputs<acc_t>& want, int64_t rows, int k) {
  const int64_t want_rows = static_cast<int64_t>(want.ra.size());
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t w = row % want_rows;
    for (int j = 0; j < k; ++j) {
      if (got.idx[row * k + j] != want.idx[w * k + j] ||
          !same_bits(got.crit[row * k + j], want.crit[w * k + j])) {
        return false;
      }
    }
    if (!same_bits(got.ra[row], want.ra[w]) || !same_bits(got.rb[row], want.rb[w]) ||
        !same_bits(got.m[row], want.m[w]) || got.pref[row] != want.pref[w]) {
      return false;
    }
  }
  return true;
}

// x in 16 bits (fp16 or bf16, rounded as the kernels round), when it holds x exactly.
template <typename half_t>
bool to_half(float x, half_t* out) {
  cuda::store_rn(out, x);
  return same_bits(cuda::to_acc(*out), x);
}

// Scores that fp16 / bf16 hold exactly select as in fp32: the same bits from the launcher's
// 16-bit kernels (the tie cases hold them; half_cases counts the checks).
int half_cases = 0;

template <typename half_t>
void check_half(const Case<float>& c, const cuda::SelectRulesParams<float>& q,
                const ramo_test::SelectRulesOutputs<float>& want, cuda::ScoreType type,
                const char* label) {
  std::vector<half_t> a(c.a.size()), b(c.b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (!to_half(c.a[i], &a[i]) || !to_half(c.b[i], &b[i])) return;
  }
  cuda::SelectRulesParams<float> p = q;
  p.scores_a = a.data();
  p.scores_b = b.data();
  ramo_test::SelectRulesOutputs<float> got(c.n, c.k);
  ++half_cases;
  CHECK(run_cuda(type, p, got) == c.n && same_rows(got, want, c.n, c.k),
        "%s: cuda in %s differs from fp32", label,
        type == cuda::ScoreType::kFloat16 ? "fp16" : "bf16");
}

template <typename acc_t>
// thread_path: also the rows repeated past kThreadPathMinRows (thousands of rows: the long
// rows of the random sweep take it in one variant only).
void check_case(const Case<acc_t>& c, const char* label, bool thread_path = true) {
  const int64_t n = c.n, r = c.r;
  const int k = c.k;
  ramo_test::SelectRulesOutputs<acc_t> out(n, k);
  const auto &idx = out.idx, &pref = out.pref;
  const auto &crit = out.crit, &ra = out.ra, &rb = out.rb;
  const int64_t rel_stride = c.rel.size() == static_cast<size_t>(n * r) ? r : 0;
  const int64_t valid_stride = c.valid.size() == static_cast<size_t>(n * r) ? r : 0;
  std::unique_ptr<bool[]> valid(new bool[c.valid.size() + 1]);
  for (size_t i = 0; i < c.valid.size(); ++i) valid[i] = c.valid[i];

  ramo::SelectRulesArgs<acc_t> p{};
  p.r = r;
  p.k = k;
  p.relevance = c.rel.empty() ? nullptr : c.rel.data();
  p.relevance_row_stride = rel_stride;
  p.valid = c.valid.empty() ? nullptr : valid.get();
  p.valid_row_stride = valid_stride;
  p.discrepancy_weight = c.wd;
  p.relevance_weight = c.wr;
  p.tie_tolerance = c.tol;
  out.bind(p);
  const int64_t bad = ramo::cpu::select_rules_range<acc_t, acc_t>(c.a.data(), c.b.data(), p, 0, n);
  CHECK(bad == n, "%s: unexpected non-finite report at row %lld", label, (long long)bad);

  for (int64_t row = 0; row < n; ++row) {
    std::vector<acc_t> cr(r), key(r);
    std::vector<int64_t> order;
    for (int64_t j = 0; j < r; ++j) {
      const acc_t x = c.a[row * r + j], y = c.b[row * r + j];
      cr[j] = c.rel.empty() ? ramo::criterion(x, y, c.wd)
                            : ramo::criterion(x, y, c.rel[row * rel_stride + j], c.wd, c.wr);
      key[j] = ramo::rank_key(cr[j]);
      if (c.valid.empty() || c.valid[row * valid_stride + j]) order.push_back(j);
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return key[x] > key[y]; });
    acc_t want_a = 0, want_b = 0;
    for (int j = 0; j < k; ++j) {
      const bool used = j < static_cast<int>(order.size());
      const int64_t want = used ? order[j] : -1;
      CHECK(idx[row * k + j] == want, "%s row %lld slot %d: got %lld want %lld", label,
            (long long)row, j, (long long)idx[row * k + j], (long long)want);
      const acc_t want_crit = used ? cr[want] : -std::numeric_limits<acc_t>::infinity();
      CHECK(same_bits(crit[row * k + j], want_crit), "%s row %lld slot %d criterion", label,
            (long long)row, j);
      if (used) {
        want_a = want_a + c.a[row * r + want];
        want_b = want_b + c.b[row * r + want];
      }
    }
    CHECK(same_bits(ra[row], want_a) && same_bits(rb[row], want_b), "%s row %lld rewards",
          label, (long long)row);
    CHECK(pref[row] == ramo::preference_of(acc_t(want_a - want_b), c.tol), "%s row %lld pref",
          label, (long long)row);
  }

  ramo::cuda::SelectRulesParams<acc_t> q{};
  q.scores_a = c.a.data();
  q.scores_b = c.b.data();
  q.relevance = p.relevance;
  q.relevance_row_stride = rel_stride;
  q.valid = p.valid;
  q.valid_row_stride = valid_stride;
  q.n = n;
  q.r = r;
  q.k = k;
  q.discrepancy_weight = c.wd;
  q.relevance_weight = c.wr;
  q.tie_tolerance = c.tol;
  // Every path of the CUDA launcher gives the CPU kernel's bits: a warp per row (up to
  // kWarpPathMaxR rules) or a block per row at n rows, a thread per row when the rows are
  // repeated past kThreadPathMinRows, and fp16 / bf16 scores where they hold the values.
  ramo_test::SelectRulesOutputs<acc_t> cuda_out(n, k);
  CHECK(run_cuda(score_type<acc_t>(), q, cuda_out) == n, "%s: cuda: launch failed or a "
        "non-finite report", label);
  CHECK(same_rows(cuda_out, out, n, k), "%s: cuda (%s per row) differs from the CPU kernel",
        label, r <= cuda::kWarpPathMaxR ? "a warp" : "a block");
  if (r > cuda::kWarpPathMaxR) {  // the block's warps in the other order between barriers
    simt::set_order(simt::Order::kReverse);
    CHECK(run_cuda(score_type<acc_t>(), q, cuda_out) == n && same_rows(cuda_out, out, n, k),
          "%s: cuda (a block per row), threads in reverse order, differs", label);
    simt::set_order(simt::Order::kForward);
  }
  if (thread_path && r <= cuda::kWarpPathMaxR) {
    const int64_t copies = (cuda::kThreadPathMinRows + n - 1) / n;
    std::vector<acc_t> a, b, rel;
    std::vector<char> many_valid;
    for (int64_t i = 0; i < copies; ++i) {
      a.insert(a.end(), c.a.begin(), c.a.end());
      b.insert(b.end(), c.b.begin(), c.b.end());
      if (rel_stride) rel.insert(rel.end(), c.rel.begin(), c.rel.end());
      if (valid_stride) many_valid.insert(many_valid.end(), c.valid.begin(), c.valid.end());
    }
    cuda::SelectRulesParams<acc_t> many = q;
    many.n = copies * n;
    many.scores_a = a.data();
    many.scores_b = b.data();
    if (rel_stride) many.relevance = rel.data();
    if (valid_stride) many.valid = reinterpret_cast<const bool*>(many_valid.data());
    ramo_test::SelectRulesOutputs<acc_t> many_out(many.n, k);
    CHECK(run_cuda(score_type<acc_t>(), many, many_out) == many.n &&
              same_rows(many_out, out, many.n, k),
          "%s: cuda, a thread per row (%lld rows), differs from the CPU kernel", label,
          (long long)many.n);
  }
  if constexpr (std::is_same<acc_t, float>::value) {
    check_half<__half>(c, q, out, cuda::ScoreType::kFloat16, label);
    check_half<__nv_bfloat16>(c, q, out, cuda::ScoreType::kBFloat16, label);
  }
}

template <typename acc_t>
void random_sweep(const char* type_name) {
  std::mt19937 g(1234);
  const int64_t rs[] = {1, 2, 5, 8, 15, 16, 17, 40, 64, 100, 129, 300, 1024, 1500};
  int cases = 0;
  for (int64_t r : rs) {
    for (int k : {1, 2, 4, 5, 8, 9, 16, 17, 33, 64}) {
      if (k > r) continue;
      for (int variant = 0; variant < 6; ++variant) {
        auto c = random_case<acc_t>(g, 7, r, k, variant % 2 == 0, variant % 3, (variant / 2) % 3);
        char label[96];
        std::snprintf(label, sizeof(label), "%s r=%lld k=%d variant=%d", type_name, (long long)r,
                      k, variant);
        check_case(c, label, r <= 300 || variant == 0);
        ++cases;
      }
    }
  }
  std::printf("%s: %d random cases\n", type_name, cases);
  if (std::is_same<acc_t, float>::value) {
    CHECK(half_cases > 0, "no case held its scores in fp16 / bf16");
  }
}

void extreme_values() {
  const float big = std::numeric_limits<float>::max();
  Case<float> c{1, 24, 6, {}, {}, {}, {}};
  for (int j = 0; j < 24; ++j) {
    c.a.push_back(j % 3 == 0 ? big : float(j) / 24);
    c.b.push_back(j % 3 == 0 ? -big : 0.0f);  // a - b overflows to inf
  }
  for (float wd : {0.5f, 0.0f}) {  // 0 * inf = NaN criteria, ranked as -inf
    c.wd = wd;
    check_case(c, wd == 0 ? "extreme wd=0" : "extreme wd=0.5");
  }
  // Finite criteria whose sum overflows (the fp32 path's quick check of a row) are no error.
  Case<float> large{2, 40, 5, std::vector<float>(80, 0.0f), std::vector<float>(80, 0.0f), {}, {}};
  for (int64_t i = 0; i < 80; ++i) large.a[i] = big * (0.5f + float(i % 7) / 16);
  large.wd = 1.0f;
  check_case(large, "finite criteria with an overflowing sum");
}

// The fp32 small-k path bounds the k-th key by the k-th largest of the 8 lane maxima (of the
// 8 lane maxima and 8 second largest keys for k > 8): rows whose best keys all sit in one
// lane (rule index = lane mod 8), or tie across lanes, must still select exactly.
void lane_patterns() {
  for (int64_t r : {8, 9, 16, 17, 23, 64, 100, 1031}) {
    for (int k : {1, 3, 5, 8, 9, 12, 16}) {
      if (k > r) continue;
      for (int pattern = 0; pattern < 3; ++pattern) {
        Case<float> c{3, r, k, {}, {}, {}, {}};
        for (int64_t row = 0; row < 3; ++row) {
          for (int64_t j = 0; j < r; ++j) {
            float v = pattern == 0 ? (j % 8 == row ? 1.0f + float(j) / r : float(j) / (4 * r))
                    : pattern == 1 ? float((j * 7 + row) % 5) / 4  // ties everywhere
                                   : (j % 8 == 3 ? -1.0f : 0.5f);   // one lane far below
            c.a.push_back(v);
            c.b.push_back(0.0f);
          }
        }
        char label[64];
        std::snprintf(label, sizeof(label), "lanes r=%lld k=%d pattern=%d", (long long)r, k,
                      pattern);
        check_case(c, label);
      }
    }
  }
}

// The first row holding a non-finite valid value is reported: a score (inf with both weights
// non-zero, inf times a zero weight, NaN) or a row's own relevance; r = 20 and 300 cover the
// fp32 path with and without its software pipeline. The CUDA launcher reports the first such
// row on each path: a warp per row at 4 rows, a thread per row at kThreadPathMinRows + 1 rows
// (the last one bad too), a block per row at r = 1100.
void non_finite_is_reported() {
  const float inf = std::numeric_limits<float>::infinity();
  const int64_t many = ramo::cuda::kThreadPathMinRows + 1;
  for (int64_t r : {20, 300, 1100}) {
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<float> a(many * r, 0.25f), b(many * r, 0.0f), rel(many * r, 0.5f);
      ramo_test::SelectRulesOutputs<float> out(4, 3);
      ramo::SelectRulesArgs<float> p{};
      p.r = r;
      p.k = 3;
      p.discrepancy_weight = kind == 1 ? 0.0f : 0.5f;
      p.relevance_weight = 1.0f;
      for (int64_t row : {int64_t{2}, many - 1}) {
        if (kind == 3) {
          p.relevance = rel.data();
          p.relevance_row_stride = r;
          rel[row * r + 7] = -inf;
        } else {
          b[row * r + 7] = kind == 2 ? std::numeric_limits<float>::quiet_NaN() : inf;
        }
      }
      out.bind(p);
      const int64_t bad =
          ramo::cpu::select_rules_range<float, float>(a.data(), b.data(), p, 0, 4);
      CHECK(bad == 2, "r %lld kind %d: the row holding a non-finite value must be reported, "
            "got %lld", (long long)r, kind, (long long)bad);
      // Rows before it are written.
      CHECK(out.idx[0] == 0 && out.idx[3] == 0 && out.ra[1] == 0.75f,
            "r %lld kind %d: rows before the bad one must be written", (long long)r, kind);
      cuda::SelectRulesParams<float> q{};
      q.scores_a = a.data();
      q.scores_b = b.data();
      q.relevance = p.relevance;
      q.relevance_row_stride = p.relevance_row_stride;
      q.r = r;
      q.k = 3;
      q.discrepancy_weight = p.discrepancy_weight;
      q.relevance_weight = p.relevance_weight;
      for (int64_t n : {int64_t{4}, many}) {
        if (n == many && r > cuda::kWarpPathMaxR) continue;  // a block per row either way
        q.n = n;
        ramo_test::SelectRulesOutputs<float> cuda_out(n, 3);
        const int64_t got = run_cuda(cuda::ScoreType::kFloat32, q, cuda_out);
        CHECK(got == 2, "r %lld kind %d n %lld: cuda must report row 2, got %lld", (long long)r,
              kind, (long long)n, (long long)got);
      }
    }
  }
}

}  // namespace

int main() {
  random_sweep<float>("float");
  random_sweep<double>("double");
  extreme_values();
  lane_patterns();
  non_finite_is_reported();
  std::printf("%s: %d failures\n", failures ? "FAILED" : "OK", failures);
  return failures == 0 ? 0 : 1;
}

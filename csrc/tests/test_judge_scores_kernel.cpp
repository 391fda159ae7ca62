// C++ unit tests of judge_scores' torch-free code against brute force in long double:
//   * the CPU kernel (csrc/cpu/judge_scores_kernel.h): its vectorisable exp, the chunked
//     online log-sum-exp with masked (-inf) tokens, and the per-row outputs;
//   * the CUDA kernels (kernels/cuda/judge_scores.cu) through their launchers, run on the
//     host by csrc/tests/simt, over the glue's vocabulary chunks. This checks the segments,
//     masking, shuffles and merges of the CUDA code without a GPU.
// Exit code 0 when all pass.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../../kernels/cuda/judge_scores.cuh"
#include "../cpu/judge_scores_kernel.h"
#include "check.h"

namespace {

using ramo_test::failures;

using ramo::judge::LseState;
namespace fold = ramo::cuda::judge_scores_steps;

// --- ground truth ------------------------------------------------------------------------

struct Truth {
  std::vector<long double> p_yes, p_no, p_other, relevance;
};

// Softmax over the vocabulary or over the listed ids, in long double, from [b, v] logits.
Truth brute_force(const std::vector<long double>& logits, int64_t b, int64_t v,
                  const std::vector<int64_t>& ids, int64_t n_yes, int64_t n_no, bool choices) {
  Truth t;
  const int64_t n = static_cast<int64_t>(ids.size());
  for (int64_t r = 0; r < b; ++r) {
    const long double* x = &logits[r * v];
    long double m = -INFINITY;
    if (choices) {
      for (int64_t j = 0; j < n; ++j) m = std::fmax(m, x[ids[j]]);
    } else {
      for (int64_t j = 0; j < v; ++j) m = std::fmax(m, x[j]);
    }
    long double z = 0;
    if (choices) {
      for (int64_t j = 0; j < n; ++j) z += std::exp(x[ids[j]] - m);
    } else {
      for (int64_t j = 0; j < v; ++j) z += std::exp(x[j] - m);
    }
    long double s[3] = {0, 0, 0};
    long double m_listed = -INFINITY;
    for (int64_t j = 0; j < n; ++j) m_listed = std::fmax(m_listed, x[ids[j]]);
    long double e[3] = {0, 0, 0};
    for (int64_t j = 0; j < n; ++j) {
      const int set = j < n_yes ? 0 : (j < n_yes + n_no ? 1 : 2);
      s[set] += std::exp(x[ids[j]] - m) / z;
      if (m_listed > -INFINITY) e[set] += std::exp(x[ids[j]] - m_listed);
    }
    const long double total = e[0] + e[1] + e[2];
    t.p_yes.push_back(s[0]);
    t.p_no.push_back(s[1]);
    t.p_other.push_back(s[2]);
    t.relevance.push_back(total > 0 ? (e[0] + e[1]) / total : 0);
  }
  return t;
}

template <typename acc_t>
void check_outputs(const char* what, const Truth& t, const std::vector<acc_t>& p_yes,
                   const std::vector<acc_t>& p_no, const std::vector<acc_t>& p_other,
                   const std::vector<acc_t>& score, const std::vector<acc_t>& relevance,
                   double tol) {
  double worst = 0;
  for (size_t r = 0; r < t.p_yes.size(); ++r) {
    const long double err[5] = {
        std::fabs(p_yes[r] - t.p_yes[r]), std::fabs(p_no[r] - t.p_no[r]),
        std::fabs(p_other[r] - t.p_other[r]),
        std::fabs(score[r] - (t.p_yes[r] - t.p_no[r])),
        std::fabs(relevance[r] - t.relevance[r])};
    for (long double e : err) worst = std::fmax(worst, static_cast<double>(e));
  }
  CHECK(worst <= tol, "%s: max error %.3g > %.3g", what, worst, tol);
}

// --- random problems ---------------------------------------------------------------------

template <typename acc_t>
struct Problem {
  int64_t b, v, d, n_yes, n_no;
  std::vector<acc_t> hidden, weight, bias;  // bias empty: none
  std::vector<int64_t> ids;
  std::vector<long double> dots;    // [b, v] hidden . weight, in long double
  std::vector<long double> logits;  // [b, v] dots + bias
};

template <typename acc_t>
Problem<acc_t> make_problem(std::mt19937& rng, int64_t b, int64_t v, int64_t d, bool with_bias,
                            double scale) {
  Problem<acc_t> p{b, v, d, 0, 0, {}, {}, {}, {}, {}, {}};
  std::normal_distribution<double> normal(0.0, 1.0);
  for (int64_t i = 0; i < b * d; ++i) p.hidden.push_back(static_cast<acc_t>(normal(rng) * scale));
  for (int64_t i = 0; i < v * d; ++i) p.weight.push_back(static_cast<acc_t>(normal(rng) / std::sqrt(d + 1.0)));
  if (with_bias) {
    for (int64_t i = 0; i < v; ++i) {
      // Some masked tokens, a masked run (a whole CPU chunk of 64 columns), a whole masked
      // CUDA segment of the larger vocabularies, and one masked listed id.
      const bool masked = i % 7 == 3 || (i >= 70 && i < 140) || (i >= 1024 && i < 2048);
      p.bias.push_back(masked ? -static_cast<acc_t>(INFINITY) : static_cast<acc_t>(normal(rng)));
    }
  }
  // Distinct ids, spread over the vocabulary: 2 yes, 1 no, up to 3 other.
  const int64_t n = std::min<int64_t>(6, v);
  for (int64_t j = 0; j < n; ++j) p.ids.push_back((j * 131 + 5) % v);
  p.n_yes = 2;
  p.n_no = 1;
  p.dots.assign(b * v, 0);
  p.logits.assign(b * v, 0);
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t t = 0; t < v; ++t) {
      long double s = 0;
      for (int64_t k = 0; k < d; ++k) {
        s += static_cast<long double>(p.hidden[r * d + k]) * p.weight[t * d + k];
      }
      p.dots[r * v + t] = s;
      p.logits[r * v + t] = with_bias ? s + p.bias[t] : s;
    }
  }
  return p;
}

// --- CPU kernel --------------------------------------------------------------------------

void test_exp_nonpositive() {
  double worst = 0;
  for (double x = -87.0; x <= 0.0; x += 0.00123) {
    const float xf = static_cast<float>(x);
    const double want = std::exp(static_cast<double>(xf));
    const double got = ramo::cpu::exp_nonpositive(xf);
    worst = std::fmax(worst, std::fabs(got - want) / want);
  }
  CHECK(worst < 4e-7, "exp_nonpositive: max relative error %.3g", worst);
  CHECK(ramo::cpu::exp_nonpositive(-INFINITY) == 0.0f, "exp(-inf) must be 0");
  CHECK(ramo::cpu::exp_nonpositive(-100.0f) == 0.0f, "exp(-100) flushes to 0");
  CHECK(ramo::cpu::exp_nonpositive(0.0f) == 1.0f, "exp(0) must be 1");
  CHECK(std::isnan(ramo::cpu::exp_nonpositive(NAN)), "exp(NaN) must be NaN");
}

// Columns v0 .. v0 + c of row-major [b, v] logits into `block` as row-major [b, c]: one
// chunk, as the CPU glue hands it to lse_update_rows.
template <typename T>
void take_chunk(const std::vector<T>& logits, int64_t b, int64_t v, int64_t v0, int64_t c,
                std::vector<T>& block) {
  block.assign(b * c, 0);
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t j = 0; j < c; ++j) block[r * c + j] = logits[r * v + v0 + j];
  }
}

// The CPU path on given logits: chunks of `chunk` columns through lse_update_rows, then
// finish_rows on the listed logits.
template <typename acc_t>
void test_cpu_rows(std::mt19937& rng, int64_t b, int64_t v, int64_t d, int64_t chunk,
                   bool with_bias, bool choices, double scale, double tol) {
  const Problem<acc_t> p = make_problem<acc_t>(rng, b, v, d, with_bias, scale);
  std::vector<acc_t> logits(b * v);  // the "matmul" in acc_t, bias added by the kernel
  for (int64_t i = 0; i < b * v; ++i) logits[i] = static_cast<acc_t>(p.dots[i]);
  std::vector<LseState<acc_t>> state(b, ramo::judge::lse_empty<acc_t>());
  std::vector<acc_t> block;
  for (int64_t v0 = 0; v0 < v; v0 += chunk) {
    const int64_t c = std::min(chunk, v - v0);
    take_chunk(logits, b, v, v0, c, block);
    // Two ranges, as at::parallel_for would split them.
    const acc_t* bias = with_bias ? p.bias.data() + v0 : nullptr;
    ramo::cpu::lse_update_rows<acc_t>(block.data(), bias, c, 0, b / 2, state.data());
    ramo::cpu::lse_update_rows<acc_t>(block.data(), bias, c, b / 2, b, state.data());
  }
  const int64_t n = static_cast<int64_t>(p.ids.size());
  std::vector<acc_t> listed(b * n);
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t j = 0; j < n; ++j) listed[r * n + j] = static_cast<acc_t>(p.logits[r * v + p.ids[j]]);
  }
  std::vector<acc_t> out[5];
  for (auto& o : out) o.assign(b, acc_t(-1));
  ramo::cpu::finish_rows<acc_t>(listed.data(), p.n_yes, p.n_no, n, state.data(), choices, 0, b,
                                out[0].data(), out[1].data(), out[2].data(), out[3].data(),
                                out[4].data());
  const Truth t = brute_force(p.logits, b, v, p.ids, p.n_yes, p.n_no, choices);
  char what[160];
  std::snprintf(what, sizeof what, "cpu %s b=%lld v=%lld chunk=%lld bias=%d choices=%d scale=%g",
                sizeof(acc_t) == 4 ? "float" : "double", static_cast<long long>(b),
                static_cast<long long>(v), static_cast<long long>(chunk), with_bias, choices,
                scale);
  check_outputs(what, t, out[0], out[1], out[2], out[3], out[4], tol);
}

// --- CUDA kernels on the host ------------------------------------------------------------

// The CUDA path on given logits: the glue's chunk loop (chunks of `chunk` columns, each
// folded by one fold launch), then the finish launch on the listed logits; the kernels run on
// the host (csrc/tests/simt).
template <typename acc_t>
void test_cuda(std::mt19937& rng, int64_t b, int64_t v, int64_t d, int64_t chunk,
                     bool with_bias, bool choices, double scale, double tol) {
  const Problem<acc_t> prob = make_problem<acc_t>(rng, b, v, d, with_bias, scale);
  const int64_t n = static_cast<int64_t>(prob.ids.size());
  const int64_t segments = fold::segments_of(v);
  const acc_t sentinel = static_cast<acc_t>(12345);  // what no step may leave behind
  std::vector<acc_t> part_max(segments * b, sentinel), part_sum(segments * b, sentinel);
  if (!choices) {
    std::vector<acc_t> block;
    for (int64_t v0 = 0; v0 < v; v0 += chunk) {
      const int64_t c = std::min(chunk, v - v0);
      block.assign(b * c, 0);  // the chunk's matmul, in acc_t
      for (int64_t r = 0; r < b; ++r) {
        for (int64_t j = 0; j < c; ++j) block[r * c + j] = static_cast<acc_t>(prob.dots[r * v + v0 + j]);
      }
      fold::FoldParams<acc_t> f{block.data(), with_bias ? prob.bias.data() + v0 : nullptr, b, c,
                                v0 / fold::kSegmentCols, part_max.data(), part_sum.data()};
      CHECK(ramo::cuda::launch_judge_scores_fold(f, nullptr) == cudaSuccess, "fold launch failed");
    }
    for (acc_t x : part_sum) CHECK(x != sentinel, "a segment's partial sum was never written");
  }
  std::vector<acc_t> listed(b * n);
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t j = 0; j < n; ++j) listed[r * n + j] = static_cast<acc_t>(prob.logits[r * v + prob.ids[j]]);
  }
  std::vector<acc_t> out[5];
  for (auto& o : out) o.assign(b, sentinel);
  fold::FinishParams<acc_t> p{listed.data(), b, n, prob.n_yes, prob.n_no, choices,
                              choices ? 0 : segments, part_max.data(), part_sum.data(),
                              out[0].data(), out[1].data(), out[2].data(), out[3].data(),
                              out[4].data()};
  CHECK(ramo::cuda::launch_judge_scores_finish(p, nullptr) == cudaSuccess, "finish launch failed");
  const Truth t = brute_force(prob.logits, b, v, prob.ids, prob.n_yes, prob.n_no, choices);
  char what[176];
  std::snprintf(what, sizeof what,
                "cuda %s b=%lld v=%lld d=%lld chunk=%lld bias=%d choices=%d scale=%g",
                sizeof(acc_t) == 4 ? "float" : "double", static_cast<long long>(b),
                static_cast<long long>(v), static_cast<long long>(d),
                static_cast<long long>(chunk), with_bias, choices, scale);
  check_outputs(what, t, out[0], out[1], out[2], out[3], out[4], tol);
}

// Logits with non-finite values. A NaN or +inf logit (a non-finite weight; hidden and bias
// are checked before) makes the row's vocabulary probabilities NaN, as the reference's softmax
// does, whichever chunks, lanes and segments see it: also a chunk or segment of nothing but
// NaN, or of NaN and masked (-inf) logits, whose max is -inf. So does a row whose every logit
// is -inf (finite inputs can overflow to it), softmax's 0 / 0. The relevance, from the listed
// logits only, stays finite (0 where every listed logit is -inf). -inf alone masks.
struct NonFiniteCase {
  static constexpr int64_t b = 7, v = 3000;
  std::vector<float> logits;                 // [b, v]
  std::vector<int64_t> ids = {1, 2, 3, 4};   // 2 yes, 1 no, 1 other
  bool nan_probabilities[b] = {true, true, true, false, true, true, true};

  NonFiniteCase() : logits(b * v) {
    for (int64_t i = 0; i < b * v; ++i) logits[i] = std::sin(0.37f * static_cast<float>(i));
    logits[0 * v + 2500] = NAN;
    logits[1 * v + 10] = INFINITY;
    logits[2 * v + 1030] = NAN;
    logits[2 * v + 1031] = INFINITY;
    logits[3 * v + 7] = -INFINITY;  // row 3: finite outputs
    // Columns [1024, 2048): whole CPU chunks of 256 and a whole CUDA segment.
    std::fill(&logits[4 * v + 1024], &logits[4 * v + 2048], NAN);
    std::fill(&logits[5 * v + 1024], &logits[5 * v + 2048], -INFINITY);
    logits[5 * v + 1500] = NAN;
    std::fill(&logits[6 * v], &logits[7 * v], -INFINITY);
  }

  std::vector<float> listed() const {
    const int64_t n = static_cast<int64_t>(ids.size());
    std::vector<float> out(b * n);
    for (int64_t r = 0; r < b; ++r) {
      for (int64_t j = 0; j < n; ++j) out[r * n + j] = logits[r * v + ids[j]];
    }
    return out;
  }

  void check(const char* what, const std::vector<float> (&out)[5]) const {
    for (int64_t r = 0; r < b; ++r) {
      for (int i = 0; i < 4; ++i) {
        CHECK(std::isnan(out[i][r]) == nan_probabilities[r], "%s: row %lld output %d is %g",
              what, static_cast<long long>(r), i, out[i][r]);
      }
      const bool listed_masked = r == 6;
      CHECK(listed_masked ? out[4][r] == 0.0f : std::isfinite(out[4][r]) && out[4][r] > 0,
            "%s: row %lld relevance %g", what, static_cast<long long>(r), out[4][r]);
    }
  }
};

void test_cpu_non_finite_logits() {
  const NonFiniteCase c;
  const int64_t b = c.b, v = c.v, chunk = 256;  // the glue's chunk for this vocabulary
  std::vector<LseState<float>> state(b, ramo::judge::lse_empty<float>());
  std::vector<float> block;
  for (int64_t v0 = 0; v0 < v; v0 += chunk) {
    const int64_t n = std::min(chunk, v - v0);
    take_chunk(c.logits, b, v, v0, n, block);
    ramo::cpu::lse_update_rows<float>(block.data(), nullptr, n, 0, b, state.data());
  }
  const std::vector<float> listed = c.listed();
  std::vector<float> out[5];
  for (auto& o : out) o.assign(b, 12345.0f);
  ramo::cpu::finish_rows<float>(listed.data(), 2, 1, 4, state.data(), false, 0, b,
                                out[0].data(), out[1].data(), out[2].data(), out[3].data(),
                                out[4].data());
  c.check("cpu non-finite logits", out);
}

void test_cuda_non_finite_logits() {
  NonFiniteCase c;
  const int64_t b = c.b, v = c.v, segments = fold::segments_of(v);
  std::vector<float> part_max(segments * b), part_sum(segments * b);
  const fold::FoldParams<float> f{c.logits.data(), nullptr, b, v, 0, part_max.data(),
                                  part_sum.data()};
  CHECK(ramo::cuda::launch_judge_scores_fold(f, nullptr) == cudaSuccess, "fold launch failed");
  const std::vector<float> listed = c.listed();
  std::vector<float> out[5];
  for (auto& o : out) o.assign(b, 12345.0f);
  const fold::FinishParams<float> p{listed.data(), b, 4, 2, 1, false, segments,
                                    part_max.data(), part_sum.data(), out[0].data(),
                                    out[1].data(), out[2].data(), out[3].data(), out[4].data()};
  CHECK(ramo::cuda::launch_judge_scores_finish(p, nullptr) == cudaSuccess, "finish launch failed");
  c.check("cuda non-finite logits", out);
}

// fold::chunk_columns: within the vocabulary, whole segments unless it is all of V (so the
// chunks' segments tile the vocabulary's), and the buffers within their bounds.
void test_cuda_chunk_columns() {
  for (int64_t b : {1, 7, 256, 4096, 100000}) {
    for (int64_t v : {2, 1000, 1024, 1025, 49152, 128256, 262144}) {
      const int64_t chunk = fold::chunk_columns(b, v);
      CHECK(chunk >= 1 && chunk <= v && (chunk == v || chunk % fold::kSegmentCols == 0),
            "chunk_columns(%lld, %lld) = %lld", static_cast<long long>(b),
            static_cast<long long>(v), static_cast<long long>(chunk));
      CHECK(chunk <= std::max<int64_t>(fold::kSegmentCols, (int64_t{1} << 24) / b),
            "chunk_columns(%lld, %lld) = %lld: buffer past 2^24 values",
            static_cast<long long>(b), static_cast<long long>(v), static_cast<long long>(chunk));
      int64_t segments = 0;
      for (int64_t v0 = 0; v0 < v; v0 += chunk) {
        CHECK(v0 / fold::kSegmentCols == segments, "chunk at %lld starts at segment %lld, not %lld",
              static_cast<long long>(v0), static_cast<long long>(v0 / fold::kSegmentCols),
              static_cast<long long>(segments));
        segments += fold::segments_of(std::min(chunk, v - v0));
      }
      CHECK(segments == fold::segments_of(v), "chunks of %lld hold %lld segments, not %lld",
            static_cast<long long>(chunk), static_cast<long long>(segments),
            static_cast<long long>(fold::segments_of(v)));
    }
  }
  CHECK(fold::chunk_columns(256, 128256) == 8192, "chunk_columns(256, 128256) = %lld",
        static_cast<long long>(fold::chunk_columns(256, 128256)));
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  test_exp_nonpositive();
  test_cuda_chunk_columns();
  test_cpu_non_finite_logits();
  test_cuda_non_finite_logits();
  for (bool with_bias : {false, true}) {
    for (bool choices : {false, true}) {
      // Odd sizes; a chunk larger than the vocabulary; chunks that do not divide it.
      test_cpu_rows<float>(rng, 5, 1000, 17, 256, with_bias, choices, 1.0, 2e-6);
      test_cpu_rows<float>(rng, 3, 100, 9, 4096, with_bias, choices, 1.0, 2e-6);
      test_cpu_rows<double>(rng, 4, 777, 13, 100, with_bias, choices, 1.0, 1e-13);
      // Logits in the hundreds: a naive exp overflows, the online one must not.
      test_cpu_rows<float>(rng, 3, 500, 8, 64, with_bias, choices, 60.0, 2e-5);
      test_cpu_rows<double>(rng, 3, 500, 8, 64, with_bias, choices, 200.0, 1e-12);
      // One chunk of part of a segment; chunks of one and two segments with a partial last
      // one (more segments than a warp has lanes in the second); huge logits.
      const int64_t seg = ramo::cuda::judge_scores_steps::kSegmentCols;
      test_cuda<float>(rng, 37, 333, 45, 333, with_bias, choices, 1.0, 2e-6);
      test_cuda<float>(rng, 3, 3000, 9, 2 * seg, with_bias, choices, 1.0, 2e-6);
      test_cuda<float>(rng, 2, 33 * seg + 5, 3, seg, with_bias, choices, 1.0, 2e-6);
      test_cuda<double>(rng, 5, 2500, 13, seg, with_bias, choices, 1.0, 1e-13);
      test_cuda<float>(rng, 3, 1500, 8, seg, with_bias, choices, 60.0, 2e-5);
      test_cuda<double>(rng, 3, 1500, 8, seg, with_bias, choices, 200.0, 1e-12);
    }
  }
  if (failures == 0) std::printf("judge_scores kernel tests: all passed\n");
  return failures == 0 ? 0 : 1;
}

// C++ unit tests of judge_scores' torch-free code against brute force in long double:
//   * the CPU kernel (csrc/cpu/judge_scores_kernel.h): its vectorisable exp, the chunked
//     online log-sum-exp with masked (-inf) tokens, and the per-row outputs;
//   * the CUDA kernels' steps (kernels/cuda/judge_scores_tile.h), run on the host the way
//     the barriers order them on a GPU: every thread of a block finishes one step before any
//     thread starts the next. This checks the tiling, masking, vocabulary slices and merges
//     of the CUDA code without a GPU.
// Exit code 0 when all pass.
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "../../kernels/cuda/judge_scores_tile.h"
#include "../cpu/judge_scores_kernel.h"
#include "check.h"

namespace {

using ramo_test::failures;

using ramo::judge::LseState;
namespace tile = ramo::cuda::judge_tile;

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
      // Some masked tokens, a whole masked run (so that some tiles are all -inf), and one
      // masked listed id.
      const bool masked = i % 7 == 3 || (i >= 70 && i < 140);
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
    block.assign(b * c, 0);
    for (int64_t r = 0; r < b; ++r) {
      for (int64_t j = 0; j < c; ++j) block[r * c + j] = logits[r * v + v0 + j];
    }
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

// --- CUDA steps, emulated ----------------------------------------------------------------

// One launch of vocab_lse_kernel: the loop structure of judge_scores.cu with each step run
// by all threads of the block in turn (what __syncthreads guarantees).
template <typename acc_t>
void emulate_vocab_lse(const tile::Params<acc_t>& p) {
  const int64_t row_blocks = (p.b + tile::kRows - 1) / tile::kRows;
  const int64_t tiles = (p.v + tile::kCols - 1) / tile::kCols;
  auto sh = std::make_unique<tile::Shared<acc_t>>();
  std::vector<tile::ThreadState<acc_t>> st(tile::kThreads);
  for (int64_t bx = 0; bx < row_blocks; ++bx) {
    for (int64_t split = 0; split < p.splits; ++split) {
      const int64_t row0 = bx * tile::kRows;
      for (auto& s : st) s.row = ramo::judge::lse_empty<acc_t>();
      const int64_t first = split * p.tiles_per_split;
      const int64_t last = std::min(first + p.tiles_per_split, tiles);
      for (int64_t t = first; t < last; ++t) {
        const int64_t tok0 = t * tile::kCols;
        for (auto& s : st) tile::start_tile(s);
        for (int64_t k0 = 0; k0 < p.d; k0 += tile::kDepth) {
          for (int tid = 0; tid < tile::kThreads; ++tid) {
            tile::load_slice<acc_t>(p, *sh, tid, row0, tok0, k0);
          }
          for (int tid = 0; tid < tile::kThreads; ++tid) tile::accumulate_slice(*sh, st[tid], tid);
        }
        for (int tid = 0; tid < tile::kThreads; ++tid) tile::store_logits(p, *sh, st[tid], tid, tok0);
        for (int tid = 0; tid < tile::kThreads; ++tid) tile::fold_row(*sh, st[tid], tid);
      }
      for (int tid = 0; tid < tile::kThreads; ++tid) tile::write_partial(p, st[tid], tid, row0, split);
    }
  }
}

template <typename acc_t>
void test_cuda_steps(std::mt19937& rng, int64_t b, int64_t v, int64_t d, int num_sms,
                     bool with_bias, bool choices, double tol) {
  const Problem<acc_t> prob = make_problem<acc_t>(rng, b, v, d, with_bias, 1.0);
  const int64_t n = static_cast<int64_t>(prob.ids.size());
  const tile::Splits splits = tile::vocab_splits(b, v, num_sms);
  CHECK(splits.splits * splits.tiles_per_split * tile::kCols >= v &&
            (splits.splits - 1) * splits.tiles_per_split * tile::kCols < v,
        "vocab_splits(%lld, %lld, %d) = (%lld, %lld) does not cover the vocabulary exactly",
        static_cast<long long>(b), static_cast<long long>(v), num_sms,
        static_cast<long long>(splits.splits), static_cast<long long>(splits.tiles_per_split));
  const acc_t sentinel = static_cast<acc_t>(12345);  // what no step may leave behind
  std::vector<acc_t> part_max(splits.splits * b, sentinel), part_sum(splits.splits * b, sentinel);
  std::vector<acc_t> listed(b * n, sentinel);
  std::vector<acc_t> out[5];
  for (auto& o : out) o.assign(b, sentinel);
  tile::Params<acc_t> p{};
  p.hidden = prob.hidden.data();
  p.weight = prob.weight.data();
  p.bias = with_bias ? prob.bias.data() : nullptr;
  p.ids = prob.ids.data();
  p.b = b;
  p.v = v;
  p.d = d;
  p.n_listed = n;
  p.n_yes = prob.n_yes;
  p.n_no = prob.n_no;
  p.choices = choices;
  p.splits = splits.splits;
  p.tiles_per_split = splits.tiles_per_split;
  p.part_max = part_max.data();
  p.part_sum = part_sum.data();
  p.listed = listed.data();
  p.p_yes = out[0].data();
  p.p_no = out[1].data();
  p.p_other = out[2].data();
  p.score = out[3].data();
  p.relevance = out[4].data();
  if (!choices) emulate_vocab_lse(p);
  for (int64_t item = 0; item < b * n; ++item) tile::listed_logit<acc_t>(p, item);
  for (int64_t row = 0; row < b; ++row) tile::finish_row(p, row);
  if (!choices) {
    for (acc_t x : part_sum) CHECK(x != sentinel, "a slice's partial sum was never written");
  }
  const Truth t = brute_force(prob.logits, b, v, prob.ids, prob.n_yes, prob.n_no, choices);
  char what[160];
  std::snprintf(what, sizeof what, "cuda steps %s b=%lld v=%lld d=%lld sms=%d bias=%d choices=%d",
                sizeof(acc_t) == 4 ? "float" : "double", static_cast<long long>(b),
                static_cast<long long>(v), static_cast<long long>(d), num_sms, with_bias, choices);
  check_outputs(what, t, out[0], out[1], out[2], out[3], out[4], tol);
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  test_exp_nonpositive();
  for (bool with_bias : {false, true}) {
    for (bool choices : {false, true}) {
      // Odd sizes; a chunk larger than the vocabulary; chunks that do not divide it.
      test_cpu_rows<float>(rng, 5, 1000, 17, 256, with_bias, choices, 1.0, 2e-6);
      test_cpu_rows<float>(rng, 3, 100, 9, 4096, with_bias, choices, 1.0, 2e-6);
      test_cpu_rows<double>(rng, 4, 777, 13, 100, with_bias, choices, 1.0, 1e-13);
      // Logits in the hundreds: a naive exp overflows, the online one must not.
      test_cpu_rows<float>(rng, 3, 500, 8, 64, with_bias, choices, 60.0, 2e-5);
      test_cpu_rows<double>(rng, 3, 500, 8, 64, with_bias, choices, 200.0, 1e-12);
      // A b that spans two row blocks and a partial one; several vocabulary slices.
      test_cuda_steps<float>(rng, 37, 333, 45, 8, with_bias, choices, 2e-6);
      test_cuda_steps<double>(rng, 33, 200, 70, 132, with_bias, choices, 1e-13);
      test_cuda_steps<float>(rng, 1, 64, 32, 1, with_bias, choices, 2e-6);
      test_cuda_steps<float>(rng, 2, 1000, 3, 1, with_bias, choices, 2e-6);
    }
  }
  if (failures == 0) std::printf("judge_scores kernel tests: all passed\n");
  return failures == 0 ? 0 : 1;
}

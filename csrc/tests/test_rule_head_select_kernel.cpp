// C++ unit tests of the CPU rule_head_select backward kernels
// (csrc/cpu/rule_head_select_kernel.h) and of the CUDA launcher and kernels
// (kernels/cuda/rule_head_select.cu, run on the host by csrc/tests/simt; fp16 / bf16 heads too)
// against a brute-force fp64 evaluation of the formulas
// (docs/architecture.md, "rule_head_select"): grad_hidden through the selected weight rows,
// grad_weight and grad_bias summed over the rows that selected each rule, padding (-1) skipped.
// Also checks that the result does not depend on the order in which threads take the blocks of
// rows (the kernel's determinism), that one block sums in plain row order, and edge shapes.
// Exit code 0 when all pass.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <random>
#include <type_traits>
#include <vector>

#include "../../kernels/cuda/rule_head_select.cuh"
#include "../cpu/rule_head_select_kernel.h"
#include "check.h"

namespace {

using ramo_test::failures;

template <typename T>
struct Case {
  int64_t n, d, r, k;
  std::vector<T> ga, gb, ha, hb, w;
  std::vector<int64_t> idx;
};

// Distinct rules per row (as select_rules gives), padded with -1 at the end of some rows.
template <typename T>
Case<T> random_case(std::mt19937& g, int64_t n, int64_t d, int64_t r, int64_t k) {
  Case<T> c{n, d, r, k, {}, {}, {}, {}, {}, {}};
  std::normal_distribution<double> normal;
  for (int64_t i = 0; i < n; ++i) {
    c.ga.push_back(T(normal(g)));
    c.gb.push_back(T(normal(g)));
  }
  for (int64_t i = 0; i < n * d; ++i) {
    c.ha.push_back(T(normal(g)));
    c.hb.push_back(T(normal(g)));
  }
  for (int64_t i = 0; i < r * d; ++i) c.w.push_back(T(normal(g)));
  std::vector<int64_t> rules(r);
  for (int64_t row = 0; row < n; ++row) {
    for (int64_t j = 0; j < r; ++j) rules[j] = j;
    std::shuffle(rules.begin(), rules.end(), g);
    const int64_t valid = row % 4 == 1 ? std::min<int64_t>(k, row % 3) : k;  // some padding
    for (int64_t j = 0; j < k; ++j) c.idx.push_back(j < valid ? rules[j] : -1);
  }
  return c;
}

template <typename T>
struct Grads {
  std::vector<T> gha, ghb, gw, gbias;
};

// Runs the kernels as csrc/cpu/rule_head_select.cpp does: blocks of `block_rows` rows, each
// with its own partial grad_weight / grad_bias (block 0 writes the outputs), processed in
// the order given by `reverse` (threads may run blocks in any order), then the partials
// added in block order.
template <typename T>
Grads<T> run_kernels(const Case<T>& c, int64_t block_rows, bool reverse = false) {
  ramo::cpu::RuleHeadBackwardArgs<T, T> p{c.n, c.d, c.r, c.k, c.ga.data(), c.gb.data(),
                                          c.idx.data(), c.ha.data(), c.hb.data(), c.w.data()};
  Grads<T> out{std::vector<T>(c.n * c.d, T(-7)), std::vector<T>(c.n * c.d, T(-7)),
               std::vector<T>(c.r * c.d, T(0)), std::vector<T>(c.r, T(0))};
  const int64_t blocks = std::max<int64_t>(1, (c.n + block_rows - 1) / block_rows);
  std::vector<T> partial_w((blocks - 1) * c.r * c.d, T(0)), partial_b((blocks - 1) * c.r, T(0));
  std::vector<T> scratch(2 * c.d);
  for (int64_t i = 0; i < blocks; ++i) {
    const int64_t blk = reverse ? blocks - 1 - i : i;
    T* w_out = blk == 0 ? out.gw.data() : partial_w.data() + (blk - 1) * c.r * c.d;
    T* b_out = blk == 0 ? out.gbias.data() : partial_b.data() + (blk - 1) * c.r;
    ramo::cpu::backward_rows(p, out.gha.data(), out.ghb.data(), w_out, b_out, scratch.data(),
                             blk * block_rows, std::min(c.n, (blk + 1) * block_rows));
  }
  const int64_t half = c.r * c.d / 2;  // the reduction split into two ranges, as threads do
  ramo::cpu::add_partials(out.gw.data(), partial_w.data(), blocks - 1, c.r * c.d, half,
                          c.r * c.d);
  ramo::cpu::add_partials(out.gw.data(), partial_w.data(), blocks - 1, c.r * c.d, 0, half);
  ramo::cpu::add_partials(out.gbias.data(), partial_b.data(), blocks - 1, c.r, 0, c.r);
  return out;
}

template <typename T>
Grads<double> brute_force(const Case<T>& c) {
  Grads<double> out{std::vector<double>(c.n * c.d, 0), std::vector<double>(c.n * c.d, 0),
                    std::vector<double>(c.r * c.d, 0), std::vector<double>(c.r, 0)};
  for (int64_t row = 0; row < c.n; ++row) {
    for (int64_t j = 0; j < c.k; ++j) {
      const int64_t rule = c.idx[row * c.k + j];
      if (rule < 0) continue;
      for (int64_t col = 0; col < c.d; ++col) {
        const double w = c.w[rule * c.d + col];
        out.gha[row * c.d + col] += double(c.ga[row]) * w;
        out.ghb[row * c.d + col] += double(c.gb[row]) * w;
        out.gw[rule * c.d + col] += double(c.ga[row]) * c.ha[row * c.d + col] +
                                    double(c.gb[row]) * c.hb[row * c.d + col];
      }
      out.gbias[rule] += double(c.ga[row]) + double(c.gb[row]);
    }
  }
  return out;
}

template <typename T>
double max_rel_error(const std::vector<T>& got, const std::vector<double>& want) {
  double scale = 1e-30, err = 0;
  for (double v : want) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::abs(double(got[i]) - want[i]));
  return err / scale;
}

template <typename T>
bool same_bits(const std::vector<T>& x, const std::vector<T>& y) {
  if (x.size() != y.size()) return false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!(x[i] == y[i])) return false;
  }
  return true;
}

template <typename T>
void test_against_brute_force(const char* type, double tol) {
  std::mt19937 g(42);
  const int64_t shapes[][4] = {{1, 1, 1, 1},  {5, 3, 4, 2},     {17, 33, 31, 5},
                               {64, 100, 7, 7}, {40, 257, 100, 16}, {9, 16, 300, 64}};
  for (const auto& s : shapes) {
    const Case<T> c = random_case<T>(g, s[0], s[1], s[2], s[3]);
    const int64_t block_rows =
        ramo::cpu::backward_block_rows(c.n, c.d, c.r, static_cast<int64_t>(sizeof(T)));
    const Grads<T> got = run_kernels(c, block_rows);
    const Grads<double> want = brute_force(c);
    const double e[4] = {max_rel_error(got.gha, want.gha), max_rel_error(got.ghb, want.ghb),
                         max_rel_error(got.gw, want.gw), max_rel_error(got.gbias, want.gbias)};
    for (int i = 0; i < 4; ++i) {
      CHECK(e[i] <= tol, "%s n=%lld d=%lld r=%lld k=%lld: output %d error %.3g", type,
            (long long)c.n, (long long)c.d, (long long)c.r, (long long)c.k, i, e[i]);
    }
    // Blocks in any order (as threads take them) give the same bits; other block sizes give
    // the same values up to rounding.
    const Grads<T> reversed = run_kernels(c, block_rows, true);
    CHECK(same_bits(got.gha, reversed.gha) && same_bits(got.ghb, reversed.ghb) &&
              same_bits(got.gw, reversed.gw) && same_bits(got.gbias, reversed.gbias),
          "%s n=%lld d=%lld: the order of the blocks changed the bits", type, (long long)c.n,
          (long long)c.d);
    for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{16}}) {
      const Grads<T> other = run_kernels(c, rows, rows == 3);
      CHECK(same_bits(got.gha, other.gha) && same_bits(got.ghb, other.ghb),
            "%s: grad_hidden depends on the blocks", type);
      CHECK(max_rel_error(other.gw, want.gw) <= tol && max_rel_error(other.gbias, want.gbias) <= tol,
            "%s n=%lld d=%lld: blocks of %lld rows: error %.3g", type, (long long)c.n,
            (long long)c.d, (long long)rows, max_rel_error(other.gw, want.gw));
    }
  }
}

// --- CUDA kernels on the host ------------------------------------------------------------

namespace rh = ramo::cuda::rule_head_select_steps;
using ramo::cuda::ScoreType;

// How the host runs a launch: each block's threads in `order`, its shared memory filled with
// `fill` bytes.
struct Schedule {
  simt::Order order;
  unsigned char fill;
};

// The CUDA launcher, run on the host (csrc/tests/simt). Its hidden states and weight are in
// `type` (acc_t for fp32 / fp64), passed as `ha` etc.
template <typename acc_t>
Grads<acc_t> run_cuda(const Case<acc_t>& c, ScoreType type, const void* ha, const void* hb,
                      const void* w, void* gha, void* ghb, const Schedule& s) {
  Grads<acc_t> out{{}, {}, std::vector<acc_t>(c.r * c.d, acc_t(0)), std::vector<acc_t>(c.r, acc_t(0))};
  const ramo::cuda::RuleHeadBackwardParams<acc_t> p{
      c.ga.data(), c.gb.data(), c.idx.data(), ha, hb, w, gha, ghb, out.gw.data(),
      out.gbias.data(), c.n, c.d, c.r, static_cast<int>(c.k)};
  simt::set_order(s.order);
  simt::set_shared_fill(s.fill);
  const cudaError_t err = ramo::cuda::launch_rule_head_select_backward(type, p, nullptr);
  simt::set_order(simt::Order::kForward);
  simt::set_shared_fill(0xff);
  CHECK(err == cudaSuccess, "cuda n=%lld d=%lld r=%lld: launch failed", (long long)c.n,
        (long long)c.d, (long long)c.r);
  return out;
}

template <typename T>
Grads<T> run_cuda(const Case<T>& c, const Schedule& s) {
  std::vector<T> gha(c.n * c.d, T(-7)), ghb(c.n * c.d, T(-7));
  Grads<T> out = run_cuda(c, sizeof(T) == 4 ? ScoreType::kFloat32 : ScoreType::kFloat64,
                          c.ha.data(), c.hb.data(), c.w.data(), gha.data(), ghb.data(), s);
  out.gha = std::move(gha);
  out.ghb = std::move(ghb);
  return out;
}

template <typename T>
void test_cuda(const char* type, double tol) {
  std::mt19937 g(11);
  // Odd sizes: a partial column tile, D below one tile, D = 0 (the bias gradient is still
  // owed), one row range (n <= 32) or several, k = R, R = 1; pools too large for the tiled
  // kernel's shared sums (R 200 in fp32, 100 in fp64) take the direct kernel, whose grid of
  // at most 3 row blocks on the host (kernels/cuda/grid.h) strides over the rows; the largest
  // pools that still fit (R 188 in fp32, 94 in fp64: 48974-49068 of 49152 bytes, which the
  // host's launch checks) take the tiled one, one rule more the direct one.
  const int64_t shapes[][4] = {{1, 1, 1, 1},     {5, 3, 4, 2},      {17, 130, 31, 5},
                               {70, 64, 100, 5}, {9, 0, 6, 3},      {40, 257, 20, 20},
                               {33, 65, 1, 1},   {20, 300, 200, 5}, {6, 0, 300, 2},
                               {12, 70, 188, 4}, {12, 70, 189, 4},  {12, 70, 94, 4},
                               {12, 70, 95, 4}};
  for (const auto& s : shapes) {
    const Case<T> c = random_case<T>(g, s[0], s[1], s[2], s[3]);
    const Grads<double> want = brute_force(c);
    // grad_hidden is summed in selection order and rounded as on the CPU: the same bits.
    const Grads<T> cpu = run_kernels(
        c, ramo::cpu::backward_block_rows(c.n, c.d, c.r, static_cast<int64_t>(sizeof(T))));
    const bool tiled = rh::tile_shared_bytes<T>(c.r) <= 48 * 1024;
    // Threads in either order, with either fill of the shared memory (thread 0's flags are
    // read by all after the barrier).
    for (simt::Order order : {simt::Order::kForward, simt::Order::kReverse}) {
      for (unsigned char fill : {0x00, 0xff}) {
        const Grads<T> got = run_cuda(c, Schedule{order, fill});
        CHECK(same_bits(got.gha, cpu.gha) && same_bits(got.ghb, cpu.ghb),
              "cuda %s %s n=%lld d=%lld: grad_hidden differs from the CPU kernel's bits", type,
              tiled ? "tiled" : "direct", (long long)c.n, (long long)c.d);
        const double e[4] = {max_rel_error(got.gha, want.gha), max_rel_error(got.ghb, want.ghb),
                             max_rel_error(got.gw, want.gw), max_rel_error(got.gbias, want.gbias)};
        for (int i = 0; i < 4; ++i) {
          CHECK(e[i] <= tol, "cuda %s %s order=%d fill=%d n=%lld d=%lld r=%lld k=%lld: output %d "
                "error %.3g", type, tiled ? "tiled" : "direct", static_cast<int>(order), fill,
                (long long)c.n, (long long)c.d, (long long)c.r, (long long)c.k, i, e[i]);
        }
      }
    }
  }
}

// fp16 / bf16 heads: hidden states and weights of a few bits, whose gradients every dtype
// holds exactly, give the exact gradients (grad_hidden stored in the heads' dtype, the
// weight's and bias's summed in fp32).
template <typename half_t>
void test_cuda_half(const char* type) {
  std::mt19937 g(5);
  std::uniform_int_distribution<int> q(-2, 2);
  for (const auto& s : {std::array<int64_t, 4>{37, 70, 20, 5}, std::array<int64_t, 4>{9, 300, 250, 3}}) {
    Case<float> c = random_case<float>(g, s[0], s[1], s[2], s[3]);
    for (auto* v : {&c.ga, &c.gb}) for (float& x : *v) x = 0.25f * q(g);
    for (auto* v : {&c.ha, &c.hb, &c.w}) for (float& x : *v) x = 0.5f * q(g);
    auto to_half = [](const std::vector<float>& x) {
      std::vector<half_t> out(x.size());
      for (size_t i = 0; i < x.size(); ++i) ramo::cuda::store_rn(&out[i], x[i]);
      return out;
    };
    const std::vector<half_t> ha = to_half(c.ha), hb = to_half(c.hb), w = to_half(c.w);
    const std::vector<half_t> nan = to_half(std::vector<float>(c.n * c.d, NAN));
    std::vector<half_t> gha = nan, ghb = nan;  // every element must be written
    const ScoreType st = std::is_same<half_t, __half>::value ? ScoreType::kFloat16 : ScoreType::kBFloat16;
    const Grads<float> got = run_cuda(c, st, ha.data(), hb.data(), w.data(), gha.data(),
                                      ghb.data(), Schedule{simt::Order::kForward, 0xff});
    const Grads<double> want = brute_force(c);
    bool exact = true;
    for (int64_t i = 0; i < c.n * c.d; ++i) {
      exact = exact && ramo::cuda::to_acc(gha[i]) == want.gha[i] &&
              ramo::cuda::to_acc(ghb[i]) == want.ghb[i];
    }
    for (int64_t i = 0; i < c.r * c.d; ++i) exact = exact && got.gw[i] == want.gw[i];
    for (int64_t i = 0; i < c.r; ++i) exact = exact && got.gbias[i] == want.gbias[i];
    CHECK(exact, "cuda %s n=%lld d=%lld r=%lld: gradients differ from the exact ones", type,
          (long long)c.n, (long long)c.d, (long long)c.r);
  }
}

// tile_rows: every row in a range, at most 65535 ranges, about `wanted` blocks.
void test_tile_rows() {
  for (int64_t n : {int64_t{1}, int64_t{31}, int64_t{32}, int64_t{1000}, int64_t{16384}, int64_t{1} << 22, int64_t{1} << 31}) {
    for (int64_t d : {0, 1, 64, 4096, 100000}) {
      for (int64_t wanted : {1, 2112}) {
        const int64_t rows = rh::tile_rows(n, d, wanted);
        const int64_t ranges = (n + rows - 1) / rows;
        CHECK(rows >= 32 && ranges <= 65535, "tile_rows(%lld, %lld, %lld) = %lld",
              (long long)n, (long long)d, (long long)wanted, (long long)rows);
      }
    }
  }
  CHECK(rh::tile_rows(16384, 4096, 2112) == 497, "tile_rows(16384, 4096, 2112) = %lld",
        (long long)rh::tile_rows(16384, 4096, 2112));
}

// grad_weight of one rule selected by every row equals the sequential row-order sum exactly.
void test_row_order_sum() {
  std::mt19937 g(7);
  Case<float> c = random_case<float>(g, 50, 8, 3, 1);
  for (auto& i : c.idx) i = 2;
  const Grads<float> got = run_kernels(c, c.n);  // one block: plain row order
  for (int64_t col = 0; col < c.d; ++col) {
    float sum = 0, bias = 0;
    for (int64_t row = 0; row < c.n; ++row) {
      const float term = c.ga[row] * c.ha[row * c.d + col] + c.gb[row] * c.hb[row * c.d + col];
      sum += term;
      if (col == 0) bias += c.ga[row] + c.gb[row];
    }
    CHECK(got.gw[2 * c.d + col] == sum, "column %lld: %.9g vs %.9g", (long long)col,
          got.gw[2 * c.d + col], sum);
    CHECK(got.gw[0 * c.d + col] == 0 && got.gw[1 * c.d + col] == 0, "unselected rules moved");
    if (col == 0) CHECK(got.gbias[2] == bias, "bias %.9g vs %.9g", got.gbias[2], bias);
  }
}

// Rows of padding only: zero hidden gradients, even for an inf or NaN reward gradient (which
// autograd never multiplies in: the rewards do not depend on such a row), nothing added to
// weight or bias; on the CPU and in CUDA.
void test_all_padding() {
  std::mt19937 g(3);
  Case<double> c = random_case<double>(g, 6, 5, 4, 3);
  for (auto& i : c.idx) i = -1;
  c.ga[1] = INFINITY;
  c.gb[2] = NAN;
  c.ga[4] = -INFINITY;
  for (bool cuda : {false, true}) {
    const char* where = cuda ? "cuda" : "cpu";
    const Grads<double> got =
        cuda ? run_cuda(c, Schedule{simt::Order::kForward, 0xff}) : run_kernels(c, 2);
    for (double v : got.gha) CHECK(v == 0, "%s: grad_hidden_a %g", where, v);
    for (double v : got.ghb) CHECK(v == 0, "%s: grad_hidden_b %g", where, v);
    for (double v : got.gw) CHECK(v == 0, "%s: grad_weight %g", where, v);
    for (double v : got.gbias) CHECK(v == 0, "%s: grad_bias %g", where, v);
  }
}

}  // namespace

int main() {
  test_against_brute_force<float>("float", 2e-6);
  test_against_brute_force<double>("double", 1e-14);
  test_row_order_sum();
  test_all_padding();
  test_cuda<float>("float", 2e-6);
  test_cuda<double>("double", 1e-14);
  test_cuda_half<__half>("fp16");
  test_cuda_half<__nv_bfloat16>("bf16");
  test_tile_rows();
  std::printf("%s (%d failures)\n", failures == 0 ? "PASS" : "FAIL", failures);
  return failures == 0 ? 0 : 1;
}

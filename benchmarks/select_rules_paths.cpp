// The CPU select_rules kernel's two fp32 paths on the same data, one thread: the general
// path (csrc/cpu/select_rules_kernel.h, select_rules_rows) and the AVX2 path for k <= 16
// (avx2::select_rules_rows), against two memcpy of the score matrices. Medians of 15 runs.
//
//   cmake -S . -B build && cmake --build build --target bench_select_rules_paths
//   build/bench_select_rules_paths [R] [k]      # N = 65536; default R = 100, k = 5
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../csrc/cpu/select_rules_kernel.h"
#include "../csrc/tests/select_rules_outputs.h"

using ramo::SelectRulesArgs;

template <typename F>
double median_ms(F f) {
  std::vector<double> t;
  for (int i = 0; i < 15; ++i) {
    const auto start = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main(int argc, char** argv) {
  const int64_t n = 65536, r = argc > 1 ? std::atoi(argv[1]) : 100;
  const int k = argc > 2 ? std::atoi(argv[2]) : 5;
  if (r < 1 || k < 1 || k > 16 || k > r) {
    std::fprintf(stderr, "R >= 1 and 1 <= k <= min(16, R)\n");
    return 2;
  }
  std::mt19937 g(0);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<float> a(n * r), b(n * r), rel(r), copy(n * r);
  for (auto* v : {&a, &b, &rel}) {
    for (auto& x : *v) x = u(g);
  }
  ramo_test::SelectRulesOutputs<float> out(n, k);
  SelectRulesArgs<float> p{};
  p.r = r;
  p.k = k;
  p.relevance = rel.data();
  p.discrepancy_weight = 0.5f;
  p.relevance_weight = 1.0f;
  out.bind(p);
  const double general = median_ms([&] {
    ramo::cpu::select_rules_rows<float, float, true, false>(a.data(), b.data(), p, 0, n);
  });
#if RAMO_CPU_AVX2_PATH
  if (!__builtin_cpu_supports("avx2")) {
    std::printf("no AVX2 on this CPU\n");
    return 0;
  }
  const double avx2 = median_ms([&] {  // the dispatch takes the AVX2 path for k <= 16
    ramo::cpu::select_rules_range<float, float>(a.data(), b.data(), p, 0, n);
  });
  const double memcpy_ms = median_ms([&] {
    std::memcpy(copy.data(), a.data(), a.size() * sizeof(float));
    std::memcpy(copy.data(), b.data(), b.size() * sizeof(float));
  });
  std::printf("N %lld R %lld k %d, one thread: general %.2f ms, avx2 %.2f ms (%.2fx), "
              "memcpy of both score matrices %.2f ms\n",
              (long long)n, (long long)r, k, general, avx2, general / avx2, memcpy_ms);
#else
  std::printf("N %lld R %lld k %d: general %.2f ms (no AVX2 path on this build)\n",
              (long long)n, (long long)r, k, general);
#endif
  return 0;
}

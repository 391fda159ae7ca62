// CPU implementation of ramo::select_rules: torch glue around select_rules_kernel.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>

#include "../select_rules.h"
#include "parallel_chunks.h"
#include "select_rules_kernel.h"

namespace ramo {

namespace {

SelectRulesResult select_rules_cpu(const at::Tensor& scores_a, const at::Tensor& scores_b,
                                   const std::optional<at::Tensor>& relevance,
                                   const std::optional<at::Tensor>& valid, int64_t k,
                                   double discrepancy_weight, double relevance_weight,
                                   double tie_tolerance) {
  const SelectRulesInputs in =
      prepare_select_rules(scores_a, scores_b, relevance, valid, k, discrepancy_weight,
                           relevance_weight, tie_tolerance);
  // The kernel skips a shared relevance in every row; its first bad row joins the kernel's.
  const int64_t shared_bad = check_shared_relevance(in);
  SelectRulesResult out = empty_select_rules_outputs(in, k);
  const int64_t n = in.scores_a.size(0), r = in.scores_a.size(1);
  if (n == 0) return out;

  std::atomic<int64_t> first_bad{n};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scores_a.scalar_type(),
                                  "select_rules_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    SelectRulesArgs<acc_t> p{};
    fill_select_rules_args(p, in, out, k, discrepancy_weight, relevance_weight, tie_tolerance);
    const scalar_t* a = in.scores_a.data_ptr<scalar_t>();
    const scalar_t* b = in.scores_b.data_ptr<scalar_t>();
    // Rows go to the threads in chunks (parallel_chunks): about four per thread, each of
    // 64 KiB to 1 MiB of scores (smaller chunks cost more in per-call setup than they gain
    // in balance).
    const int64_t row_bytes = r * 2 * static_cast<int64_t>(sizeof(scalar_t));
    const int64_t threads = at::get_num_threads();
    const int64_t chunk = std::clamp<int64_t>((n + 4 * threads - 1) / (4 * threads),
                                              std::max<int64_t>(1, (int64_t{1} << 16) / row_bytes),
                                              std::max<int64_t>(1, (int64_t{1} << 20) / row_bytes));
    cpu::parallel_chunks((n + chunk - 1) / chunk, [&](int64_t c) {
      const int64_t begin = c * chunk, end = std::min(n, begin + chunk);
      const int64_t bad = cpu::select_rules_range<scalar_t, acc_t>(a, b, p, begin, end);
      if (bad < end) {
        int64_t seen = first_bad.load();
        while (bad < seen && !first_bad.compare_exchange_weak(seen, bad)) {
        }
      }
    });
  });
  const int64_t bad = std::min(first_bad.load(), shared_bad);
  if (bad < n) raise_non_finite(in, bad);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ramo, CPU, m) { m.impl("select_rules", &select_rules_cpu); }

}  // namespace ramo

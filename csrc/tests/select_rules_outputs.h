// The CPU select_rules kernel's output buffers for n rows, bound to its arguments: shared by
// the C++ unit tests and the path benchmark (benchmarks/select_rules_paths.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "../cpu/select_rules_kernel.h"

namespace ramo_test {

template <typename acc_t>
struct SelectRulesOutputs {
  std::vector<int64_t> idx;
  std::vector<acc_t> crit, ra, rb, m;
  std::vector<int8_t> pref;
  SelectRulesOutputs(int64_t n, int k) : idx(n * k), crit(n * k), ra(n), rb(n), m(n), pref(n) {}
  void bind(ramo::SelectRulesArgs<acc_t>& p) {
    p.indices = idx.data();
    p.criterion = crit.data();
    p.reward_a = ra.data();
    p.reward_b = rb.data();
    p.margin = m.data();
    p.preference = pref.data();
  }
};

}  // namespace ramo_test

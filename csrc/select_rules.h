// Host-side pieces of select_rules shared by the CPU and CUDA implementations.
#pragma once

#include <torch/types.h>

#include <optional>
#include <tuple>

#include "../kernels/common/select_rules.h"

namespace ramo {

using SelectRulesResult =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Inputs after checking: contiguous scores, relevance in the accumulation dtype, valid as
// bool, each optional one [R] (row stride 0) or [N, R] (row stride R).
struct SelectRulesInputs {
  at::Tensor scores_a, scores_b;
  std::optional<at::Tensor> relevance, valid;
  int64_t relevance_row_stride = 0, valid_row_stride = 0;
  at::ScalarType acc_type;
};

// Checks the op's arguments (ValueError, with ramo.ops.select_rules' messages): shapes,
// dtypes, devices, k, and the weights, which the Python function does not check under
// torch.compile.
SelectRulesInputs prepare_select_rules(const at::Tensor& scores_a, const at::Tensor& scores_b,
                                       const std::optional<at::Tensor>& relevance,
                                       const std::optional<at::Tensor>& valid, int64_t k,
                                       double discrepancy_weight, double relevance_weight,
                                       double tie_tolerance);

// The first row (n if none) in which a shared [R] relevance has a non-finite value in a
// position that row's valid mask lets in; n when the relevance is absent or per row. It lets
// a kernel skip that check in every row (the CPU kernel does): the caller raises at the
// smaller of this row and the kernel's first bad row. It reads the result on the host: the
// CUDA kernel checks relevance with the scores instead, which saves a synchronisation.
[[nodiscard]] int64_t check_shared_relevance(const SelectRulesInputs& in);

// Outputs in the schema's order [criterion, reward_a, reward_b, margin, indices, preference],
// uninitialised.
SelectRulesResult empty_select_rules_outputs(const SelectRulesInputs& in, int64_t k);

// The kernels' arguments for these inputs, outputs and settings (the CUDA launch adds its own).
template <typename acc_t>
void fill_select_rules_args(SelectRulesArgs<acc_t>& p, const SelectRulesInputs& in,
                            SelectRulesResult& out, int64_t k, double discrepancy_weight,
                            double relevance_weight, double tie_tolerance) {
  p.r = in.scores_a.size(1);
  p.k = static_cast<int>(k);
  p.relevance = in.relevance ? in.relevance->data_ptr<acc_t>() : nullptr;
  p.relevance_row_stride = in.relevance_row_stride;
  p.valid = in.valid ? in.valid->data_ptr<bool>() : nullptr;
  p.valid_row_stride = in.valid_row_stride;
  p.discrepancy_weight = static_cast<acc_t>(discrepancy_weight);
  p.relevance_weight = static_cast<acc_t>(relevance_weight);
  p.tie_tolerance = static_cast<acc_t>(tie_tolerance);
  p.indices = std::get<4>(out).data_ptr<int64_t>();
  p.criterion = std::get<0>(out).data_ptr<acc_t>();
  p.reward_a = std::get<1>(out).data_ptr<acc_t>();
  p.reward_b = std::get<2>(out).data_ptr<acc_t>();
  p.margin = std::get<3>(out).data_ptr<acc_t>();
  p.preference = std::get<5>(out).data_ptr<int8_t>();
}

// Raises the ValueError for a row that holds a non-finite value in a valid position (in the
// accumulation dtype, which relevance is already cast to), naming the first tensor of
// scores_a, scores_b, relevance bad in that row and its first bad rule. Callers pass the
// first such row, which gives every backend's message.
[[noreturn]] void raise_non_finite(const SelectRulesInputs& in, int64_t row);

}  // namespace ramo

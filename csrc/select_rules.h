// Host-side pieces of select_rules shared by the CPU and CUDA implementations.
#pragma once

#include <torch/types.h>

#include <optional>
#include <tuple>

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

SelectRulesInputs prepare_select_rules(const at::Tensor& scores_a, const at::Tensor& scores_b,
                                       const std::optional<at::Tensor>& relevance,
                                       const std::optional<at::Tensor>& valid, int64_t k,
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

// Raises the ValueError for a row that holds a non-finite value in a valid position,
// naming the first tensor of scores_a, scores_b, relevance bad in that row and its first
// bad rule. Callers pass the first such row, which gives every backend's message.
[[noreturn]] void raise_non_finite(const SelectRulesInputs& in, int64_t row);

}  // namespace ramo

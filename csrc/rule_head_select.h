// Host-side pieces of rule_head_select (docs/architecture.md, "rule_head_select") shared by the
// CPU and CUDA implementations: argument checks, the forward (two addmm + the device's
// select_rules kernel) and the preparation of the sparse backward's inputs.
#pragma once

#include <torch/types.h>

#include <optional>
#include <tuple>

namespace ramo {

// [criterion, reward_a, reward_b, margin, scores_a, scores_b, indices, preference]: floats
// first, as csrc/ops.cpp explains.
using RuleHeadSelectResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                        at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
// [grad_hidden_a, grad_hidden_b, grad_weight, grad_bias]
using RuleHeadBackwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// scores_x = hidden_x @ weight.T + bias with at::addmm (at::mm without a bias): the call the
// reference makes, so every backend gets the same bits; then ramo::select_rules through the
// dispatcher, which runs the select_rules kernel of the tensors' device. Its errors are
// reworded in rule_head_select's terms.
RuleHeadSelectResult rule_head_select_forward(const at::Tensor& hidden_a,
                                              const at::Tensor& hidden_b,
                                              const at::Tensor& weight,
                                              const std::optional<at::Tensor>& bias,
                                              const std::optional<at::Tensor>& relevance,
                                              const std::optional<at::Tensor>& valid, int64_t k,
                                              double discrepancy_weight,
                                              double relevance_weight, double tie_tolerance);

// Inputs of the sparse backward after checking: everything contiguous, the reward gradients
// in the accumulation dtype, indices int64 in [-1, R).
struct RuleHeadBackwardInputs {
  at::Tensor grad_a, grad_b, indices, hidden_a, hidden_b, weight;
  int64_t n, d, r, k;
  at::ScalarType acc_type;
};

RuleHeadBackwardInputs prepare_rule_head_select_backward(const at::Tensor& grad_reward_a,
                                                         const at::Tensor& grad_reward_b,
                                                         const at::Tensor& indices,
                                                         const at::Tensor& hidden_a,
                                                         const at::Tensor& hidden_b,
                                                         const at::Tensor& weight);

}  // namespace ramo

#include "rule_head_select.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <string>

#include "select_rules.h"

namespace ramo {

namespace {

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

void check_heads(const at::Tensor& hidden_a, const at::Tensor& hidden_b,
                 const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK_VALUE(hidden_a.dim() == 2, "rule_head_select: hidden_a must be [N, D], got ",
                    hidden_a.sizes());
  TORCH_CHECK_VALUE(hidden_a.sizes() == hidden_b.sizes(),
                    "rule_head_select: hidden_a and hidden_b differ in shape: ",
                    hidden_a.sizes(), " vs ", hidden_b.sizes());
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(1) == hidden_a.size(1),
                    "rule_head_select: weight must be [R, D] with D=", hidden_a.size(1),
                    ", got ", weight.sizes());
  const auto dtype = hidden_a.scalar_type();
  TORCH_CHECK_VALUE(is_float(dtype), "rule_head_select: hidden_a must be float16, bfloat16, "
                    "float32 or float64, got ", dtype);
  TORCH_CHECK_VALUE(hidden_b.scalar_type() == dtype && weight.scalar_type() == dtype,
                    "rule_head_select: hidden_a, hidden_b and weight must share one dtype, got ",
                    dtype, ", ", hidden_b.scalar_type(), ", ", weight.scalar_type());
  TORCH_CHECK_VALUE(hidden_b.device() == hidden_a.device() &&
                        weight.device() == hidden_a.device(),
                    "rule_head_select: hidden_a, hidden_b and weight must be on one device, got ",
                    hidden_a.device(), ", ", hidden_b.device(), ", ", weight.device());
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0),
                      "rule_head_select: bias must have shape [R=", weight.size(0), "], got ",
                      bias->sizes());
    TORCH_CHECK_VALUE(bias->scalar_type() == dtype, "rule_head_select: bias must be ", dtype,
                      " like weight, got ", bias->scalar_type());
    TORCH_CHECK_VALUE(bias->device() == hidden_a.device(), "rule_head_select: hidden_a is on ",
                      hidden_a.device(), " but bias is on ", bias->device());
  }
}

void replace_first(std::string& s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  if (at != std::string::npos) s.replace(at, from.size(), to);
}

// select_rules' message in rule_head_select's terms (the same rewording as the Python
// rename_select_rules_error in ramo/reference/rule_head_select.py).
std::string reworded(std::string message) {
  replace_first(message, "select_rules: ", "rule_head_select: ");
  replace_first(message, "scores_a has", "scores_a (hidden_a @ weight.T + bias) has");
  replace_first(message, "scores_b has", "scores_b (hidden_b @ weight.T + bias) has");
  return message;
}

at::Tensor head_scores(const at::Tensor& hidden, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias) {
  return bias.has_value() ? at::addmm(*bias, hidden, weight.t()) : at::mm(hidden, weight.t());
}

}  // namespace

RuleHeadSelectResult rule_head_select_forward(const at::Tensor& hidden_a,
                                              const at::Tensor& hidden_b,
                                              const at::Tensor& weight,
                                              const std::optional<at::Tensor>& bias,
                                              const std::optional<at::Tensor>& relevance,
                                              const std::optional<at::Tensor>& valid, int64_t k,
                                              double discrepancy_weight,
                                              double relevance_weight, double tie_tolerance) {
  check_heads(hidden_a, hidden_b, weight, bias);
  at::Tensor scores_a = head_scores(hidden_a, weight, bias);
  at::Tensor scores_b = head_scores(hidden_b, weight, bias);
  static const auto select_rules =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ramo::select_rules", "")
          .typed<SelectRulesResult(const at::Tensor&, const at::Tensor&,
                                   const std::optional<at::Tensor>&,
                                   const std::optional<at::Tensor>&, int64_t, double, double,
                                   double)>();
  SelectRulesResult sel;
  try {
    sel = select_rules.call(scores_a, scores_b, relevance, valid, k, discrepancy_weight,
                            relevance_weight, tie_tolerance);
  } catch (const c10::ValueError& e) {
    TORCH_CHECK_VALUE(false, reworded(e.msg()));
  }
  auto& [criterion, reward_a, reward_b, margin, indices, preference] = sel;
  return {criterion, reward_a, reward_b, margin, scores_a, scores_b, indices, preference};
}

RuleHeadBackwardInputs prepare_rule_head_select_backward(const at::Tensor& grad_reward_a,
                                                         const at::Tensor& grad_reward_b,
                                                         const at::Tensor& indices,
                                                         const at::Tensor& hidden_a,
                                                         const at::Tensor& hidden_b,
                                                         const at::Tensor& weight) {
  check_heads(hidden_a, hidden_b, weight, std::nullopt);
  const int64_t n = hidden_a.size(0);
  TORCH_CHECK_VALUE(indices.dim() == 2 && indices.size(0) == n &&
                        indices.scalar_type() == at::kLong,
                    "rule_head_select_backward: indices must be int64 [N=", n, ", k], got ",
                    indices.scalar_type(), " ", indices.sizes());
  for (const auto* g : {&grad_reward_a, &grad_reward_b}) {
    TORCH_CHECK_VALUE(g->dim() == 1 && g->size(0) == n && is_float(g->scalar_type()),
                      "rule_head_select_backward: the reward gradients must be float [N=", n,
                      "], got ", g->scalar_type(), " ", g->sizes());
  }
  for (const auto* t : {&grad_reward_a, &grad_reward_b, &indices}) {
    TORCH_CHECK_VALUE(t->device() == hidden_a.device(),
                      "rule_head_select_backward: every tensor must be on ", hidden_a.device(),
                      ", got one on ", t->device());
  }
  RuleHeadBackwardInputs in;
  in.n = n;
  in.d = hidden_a.size(1);
  in.r = weight.size(0);
  in.k = indices.size(1);
  in.acc_type = hidden_a.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  in.indices = indices.contiguous();
  // The kernels index weight rows with these: no stray value may pass.
  int64_t lo = -1, hi = -1;
  if (in.indices.numel() > 0 && in.indices.is_cpu()) {  // a plain loop: aminmax is slow here
    const int64_t* p = in.indices.data_ptr<int64_t>();
    lo = hi = p[0];
    for (int64_t i = 1; i < in.indices.numel(); ++i) {
      lo = std::min(lo, p[i]);
      hi = std::max(hi, p[i]);
    }
  } else if (in.indices.numel() > 0) {
    const auto [lo_t, hi_t] = at::aminmax(in.indices);
    const at::Tensor bounds = at::stack({lo_t, hi_t}).cpu();  // one synchronisation, not two
    lo = bounds[0].item<int64_t>();
    hi = bounds[1].item<int64_t>();
  }
  TORCH_CHECK_VALUE(lo >= -1 && hi < in.r, "rule_head_select_backward: indices must be in [-1, R=",
                    in.r, "), got values from ", lo, " to ", hi);
  in.grad_a = grad_reward_a.to(in.acc_type).contiguous();
  in.grad_b = grad_reward_b.to(in.acc_type).contiguous();
  in.hidden_a = hidden_a.contiguous();
  in.hidden_b = hidden_b.contiguous();
  in.weight = weight.contiguous();
  return in;
}

}  // namespace ramo

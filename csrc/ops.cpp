// ramo::* operator schemas (one string per op) and the ramo._C Python module.
// Kernels register in csrc/cpu and csrc/cuda; fake kernels and autograd are registered
// from Python (ramo/ops).
#include <torch/extension.h>
#include <torch/library.h>

#include "../kernels/common/select_rules.h"

TORCH_LIBRARY(ramo, m) {
  // Float outputs come first: torch.library.opcheck's autograd test sums every output into
  // the first one, which fails when that one is an integer tensor. ramo.ops.select_rules
  // returns them in RuleSelection's order.
  m.def(
      "select_rules(Tensor scores_a, Tensor scores_b, Tensor? relevance, Tensor? valid, "
      "int k, float discrepancy_weight, float relevance_weight, float tie_tolerance) "
      "-> (Tensor criterion, Tensor reward_a, Tensor reward_b, Tensor margin, "
      "Tensor indices, Tensor preference)");
  // ids: the yes ids, then the no ids, then the other ids (n_yes and n_no say where each set
  // ends); normalize is "vocab" or "choices". Inference only: no backward.
  m.def(
      "judge_scores(Tensor hidden, Tensor weight, Tensor? bias, Tensor ids, int n_yes, "
      "int n_no, str normalize) "
      "-> (Tensor p_yes, Tensor p_no, Tensor p_other, Tensor score, Tensor relevance)");
  // Per-rule heads (scores = hidden @ weight.T + bias, by addmm) followed by select_rules;
  // the scores are returned too. The backward op is the selected-rules part of its gradient
  // (the sparse kernel); ramo/ops/rule_head_select.py adds the dense terms of any gradient
  // reaching the scores.
  m.def(
      "rule_head_select(Tensor hidden_a, Tensor hidden_b, Tensor weight, Tensor? bias, "
      "Tensor? relevance, Tensor? valid, int k, float discrepancy_weight, "
      "float relevance_weight, float tie_tolerance) "
      "-> (Tensor criterion, Tensor reward_a, Tensor reward_b, Tensor margin, "
      "Tensor scores_a, Tensor scores_b, Tensor indices, Tensor preference)");
  m.def(
      "rule_head_select_backward(Tensor grad_reward_a, Tensor grad_reward_b, Tensor indices, "
      "Tensor hidden_a, Tensor hidden_b, Tensor weight) "
      "-> (Tensor grad_hidden_a, Tensor grad_hidden_b, Tensor grad_weight, Tensor grad_bias)");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ramo's compiled kernels; the ops are torch.ops.ramo.*";
#ifdef RAMO_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
  m.attr("max_fast_k") = ramo::kMaxFastK;
}

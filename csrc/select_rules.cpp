#include "select_rules.h"

#include <cmath>
#include <utility>

#include "../kernels/common/select_rules.h"

namespace ramo {

namespace {

std::optional<at::Tensor> prepare_row_broadcast(const std::optional<at::Tensor>& t,
                                                const char* name, int64_t n, int64_t r,
                                                const at::Tensor& scores,
                                                at::ScalarType dtype, int64_t& row_stride) {
  row_stride = 0;
  if (!t.has_value()) return std::nullopt;
  TORCH_CHECK_VALUE(t->device() == scores.device(), "select_rules: ", name, " is on ",
                    t->device(), " but the scores are on ", scores.device());
  const bool shared = t->dim() == 1 && t->size(0) == r;
  const bool per_row = t->dim() == 2 && t->size(0) == n && t->size(1) == r;
  TORCH_CHECK_VALUE(shared || per_row, "select_rules: ", name, " must have shape [", r,
                    "] or [", n, ", ", r, "], got ", t->sizes());
  row_stride = per_row ? r : 0;
  return t->to(dtype).contiguous();
}

}  // namespace

SelectRulesInputs prepare_select_rules(const at::Tensor& scores_a, const at::Tensor& scores_b,
                                       const std::optional<at::Tensor>& relevance,
                                       const std::optional<at::Tensor>& valid, int64_t k,
                                       double discrepancy_weight, double relevance_weight,
                                       double tie_tolerance) {
  TORCH_CHECK_VALUE(scores_a.dim() == 2, "select_rules: scores_a must be [N, R], got ",
                    scores_a.sizes());
  TORCH_CHECK_VALUE(scores_a.sizes() == scores_b.sizes(),
                    "select_rules: scores_a and scores_b differ in shape: ", scores_a.sizes(),
                    " vs ", scores_b.sizes());
  TORCH_CHECK_VALUE(scores_a.device() == scores_b.device(), "select_rules: scores_a is on ",
                    scores_a.device(), " but scores_b is on ", scores_b.device());
  const auto dtype = scores_a.scalar_type();
  TORCH_CHECK_VALUE(dtype == scores_b.scalar_type(),
                    "select_rules: scores_a and scores_b differ in dtype");
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                        dtype == at::kBFloat16,
                    "select_rules: scores must be float16, bfloat16, float32 or float64, got ",
                    dtype);
  const int64_t n = scores_a.size(0), r = scores_a.size(1);
  TORCH_CHECK_VALUE(k >= 1 && k <= r, "select_rules: k must be in [1, R=", r, "], got ", k);
  TORCH_CHECK_VALUE(k <= kMaxFastK, "select_rules: the compiled kernels take k <= ", kMaxFastK,
                    ", got ", k, " (ramo.ops.select_rules uses the reference for larger k)");
  // ramo.ops.select_rules checks the weights too, except under torch.compile, where they may
  // be traced as symbols whose values only the op sees.
  const std::pair<const char*, double> weights[] = {{"discrepancy_weight", discrepancy_weight},
                                                    {"relevance_weight", relevance_weight},
                                                    {"tie_tolerance", tie_tolerance}};
  for (const auto& [name, w] : weights) {
    TORCH_CHECK_VALUE(std::isfinite(w), "select_rules: ", name,
                      " must be a finite Python int or float, got ", w);
  }
  TORCH_CHECK_VALUE(tie_tolerance >= 0, "select_rules: tie_tolerance must be >= 0, got ",
                    tie_tolerance);

  SelectRulesInputs in;
  in.acc_type = dtype == at::kDouble ? at::kDouble : at::kFloat;
  in.scores_a = scores_a.contiguous();
  in.scores_b = scores_b.contiguous();
  in.relevance = prepare_row_broadcast(relevance, "relevance", n, r, scores_a, in.acc_type,
                                       in.relevance_row_stride);
  in.valid = prepare_row_broadcast(valid, "valid", n, r, scores_a, at::kBool,
                                   in.valid_row_stride);
  if (valid.has_value()) {
    TORCH_CHECK_VALUE(valid->scalar_type() == at::kBool, "select_rules: valid must be bool, got ",
                      valid->scalar_type());
  }
  return in;
}

int64_t check_shared_relevance(const SelectRulesInputs& in) {
  const int64_t n = in.scores_a.size(0);
  if (!in.relevance.has_value() || in.relevance_row_stride != 0 || n == 0) return n;
  const auto bad = in.relevance->isfinite().logical_not();  // [R]
  if (!bad.any().item<bool>()) return n;  // the normal path: one pass over R values
  // The error path: the first row whose mask lets a bad rule in.
  if (!in.valid.has_value()) return 0;
  const auto hit = bad.logical_and(in.valid.value());  // [R] & [R] or [N, R]
  if (in.valid_row_stride == 0) return hit.any().item<bool>() ? 0 : n;
  const auto rows = hit.any(1).nonzero();
  return rows.size(0) > 0 ? rows[0][0].item<int64_t>() : n;
}

SelectRulesResult empty_select_rules_outputs(const SelectRulesInputs& in, int64_t k) {
  const int64_t n = in.scores_a.size(0);
  const auto opts = in.scores_a.options();
  return {at::empty({n, k}, opts.dtype(in.acc_type)), at::empty({n}, opts.dtype(in.acc_type)),
          at::empty({n}, opts.dtype(in.acc_type)), at::empty({n}, opts.dtype(in.acc_type)),
          at::empty({n, k}, opts.dtype(at::kLong)), at::empty({n}, opts.dtype(at::kChar))};
}

void raise_non_finite(const SelectRulesInputs& in, int64_t row) {
  const int64_t r = in.scores_a.size(1);
  const char* dtype = in.acc_type == at::kDouble ? "float64" : "float32";
  auto row_of = [&](const at::Tensor& t, int64_t stride) {
    return (stride == 0 ? t : t[row]).to(at::kCPU).to(at::kDouble).reshape({r});
  };
  auto valid = in.valid.has_value() ? row_of(*in.valid, in.valid_row_stride).to(at::kBool)
                                    : at::ones({r}, at::kBool);
  std::vector<std::pair<const char*, at::Tensor>> named = {
      {"scores_a", row_of(in.scores_a, r)}, {"scores_b", row_of(in.scores_b, r)}};
  if (in.relevance.has_value()) {
    named.emplace_back("relevance", row_of(*in.relevance, in.relevance_row_stride));
  }
  for (const auto& [name, values] : named) {
    const auto bad = values.isfinite().logical_not().logical_and(valid);
    if (bad.any().item<bool>()) {
      TORCH_CHECK_VALUE(false, "select_rules: ", name, " has a non-finite value in a valid ",
                        "position (row ", row, ", rule ", bad.nonzero()[0][0].item<int64_t>(),
                        ") as ", dtype, ", the dtype the op computes in");
    }
  }
  TORCH_CHECK_VALUE(false, "select_rules: a non-finite value in a valid position (row ", row,
                    ") as ", dtype, ", the dtype the op computes in");
}

}  // namespace ramo

#include "judge_scores.h"

#include <ATen/Dispatch.h>

#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <unordered_map>
#include <vector>

// at::mm_out with an out_dtype (fp16 / bf16 in, fp32 out) exists from torch 2.8 on.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8)
#define RAMO_MIXED_MATMUL 1
#else
#define RAMO_MIXED_MATMUL 0
#endif

namespace ramo {

namespace {

constexpr bool kMixedMatmul = RAMO_MIXED_MATMUL;

// out = a @ b in out's dtype (fp32) from fp16 / bf16 a and b, on CUDA.
void mixed_mm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b,
                  at::ScalarType dtype) {
#if RAMO_MIXED_MATMUL
  at::mm_out(out, a, b, dtype);
#else
  TORCH_CHECK(false, "judge_scores: mm with an out_dtype needs torch 2.8 (", a.scalar_type(),
              " -> ", dtype, ", ", out.sizes(), " x ", b.sizes(), ")");
#endif
}

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

void check_tensors(const at::Tensor& hidden, const at::Tensor& weight,
                   const std::optional<at::Tensor>& bias) {
  TORCH_CHECK_VALUE(hidden.dim() == 2, "judge_scores: hidden must be 2-D ([B, D] / [V, D]), ",
                    "got shape ", hidden.sizes());
  TORCH_CHECK_VALUE(weight.dim() == 2, "judge_scores: weight must be 2-D ([B, D] / [V, D]), ",
                    "got shape ", weight.sizes());
  TORCH_CHECK_VALUE(is_float(hidden.scalar_type()), "judge_scores: hidden must be float16, ",
                    "bfloat16, float32 or float64, got ", hidden.scalar_type());
  TORCH_CHECK_VALUE(weight.scalar_type() == hidden.scalar_type(), "judge_scores: hidden is ",
                    hidden.scalar_type(), " but weight is ", weight.scalar_type());
  TORCH_CHECK_VALUE(weight.size(1) == hidden.size(1), "judge_scores: hidden has D=",
                    hidden.size(1), " but weight has D=", weight.size(1),
                    " (weight must be [V, D])");
  TORCH_CHECK_VALUE(weight.device() == hidden.device(), "judge_scores: hidden is on ",
                    hidden.device(), " but weight is on ", weight.device());
  if (!bias.has_value()) return;
  TORCH_CHECK_VALUE(is_float(bias->scalar_type()),
                    "judge_scores: bias must be None or a float tensor");
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0),
                    "judge_scores: bias must have shape [V=", weight.size(0), "], got ",
                    bias->sizes());
  TORCH_CHECK_VALUE(bias->device() == hidden.device(), "judge_scores: hidden is on ",
                    hidden.device(), " but bias is on ", bias->device());
}

// Range, duplicates and disjointness, on a host copy (the ids are a handful).
void check_ids(const at::Tensor& ids, int64_t n_yes, int64_t n_no, int64_t vocab,
               const at::Tensor& hidden) {
  TORCH_CHECK_VALUE(ids.dim() == 1 && ids.scalar_type() == at::kLong,
                    "judge_scores: ids must be a 1-D int64 tensor");
  TORCH_CHECK_VALUE(ids.device() == hidden.device(), "judge_scores: hidden is on ",
                    hidden.device(), " but ids is on ", ids.device());
  const int64_t n = ids.size(0);
  TORCH_CHECK_VALUE(n_yes >= 1, "judge_scores: yes_ids must not be empty");
  TORCH_CHECK_VALUE(n_no >= 1, "judge_scores: no_ids must not be empty");
  // n_yes + n_no could overflow: both are positive here, so compare without the sum.
  TORCH_CHECK_VALUE(n_yes <= n && n_no <= n - n_yes, "judge_scores: n_yes + n_no exceeds the ",
                    n, " ids");
  const at::Tensor host = ids.to(at::kCPU).contiguous();
  const int64_t* v = host.data_ptr<int64_t>();
  const char* names[3] = {"yes_ids", "no_ids", "other_ids"};
  std::unordered_map<int64_t, int> seen;
  for (int64_t j = 0; j < n; ++j) {
    const int set = j < n_yes ? 0 : (j < n_yes + n_no ? 1 : 2);
    TORCH_CHECK_VALUE(v[j] >= 0 && v[j] < vocab, "judge_scores: ", names[set], " holds ", v[j],
                      ", outside [0, V=", vocab, ")");
    const auto [it, fresh] = seen.emplace(v[j], set);
    TORCH_CHECK_VALUE(fresh, "judge_scores: token id ", v[j], " is in ", names[set],
                      it->second == set ? " twice" : std::string(" and in ") + names[it->second],
                      "; the id sets must be disjoint and free of duplicates");
  }
}

// Flat index of the first non-finite element of a contiguous CPU tensor, or -1. A plain
// loop, because at::isfinite builds |x| and two bool masks: four times hidden's size in
// temporaries, more than the whole CPU "vocab" pass holds.
int64_t first_non_finite_cpu(const at::Tensor& t) {
  int64_t found = -1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(),
                                  "judge_scores_finite", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t* x = t.const_data_ptr<scalar_t>();
    const int64_t n = t.numel();
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(static_cast<acc_t>(x[i]))) {
        found = i;
        break;
      }
    }
  });
  return found;
}

// Flat index of the first non-finite element of hidden, or -1.
int64_t first_non_finite(const at::Tensor& hidden) {
  if (hidden.is_cpu()) return first_non_finite_cpu(hidden);
  const at::Tensor bad = at::isfinite(hidden).logical_not().reshape({-1});
  return bad.any().item<bool>() ? bad.nonzero()[0][0].item<int64_t>() : -1;
}

// The value checks of ramo/reference/judge_scores.py (check_values), with its messages: bias
// is checked in the accumulation dtype, as the op adds it.
void check_values(const at::Tensor& hidden, const std::optional<at::Tensor>& bias,
                  const at::Tensor& ids, bool choices) {
  const int64_t bad = first_non_finite(hidden);
  if (bad >= 0) {
    const int64_t d = hidden.size(1);
    TORCH_CHECK_VALUE(false, "judge_scores: hidden has a non-finite value (row ", bad / d,
                      ", column ", bad % d, ")");
  }
  if (!bias.has_value()) return;
  const char* dtype = bias->scalar_type() == at::kDouble ? "float64" : "float32";
  const at::Tensor bad_bias = at::isnan(*bias).logical_or(bias->eq(INFINITY));
  if (bad_bias.any().item<bool>()) {
    TORCH_CHECK_VALUE(false, "judge_scores: bias holds NaN or +inf (token ",
                      bad_bias.nonzero()[0][0].item<int64_t>(), ", as ", dtype,
                      ", the dtype the op computes in); only -inf (a masked token) is allowed");
  }
  const at::Tensor pool = choices ? bias->index_select(0, ids) : *bias;
  TORCH_CHECK_VALUE(pool.gt(-INFINITY).any().item<bool>(), "judge_scores: bias masks (-inf) ",
                    choices ? "every listed id" : "every token", " (as ", dtype,
                    ", the dtype the op computes in): there is nothing to normalise over in '",
                    choices ? "choices" : "vocab", "' mode");
}

}  // namespace

JudgeScoresInputs prepare_judge_scores(const at::Tensor& hidden, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias,
                                       const at::Tensor& ids, int64_t n_yes, int64_t n_no,
                                       const std::string& normalize) {
  check_tensors(hidden, weight, bias);
  check_ids(ids, n_yes, n_no, weight.size(0), hidden);
  TORCH_CHECK_VALUE(normalize == "vocab" || normalize == "choices",
                    "judge_scores: normalize must be one of ('vocab', 'choices'), got '",
                    normalize, "'");
  JudgeScoresInputs in;
  in.choices = normalize == "choices";
  in.acc_type = hidden.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  in.hidden = hidden.contiguous();
  in.weight = weight.contiguous();
  in.ids = ids.contiguous();
  if (bias.has_value()) in.bias = bias->to(in.acc_type).contiguous();
  in.n_yes = n_yes;
  in.n_no = n_no;
  check_values(in.hidden, in.bias, in.ids, in.choices);
  return in;
}

at::Tensor judge_listed_logits(const JudgeScoresInputs& in, const at::Tensor& hidden_acc) {
  const at::Tensor rows = in.weight.index_select(0, in.ids).to(in.acc_type);
  at::Tensor listed = at::mm(hidden_acc, rows.t());
  if (in.bias.has_value()) listed.add_(in.bias->index_select(0, in.ids));
  return listed.contiguous();
}

void for_each_vocab_chunk(const JudgeScoresInputs& in, const at::Tensor& hidden_acc,
                          int64_t chunk,
                          const std::function<void(const at::Tensor&, int64_t)>& fold) {
  TORCH_CHECK(chunk >= 1, "judge_scores: a vocabulary chunk must hold a row, got ", chunk);
  const int64_t batch = hidden_acc.size(0), dim = hidden_acc.size(1);
  const int64_t vocab = in.weight.size(0);
  chunk = std::min(chunk, vocab);
  const bool narrow = in.weight.scalar_type() != in.acc_type;
  // cuBLAS multiplies fp16 / bf16 into fp32 directly (mm's out_dtype overload, torch 2.8 on):
  // exact products, fp32 sums, no converted copy. Elsewhere each chunk is converted first.
  const bool mixed = kMixedMatmul && narrow && in.weight.is_cuda();
  const bool convert = narrow && !mixed;
  const auto opts = hidden_acc.options();
  at::Tensor block = at::empty({batch * chunk}, opts);
  at::Tensor converted = convert ? at::empty({chunk, dim}, opts) : at::Tensor();
  for (int64_t v0 = 0; v0 < vocab; v0 += chunk) {
    const int64_t c = std::min(chunk, vocab - v0);
    at::Tensor w = in.weight.narrow(0, v0, c);
    if (convert) w = converted.narrow(0, 0, c).copy_(w);
    at::Tensor logits = block.narrow(0, 0, batch * c).view({batch, c});
    if (mixed) {
      mixed_mm_out(logits, in.hidden, w.t(), in.acc_type);
    } else {
      at::mm_out(logits, hidden_acc, w.t());
    }
    fold(logits, v0);
  }
}

JudgeScoresResult empty_judge_scores_outputs(const JudgeScoresInputs& in) {
  const auto opts = in.hidden.options().dtype(in.acc_type);
  const int64_t b = in.hidden.size(0);
  return {at::empty({b}, opts), at::empty({b}, opts), at::empty({b}, opts),
          at::empty({b}, opts), at::empty({b}, opts)};
}

}  // namespace ramo
